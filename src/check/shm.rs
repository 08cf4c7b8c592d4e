//! Health state in shared memory (zone "triage_check"): one [`Record`] per upstream name +
//! server + address — never an index, so state follows a peer through reloads, reordered
//! and partly changed server lists. The master registers the configured peers when the
//! zone is initialised (before it forks workers), so workers only use record pointers.
//! A zone that nginx re-creates (its size changed) inherits the state of the old one.
//!
//! One worker at a time checks a peer (the claim in `check::worker`), so a record's health
//! words have a single writer; readers load them one by one.

use core::ffi::c_void;
use core::mem;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::HttpModule;
use ngx::ngx_log_error;

use super::directives::Checks;
use super::health::{Outcome, Reason, State, Transition};
use super::schedule;
use crate::module::Module;
use crate::shm_index;

const MAGIC: u64 = 0x7472_6961_6765_6301;
static ZONE_NAME: &[u8] = b"triage_check";
/// Bytes of zone per checked peer in the sizing rule (record, names, index, slab overhead).
const PER_PEER: usize = 512;
const MIN_SIZE: usize = 1024 * 1024;

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
    pool: *mut ngx_slab_pool_t,
}

/// The health of one (upstream, server, address).
#[repr(C)]
pub struct Record {
    hash: u64,
    /// upstream, server and name, one after the other.
    key: *const u8,
    lens: [u32; 3],
    /// Last configuration generation that has this peer.
    seen: AtomicU64,
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
    fn key(&self) -> (&[u8], &[u8], &[u8]) {
        let [a, b, c] = self.lens.map(|l| l as usize);
        // SAFETY: written once at insertion, in shared memory that outlives every reader.
        let all = unsafe { core::slice::from_raw_parts(self.key, a + b + c) };
        (&all[..a], &all[a..a + b], &all[a + b..])
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

/// The zone size: `check_shm_size`, at least 1 MB, and room for every checked peer (a
/// power of two, so that small changes of the configuration keep the same zone).
fn zone_size(checks: &Checks) -> usize {
    let peers: usize = checks.list.iter().map(|c| c.peers.len()).sum();
    let need = (peers * PER_PEER + 64 * 1024).next_power_of_two();
    need.max(MIN_SIZE).max(checks.shm_size)
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

/// Zone init, in the master at every configuration load: map (or make) the header, then
/// register every configured peer.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    let checks = &mut *((*zone).data as *mut Checks);
    let previous = running_header();
    let h = if !(*pool).data.is_null() && (*((*pool).data as *const Header)).magic == MAGIC {
        (*pool).data as *mut Header
    } else {
        match make_header(pool, (*zone).shm.size) {
            Some(h) => h,
            None => return NGX_ERROR as ngx_int_t,
        }
    };
    checks.header = h.cast();
    let h = &*h;
    // An older zone still mapped (nginx re-created ours because its size changed).
    let old = previous.filter(|o| !ptr::eq(*o, h));
    let gen = h.generation.fetch_add(1, Ordering::Relaxed) + 1;
    let now = crate::state::now_ms();
    for c in checks.list.iter_mut() {
        let conf = c.conf().clone();
        for p in c.peers.iter_mut() {
            let key = [&c.name[..], &p.server[..], &p.name[..]];
            let Some((r, fresh)) = h.slot(key) else {
                p.rec = ptr::null();
                continue;
            };
            if fresh {
                match old.and_then(|o| o.find(hash(key), key).ok()) {
                    Some(o) => r.inherit(o),
                    None => r.reset(conf.default_down, now, first_due(now, conf.interval_ms)),
                }
            } else if r.seen.load(Ordering::Relaxed) + 1 < gen {
                // not in the previous configuration: a new peer again
                r.reset(conf.default_down, now, first_due(now, conf.interval_ms));
            }
            r.seen.store(gen, Ordering::Relaxed);
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
    NGX_OK as ngx_int_t
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

    fn find(&self, h: u64, key: [&[u8]; 3]) -> Result<&Record, usize> {
        // SAFETY: published records are fully written first, and never freed.
        unsafe {
            shm_index::find(self.index(), h, |r| {
                let (a, b, c) = r.key();
                r.hash == h && a == key[0] && b == key[1] && c == key[2]
            })
        }
    }

    /// Find or insert the record of `key`; true if inserted.
    fn slot(&self, key: [&[u8]; 3]) -> Option<(&Record, bool)> {
        let h = hash(key);
        if let Ok(r) = self.find(h, key) {
            return Some((r, false));
        }
        // SAFETY: the slab pool and its mutex live in this zone.
        unsafe {
            ngx_shmtx_lock(&mut (*self.pool).mutex);
            let r = self.insert_locked(h, key);
            ngx_shmtx_unlock(&mut (*self.pool).mutex);
            r
        }
    }

    unsafe fn insert_locked(&self, h: u64, key: [&[u8]; 3]) -> Option<(&Record, bool)> {
        let at = match self.find(h, key) {
            Ok(r) => return Some((r, false)),
            Err(at) => at,
        };
        if at == usize::MAX || self.count.load(Ordering::Relaxed) >= self.cap / 4 * 3 {
            self.log_full();
            return None;
        }
        let len: usize = key.iter().map(|k| k.len()).sum();
        let names = ngx_slab_alloc_locked(self.pool, len.max(1)) as *mut u8;
        let r = ngx_slab_calloc_locked(self.pool, mem::size_of::<Record>()) as *mut Record;
        if names.is_null() || r.is_null() {
            for p in [names as *mut c_void, r as *mut c_void] {
                if !p.is_null() {
                    ngx_slab_free_locked(self.pool, p);
                }
            }
            self.log_full();
            return None;
        }
        let mut at_byte = 0;
        for k in key {
            ptr::copy_nonoverlapping(k.as_ptr(), names.add(at_byte), k.len());
            at_byte += k.len();
        }
        // calloc'ed: every atomic starts at zero.
        (*r).hash = h;
        (*r).key = names;
        (*r).lens = key.map(|k| k.len() as u32);
        self.index()[at].store(r, Ordering::Release);
        self.count.fetch_add(1, Ordering::Relaxed);
        Some((&*r, true))
    }

    /// Copy into `new` (a zone made for a new configuration) the records of this old zone
    /// that its last configuration had and `new` has not registered: the peers added at run
    /// time, and configured peers that left the configuration. They are marked seen by the
    /// configuration before `gen`, so that a run-time peer adopted again keeps its state and
    /// a configured peer that comes back later starts anew, as in a zone that was kept.
    fn carry_over(&self, new: &Header, gen: u64) {
        let last = self.generation.load(Ordering::Acquire);
        for slot in self.index() {
            let r = slot.load(Ordering::Acquire);
            if r.is_null() {
                continue;
            }
            // SAFETY: published records are fully written first, and never freed; the old
            // zone stays mapped while its configuration runs (this runs in the master, during
            // the load of the next one).
            let r = unsafe { &*r };
            if r.seen.load(Ordering::Relaxed) != last {
                continue;
            }
            let (a, b, c) = r.key();
            if let Some((n, true)) = new.slot([a, b, c]) {
                n.inherit(r);
                n.seen.store(gen - 1, Ordering::Relaxed);
            }
        }
    }

    /// The record of a peer that nginx added at run time (`server ... resolve`), for a worker
    /// that starts checking it: made on first sight, like a configured peer new to the
    /// configuration, and kept while nginx keeps resolving the address (also across reloads:
    /// each configuration that sees it marks it seen). None when the zone is full.
    pub fn adopt(&self, key: [&[u8]; 3], default_down: bool, interval_ms: u64) -> Option<&Record> {
        let (r, fresh) = self.slot(key)?;
        let gen = self.generation.load(Ordering::Acquire);
        let seen = r.seen.swap(gen, Ordering::AcqRel);
        if fresh || seen + 1 < gen {
            let now = crate::state::now_ms();
            r.reset(default_down, now, first_due(now, interval_ms));
        }
        Some(r)
    }

    fn log_full(&self) {
        if !self.full_logged.swap(true, Ordering::Relaxed) {
            // SAFETY: the cycle log is valid in any nginx process.
            let log = unsafe { (*ngx_cycle).log };
            ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "triage: zone \"triage_check\" is full ({} peers): further peers are not checked; raise check_shm_size",
                self.count.load(Ordering::Relaxed)
            );
        }
    }
}
