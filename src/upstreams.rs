//! Walking nginx's upstream configuration: the list of upstreams (explicit `upstream {}`
//! blocks and the implicit ones made by a literal `proxy_pass` & co.), their display names and
//! their round-robin peers.

use core::slice;

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
}

/// The peers of an upstream (primary first, then backup), for round-robin-based balancers.
///
/// # Safety
/// As for [`visit_peers`].
pub unsafe fn peers(uscf: *const ngx_http_upstream_srv_conf_t) -> Vec<PeerInfo> {
    let mut out = Vec::new();
    visit_peers(uscf, |p| {
        out.push(PeerInfo {
            name: p.name.as_bytes().to_vec(),
        })
    });
    out
}

/// Visit the peers of an upstream (primary first, then backup), for round-robin-based
/// balancers. Peers in a shared zone can change at run time (`server ... resolve`): they are
/// visited under the zone's read lock.
///
/// # Safety
/// `uscf` must be a valid upstream srv conf after `init_main_conf` (peer.data set by
/// `ngx_http_upstream_init_round_robin`).
pub unsafe fn visit_peers(
    uscf: *const ngx_http_upstream_srv_conf_t,
    mut f: impl FnMut(&ngx_http_upstream_rr_peer_t),
) {
    let first = (*uscf).peer.data as *mut ngx_http_upstream_rr_peers_t;
    if first.is_null() {
        return;
    }
    let locked = !(*first).shpool.is_null();
    if locked {
        ngx_rwlock_rlock(&mut (*first).rwlock);
    }
    let mut peers = first as *const ngx_http_upstream_rr_peers_t;
    while !peers.is_null() {
        let mut p = (*peers).peer as *const ngx_http_upstream_rr_peer_t;
        while !p.is_null() {
            f(&*p);
            p = (*p).next;
        }
        peers = (*peers).next;
    }
    if locked {
        ngx_rwlock_unlock(&mut (*first).rwlock);
    }
}
