//! Health state in shared memory (zone "triage_check"): one [`Record`] per upstream name +
//! server + address — never an index, so state follows a peer through reloads, reordered
//! and partly changed server lists. The master registers the configured peers when the
//! zone is initialised (before it forks workers), so workers only use record pointers.
//! A zone that nginx re-creates (its size changed) inherits the state of the old one.
//!
//! One worker at a time checks a peer (the claim in `check::worker`), so a record's health
//! words have a single writer; readers load them one by one.
//!
//! A full zone gives new peers the records of peers that no worker checks any more (DNS
//! dropped their address, or a reload their server): records whose check is overdue by
//! [`schedule::ORPHAN_AFTER_MS`]. Records are never freed, so a worker that still holds
//! such a record (it has not looked at the peer list since) reads valid memory. Names and
//! index change only under the zone's mutex, and every lookup by name takes it: lookups
//! happen when a peer is registered or adopted, never per request.

use core::ffi::c_void;
use core::mem;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::HttpModule;

use super::directives::Checks;
use super::health::{Outcome, Reason, State, Transition};
use super::schedule;
use crate::module::Module;
use crate::shm_index;
use crate::snapshot::ZoneSnap;
use crate::state::log_once;

const MAGIC: u64 = 0x7472_6961_6765_6303;
static ZONE_NAME: &[u8] = b"triage_check";
/// Bytes of zone per checked peer in the sizing rule (record, names, index, slab overhead).
const PER_PEER: usize = 512;
/// The size without `check_shm_size` (UCM's default).
const DEFAULT_SIZE: usize = 1024 * 1024;
/// Room for the names of a record: the names of most peers fit in this, so the record of
/// one peer is given to another in place.
const NAMES_MIN: usize = 64;

/// The zone's header.
#[repr(C)]
pub struct Header {
    magic: u64,
    /// Configuration loads seen (start = 1).
    pub generation: AtomicU64,
    /// Bumped on every change of a peer's `up`: workers resynchronise the balancers' peers
    /// when it moves.
    pub changes: AtomicU64,
    cap: usize,
    index: *mut AtomicPtr<Record>,
    count: AtomicUsize,
    full_logged: AtomicBool,
    reuse_logged: AtomicBool,
    /// No record to reuse was found before this time (ms): the next search waits for it.
    no_reuse_until: AtomicU64,
    /// Records given to new peers since the zone was made.
    reused: AtomicU64,
    pool: *mut ngx_slab_pool_t,
}

/// The health of one (upstream, server, address).
#[repr(C)]
pub struct Record {
    /// The name fields change only under the zone's mutex (a record given to another peer),
    /// and are read only under it.
    hash: AtomicU64,
    /// upstream, server and name, one after the other, in `names_cap` bytes.
    key: AtomicPtr<u8>,
    lens: [AtomicU32; 3],
    names_cap: AtomicU32,
    /// Last configuration generation that has this peer (configured, or adopted by a
    /// worker for DNS).
    seen: AtomicU64,
    /// Added at run time (`server ... resolve`), not configured.
    runtime: AtomicBool,
    /// When the next check is due (ms since the epoch); claimed by compare-and-swap.
    pub next_due: AtomicU64,
    /// Deadline of the running probe (0: none): the peer is not claimed again before.
    pub lease_until: AtomicU64,
    /// [`State::pack`].
    state: AtomicU64,
    pub checks: AtomicU64,
    pub fails: AtomicU64,
    /// Transitions to unhealthy.
    pub unhealthy: AtomicU64,
    pub last_check_ms: AtomicU64,
    /// passed | status << 8 | reason code << 24.
    last: AtomicU64,
    /// Time of the last change of verdict (or of the first sight).
    pub since_ms: AtomicU64,
    /// Start of the current down period (0: up).
    down_since_ms: AtomicU64,
    /// Sum of the closed down periods.
    downtime_ms: AtomicU64,
}

/// The last check of a record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Last {
    pub passed: bool,
    pub status: Option<u16>,
    pub reason: Option<Reason>,
}

impl Record {
    /// The names. Only under the zone's mutex: a record given to another peer changes them.
    fn key_locked(&self) -> (&[u8], &[u8], &[u8]) {
        let [a, b, c] = [0, 1, 2].map(|i| self.lens[i].load(Ordering::Relaxed) as usize);
        // SAFETY: the names were written under the mutex the caller holds, in shared memory
        // that outlives every reader.
        let all =
            unsafe { core::slice::from_raw_parts(self.key.load(Ordering::Relaxed), a + b + c) };
        (&all[..a], &all[a..a + b], &all[a + b..])
    }

    fn is_locked(&self, h: u64, key: [&[u8]; 3]) -> bool {
        if self.hash.load(Ordering::Relaxed) != h {
            return false;
        }
        let (a, b, c) = self.key_locked();
        a == key[0] && b == key[1] && c == key[2]
    }

    /// Write `key` as this record's names (under the mutex): in place if it fits, else in
    /// new room (None if the zone has none; the record is unchanged then).
    ///
    /// # Safety
    /// The caller holds the mutex of `pool`, the zone of this record.
    unsafe fn set_names_locked(
        &self,
        pool: *mut ngx_slab_pool_t,
        h: u64,
        key: [&[u8]; 3],
    ) -> Option<()> {
        let len: usize = key.iter().map(|k| k.len()).sum();
        let old = self.key.load(Ordering::Relaxed);
        let mut names = old;
        if old.is_null() || len > self.names_cap.load(Ordering::Relaxed) as usize {
            let cap = len.max(NAMES_MIN).next_power_of_two();
            names = ngx_slab_alloc_locked(pool, cap) as *mut u8;
            if names.is_null() {
                return None;
            }
            if !old.is_null() {
                ngx_slab_free_locked(pool, old.cast());
            }
            self.names_cap.store(cap as u32, Ordering::Relaxed);
        }
        let mut at = 0;
        for k in key {
            ptr::copy_nonoverlapping(k.as_ptr(), names.add(at), k.len());
            at += k.len();
        }
        self.key.store(names, Ordering::Relaxed);
        for (l, k) in self.lens.iter().zip(key) {
            l.store(k.len() as u32, Ordering::Relaxed);
        }
        self.hash.store(h, Ordering::Relaxed);
        Some(())
    }

    pub fn state(&self) -> State {
        State::unpack(self.state.load(Ordering::Acquire))
    }

    pub fn last(&self) -> Option<Last> {
        let w = self.last.load(Ordering::Acquire);
        if self.last_check_ms.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let status = ((w >> 8) & 0xffff) as u16;
        Some(Last {
            passed: w & 1 != 0,
            status: (status != 0).then_some(status),
            reason: Reason::from_code(((w >> 24) & 0xff) as u8),
        })
    }

    /// Time spent unhealthy (or not yet healthy under `default_down`), at `now`.
    pub fn downtime_ms(&self, now: u64) -> u64 {
        let open = self.down_since_ms.load(Ordering::Relaxed);
        self.downtime_ms.load(Ordering::Relaxed)
            + if open == 0 {
                0
            } else {
                now.saturating_sub(open)
            }
    }

    /// Start over as a new peer.
    fn reset(&self, default_down: bool, now: u64, first_due: u64) {
        self.state
            .store(State::initial(default_down).pack(), Ordering::Relaxed);
        for a in [
            &self.checks,
            &self.fails,
            &self.unhealthy,
            &self.last_check_ms,
            &self.last,
            &self.downtime_ms,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.since_ms.store(now, Ordering::Relaxed);
        self.down_since_ms
            .store(if default_down { now } else { 0 }, Ordering::Relaxed);
        self.next_due.store(first_due, Ordering::Release);
    }

    /// Take over the state of the same peer in an old zone.
    fn inherit(&self, o: &Record) {
        let pairs = [
            (&self.next_due, &o.next_due),
            (&self.state, &o.state),
            (&self.checks, &o.checks),
            (&self.fails, &o.fails),
            (&self.unhealthy, &o.unhealthy),
            (&self.last_check_ms, &o.last_check_ms),
            (&self.last, &o.last),
            (&self.since_ms, &o.since_ms),
            (&self.down_since_ms, &o.down_since_ms),
            (&self.downtime_ms, &o.downtime_ms),
        ];
        for (a, b) in pairs {
            a.store(b.load(Ordering::Acquire), Ordering::Relaxed);
        }
    }

    /// Record one check's result; the transition it makes, if any. Only the worker that
    /// claimed the check calls this.
    pub fn apply(&self, o: &Outcome, rise: u32, fall: u32, now: u64) -> Option<Transition> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        if !o.passed() {
            self.fails.fetch_add(1, Ordering::Relaxed);
        }
        let w = o.passed() as u64
            | (o.status.unwrap_or(0) as u64) << 8
            | (o.failure.map_or(0, Reason::code) as u64) << 24;
        self.last.store(w, Ordering::Release);
        self.last_check_ms.store(now.max(1), Ordering::Release);
        let old = self.state();
        let (new, t) = old.apply(o.passed(), rise, fall);
        self.state.store(new.pack(), Ordering::Release);
        if t.is_some() {
            self.since_ms.store(now, Ordering::Relaxed);
        }
        if old.up && !new.up {
            self.down_since_ms.store(now.max(1), Ordering::Relaxed);
        } else if !old.up && new.up {
            let open = self.down_since_ms.swap(0, Ordering::Relaxed);
            if open != 0 {
                self.downtime_ms
                    .fetch_add(now.saturating_sub(open), Ordering::Relaxed);
            }
        }
        if matches!(t, Some(Transition::Unhealthy { .. })) {
            self.unhealthy.fetch_add(1, Ordering::Relaxed);
        }
        t
    }
}

impl Checks {
    /// The zone of this configuration (None before it is initialised, or without checks).
    pub fn header(&self) -> Option<&'static Header> {
        let p = self.header as *const Header;
        // SAFETY: set when the zone was initialised for this configuration; the zone stays
        // mapped as long as the configuration (cycle) that uses it.
        (!p.is_null())
            .then(|| unsafe { &*p })
            .filter(|h| h.magic == MAGIC)
    }
}

/// The zone of the running configuration, while a new one is being loaded (in the master:
/// `ngx_cycle` is still the old cycle then).
unsafe fn running_header() -> Option<&'static Header> {
    let cycle = ngx_cycle;
    if cycle.is_null() {
        return None;
    }
    let tag = Module::module() as *const ngx_module_t as *const c_void;
    for z in crate::shm_zone::zones(cycle) {
        if ptr::eq(z.tag, tag) && z.shm.name.as_bytes() == ZONE_NAME && !z.shm.addr.is_null() {
            let h = (*(z.shm.addr as *const ngx_slab_pool_t)).data as *const Header;
            if !h.is_null() && (*h).magic == MAGIC {
                return Some(&*h);
            }
        }
    }
    None
}

fn hash(parts: [&[u8]; 3]) -> u64 {
    // FNV-1a with a separator after each part.
    shm_index::fnv1a(parts.iter().flat_map(|p| p.iter().chain(&[0xff])))
}

/// The zone size: `check_shm_size` (default 1 MB), and at least room for every checked
/// peer (a power of two, so that small changes of the configuration keep the same zone).
fn zone_size(checks: &Checks) -> usize {
    let peers: usize = checks.list.iter().map(|c| c.peers.len()).sum();
    let need = (peers * PER_PEER + 64 * 1024).next_power_of_two();
    let asked = match checks.shm_size {
        0 => DEFAULT_SIZE,
        n => n,
    };
    need.max(asked)
}

/// Declare the zone (postconfiguration).
///
/// # Safety
/// `cf` must be the http{} configuration being finished.
pub unsafe fn add_zone(cf: *mut ngx_conf_t, checks: &mut Checks) -> Status {
    let zone = crate::shm_zone::add(cf, ZONE_NAME, zone_size(checks), "health checks");
    if zone.is_null() {
        return Status::NGX_ERROR;
    }
    (*zone).init = Some(init_zone);
    (*zone).data = checks as *mut Checks as *mut c_void;
    checks.zone = zone;
    Status::NGX_OK
}

/// Zone init, in the master at every configuration load: map (or make) the header. The
/// configured peers are registered by [`register`], once nginx has committed to the
/// configuration.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    let checks = &mut *((*zone).data as *mut Checks);
    let h = if !(*pool).data.is_null() && (*((*pool).data as *const Header)).magic == MAGIC {
        (*pool).data as *mut Header
    } else {
        match make_header(pool, (*zone).shm.size) {
            Some(h) => h,
            None => return NGX_ERROR as ngx_int_t,
        }
    };
    checks.header = h.cast();
    NGX_OK as ngx_int_t
}

/// init_module, in the master: register every configured peer of the configuration nginx
/// has just committed to (the workers start after this). Not at zone init: a reload that
/// fails later (a `listen` that cannot bind) keeps the running configuration, and must leave
/// the zone's generation and its records' `seen` as they were, or the peers the failed
/// configuration lacked would start over at the next reload.
///
/// # Safety
/// `checks` must be those of the cycle being initialised, from its init_module (`ngx_cycle`
/// is still the running one then).
pub unsafe fn register(checks: &mut Checks) {
    let Some(h) = checks.header() else { return };
    // An older zone still mapped (nginx re-created ours because its size changed).
    let old = running_header().filter(|o| !ptr::eq(*o, h));
    let gen = h.generation.fetch_add(1, Ordering::Relaxed) + 1;
    let now = crate::state::now_ms();
    for c in checks.list.iter_mut() {
        let conf = c.conf().clone();
        for p in c.peers.iter_mut() {
            let key = [&c.name[..], &p.server[..], &p.name[..]];
            let Some((r, fresh, seen)) = h.slot(key, gen, false) else {
                p.rec = ptr::null();
                continue;
            };
            if fresh {
                match old.and_then(|o| o.lookup(key)) {
                    Some(o) => r.inherit(o),
                    None => r.reset(conf.default_down, now, first_due(now, conf.interval_ms)),
                }
            } else if seen + 1 < gen {
                // not in the previous configuration: a new peer again
                r.reset(conf.default_down, now, first_due(now, conf.interval_ms));
            }
            p.rec = r;
        }
    }
    // Peers that nginx added at run time (`server ... resolve`) are in no configuration: the
    // new workers adopt them as DNS gives them again, and find their state carried over.
    if let Some(o) = old {
        o.carry_over(h, gen);
    }
    // The balancers' peers start from the configuration: every worker syncs.
    h.changes.fetch_add(1, Ordering::Release);
}

fn first_due(now: u64, interval: u64) -> u64 {
    schedule::first_due(now, interval, ngx_random() as u64)
}

unsafe fn make_header(pool: *mut ngx_slab_pool_t, size: usize) -> Option<*mut Header> {
    // A full zone is logged once by the module (log_full), not at each slab allocation.
    (*pool).set_log_nomem(0);
    let cap = (size / 256).next_power_of_two().max(64);
    let h = ngx_slab_calloc(pool, mem::size_of::<Header>()) as *mut Header;
    let index =
        ngx_slab_calloc(pool, cap * mem::size_of::<AtomicPtr<Record>>()) as *mut AtomicPtr<Record>;
    if h.is_null() || index.is_null() {
        return None;
    }
    ptr::write(
        h,
        Header {
            magic: MAGIC,
            generation: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            cap,
            index,
            count: AtomicUsize::new(0),
            full_logged: AtomicBool::new(false),
            reuse_logged: AtomicBool::new(false),
            no_reuse_until: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            pool,
        },
    );
    (*pool).data = h as *mut c_void;
    Some(h)
}

impl Header {
    fn index(&self) -> &[AtomicPtr<Record>] {
        // SAFETY: cap entries allocated with the header.
        unsafe { core::slice::from_raw_parts(self.index, self.cap) }
    }

    /// Run `f` under the zone's mutex.
    fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: the slab pool and its mutex live in this zone.
        unsafe { ngx_shmtx_lock(&mut (*self.pool).mutex) };
        let v = f();
        // SAFETY: as above; locked just before.
        unsafe { ngx_shmtx_unlock(&mut (*self.pool).mutex) };
        v
    }

    /// Under the mutex: the record of `key`, or Err as [`shm_index::find`].
    fn find_locked(&self, h: u64, key: [&[u8]; 3]) -> Result<&Record, usize> {
        // SAFETY: published records are fully written first, and never freed; their names
        // change only under the mutex, which the caller holds.
        unsafe { shm_index::find(self.index(), h, |r| r.is_locked(h, key)) }
    }

    /// The record of `key`, if there is one.
    fn lookup(&self, key: [&[u8]; 3]) -> Option<&Record> {
        self.locked(|| self.find_locked(hash(key), key).ok())
    }

    /// Find or insert the record of `key` for configuration `gen`, configured or added at
    /// `runtime`: the record, whether it is new to `key` (its state is then the caller's to
    /// set), and the generation that saw it before.
    fn slot(&self, key: [&[u8]; 3], gen: u64, runtime: bool) -> Option<(&Record, bool, u64)> {
        let h = hash(key);
        self.locked(|| {
            let (r, fresh) = match self.find_locked(h, key) {
                Ok(r) => (r, false),
                // SAFETY: under the mutex.
                Err(at) => unsafe { self.insert_locked(h, key, at, gen) }?,
            };
            // Not an orphan from now on, marked before the mutex is released: due now at the
            // latest (claimed by the next worker that looks, unless a claim moves it first).
            let now = crate::state::now_ms();
            let due = r.next_due.load(Ordering::Acquire);
            if due < now {
                let _ = r
                    .next_due
                    .compare_exchange(due, now, Ordering::AcqRel, Ordering::Relaxed);
            }
            r.runtime.store(runtime, Ordering::Relaxed);
            Some((r, fresh, r.seen.swap(gen, Ordering::AcqRel)))
        })
    }

    /// # Safety
    /// Under the mutex; `at` as [`Header::find_locked`] gave it for `key`.
    unsafe fn insert_locked(
        &self,
        h: u64,
        key: [&[u8]; 3],
        at: usize,
        gen: u64,
    ) -> Option<(&Record, bool)> {
        if at == usize::MAX || self.count.load(Ordering::Relaxed) >= self.cap / 4 * 3 {
            return self.reuse_locked(h, key, gen);
        }
        let r = ngx_slab_calloc_locked(self.pool, mem::size_of::<Record>()) as *mut Record;
        if r.is_null() {
            return self.reuse_locked(h, key, gen);
        }
        // calloc'ed: every atomic starts at zero.
        let rec = &*r;
        if rec.set_names_locked(self.pool, h, key).is_none() {
            ngx_slab_free_locked(self.pool, r.cast());
            return self.reuse_locked(h, key, gen);
        }
        // Due now until the caller sets its state: not an orphan meanwhile.
        rec.next_due
            .store(crate::state::now_ms(), Ordering::Relaxed);
        self.index()[at].store(r, Ordering::Release);
        self.count.fetch_add(1, Ordering::Relaxed);
        Some((rec, true))
    }

    /// The zone is full: give `key` the record of the peer no worker has checked for the
    /// longest (see [`schedule::orphaned`]), if any.
    ///
    /// # Safety
    /// Under the mutex.
    unsafe fn reuse_locked(&self, h: u64, key: [&[u8]; 3], gen: u64) -> Option<(&Record, bool)> {
        let now = crate::state::now_ms();
        if self.no_reuse_until.load(Ordering::Relaxed) > now {
            self.log_full();
            return None;
        }
        let mut best: Option<(usize, u64)> = None;
        let (mut empty, mut tombstones) = (0, 0);
        for (i, slot) in self.index().iter().enumerate() {
            let p = slot.load(Ordering::Acquire);
            if !shm_index::live(p) {
                if p.is_null() {
                    empty += 1;
                } else {
                    tombstones += 1;
                }
                continue;
            }
            let r = &*p;
            let due = r.next_due.load(Ordering::Acquire);
            let configured = !r.runtime.load(Ordering::Relaxed);
            let protected = configured && r.seen.load(Ordering::Relaxed) == gen;
            if schedule::orphaned(due, r.lease_until.load(Ordering::Acquire), now, protected)
                && best.is_none_or(|(_, d)| due < d)
            {
                best = Some((i, due));
            }
        }
        let Some((i, _)) = best else {
            // Orphans appear only as time passes: not looked for again within a second.
            self.no_reuse_until.store(now + 1000, Ordering::Relaxed);
            self.log_full();
            return None;
        };
        let p = self.index()[i].load(Ordering::Relaxed);
        let r = &*p;
        // The first one given away is named in the notice.
        let was = (!self.reuse_logged.load(Ordering::Relaxed)).then(|| {
            let (a, b, c) = r.key_locked();
            [a, b, c].map(<[u8]>::to_vec)
        });
        r.set_names_locked(self.pool, h, key).or_else(|| {
            self.log_full();
            None
        })?;
        self.index()[i].store(shm_index::tombstone(), Ordering::Release);
        r.next_due.store(now, Ordering::Relaxed);
        let at = match self.find_locked(h, key) {
            Err(at) if at != usize::MAX => at,
            _ => i, // cannot happen: the tombstone just made is free
        };
        // the entry given up is a tombstone now; the one taken was empty, or one of them
        if self.index()[at].load(Ordering::Relaxed).is_null() {
            empty -= 1;
            tombstones += 1;
        }
        self.index()[at].store(p, Ordering::Release);
        if shm_index::needs_rebuild(empty, tombstones) {
            // lookups here are under the mutex too: nobody misses a record
            shm_index::rebuild(self.index(), |r| r.hash.load(Ordering::Relaxed));
        }
        self.reused.fetch_add(1, Ordering::Relaxed);
        if let Some([up, server, name]) = was {
            self.log_reuse(&up, &server, &name);
        }
        Some((r, true))
    }

    /// Copy into `new` (a zone made for a new configuration) the records of this old zone
    /// that its last configuration had and `new` has not registered: the peers added at run
    /// time, and configured peers that left the configuration. They are marked seen by the
    /// configuration before `gen`, so that a run-time peer adopted again keeps its state and
    /// a configured peer that comes back later starts anew, as in a zone that was kept.
    fn carry_over(&self, new: &Header, gen: u64) {
        let last = self.generation.load(Ordering::Acquire);
        // The old zone's workers may still add or give away records: under its mutex (and
        // the new zone's, taken inside; no process takes them the other way round).
        self.locked(|| {
            for slot in self.index() {
                let r = slot.load(Ordering::Acquire);
                if !shm_index::live(r) {
                    continue;
                }
                // SAFETY: published records are fully written first, and never freed; the
                // old zone stays mapped while its configuration runs (this runs in the
                // master, during the load of the next one).
                let r = unsafe { &*r };
                if r.seen.load(Ordering::Relaxed) != last {
                    continue;
                }
                let (a, b, c) = r.key_locked();
                let runtime = r.runtime.load(Ordering::Relaxed);
                if let Some((n, true, _)) = new.slot([a, b, c], gen, runtime) {
                    n.inherit(r);
                    n.seen.store(gen - 1, Ordering::Relaxed);
                }
            }
        })
    }

    /// The record of a peer that nginx added at run time (`server ... resolve`), for a worker
    /// that starts checking it: made on first sight, like a configured peer new to the
    /// configuration, and kept while nginx keeps resolving the address (also across reloads:
    /// each configuration that sees it marks it seen). None when the zone is full.
    pub fn adopt(&self, key: [&[u8]; 3], default_down: bool, interval_ms: u64) -> Option<&Record> {
        let gen = self.generation.load(Ordering::Acquire);
        let (r, fresh, seen) = self.slot(key, gen, true)?;
        if fresh || seen + 1 < gen {
            let now = crate::state::now_ms();
            r.reset(default_down, now, first_due(now, interval_ms));
        }
        Some(r)
    }

    /// How full the zone is, for the status.
    pub fn usage(&self) -> ZoneSnap {
        ZoneSnap {
            name: "triage_check",
            // SAFETY: the pool header is at the start of the zone, `end` at its end.
            size: unsafe { (*self.pool).end as u64 - self.pool as u64 },
            entries: self.count.load(Ordering::Relaxed) as u64,
            reused: self.reused.load(Ordering::Relaxed),
            full: self.full_logged.load(Ordering::Relaxed),
        }
    }

    fn log_reuse(&self, up: &[u8], server: &[u8], name: &[u8]) {
        log_once(&self.reuse_logged, NGX_LOG_NOTICE as ngx_uint_t, || {
            format!(
                "triage: zone \"triage_check\" is full ({} peers): the records of peers that no worker has checked for {} s are given to new peers (the first: {} in upstream \"{}\", server \"{}\"); raise check_shm_size to keep them",
                self.count.load(Ordering::Relaxed),
                schedule::ORPHAN_AFTER_MS / 1000,
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(up),
                String::from_utf8_lossy(server)
            )
        });
    }

    fn log_full(&self) {
        log_once(&self.full_logged, NGX_LOG_ALERT as ngx_uint_t, || {
            format!(
                "triage: zone \"triage_check\" is full ({} peers): new peers are not checked until they can be given the records of peers that no worker has checked for {} s; raise check_shm_size",
                self.count.load(Ordering::Relaxed),
                schedule::ORPHAN_AFTER_MS / 1000
            )
        });
    }
}
