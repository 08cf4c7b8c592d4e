//! What the wrappers keep while a request talks to its upstream: the originals they delegate
//! to, the upstream's name, the state of the current try and the log tap.
//!
//! Taken from a per-worker free list when the upstream starts and given back when it
//! finalizes, so a request whose upstream succeeds allocates nothing (an allocation from the
//! request pool here would cost a new pool block on most requests). `r->ctx` points to the
//! watch of the running upstream; failed tries go to the pool-resident [`Record`].
//!
//! [`Record`]: crate::record::Record

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;
use ngx::http::HttpModule;

use crate::cause::LogLine;
use crate::logtap::Tap;
use crate::module::Module;
use crate::record::Record;

/// The originals a wrapper delegates to.
#[derive(Clone, Copy)]
pub struct Saved {
    pub data: *mut c_void,
    pub get: ngx_event_get_peer_pt,
    pub free: ngx_event_free_peer_pt,
    pub set_session: ngx_event_set_peer_session_pt,
    pub save_session: ngx_event_save_peer_session_pt,
}

pub type Finalize = unsafe extern "C" fn(*mut ngx_http_request_t, ngx_int_t);

pub struct Watch {
    pub r: *mut ngx_http_request_t,
    pub u: *mut ngx_http_upstream_t,
    /// Counters key: the upstream's display name (memory owned by the main conf or the pool).
    pub upstream: ngx_str_t,
    /// The upstream is not in the configuration (resolved at run time).
    pub dynamic: bool,
    /// The balancer keeps its peers in a shared zone: their memory can be reused, so cached
    /// counters are checked by name.
    pub zone: bool,
    /// Count every try, not only failures (a `triage_status` location exists).
    pub stats: bool,
    /// The current try already failed (free(NGX_PEER_FAILED) seen since the last get()).
    pub attempt_failed: bool,
    /// The request's record, once a try failed.
    pub record: *mut Record,
    /// What the error log said since the current try began.
    pub log: LogLine,
    /// The peer hooks, when the balancer had set them up at hook time.
    pub saved: Option<Saved>,
    pub finalize: Option<Finalize>,
    pub tap: Tap,
    /// Taps the connection log while the content handler runs, before any upstream is known
    /// (see `run_time::content`).
    pub pre: bool,
    /// Free-list link (meaningful while idle).
    next: *mut Watch,
}

/// Per-worker pool of watches: `all` lists them (allocated once, kept for the worker's life,
/// at most one per upstream request the worker ever ran at once), `free` links the idle ones.
struct Pool {
    all: Vec<*mut Watch>,
    free: *mut Watch,
}

struct WorkerLocal(UnsafeCell<Pool>);

// SAFETY: an nginx worker runs its event loop, and so every use of this pool, on one thread.
unsafe impl Sync for WorkerLocal {}

static POOL: WorkerLocal = WorkerLocal(UnsafeCell::new(Pool {
    all: Vec::new(),
    free: ptr::null_mut(),
}));

fn ctx_slot(r: *mut ngx_http_request_t) -> *mut *mut c_void {
    // SAFETY: r->ctx has a slot for every http module, ours included.
    unsafe { (*r).ctx.add(Module::module().ctx_index) }
}

/// A fresh watch for the upstream `u` of `r`, set in `r->ctx`; None when out of memory.
///
/// # Safety
/// `r` must be a valid request; the watch must be given back with [`release`].
#[inline]
pub unsafe fn take(r: *mut ngx_http_request_t, u: *mut ngx_http_upstream_t) -> Option<*mut Watch> {
    // SAFETY: single-threaded worker (see WorkerLocal); no reference to the pool outlives
    // this function.
    let pool = &mut *POOL.0.get();
    let w = if pool.free.is_null() {
        let p = Box::into_raw(Box::new(Watch {
            r,
            u,
            upstream: ngx_str_t::empty(),
            dynamic: false,
            zone: false,
            stats: false,
            attempt_failed: false,
            record: ptr::null_mut(),
            log: LogLine::default(),
            saved: None,
            finalize: None,
            tap: Tap::default(),
            pre: false,
            next: ptr::null_mut(),
        }));
        pool.all.push(p);
        p
    } else {
        let p = pool.free;
        pool.free = (*p).next;
        let w = &mut *p;
        w.r = r;
        w.u = u;
        w.attempt_failed = false;
        w.record = ptr::null_mut();
        w.log = LogLine::default();
        w.saved = None;
        w.finalize = None;
        w.pre = false;
        p
    };
    *ctx_slot(r) = w as *mut c_void;
    Some(w)
}

/// Give `w` back to the free list.
///
/// # Safety
/// `w` came from [`take`] and nothing refers to it any more (peer hooks restored, tap
/// removed).
pub unsafe fn release(w: *mut Watch) {
    let slot = ctx_slot((*w).r);
    if *slot == w as *mut c_void {
        *slot = ptr::null_mut();
    }
    (*w).r = ptr::null_mut(); // idle
                              // SAFETY: single-threaded worker (see WorkerLocal).
    let pool = &mut *POOL.0.get();
    (*w).next = pool.free;
    pool.free = w;
}

/// The watch of the running upstream `u` of `r`, as `r->ctx` holds it.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn current(
    r: *mut ngx_http_request_t,
    u: *mut ngx_http_upstream_t,
) -> Option<*mut Watch> {
    // The slot is ours and cleared on release: a watch there belongs to r.
    let p = *ctx_slot(r) as *mut Watch;
    (!p.is_null() && (*p).u == u).then_some(p)
}

/// The watch of the running upstream `u` of `r`, wherever it is.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn find(r: *mut ngx_http_request_t, u: *mut ngx_http_upstream_t) -> Option<*mut Watch> {
    if let Some(p) = current(r, u) {
        return Some(p);
    }
    // r->ctx was zeroed under a running upstream (no nginx code path does; a third-party
    // module might): look through the watches in use.
    let pool = &*POOL.0.get();
    pool.all
        .iter()
        .copied()
        .find(|&w| (*w).r == r && (*w).u == u)
}
