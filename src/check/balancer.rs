//! Taking unhealthy peers out of rotation for every built-in balancer (round robin,
//! least_conn, hash, ip_hash, random, random two), without patching nginx: they all skip a
//! peer whose `down` flag is set, and fall back to backup peers as nginx does. The
//! configured `down` is kept apart (in the check settings) and `down` is rewritten from the
//! shared health state: on each worker's own copy of the peers without `zone`, on the
//! shared copy (under the zone's write lock) with it.
//!
//! A worker resynchronises when the zone's change counter moved: at start, on its timer,
//! after its own probes, and in the `peer.init` wrapper of checked upstreams, before the
//! balancer picks a peer — one atomic load per request, for checked upstreams only.

use ngx::ffi::*;
use ngx::http::HttpModule;

use super::directives::{CheckedPeer, Checks, UpstreamCheck};
use super::{dynamic, worker};
use crate::conf::MainConf;
use crate::module::Module;

pub type InitPeer =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t;

/// The one address of the wrapper (compared and installed through this static).
pub static INIT_PEER: InitPeer = init_peer;

unsafe extern "C" fn init_peer(
    r: *mut ngx_http_request_t,
    us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    // SAFETY: our main conf exists in every http{} request context.
    let mcf = &*(*(*r).main_conf.add(Module::module().ctx_index) as *const MainConf);
    let Some(i) = mcf.checks.position(us) else {
        return NGX_ERROR as ngx_int_t;
    };
    let Some(orig) = mcf.checks.list[i].orig_init else {
        return NGX_ERROR as ngx_int_t;
    };
    worker::rescan_upstream(i);
    worker::sync_if_changed();
    orig(r, us)
}

/// Rewrite `down` of every checked upstream's peers.
///
/// # Safety
/// `checks` must be the running configuration's.
pub unsafe fn sync_all(checks: &Checks) {
    for uc in &checks.list {
        sync_upstream(uc);
    }
}

/// Our settings for the balancer's `i`-th peer: the same position when the list is the
/// configured one (the usual case), else found by name (peers of a shared zone changed);
/// for a peer nginx added at run time, this worker's copy (`dynamic`).
unsafe fn lookup(
    uc: &UpstreamCheck,
    i: usize,
    p: *const ngx_http_upstream_rr_peer_t,
) -> Option<&CheckedPeer> {
    let (server, name) = ((*p).server.as_bytes(), (*p).name.as_bytes());
    if dynamic::resolved(p) {
        let w = worker::get();
        return (!w.is_null())
            .then(|| (*w).dynamic.find(uc, server, name))
            .flatten()
            .map(|d| &d.peer);
    }
    match uc.peers.get(i) {
        Some(cp) if cp.name == name && cp.server == server => Some(cp),
        _ => uc
            .index
            .get(&(server.to_vec(), name.to_vec()))
            .map(|&j| &uc.peers[j]),
    }
}

unsafe fn sync_upstream(uc: &UpstreamCheck) {
    let first = (*uc.uscf).peer.data as *mut ngx_http_upstream_rr_peers_t;
    if first.is_null() {
        return;
    }
    // every list: the backup one's peers are written too
    let _locked = crate::upstreams::Locked::new(first, true);
    type Entry<'a> = (
        *mut ngx_http_upstream_rr_peers_t,
        *mut ngx_http_upstream_rr_peer_t,
        Option<&'a CheckedPeer>,
    );
    let mut peers: Vec<Entry> = Vec::new();
    let mut list = first;
    while !list.is_null() {
        let mut p = (*list).peer;
        while !p.is_null() {
            let cp = lookup(uc, peers.len(), p);
            peers.push((list, p, cp));
            p = (*p).next;
        }
        list = (*list).next;
    }
    let up = |cp: &CheckedPeer| cp.rec.is_null() || (*cp.rec).state().up;
    let mut eligible = peers
        .iter()
        .filter_map(|(_, _, cp)| *cp)
        .filter(|cp| !cp.configured_down)
        .peekable();
    let all_down = eligible.peek().is_some() && eligible.all(|cp| !up(cp));
    let open = uc.conf().fail_open && all_down;
    for (list, p, cp) in peers {
        if let Some(cp) = cp {
            let down = (cp.configured_down || (!open && !up(cp))) as ngx_uint_t;
            if dynamic::resolved(p) && (*p).down != down {
                // nginx counts the list's peers not down in `tries`, and takes one off when
                // it removes a peer that is not down: keep the count true.
                if down != 0 {
                    (*list).tries = (*list).tries.saturating_sub(1);
                } else {
                    (*list).tries += 1;
                }
            }
            (*p).down = down;
        }
    }
}
