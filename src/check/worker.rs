//! The checking duty, in every worker: a cancelable timer wakes at the earliest due time of
//! the configured peers, claims each due peer by compare-and-swap of its due time in shared
//! memory (the winner probes; so exactly one probe per peer per interval for the whole
//! instance, whatever the number of workers), and records the results. A worker that dies
//! holds nothing: the due time it set is claimed by whoever wakes next.
//!
//! The timer stops when the worker is exiting (reload, quit), and is cancelable, so it never
//! holds up a graceful shutdown; what the checks still hold open then is closed at exit.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::Ordering;
use std::collections::HashSet;

use ngx::ffi::*;
use ngx::http::HttpModuleMainConf;
use ngx::ngx_log_error;

use super::directives::{CheckedPeer, Checks, UpstreamCheck};
use super::dynamic::{self, Dynamic};
use super::health::{transition_message, Outcome};
use super::shm::Record;
use super::{balancer, probe, schedule};
use crate::module::Module;
use crate::state::now_ms;

/// One peer this worker may check (a record checked twice in the configuration, e.g. the
/// same server listed twice, is one target).
pub struct Target {
    pub rec: *const Record,
    pub uc: *const UpstreamCheck,
    pub peer: *const CheckedPeer,
    /// The probe of this worker running now, if any.
    pub(super) probe: *mut probe::Probe,
    /// A connection kept for the next check (`check_keepalive_requests`), and the checks it
    /// carried.
    pub idle: *mut ngx_connection_t,
    pub uses: u32,
}

pub struct Worker {
    tick: ngx_event_t,
    /// The configured peers' targets (made at start; probes point into this list).
    pub targets: Vec<Target>,
    /// Peers nginx added at run time (`server ... resolve`), each target in its own box.
    pub dynamic: Dynamic,
    pub checks: *const Checks,
    granularity: u64,
    /// `changes` of the zone when the balancers' peers were last synchronised.
    synced: u64,
    /// The log of probe connections: their own errors (refused, reset...) are what the
    /// checks report, so they are logged only at `info` or more verbose levels.
    pub log: ngx_log_t,
    /// Read buffer of the probes (used within one handler call at a time).
    pub buf: Vec<u8>,
}

struct Global(UnsafeCell<*mut Worker>);

// SAFETY: an nginx worker runs its event loop, and so every use of this, on one thread.
unsafe impl Sync for Global {}

static WORKER: Global = Global(UnsafeCell::new(ptr::null_mut()));

/// This process's checking state (None outside workers, or without checks).
pub fn get() -> *mut Worker {
    // SAFETY: see Global.
    unsafe { *WORKER.0.get() }
}

/// init_process: build the targets from the configuration, synchronise the balancers'
/// peers, arm the timer.
///
/// # Safety
/// Called by nginx with the worker's cycle.
pub unsafe extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let role = ngx_process as u32;
    if role != NGX_PROCESS_WORKER && role != NGX_PROCESS_SINGLE {
        return NGX_OK as ngx_int_t;
    }
    let Some(mcf) = Module::main_conf(&*cycle) else {
        return NGX_OK as ngx_int_t;
    };
    let checks = &mcf.checks;
    if checks.list.is_empty() || checks.header().is_none() {
        return NGX_OK as ngx_int_t;
    }
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for uc in &checks.list {
        for p in &uc.peers {
            if !p.rec.is_null() && seen.insert(p.rec as usize) {
                targets.push(Target {
                    rec: p.rec,
                    uc,
                    peer: p,
                    probe: ptr::null_mut(),
                    idle: ptr::null_mut(),
                    uses: 0,
                });
            }
        }
    }
    let mut log = *(*cycle).log;
    log.next = ptr::null_mut();
    if log.log_level < NGX_LOG_INFO as ngx_uint_t {
        log.log_level = NGX_LOG_ALERT as ngx_uint_t;
    }
    let w = Box::into_raw(Box::new(Worker {
        // SAFETY: an all-zero ngx_event_t is nginx's initial state for an event.
        tick: core::mem::zeroed(),
        targets,
        dynamic: Dynamic::default(),
        checks,
        granularity: schedule::granularity(checks.min_interval),
        synced: u64::MAX,
        log,
        buf: vec![0; 16 * 1024],
    }));
    *WORKER.0.get() = w;
    let ev = ptr::addr_of_mut!((*w).tick);
    (*ev).handler = Some(on_tick);
    (*ev).log = (*cycle).log;
    (*ev).data = w.cast();
    (*ev).set_cancelable(1);
    rescan();
    sync_if_changed();
    // Workers start together: a random first delay spreads their first claims.
    ngx_add_timer(
        ev,
        (1 + ngx_random() as u64 % (*w).granularity) as ngx_msec_t,
    );
    NGX_OK as ngx_int_t
}

/// exit_process: close what the checks hold open (probes in flight, kept connections) before
/// nginx looks for sockets left open, which it reports as alerts on a graceful exit.
///
/// # Safety
/// Called by nginx in the exiting process.
pub unsafe extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    let w = get();
    if w.is_null() {
        return;
    }
    let n = (*w).targets.len();
    for i in 0..n {
        probe::close_all((*w).targets.as_mut_ptr().add(i));
    }
    for d in (*w).dynamic.peers.iter_mut() {
        probe::close_all(&mut d.target);
    }
}

/// Look for peers nginx added or removed at run time (`server ... resolve`): one load per
/// checked upstream when nothing changed. After a change, the balancers' peers are
/// synchronised again (a new peer gets its `down` from its health at once).
///
/// Not from within a walk over the targets: a target whose peer is gone is freed.
pub fn rescan() {
    let w = get();
    if w.is_null() {
        return;
    }
    let mut changed = false;
    // SAFETY: w is this worker's state (see Global); its checks live as long as the cycle.
    unsafe {
        for i in 0..(*(*w).checks).list.len() {
            changed |= dynamic::rescan(w, i);
        }
        if changed {
            (*w).synced = u64::MAX;
            sync_if_changed();
        }
    }
}

/// Rescan the `i`-th checked upstream only (see [`rescan`]). This runs for every request
/// to a checked upstream: when nothing changed, it reads one counter.
pub fn rescan_upstream(i: usize) {
    let w = get();
    if w.is_null() {
        return;
    }
    // SAFETY: as in rescan(); dynamic::rescan checks that i is a position in the list.
    unsafe {
        if dynamic::rescan(w, i) {
            (*w).synced = u64::MAX;
            sync_if_changed();
        }
    }
}

/// Bring the balancers' peers (`down`) in line with the shared health state, if it changed
/// since this worker last looked. One atomic load when nothing changed: this runs for every
/// request to a checked upstream.
pub fn sync_if_changed() {
    let w = get();
    if w.is_null() {
        return;
    }
    // SAFETY: w is this worker's state (see Global); its checks live as long as the cycle.
    let Some(h) = (unsafe { (*(*w).checks).header() }) else {
        return;
    };
    let changes = h.changes.load(Ordering::Acquire);
    // SAFETY: as above.
    unsafe {
        if (*w).synced != changes {
            (*w).synced = changes;
            balancer::sync_all(&*(*w).checks);
        }
    }
}

pub fn exiting() -> bool {
    // SAFETY: plain reads of nginx's process flags.
    unsafe { ngx_exiting != 0 || ngx_quit != 0 || ngx_terminate != 0 }
}

unsafe extern "C" fn on_tick(ev: *mut ngx_event_t) {
    if exiting() {
        return;
    }
    let w = (*ev).data as *mut Worker;
    rescan();
    sync_if_changed();
    let now = now_ms();
    let mut earliest: Option<u64> = None;
    let n = (*w).targets.len();
    // The configured peers' targets, then the run-time ones (neither list changes during
    // the walk: a rescan happens only before it).
    let configured = (*w).targets.as_mut_ptr();
    let mut all: Vec<*mut Target> = (0..n).map(|i| configured.add(i)).collect();
    all.extend(
        (*w).dynamic
            .peers
            .iter_mut()
            .map(|d| &mut d.target as *mut Target),
    );
    for t in all {
        if !(*t).probe.is_null() {
            continue;
        }
        let rec = &*(*t).rec;
        let c = (*(*t).uc).conf();
        let due = rec.next_due.load(Ordering::Acquire);
        let lease = rec.lease_until.load(Ordering::Acquire);
        let period = schedule::period(c.interval_ms, c.jitter_ms);
        if schedule::claimable(due, lease, now, period, c.timeout_ms) {
            let jitter = if c.jitter_ms > 0 {
                ngx_random() as u64 % (c.jitter_ms + 1)
            } else {
                0
            };
            let next = schedule::next_due(due, now, c.interval_ms, jitter);
            if rec
                .next_due
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                rec.lease_until
                    .store(now + c.timeout_ms + 1, Ordering::Release);
                probe::start(t);
            }
        }
        let d = rec.next_due.load(Ordering::Acquire);
        earliest = Some(earliest.map_or(d, |e| e.min(d)));
    }
    ngx_add_timer(
        ev,
        schedule::sleep_ms(earliest, now, (*w).granularity) as ngx_msec_t,
    );
}

/// A probe of `t` ended: record its outcome, log a transition, resynchronise the peers.
///
/// # Safety
/// `t` must be a target of this worker.
pub unsafe fn finished(t: *mut Target, o: &Outcome) {
    let rec = &*(*t).rec;
    release(t);
    let uc = &*(*t).uc;
    let c = uc.conf();
    let Some(tr) = rec.apply(o, c.rise, c.fall, now_ms()) else {
        return;
    };
    let msg = transition_message(&uc.name, &(*(*t).peer).name, tr, o.failure);
    ngx_log_error!(NGX_LOG_WARN, (*ngx_cycle).log, "{}", msg);
    if let Some(h) = (*(*get()).checks).header() {
        h.changes.fetch_add(1, Ordering::AcqRel);
    }
    sync_if_changed();
}

/// The probe of `t` ended (or was given up): the peer can be claimed again.
///
/// # Safety
/// `t` must be a target of this worker.
pub unsafe fn release(t: *mut Target) {
    (*(*t).rec).lease_until.store(0, Ordering::Release);
}
