//! Walking nginx's upstream configuration: the list of upstreams (explicit `upstream {}`
//! blocks and the implicit ones made by a literal `proxy_pass` & co.), their display names and
//! their round-robin peers.

use core::slice;
use std::ffi::CStr;

use ngx::ffi::*;

/// An upstream whose `peer.init` we wrapped (kept sorted by `uscf` address in the main conf).
pub struct Wrapped {
    pub uscf: *const ngx_http_upstream_srv_conf_t,
    pub orig_init: ngx_http_upstream_init_peer_pt,
    /// The name shown to operators and used as the counters' key.
    pub name: Vec<u8>,
}

/// All upstreams known to the http{} block.
///
/// # Safety
/// `umcf` must be the upstream module's main conf of a parsed configuration.
pub unsafe fn all<'a>(
    umcf: *const ngx_http_upstream_main_conf_t,
) -> &'a [*mut ngx_http_upstream_srv_conf_t] {
    if umcf.is_null() || (*umcf).upstreams.nelts == 0 {
        return &[];
    }
    slice::from_raw_parts(
        (*umcf).upstreams.elts as *const *mut ngx_http_upstream_srv_conf_t,
        (*umcf).upstreams.nelts,
    )
}

/// The name nginx users know an upstream by: the block name for `upstream NAME {}`, and
/// `host:port` (as written in `proxy_pass`) for implicit ones.
///
/// # Safety
/// `uscf` must point to a valid upstream srv conf.
pub unsafe fn display_name(uscf: *const ngx_http_upstream_srv_conf_t) -> Vec<u8> {
    let u = &*uscf;
    let mut name = u.host.as_bytes().to_vec();
    if u.flags & NGX_HTTP_UPSTREAM_CREATE as ngx_uint_t == 0 && u.port != 0 && u.no_port == 0 {
        name.extend_from_slice(format!(":{}", u.port).as_bytes());
    }
    name
}

/// One configured peer, as the round-robin balancer holds it.
pub struct PeerInfo {
    pub name: Vec<u8>,
    /// The `server` as written in the configuration.
    pub server: Vec<u8>,
    pub backup: bool,
    pub weight: u64,
    pub max_fails: u64,
    /// Seconds.
    pub fail_timeout: u64,
    /// 0: unlimited.
    pub max_conns: u64,
    /// Configured `down`.
    pub down: bool,
    /// `max_fails` tripped and `fail_timeout` not over: the balancer skips it.
    pub unavailable: bool,
}

/// The peers of an upstream (primary first, then backup), for round-robin-based balancers,
/// copied out.
///
/// # Safety
/// As for [`visit_peers`].
pub unsafe fn peers(uscf: *const ngx_http_upstream_srv_conf_t) -> Vec<PeerInfo> {
    let mut out = Vec::new();
    let now = ngx_time();
    visit_peers(uscf, |q, backup| {
        out.push(PeerInfo {
            name: q.name.as_bytes().to_vec(),
            server: q.server.as_bytes().to_vec(),
            backup,
            weight: q.weight.max(0) as u64,
            max_fails: q.max_fails as u64,
            fail_timeout: q.fail_timeout.max(0) as u64,
            max_conns: q.max_conns as u64,
            down: q.down != 0,
            unavailable: failed(q, now),
        })
    });
    out
}

/// `max_fails` tripped and `fail_timeout` not over at `now`: the round-robin balancer's test
/// (`ngx_http_upstream_get_peer()`).
pub fn failed(q: &ngx_http_upstream_rr_peer_t, now: time_t) -> bool {
    q.max_fails != 0 && q.fails >= q.max_fails && now - q.checked <= q.fail_timeout
}

/// Visit the peers of an upstream (primary first, then backup: the flag), for
/// round-robin-based balancers. Peers in a shared zone can change at run time (`server ...
/// resolve`): they are visited under the zone's read lock.
///
/// # Safety
/// `uscf` must be a valid upstream srv conf after `init_main_conf` (peer.data set by
/// `ngx_http_upstream_init_round_robin`).
pub unsafe fn visit_peers(
    uscf: *const ngx_http_upstream_srv_conf_t,
    mut f: impl FnMut(&ngx_http_upstream_rr_peer_t, bool),
) {
    let first = (*uscf).peer.data as *mut ngx_http_upstream_rr_peers_t;
    if first.is_null() {
        return;
    }
    let _locked = Locked::new(first, false);
    let mut peers = first as *const ngx_http_upstream_rr_peers_t;
    let mut backup = false;
    while !peers.is_null() {
        let mut p = (*peers).peer as *const ngx_http_upstream_rr_peer_t;
        while !p.is_null() {
            f(&*p, backup);
            p = (*p).next;
        }
        peers = (*peers).next;
        backup = true;
    }
}

/// The peer lists of a round-robin upstream (the primary one, then the backup one), each
/// locked while this lives, when they are in a shared zone. Each list has its own lock:
/// nginx's resolver (`server NAME resolve backup`) changes a backup list under the backup
/// list's lock alone. Taken in list order, as nginx's balancer does when it moves on to the
/// backup servers.
pub struct Locked {
    lists: Vec<*mut ngx_http_upstream_rr_peers_t>,
}

impl Locked {
    /// # Safety
    /// `first` must be an upstream's `peer.data` as `ngx_http_upstream_init_round_robin` set
    /// it; no list of it may be locked by this process already.
    pub unsafe fn new(first: *mut ngx_http_upstream_rr_peers_t, write: bool) -> Locked {
        let mut lists = Vec::new();
        let mut l = first;
        while !l.is_null() {
            if !(*l).shpool.is_null() {
                if write {
                    ngx_rwlock_wlock(&mut (*l).rwlock);
                } else {
                    ngx_rwlock_rlock(&mut (*l).rwlock);
                }
                lists.push(l);
            }
            l = (*l).next;
        }
        Locked { lists }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        for &l in self.lists.iter().rev() {
            // SAFETY: locked by `new`, and the lists live as long as the configuration.
            unsafe { ngx_rwlock_unlock(&mut (*l).rwlock) };
        }
    }
}

/// The nginx `zone` of an upstream block, if it has one.
///
/// # Safety
/// `uscf` must point to a valid upstream srv conf.
pub unsafe fn zone_name(uscf: *const ngx_http_upstream_srv_conf_t) -> Option<Vec<u8>> {
    let z = (*uscf).shm_zone;
    (!z.is_null()).then(|| (*z).shm.name.as_bytes().to_vec())
}

/// `keepalive N` of an upstream block. The keepalive module's srv conf is private to it; its
/// first field has been `max_cached` (the N) in every nginx release since the module exists.
/// The module is found by name, so an nginx built without it still loads ours.
///
/// # Safety
/// `uscf` must point to a valid upstream srv conf of `cycle`'s configuration.
pub unsafe fn keepalive(
    cycle: *const ngx_cycle_t,
    uscf: *const ngx_http_upstream_srv_conf_t,
) -> Option<u64> {
    let modules = (*cycle).modules;
    if modules.is_null() || (*uscf).srv_conf.is_null() {
        return None;
    }
    let mut i = 0;
    while !(*modules.add(i)).is_null() {
        let m = *modules.add(i);
        if !(*m).name.is_null()
            && CStr::from_ptr((*m).name).to_bytes() == b"ngx_http_upstream_keepalive_module"
        {
            let conf = *(*uscf).srv_conf.add((*m).ctx_index) as *const ngx_uint_t;
            return (!conf.is_null() && *conf > 0).then(|| *conf as u64);
        }
        i += 1;
    }
    None
}
