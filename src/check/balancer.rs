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
use super::worker;
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
    let Some(orig) = mcf.checks.find(us).and_then(|c| c.orig_init) else {
        return NGX_ERROR as ngx_int_t;
    };
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
/// configured one (the usual case), else found by name (peers of a shared zone changed).
fn lookup<'a>(
    uc: &'a UpstreamCheck,
    i: usize,
    server: &[u8],
    name: &[u8],
) -> Option<&'a CheckedPeer> {
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
    let locked = !(*first).shpool.is_null();
    if locked {
        ngx_rwlock_wlock(&mut (*first).rwlock);
    }
    let mut peers: Vec<(*mut ngx_http_upstream_rr_peer_t, Option<&CheckedPeer>)> = Vec::new();
    let mut list = first;
    while !list.is_null() {
        let mut p = (*list).peer;
        while !p.is_null() {
            let cp = lookup(
                uc,
                peers.len(),
                (*p).server.as_bytes(),
                (*p).name.as_bytes(),
            );
            peers.push((p, cp));
            p = (*p).next;
        }
        list = (*list).next;
    }
    let up = |cp: &CheckedPeer| cp.rec.is_null() || (*cp.rec).state().up;
    let mut eligible = peers
        .iter()
        .filter_map(|(_, cp)| *cp)
        .filter(|cp| !cp.configured_down)
        .peekable();
    let all_down = eligible.peek().is_some() && eligible.all(|cp| !up(cp));
    let open = uc.conf().fail_open && all_down;
    for (p, cp) in peers {
        if let Some(cp) = cp {
            let down = cp.configured_down || (!open && !up(cp));
            (*p).down = down as ngx_uint_t;
        }
    }
    if locked {
        ngx_rwlock_unlock(&mut (*first).rwlock);
    }
}
