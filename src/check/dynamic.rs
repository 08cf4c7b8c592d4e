//! Peers that nginx adds at run time: `server name resolve` in an upstream with a `zone`
//! (nginx 1.27.3+). nginx keeps them in the zone's peer list, adds and removes them as the
//! DNS answers change, and counts every change of the list in its `config` counter.
//!
//! Each worker compares that counter with what it saw last (one load: in the checked
//! upstreams' `peer.init` wrapper, on its timer, and before it shows the checks) and, when
//! it moved, rescans the list under the read lock:
//! - a peer it has no target for becomes one: a copy of what a probe needs (names and
//!   address; nginx may free the peer at any time) and a record in the checks' zone, made
//!   or found again like a configured peer's (`shm::Header::adopt`), `down` synchronised at
//!   once (`default_down`, as for a configured peer new to the configuration);
//! - a target whose peer nginx removed is closed (its probe, its kept connection) and
//!   dropped.
//!
//! Every worker has its own targets; the claim on the record keeps it to one probe per
//! interval for all of them, as for configured peers.

use core::ptr;

use super::directives::{CheckedPeer, UpstreamCheck};
use super::worker::{Target, Worker};

/// A run-time peer and this worker's target for it. The target points at the peer: both
/// live in one box, which stays where it is while the list of boxes changes.
pub struct DynPeer {
    pub uc: *const UpstreamCheck,
    pub peer: CheckedPeer,
    pub target: Target,
}

/// This worker's run-time peers.
#[derive(Default)]
pub struct Dynamic {
    pub peers: Vec<Box<DynPeer>>,
    /// By position in `Checks::list`: the `config` counter of the upstream's peer list (null
    /// without a zone: nothing is added at run time), its value when this worker last
    /// scanned the list (None: never, or a peer could not be adopted: the checks' zone was
    /// full), and when to scan it again in that last case (ms). Made at the first rescan.
    /// Without `server ... resolve` (nginx before 1.27.3) nothing is added at run time, and
    /// nothing reads it.
    #[cfg_attr(not(ngx_upstream_resolve), allow(dead_code))]
    watch: Vec<Watch>,
}

#[cfg_attr(not(ngx_upstream_resolve), allow(dead_code))]
#[derive(Clone, Copy)]
struct Watch {
    counter: *const usize,
    seen: Option<usize>,
    retry_at: u64,
}

impl Dynamic {
    /// The run-time peer (`server`, `name`) of `uc`, if this worker checks it.
    pub fn find(&self, uc: *const UpstreamCheck, server: &[u8], name: &[u8]) -> Option<&DynPeer> {
        self.peers
            .iter()
            .map(|d| &**d)
            .find(|d| ptr::eq(d.uc, uc) && d.peer.server == server && d.peer.name == name)
    }

    /// The run-time peers of `uc` this worker checks.
    pub fn of(&self, uc: *const UpstreamCheck) -> impl Iterator<Item = &DynPeer> {
        self.peers
            .iter()
            .map(|d| &**d)
            .filter(move |d| ptr::eq(d.uc, uc))
    }
}

/// Rescan the peer list of the `i`-th checked upstream if nginx changed it since this
/// worker last looked; true if it did.
///
/// # Safety
/// `w` must be this worker's state; no target of it may be in use by the caller (a target
/// whose peer is gone is freed).
#[cfg(ngx_upstream_resolve)]
#[inline]
pub unsafe fn rescan(w: *mut Worker, i: usize) -> bool {
    // The usual case, on every request to a checked upstream: nothing changed.
    let watch = &(*w).dynamic.watch;
    if let Some(&Watch { counter, seen, .. }) = watch.get(i) {
        // Written under the list's write lock; a stale read only delays the rescan to the
        // next look.
        if counter.is_null() || seen == Some(ptr::read_volatile(counter)) {
            return false;
        }
    }
    rescan_changed(w, i)
}

/// [`rescan`] once the counter moved (or on the first look).
#[cfg(ngx_upstream_resolve)]
#[cold]
#[inline(never)]
unsafe fn rescan_changed(w: *mut Worker, i: usize) -> bool {
    use ngx::ffi::*;

    let checks = &*(*w).checks;
    let d = &mut (*w).dynamic;
    if d.watch.len() != checks.list.len() {
        d.watch = checks
            .list
            .iter()
            .map(|uc| Watch {
                counter: counter(uc),
                seen: None,
                retry_at: 0,
            })
            .collect();
    }
    let Some(&Watch {
        counter,
        seen,
        retry_at,
    }) = d.watch.get(i)
    else {
        return false;
    };
    if counter.is_null() || seen == Some(ptr::read_volatile(counter)) {
        return false;
    }
    // A list left unsettled by a full zone (seen None) is looked at again once a second.
    if seen.is_none() && retry_at > crate::state::now_ms() {
        return false;
    }
    let uc = &checks.list[i];
    let c = uc.conf();
    let first = (*uc.uscf).peer.data as *mut ngx_http_upstream_rr_peers_t;

    let mut found: Vec<CheckedPeer> = Vec::new();
    let locked = crate::upstreams::Locked::new(first, false);
    let config = *(*first).config;
    let mut list = first;
    let mut backup = false;
    while !list.is_null() {
        let mut p = (*list).peer;
        while !p.is_null() {
            let host = (*p).host;
            if !host.is_null() {
                // The server's own settings stay on its template, which is not in this list
                // (the `down` of the peers in it is the checks' to set).
                let template = (*host).peer;
                let down = !template.is_null() && (*template).down != 0;
                found.push(CheckedPeer::of(&*p, c, backup, down));
            }
            p = (*p).next;
        }
        list = (*list).next;
        backup = true;
    }
    drop(locked);
    d.watch[i].seen = Some(config);

    let uc_ptr: *const UpstreamCheck = uc;
    d.peers.retain_mut(|dp| {
        if !ptr::eq(dp.uc, uc_ptr)
            || found
                .iter()
                .any(|f| f.server == dp.peer.server && f.name == dp.peer.name)
        {
            return true;
        }
        // SAFETY: the target is this worker's, and nobody holds it (see above).
        super::probe::close_all(&mut dp.target);
        false
    });

    let Some(h) = checks.header() else {
        return true;
    };
    for mut peer in found {
        if d.find(uc_ptr, &peer.server, &peer.name).is_some() {
            continue;
        }
        let key = [&uc.name[..], &peer.server[..], &peer.name[..]];
        let Some(rec) = h.adopt(key, c.default_down, c.interval_ms) else {
            // The zone is full (logged once): the peer stays in rotation, unchecked, until
            // a record of a peer no worker checks any more can be given to it.
            d.watch[i].seen = None;
            d.watch[i].retry_at = crate::state::now_ms() + 1000;
            continue;
        };
        peer.rec = rec;
        let mut dp = Box::new(DynPeer {
            uc: uc_ptr,
            peer,
            target: Target {
                rec,
                uc: uc_ptr,
                peer: ptr::null(),
                probe: ptr::null_mut(),
                idle: ptr::null_mut(),
                uses: 0,
            },
        });
        dp.target.peer = &dp.peer;
        d.peers.push(dp);
    }
    true
}

/// The change counter of `uc`'s peer list: null without a zone.
///
/// # Safety
/// `uc` must be a checked upstream of the running configuration.
#[cfg(ngx_upstream_resolve)]
unsafe fn counter(uc: &UpstreamCheck) -> *const usize {
    use ngx::ffi::ngx_http_upstream_rr_peers_t;
    let first = (*uc.uscf).peer.data as *const ngx_http_upstream_rr_peers_t;
    if first.is_null() || (*first).shpool.is_null() {
        return ptr::null();
    }
    (*first).config as *const usize
}

/// nginx without `server ... resolve`: no peer is added at run time.
///
/// # Safety
/// None needed; unsafe for the same signature as the real one.
#[cfg(not(ngx_upstream_resolve))]
#[inline]
pub unsafe fn rescan(_w: *mut Worker, _i: usize) -> bool {
    false
}

/// The balancer's peer `p` was added at run time (by `server ... resolve`).
///
/// # Safety
/// `p` must be a peer of a live balancer list.
#[cfg(ngx_upstream_resolve)]
pub unsafe fn resolved(p: *const ngx::ffi::ngx_http_upstream_rr_peer_t) -> bool {
    !(*p).host.is_null()
}

/// nginx without `server ... resolve`: every peer is configured.
///
/// # Safety
/// None needed.
#[cfg(not(ngx_upstream_resolve))]
pub unsafe fn resolved(_p: *const ngx::ffi::ngx_http_upstream_rr_peer_t) -> bool {
    false
}
