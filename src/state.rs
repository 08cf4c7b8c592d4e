//! Counters in shared memory, shared by all workers and kept across reloads.
//!
//! Layout: a slab pool (nginx's), holding a [`Shared`] header, an open-addressing index of
//! slot pointers, and one [`Slot`] per (upstream name, peer name) — the key is names, never
//! an index, so a slot follows its peer through reloads and reordered server lists. An
//! empty peer name is the upstream's own slot (failures before a peer was chosen).
//! Counters are atomics (no lock on the request path); inserting a slot takes the slab mutex.

use core::ffi::c_void;
use core::mem;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};
use ngx::ngx_log_error;

use crate::cause::{Cause, Verdict};
use crate::conf::{MainConf, DEFAULT_ZONE_SIZE};
use crate::snapshot::{LastFailure, RecentFailure, Window};
use crate::window::Windows;
use crate::{recent, shm_index, upstreams};

// 4: last_info's detail field grew from 4 bits to 8. 5: the run-time upstreams' share.
// 6: names carved from pages.
const MAGIC: u64 = 0x7472_6961_6765_0006;

/// Where run-time upstreams past their share of the zone are counted together.
pub const OTHER_RUN_TIME: &[u8] = b"(other run-time upstreams)";

/// Slots the zone gives to run-time upstreams (`proxy_pass http://$var`), whose names can
/// come from clients: one per 2 KB of zone (a zone holds about one peer per 420 bytes), so
/// that configured upstreams always have room.
pub fn run_time_share(zone_size: usize) -> usize {
    (zone_size / 2048).max(16)
}

/// The zone's header.
#[repr(C)]
pub struct Shared {
    magic: u64,
    /// Configuration loads seen by this zone (start + reloads).
    pub generation: AtomicU64,
    /// Time of the last configuration load (ms since the epoch).
    pub load_time_ms: AtomicU64,
    cap: usize,
    index: *mut AtomicPtr<Slot>,
    pub slots: AtomicUsize,
    full_logged: AtomicBool,
    /// Slots of run-time upstreams, and their share (see `run_time_share`).
    run_time_slots: AtomicUsize,
    run_time_cap: usize,
    run_time_full_logged: AtomicBool,
    pool: *mut ngx_slab_pool_t,
    /// The recent-failures ring (`triage_zone ... recent=N`; fixed when the zone is made).
    recent: *mut recent::Entry,
    recent_cap: usize,
    recent_next: AtomicU64,
    /// Slots are carved from blocks (less slab overhead per peer than one chunk each).
    block: AtomicPtr<Slot>,
    block_left: AtomicUsize,
    /// Names are carved from pages too: allocated one by one, names of each length class
    /// took a slab page of their own, and a small zone was full after one or two peers.
    names: AtomicPtr<u8>,
    names_left: AtomicUsize,
}

/// Slots per block allocation.
const BLOCK: usize = 64;

/// Bytes per names allocation; a longer name than a quarter of it gets its own.
const NAMES_BLOCK: usize = 4096;

/// Counters of one (upstream, peer).
#[repr(C)]
pub struct Slot {
    hash: u64,
    upstream: *const u8,
    upstream_len: usize,
    peer: *const u8,
    peer_len: usize,
    /// Not in any configuration: an upstream resolved at run time.
    pub dynamic: bool,
    /// Last configuration generation that had this peer.
    pub seen: AtomicU64,
    pub by_cause: [AtomicU64; Cause::COUNT],
    /// The last failure ([`LastFailure::pack`]); 0 = none.
    last_info: AtomicU64,
    last_time_ms: AtomicU64,
    /// Tries sent to this peer.
    pub requests: AtomicU64,
    /// Responses by status class (1xx … 5xx).
    pub responses: [AtomicU64; 5],
    /// The last minute and the last five minutes.
    windows: Windows,
}

impl Slot {
    pub fn upstream(&self) -> &[u8] {
        // SAFETY: written once at insertion, in shared memory that outlives every reader.
        unsafe { core::slice::from_raw_parts(self.upstream, self.upstream_len) }
    }

    pub fn peer(&self) -> &[u8] {
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts(self.peer, self.peer_len) }
    }

    pub fn by_cause(&self) -> [u64; Cause::COUNT] {
        core::array::from_fn(|i| self.by_cause[i].load(Ordering::Relaxed))
    }

    pub fn responses(&self) -> [u64; 5] {
        core::array::from_fn(|i| self.responses[i].load(Ordering::Relaxed))
    }

    /// The last minute and the last five minutes, at `now_ms`.
    pub fn windows(&self, now_ms: u64) -> (Window, Window) {
        self.windows.read(now_ms)
    }

    /// The most frequent failure cause of the last five minutes.
    pub fn top_cause(&self, now_ms: u64) -> Option<Cause> {
        self.windows.top_cause(now_ms)
    }

    /// One try sent to this peer: its response's status (0 if none) and times (ms).
    fn request(&self, status: u16, times: Option<(u64, u64)>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if (100..600).contains(&status) {
            self.responses[status as usize / 100 - 1].fetch_add(1, Ordering::Relaxed);
        }
        self.windows.request(ngx_time() as u64, times);
    }

    /// One failed try (or a failure before any peer, on the upstream's own slot). `tried`:
    /// the try was sent to this peer (one of its requests, with no response).
    fn failure(&self, cause: Cause, tried: bool, secs: u64) {
        if tried {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        self.windows.failure(cause, tried, secs);
    }

    pub fn last_failure(&self) -> Option<LastFailure> {
        LastFailure::unpack(
            self.last_info.load(Ordering::Acquire),
            self.last_time_ms.load(Ordering::Relaxed),
        )
    }
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());
/// `recent=N` of the configuration being loaded, for a zone made by it.
static RECENT_CAP: AtomicUsize = AtomicUsize::new(crate::conf::DEFAULT_RECENT);
static ZONE_NAME: &[u8] = b"triage";

fn hash(upstream: &[u8], peer: &[u8]) -> u64 {
    // FNV-1a over "upstream \xff peer".
    shm_index::fnv1a(upstream.iter().chain(&[0xff]).chain(peer))
}

/// Declare the zone (postconfiguration).
///
/// # Safety
/// `cf` must be the http{} configuration being finished.
pub unsafe fn add_zone(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Status {
    let size = if mcf.zone_size == 0 {
        DEFAULT_ZONE_SIZE
    } else {
        mcf.zone_size
    };
    let zone = crate::shm_zone::add(cf, ZONE_NAME, size, "counters");
    if zone.is_null() {
        return Status::NGX_ERROR;
    }
    RECENT_CAP.store(mcf.recent, Ordering::Relaxed);
    (*zone).init = Some(init_zone);
    (*zone).data = ptr::null_mut();
    mcf.zone = zone;
    Status::NGX_OK
}

unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    // Reused across a reload (same name and size): keep everything.
    let kept = if !data.is_null() {
        data
    } else if (*zone).shm.exists != 0 && !(*pool).data.is_null() {
        (*pool).data
    } else {
        ptr::null_mut()
    };
    if !kept.is_null() {
        (*zone).data = kept;
        SHARED.store(kept as *mut Shared, Ordering::Release);
        let sh = &*(kept as *const Shared);
        let asked = RECENT_CAP.load(Ordering::Relaxed);
        if sh.magic == MAGIC && sh.recent_cap != 0 && sh.recent_cap != asked {
            // SAFETY: the cycle log is valid in the master.
            let log = (*ngx_cycle).log;
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "triage: zone \"triage\" is kept across the reload, with its recent failures list of {} entries: recent={} applies when the zone is made anew (a restart, or a change of triage_zone's size)",
                sh.recent_cap,
                asked
            );
        }
        return NGX_OK as ngx_int_t;
    }
    // A full zone is logged once by the module (log_full), not at each slab allocation.
    (*pool).set_log_nomem(0);
    let size = (*zone).shm.size;
    // One index entry per 256 bytes of zone, a power of two; filled to 3/4 at most.
    let cap = (size / 256).next_power_of_two().max(64);
    let sh = ngx_slab_calloc(pool, mem::size_of::<Shared>()) as *mut Shared;
    let index =
        ngx_slab_calloc(pool, cap * mem::size_of::<AtomicPtr<Slot>>()) as *mut AtomicPtr<Slot>;
    if sh.is_null() || index.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    let recent_cap = RECENT_CAP.load(Ordering::Relaxed).max(1);
    let recent = ngx_slab_calloc(pool, recent_cap * recent::ENTRY_BYTES) as *mut recent::Entry;
    ptr::write(
        sh,
        Shared {
            magic: MAGIC,
            generation: AtomicU64::new(0),
            load_time_ms: AtomicU64::new(0),
            cap,
            index,
            slots: AtomicUsize::new(0),
            full_logged: AtomicBool::new(false),
            run_time_slots: AtomicUsize::new(0),
            run_time_cap: run_time_share(size),
            run_time_full_logged: AtomicBool::new(false),
            pool,
            recent,
            recent_cap: if recent.is_null() { 0 } else { recent_cap },
            recent_next: AtomicU64::new(0),
            block: AtomicPtr::new(ptr::null_mut()),
            block_left: AtomicUsize::new(0),
            names: AtomicPtr::new(ptr::null_mut()),
            names_left: AtomicUsize::new(0),
        },
    );
    (*pool).data = sh as *mut c_void;
    (*zone).data = sh as *mut c_void;
    SHARED.store(sh, Ordering::Release);
    NGX_OK as ngx_int_t
}

fn shared() -> Option<&'static Shared> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: set once the zone is mapped; shared memory stays mapped for the process' life.
    (!p.is_null())
        .then(|| unsafe { &*p })
        .filter(|s| s.magic == MAGIC)
}

impl Shared {
    fn index(&self) -> &[AtomicPtr<Slot>] {
        // SAFETY: cap entries allocated at zone init.
        unsafe { core::slice::from_raw_parts(self.index, self.cap) }
    }

    /// Find (upstream, peer) without locking.
    fn find(&self, h: u64, upstream: &[u8], peer: &[u8]) -> Result<&Slot, usize> {
        // SAFETY: published slots are fully written before their pointer is stored, never freed.
        unsafe {
            shm_index::find(self.index(), h, |s| {
                s.hash == h && s.upstream() == upstream && s.peer() == peer
            })
        }
    }

    /// Find or insert the slot of (upstream, peer). A run-time upstream past the share of
    /// run-time upstreams gets the slot of [`OTHER_RUN_TIME`].
    pub fn slot(&self, upstream: &[u8], peer: &[u8], dynamic: bool) -> Option<&Slot> {
        let h = hash(upstream, peer);
        if let Ok(s) = self.find(h, upstream, peer) {
            return Some(s);
        }
        if dynamic && self.run_time_full() {
            // once made, found without the lock
            if let Ok(s) = self.find(hash(OTHER_RUN_TIME, b""), OTHER_RUN_TIME, b"") {
                return Some(s);
            }
        }
        // SAFETY: the slab pool and its mutex live in this zone.
        unsafe {
            ngx_shmtx_lock(&mut (*self.pool).mutex);
            let r = if dynamic && self.run_time_full() {
                self.log_run_time_full();
                self.insert_locked(hash(OTHER_RUN_TIME, b""), OTHER_RUN_TIME, b"", true)
            } else {
                self.insert_locked(h, upstream, peer, dynamic)
            };
            ngx_shmtx_unlock(&mut (*self.pool).mutex);
            r
        }
    }

    /// `len` bytes for a slot's names (never freed, as slots are not).
    ///
    /// # Safety
    /// The zone's mutex must be held.
    unsafe fn names_locked(&self, len: usize) -> *mut u8 {
        if len > NAMES_BLOCK / 4 {
            return ngx_slab_alloc_locked(self.pool, len.max(1)) as *mut u8;
        }
        if self.names_left.load(Ordering::Relaxed) < len {
            let b = ngx_slab_alloc_locked(self.pool, NAMES_BLOCK) as *mut u8;
            if b.is_null() {
                return b;
            }
            self.names.store(b, Ordering::Relaxed);
            self.names_left.store(NAMES_BLOCK, Ordering::Relaxed);
        }
        let p = self.names.load(Ordering::Relaxed);
        self.names.store(p.add(len), Ordering::Relaxed);
        self.names_left.fetch_sub(len, Ordering::Relaxed);
        p
    }

    fn run_time_full(&self) -> bool {
        self.run_time_slots.load(Ordering::Relaxed) >= self.run_time_cap
    }

    unsafe fn insert_locked(
        &self,
        h: u64,
        upstream: &[u8],
        peer: &[u8],
        dynamic: bool,
    ) -> Option<&Slot> {
        let at = match self.find(h, upstream, peer) {
            Ok(s) => return Some(s),
            Err(at) => at,
        };
        if at == usize::MAX || self.slots.load(Ordering::Relaxed) >= self.cap / 4 * 3 {
            self.log_full();
            return None;
        }
        // The block cursors are only moved under the zone's mutex (held here).
        if self.block_left.load(Ordering::Relaxed) == 0 {
            let b = ngx_slab_calloc_locked(self.pool, BLOCK * mem::size_of::<Slot>()) as *mut Slot;
            if b.is_null() {
                self.log_full();
                return None;
            }
            self.block.store(b, Ordering::Relaxed);
            self.block_left.store(BLOCK, Ordering::Relaxed);
        }
        let names = self.names_locked(upstream.len() + peer.len());
        if names.is_null() {
            self.log_full();
            return None;
        }
        let s = self.block.load(Ordering::Relaxed);
        self.block.store(s.add(1), Ordering::Relaxed);
        self.block_left.fetch_sub(1, Ordering::Relaxed);
        ptr::copy_nonoverlapping(upstream.as_ptr(), names, upstream.len());
        ptr::copy_nonoverlapping(peer.as_ptr(), names.add(upstream.len()), peer.len());
        // calloc'ed: every atomic starts at zero.
        (*s).hash = h;
        (*s).upstream = names;
        (*s).upstream_len = upstream.len();
        (*s).peer = names.add(upstream.len());
        (*s).peer_len = peer.len();
        (*s).dynamic = dynamic;
        self.index()[at].store(s, Ordering::Release);
        self.slots.fetch_add(1, Ordering::Relaxed);
        if dynamic {
            self.run_time_slots.fetch_add(1, Ordering::Relaxed);
        }
        Some(&*s)
    }

    fn log_run_time_full(&self) {
        log_once(
            &self.run_time_full_logged,
            NGX_LOG_WARN as ngx_uint_t,
            || {
                format!(
                "triage: run-time upstreams (proxy_pass with variables) fill their share of zone \"triage\" ({} entries): new ones are counted together as \"{}\"; configured upstreams keep their room (raise triage_zone for more)",
                self.run_time_cap,
                String::from_utf8_lossy(OTHER_RUN_TIME)
            )
            },
        );
    }

    fn log_full(&self) {
        log_once(&self.full_logged, NGX_LOG_ALERT as ngx_uint_t, || {
            format!(
                "triage: zone \"triage\" is full ({} peers), new peers are not counted: raise triage_zone",
                self.slots.load(Ordering::Relaxed)
            )
        });
    }

    /// (generation, time of the last configuration load in ms).
    pub fn load_info(&self) -> (u64, u64) {
        (
            self.generation.load(Ordering::Relaxed),
            self.load_time_ms.load(Ordering::Relaxed),
        )
    }

    /// Every slot (for the status of upstreams not in the configuration).
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.index().iter().filter_map(|p| {
            let p = p.load(Ordering::Acquire);
            // SAFETY: published slots are never freed.
            (!p.is_null()).then(|| unsafe { &*p })
        })
    }
}

/// Log `message` at `level` unless `logged` says it was (by any process of the zone).
fn log_once(logged: &AtomicBool, level: ngx_uint_t, message: impl FnOnce() -> String) {
    if !logged.swap(true, Ordering::Relaxed) {
        // SAFETY: the cycle log is valid in any nginx process.
        let log = unsafe { (*ngx_cycle).log };
        ngx_log_error!(level, log, "{}", message());
    }
}

/// The zone, once mapped.
pub fn get() -> Option<&'static Shared> {
    shared()
}

pub fn now_ms() -> u64 {
    let tp = ngx_timeofday();
    tp.sec as u64 * 1000 + tp.msec as u64
}

/// What the recent-failures ring keeps of the request.
pub struct RequestInfo<'a> {
    pub method: &'a [u8],
    /// Without the query string.
    pub path: &'a [u8],
    pub request_id: &'a [u8],
}

/// Count one classified try (a failure, or the backend's own 502). `tried`: the try was
/// sent to `peer`, and is one of its requests too.
pub fn count(
    upstream: &[u8],
    peer: &[u8],
    dynamic: bool,
    v: Verdict,
    status: u16,
    req: Option<&RequestInfo>,
    tried: bool,
) {
    let Verdict {
        cause,
        phase,
        errno,
        detail,
    } = v;
    let Some(sh) = shared() else { return };
    // None: the zone is full; the failure still goes to the recent failures
    let slot = slot_of(sh, upstream, peer, dynamic, true);
    if let Some(s) = slot {
        s.by_cause[cause.index()].fetch_add(1, Ordering::Relaxed);
    }
    if !cause.is_failure() {
        if let Some(s) = slot.filter(|_| tried) {
            s.request(0, None);
        }
        return;
    }
    let now = now_ms();
    if let Some(s) = slot {
        let info = LastFailure::pack(cause, phase, detail, status, errno);
        s.last_time_ms.store(now, Ordering::Relaxed);
        s.last_info.store(info, Ordering::Release);
        s.failure(cause, tried, now / 1000);
    }
    if let Some(req) = req {
        recent::remember(
            sh.ring(),
            &sh.recent_next,
            &recent::Failure {
                time_ms: now,
                cause,
                phase,
                errno,
                status,
                upstream,
                peer,
                method: req.method,
                path: req.path,
                request_id: req.request_id,
            },
        );
    }
}

/// Per-worker cache of slots by the address of their names (the upstream's display name in
/// the configuration, the peer's name in the balancer's peer), so that a request does not
/// hash names. Direct-mapped; a peer's name bytes are compared when its balancer keeps peers
/// in a shared zone (where `server ... resolve` can free and reuse them).
struct SlotCache(core::cell::UnsafeCell<[(usize, usize, usize); 256]>);

// SAFETY: an nginx worker runs its event loop, and so every use of this cache, on one thread.
unsafe impl Sync for SlotCache {}

static CACHE: SlotCache = SlotCache(core::cell::UnsafeCell::new([(0, 0, 0); 256]));

/// The slot of (`upstream`, `peer`), through the per-worker cache when the names live in
/// the configuration (not `dynamic`). `verify`: compare the peer's name too (its memory may
/// have been reused).
fn slot_of<'a>(
    sh: &'a Shared,
    upstream: &[u8],
    peer: &[u8],
    dynamic: bool,
    verify: bool,
) -> Option<&'a Slot> {
    if dynamic {
        // names in the request pool: nothing to cache by
        return sh.slot(upstream, peer, true);
    }
    let (u, p) = (upstream.as_ptr() as usize, peer.as_ptr() as usize);
    let i = ((p >> 4) ^ (u >> 6)) & 255;
    // SAFETY: single-threaded worker (see SlotCache); no reference outlives this function.
    let e = unsafe { &mut (*CACHE.0.get())[i] };
    if e.0 == u && e.1 == p {
        // SAFETY: cached slots live in the zone, never freed.
        let s = unsafe { &*(e.2 as *const Slot) };
        if !verify || s.peer() == peer {
            return Some(s);
        }
    }
    let s = sh.slot(upstream, peer, false)?;
    *e = (u, p, s as *const Slot as usize);
    Some(s)
}

/// Count one try sent to `peer` of `upstream`, with its response's status (0: none) and its
/// header and response times in ms (None: no response).
pub fn request(
    upstream: &[u8],
    peer: &[u8],
    dynamic: bool,
    verify: bool,
    status: u16,
    times: Option<(u64, u64)>,
) {
    let Some(sh) = shared() else { return };
    if let Some(s) = slot_of(sh, upstream, peer, dynamic, verify) {
        s.request(status, times);
    }
}

/// What one entry of the recent failures list takes in the zone.
pub const RECENT_ENTRY_BYTES: usize = recent::ENTRY_BYTES;

impl Shared {
    fn ring(&self) -> &[recent::Entry] {
        if self.recent.is_null() {
            return &[];
        }
        // SAFETY: recent_cap entries allocated at zone init.
        unsafe { core::slice::from_raw_parts(self.recent, self.recent_cap) }
    }

    /// The recent failures, newest first.
    pub fn recent_failures(&self) -> Vec<RecentFailure> {
        recent::list(self.ring(), &self.recent_next)
    }
}

/// init_module: runs in the master after the zone is mapped, at start and at every reload.
/// Registers every configured peer (so the status lists them from the first request) and
/// counts the configuration generation.
pub unsafe extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let Some(sh) = shared() else {
        return NGX_OK as ngx_int_t;
    };
    let gen = sh.generation.fetch_add(1, Ordering::Relaxed) + 1;
    sh.load_time_ms.store(now_ms(), Ordering::Relaxed);
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(&*cycle) else {
        return NGX_OK as ngx_int_t;
    };
    for &uscf in upstreams::all(umcf) {
        let name = upstreams::display_name(uscf);
        if let Some(s) = sh.slot(&name, b"", false) {
            s.seen.store(gen, Ordering::Relaxed);
        }
        for p in upstreams::peers(uscf) {
            if let Some(s) = sh.slot(&name, &p.name, false) {
                s.seen.store(gen, Ordering::Relaxed);
            }
        }
    }
    NGX_OK as ngx_int_t
}
