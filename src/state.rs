//! Counters in shared memory, shared by all workers and kept across reloads.
//!
//! Layout: a slab pool (nginx's), holding a [`Shared`] header, an open-addressing index of
//! slot pointers, and one [`Slot`] per (upstream name, peer name) — the key is names, never
//! an index, so a slot follows its peer through reloads and reordered server lists. An
//! empty peer name is the upstream's own slot (failures before a peer was chosen).
//! Counters are atomics (no lock on the request path); inserting a slot takes the slab mutex.
//! A full zone reuses the slot idle longest among those no configuration names
//! (`triage_zone ... idle=`, [`Shared::reuse_locked`]).

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
use crate::module::Module;
use crate::snapshot::{LastFailure, RecentFailure, Window, ZoneSnap};
use crate::window::Windows;
use crate::{recent, shm_index, upstreams};

// 4: last_info's detail field grew from 4 bits to 8. 5: the run-time upstreams' share.
// 6: names carved from pages. 7: entries reused (names in one word, activity, incarnation).
// 8: names carved in multiples of 8 bytes, rewritten in place when an entry is reused.
// 9: the count of reuses.
const MAGIC: u64 = 0x7472_6961_6765_000a;

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
    /// `triage_zone ... idle=`: how long an entry no configuration names must have been idle
    /// to be reused when the zone (or the run-time share) is full; 0: never.
    idle_ms: AtomicU64,
    /// No entry could be reused at the last look: none is looked for before this time (ms).
    no_reuse_until: AtomicU64,
    reuse_logged: AtomicBool,
    /// Entries given to new peers since the zone was made.
    reused: AtomicU64,
}

/// Slots per block allocation.
const BLOCK: usize = 64;

/// Bytes per names allocation; a longer name than a quarter of it gets its own.
const NAMES_BLOCK: usize = 4096;

/// The bytes carved for names `len` bytes long: a multiple of 8, so that the names of most
/// peers that replace one (an address one digit longer) fit in its room.
fn names_room(len: usize) -> usize {
    len.next_multiple_of(8)
}

/// Counters of one (upstream, peer).
#[repr(C)]
pub struct Slot {
    hash: AtomicU64,
    /// Where the names are ([`names_word`]): in one word, so that a reader never pairs the
    /// names of an entry being reused with the lengths of its new ones.
    names: AtomicU64,
    /// Bumped each time the entry is reused for other names (the workers' caches check it).
    incarnation: AtomicU64,
    /// Not in any configuration: an upstream resolved at run time.
    dynamic: AtomicBool,
    /// Last configuration generation that had this peer.
    pub seen: AtomicU64,
    /// When the entry was made or reused, or a try or a failure was last counted here (ms
    /// since the epoch).
    active_ms: AtomicU64,
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

/// A slot's names word: their offset in the zone << 32 | the upstream's length << 16 | the
/// peer's length (the peer's name follows the upstream's).
fn names_word(offset: usize, upstream_len: usize, peer_len: usize) -> u64 {
    (offset as u64) << 32 | (upstream_len as u64) << 16 | peer_len as u64
}

/// A names word's (offset, upstream's length, peer's length): [`names_word`] undone.
#[inline]
fn names_parts(w: u64) -> (usize, usize, usize) {
    (
        (w >> 32) as usize,
        ((w >> 16) & 0xffff) as usize,
        (w & 0xffff) as usize,
    )
}

impl Slot {
    /// (upstream, peer), both read through one load of the names word.
    #[inline]
    pub fn names(&self) -> (&[u8], &[u8]) {
        let w = self.names.load(Ordering::Acquire);
        let (off, ul, pl) = names_parts(w);
        let Some(sh) = shared() else {
            return (&[], &[]);
        };
        // SAFETY: names are written before their word is published, in the zone, and never
        // freed: an entry reused rewrites them in place or gets new ones, so bytes read
        // through an old word are the zone's, perhaps another peer's names (a lookup then
        // misses, or matches only with the hash of the names it looks for).
        unsafe {
            let p = (sh.pool as *const u8).add(off);
            (
                core::slice::from_raw_parts(p, ul),
                core::slice::from_raw_parts(p.add(ul), pl),
            )
        }
    }

    fn peer(&self) -> &[u8] {
        self.names().1
    }

    /// An upstream resolved at run time.
    pub fn dynamic(&self) -> bool {
        self.dynamic.load(Ordering::Relaxed)
    }

    /// Back to new, for other names: every counter zero.
    fn reset(&self) {
        for a in self.by_cause.iter().chain(&self.responses).chain([
            &self.seen,
            &self.last_info,
            &self.last_time_ms,
            &self.requests,
        ]) {
            a.store(0, Ordering::Relaxed);
        }
        self.windows.reset();
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
        self.active_ms.store(now_ms(), Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if (100..600).contains(&status) {
            self.responses[status as usize / 100 - 1].fetch_add(1, Ordering::Relaxed);
        }
        self.windows.request(ngx_time() as u64, times);
    }

    /// One failed try (or a failure before any peer, on the upstream's own slot). `tried`:
    /// the try was sent to this peer (one of its requests, with no response).
    fn failure(&self, cause: Cause, tried: bool, now_ms: u64) {
        self.active_ms.store(now_ms, Ordering::Relaxed);
        let secs = now_ms / 1000;
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

/// The zone of the configuration nginx runs: set by `init_module`, once nginx has committed
/// to a configuration, never by `init_zone`. A reload that fails after its zones were made
/// (a `listen` that cannot bind comes later) unmaps a zone it made anew (a changed size) and
/// keeps the old configuration running; the master's workers, started later by fork, must
/// not inherit the address of the unmapped zone.
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
            // init_module sets the configuration's (a reload that fails sets nothing)
            idle_ms: AtomicU64::new(0),
            no_reuse_until: AtomicU64::new(0),
            reuse_logged: AtomicBool::new(false),
            reused: AtomicU64::new(0),
        },
    );
    (*pool).data = sh as *mut c_void;
    (*zone).data = sh as *mut c_void;
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
        // SAFETY: published slots are fully written before their pointer is stored, never
        // freed (a reused one is taken out of the index first, then renamed).
        unsafe {
            shm_index::find(self.index(), h, |s| {
                s.hash.load(Ordering::Acquire) == h && s.names() == (upstream, peer)
            })
        }
    }

    /// Find or insert the slot of (upstream, peer). A run-time upstream past the share of
    /// run-time upstreams takes the entry of one idle long enough ([`Shared::reuse_locked`]),
    /// else gets the slot of [`OTHER_RUN_TIME`].
    pub fn slot(&self, upstream: &[u8], peer: &[u8], dynamic: bool) -> Option<&Slot> {
        let h = hash(upstream, peer);
        if let Ok(s) = self.find(h, upstream, peer) {
            if s.dynamic() != dynamic {
                self.retype(s, upstream, peer, dynamic);
            }
            return Some(s);
        }
        if dynamic && self.run_time_full() && !self.may_reuse(now_ms()) {
            // once made, found without the lock
            if let Ok(s) = self.find(hash(OTHER_RUN_TIME, b""), OTHER_RUN_TIME, b"") {
                return Some(s);
            }
        }
        // SAFETY: the slab pool and its mutex live in this zone.
        unsafe {
            ngx_shmtx_lock(&mut (*self.pool).mutex);
            let r = self.slot_locked(h, upstream, peer, dynamic);
            ngx_shmtx_unlock(&mut (*self.pool).mutex);
            r
        }
    }

    /// The entry of (upstream, peer) is looked up as the other kind: a reload turned a literal
    /// `proxy_pass` into one with a variable (which nginx resolves at run time), or back. It
    /// becomes what the running configuration says, so that the status lists it (configured
    /// upstreams from the configuration, run-time ones from the zone): a configured entry
    /// becomes a run-time one once no configuration names it, a run-time one becomes
    /// configured when a configuration names it.
    #[cold]
    fn retype(&self, s: &Slot, upstream: &[u8], peer: &[u8], dynamic: bool) {
        // SAFETY: the slab pool and its mutex live in this zone.
        unsafe { ngx_shmtx_lock(&mut (*self.pool).mutex) };
        let named = s.seen.load(Ordering::Relaxed) == self.generation.load(Ordering::Relaxed);
        if s.dynamic() != dynamic && s.names() == (upstream, peer) && !(dynamic && named) {
            s.dynamic.store(dynamic, Ordering::Relaxed);
            if dynamic {
                self.run_time_slots.fetch_add(1, Ordering::Relaxed);
            } else {
                self.run_time_slots.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // SAFETY: as above; locked just before.
        unsafe { ngx_shmtx_unlock(&mut (*self.pool).mutex) };
    }

    /// [`Shared::slot`] under the zone's mutex.
    unsafe fn slot_locked(
        &self,
        h: u64,
        upstream: &[u8],
        peer: &[u8],
        dynamic: bool,
    ) -> Option<&Slot> {
        if dynamic && self.run_time_full() {
            if let Ok(s) = self.find(h, upstream, peer) {
                return Some(s);
            }
            if let Some(s) = self.reuse_locked(h, upstream, peer, true, true) {
                return Some(s);
            }
            self.log_run_time_full();
            return self.insert_locked(hash(OTHER_RUN_TIME, b""), OTHER_RUN_TIME, b"", true, false);
        }
        self.insert_locked(h, upstream, peer, dynamic, true)
    }

    /// The slot of (upstream, peer): found, else a new one if the index and the slab have
    /// room, else (`reuse`) the entry of one no configuration names, idle long enough.
    unsafe fn insert_locked(
        &self,
        h: u64,
        upstream: &[u8],
        peer: &[u8],
        dynamic: bool,
        reuse: bool,
    ) -> Option<&Slot> {
        let at = match self.find(h, upstream, peer) {
            Ok(s) => return Some(s),
            Err(at) => at,
        };
        let room = at != usize::MAX && self.slots.load(Ordering::Relaxed) < self.cap / 4 * 3;
        let s = room
            .then(|| self.new_locked(at, h, upstream, peer, dynamic))
            .flatten()
            .or_else(|| {
                reuse
                    .then(|| self.reuse_locked(h, upstream, peer, dynamic, false))
                    .flatten()
            });
        if s.is_none() {
            self.log_full();
        }
        s
    }

    /// `len` bytes for a slot's names (never freed, as slots are not).
    ///
    /// # Safety
    /// The zone's mutex must be held.
    unsafe fn names_locked(&self, len: usize) -> *mut u8 {
        let len = names_room(len);
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

    /// Copy (upstream, peer) into new name bytes; their names word.
    ///
    /// # Safety
    /// The zone's mutex must be held.
    unsafe fn write_names_locked(&self, upstream: &[u8], peer: &[u8]) -> Option<u64> {
        if upstream.len() > 0xffff || peer.len() > 0xffff {
            return None;
        }
        let names = self.names_locked(upstream.len() + peer.len());
        if names.is_null() {
            return None;
        }
        Some(self.copy_names(names, upstream, peer))
    }

    /// Copy (upstream, peer) to `at`, in the zone; their names word.
    ///
    /// # Safety
    /// `at` has room for both, under the zone's mutex.
    unsafe fn copy_names(&self, at: *mut u8, upstream: &[u8], peer: &[u8]) -> u64 {
        ptr::copy_nonoverlapping(upstream.as_ptr(), at, upstream.len());
        ptr::copy_nonoverlapping(peer.as_ptr(), at.add(upstream.len()), peer.len());
        names_word(at as usize - self.pool as usize, upstream.len(), peer.len())
    }

    fn run_time_full(&self) -> bool {
        self.run_time_slots.load(Ordering::Relaxed) >= self.run_time_cap
    }

    /// A new slot at index entry `at` (free); None when the slab has no room.
    ///
    /// # Safety
    /// The zone's mutex must be held.
    unsafe fn new_locked(
        &self,
        at: usize,
        h: u64,
        upstream: &[u8],
        peer: &[u8],
        dynamic: bool,
    ) -> Option<&Slot> {
        // The block cursors are only moved under the zone's mutex (held here).
        if self.block_left.load(Ordering::Relaxed) == 0 {
            let b = ngx_slab_calloc_locked(self.pool, BLOCK * mem::size_of::<Slot>()) as *mut Slot;
            if b.is_null() {
                return None;
            }
            self.block.store(b, Ordering::Relaxed);
            self.block_left.store(BLOCK, Ordering::Relaxed);
        }
        let word = self.write_names_locked(upstream, peer)?;
        let s = self.block.load(Ordering::Relaxed);
        self.block.store(s.add(1), Ordering::Relaxed);
        self.block_left.fetch_sub(1, Ordering::Relaxed);
        // calloc'ed: every atomic starts at zero; a new entry counts as active when made (the
        // status makes entries for peers before their first try)
        let s = &*s;
        s.active_ms.store(now_ms(), Ordering::Relaxed);
        s.hash.store(h, Ordering::Relaxed);
        s.names.store(word, Ordering::Relaxed);
        s.dynamic.store(dynamic, Ordering::Relaxed);
        self.index()[at].store(s as *const Slot as *mut Slot, Ordering::Release);
        self.slots.fetch_add(1, Ordering::Relaxed);
        if dynamic {
            self.run_time_slots.fetch_add(1, Ordering::Relaxed);
        }
        Some(s)
    }

    /// Whether an entry may be reused at `now`: `idle=` is on, and the last look did not
    /// find none less than a second ago.
    fn may_reuse(&self, now: u64) -> bool {
        self.idle_ms.load(Ordering::Relaxed) != 0
            && now >= self.no_reuse_until.load(Ordering::Relaxed)
    }

    /// Reuse for (upstream, peer) the entry idle longest among those that no configuration
    /// names (`seen` is not the current generation) and that have been idle for `idle=`;
    /// only run-time upstreams' entries when `only_run_time`. The entry leaves the index, is
    /// emptied and renamed, then enters the index under its new names. A worker that found
    /// it just before may still count one try into it: an entry idle that long makes that
    /// rare, and the windows are estimates anyway.
    ///
    /// # Safety
    /// The zone's mutex must be held; (upstream, peer) is not in the index.
    unsafe fn reuse_locked(
        &self,
        h: u64,
        upstream: &[u8],
        peer: &[u8],
        dynamic: bool,
        only_run_time: bool,
    ) -> Option<&Slot> {
        let now = now_ms();
        if !self.may_reuse(now) {
            return None;
        }
        let idle = self.idle_ms.load(Ordering::Relaxed);
        let gen = self.generation.load(Ordering::Relaxed);
        let mut best: Option<(usize, &Slot, u64)> = None;
        let (mut empty, mut tombstones) = (0, 0);
        for (i, e) in self.index().iter().enumerate() {
            let p = e.load(Ordering::Acquire);
            if !shm_index::live(p) {
                if p.is_null() {
                    empty += 1;
                } else {
                    tombstones += 1;
                }
                continue;
            }
            let s = &*p;
            let active = s.active_ms.load(Ordering::Relaxed);
            if s.seen.load(Ordering::Relaxed) == gen
                || (only_run_time && !s.dynamic())
                || now.saturating_sub(active) < idle
                || s.names() == (OTHER_RUN_TIME, b"".as_slice())
                || best.is_some_and(|(_, _, a)| a <= active)
            {
                continue;
            }
            best = Some((i, s, active));
        }
        let Some((i, s, _)) = best else {
            self.no_reuse_until.store(now + 1000, Ordering::Relaxed);
            return None;
        };
        // The new names go in the room of the old ones when they fit (the same upstream, an
        // address about as long), else in new bytes; the old ones are then left as they are.
        let (off, old_ul, old_pl) = names_parts(s.names.load(Ordering::Relaxed));
        let in_place = upstream.len() <= 0xffff
            && peer.len() <= 0xffff
            && names_room(upstream.len() + peer.len()) <= names_room(old_ul + old_pl);
        let fresh = if in_place {
            None
        } else {
            Some(self.write_names_locked(upstream, peer)?)
        };
        let was_dynamic = s.dynamic();
        self.index()[i].store(shm_index::tombstone(), Ordering::Release);
        // Out of the index first: a worker that still reads the old names word compares
        // bytes being rewritten; it may miss, and it can only take this entry for a peer
        // whose hash it has (see `find`).
        let word = match fresh {
            Some(w) => w,
            None => self.copy_names((self.pool as *mut u8).add(off), upstream, peer),
        };
        s.reset();
        s.active_ms.store(now, Ordering::Relaxed);
        s.dynamic.store(dynamic, Ordering::Relaxed);
        s.hash.store(h, Ordering::Relaxed);
        s.names.store(word, Ordering::Release);
        // after the names: a cache that read this incarnation reads the new names too
        s.incarnation.fetch_add(1, Ordering::AcqRel);
        // the first free entry on the new names' way (the one just freed at the latest)
        let at = match self.find(h, upstream, peer) {
            Err(at) if at != usize::MAX => at,
            _ => i,
        };
        // the entry given up is a tombstone now; the one taken was empty, or one of them
        if self.index()[at].load(Ordering::Relaxed).is_null() {
            empty -= 1;
            tombstones += 1;
        }
        self.index()[at].store(s as *const Slot as *mut Slot, Ordering::Release);
        if shm_index::needs_rebuild(empty, tombstones) {
            // the scan above was as long: rare, and no longer than a reuse
            shm_index::rebuild(self.index(), |s| s.hash.load(Ordering::Relaxed));
        }
        match (was_dynamic, dynamic) {
            (true, false) => self.run_time_slots.fetch_sub(1, Ordering::Relaxed),
            (false, true) => self.run_time_slots.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        self.reused.fetch_add(1, Ordering::Relaxed);
        self.log_reuse();
        Some(s)
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

    fn log_reuse(&self) {
        log_once(&self.reuse_logged, NGX_LOG_NOTICE as ngx_uint_t, || {
            format!(
                "triage: zone \"triage\" ({} entries) or its run-time upstreams' share is full: entries that no configuration names and that have been idle for {} s are reused for new peers, their counters dropped (raise triage_zone to keep them)",
                self.slots.load(Ordering::Relaxed),
                self.idle_ms.load(Ordering::Relaxed) / 1000
            )
        });
    }

    fn log_full(&self) {
        log_once(&self.full_logged, NGX_LOG_ALERT as ngx_uint_t, || {
            format!(
                "triage: zone \"triage\" is full ({} peers), new peers are not counted: raise triage_zone",
                self.slots.load(Ordering::Relaxed)
            )
        });
    }

    /// How full the zone is, for the status.
    pub fn usage(&self) -> ZoneSnap {
        ZoneSnap {
            name: "triage",
            // SAFETY: the pool header is at the start of the zone, `end` at its end.
            size: unsafe { (*self.pool).end as u64 - self.pool as u64 },
            entries: self.slots.load(Ordering::Relaxed) as u64,
            reused: self.reused.load(Ordering::Relaxed),
            full: self.full_logged.load(Ordering::Relaxed),
        }
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
            shm_index::live(p).then(|| unsafe { &*p })
        })
    }
}

/// Log `message` at `level` unless `logged` says it was (by any process of the zone).
pub(crate) fn log_once(logged: &AtomicBool, level: ngx_uint_t, message: impl FnOnce() -> String) {
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
        s.failure(cause, tried, now);
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
/// in a shared zone (where `server ... resolve` can free and reuse them), and an entry's
/// incarnation always (the zone may have reused it for other names).
struct SlotCache(core::cell::UnsafeCell<[(usize, usize, usize, u64); 256]>);

// SAFETY: an nginx worker runs its event loop, and so every use of this cache, on one thread.
unsafe impl Sync for SlotCache {}

static CACHE: SlotCache = SlotCache(core::cell::UnsafeCell::new([(0, 0, 0, 0); 256]));

/// The slot of (`upstream`, `peer`), through the per-worker cache when the names live in
/// the configuration (not `dynamic`). `verify`: compare the peer's name too (its memory may
/// have been reused).
#[inline]
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
        if s.incarnation.load(Ordering::Acquire) == e.3 && (!verify || s.peer() == peer) {
            return Some(s);
        }
    }
    let s = sh.slot(upstream, peer, false)?;
    // cached with an incarnation that had these names (not one reused meanwhile)
    let incarnation = s.incarnation.load(Ordering::Acquire);
    if s.names() == (upstream, peer) {
        *e = (u, p, s as *const Slot as usize, incarnation);
    }
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
    // nginx has committed to this configuration: its zone is the one to count in (see SHARED).
    let mcf = Module::main_conf(&*cycle);
    let zone = mcf.map_or(ptr::null_mut(), |m| m.zone);
    let sh = if zone.is_null() {
        ptr::null_mut()
    } else {
        (*zone).data as *mut Shared
    };
    SHARED.store(sh, Ordering::Release);
    let (Some(sh), Some(mcf)) = (shared(), mcf) else {
        return NGX_OK as ngx_int_t;
    };
    // unlike recent=, idle= takes effect at once, also on a zone kept across the reload
    sh.idle_ms.store(mcf.idle_ms, Ordering::Relaxed);
    sh.no_reuse_until.store(0, Ordering::Relaxed);
    let gen = sh.generation.load(Ordering::Relaxed) + 1;
    sh.load_time_ms.store(now_ms(), Ordering::Relaxed);
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(&*cycle) else {
        sh.generation.store(gen, Ordering::Relaxed);
        return NGX_OK as ngx_int_t;
    };
    let mut names = Vec::new();
    for &uscf in upstreams::all(umcf) {
        let name = upstreams::display_name(uscf);
        let peers = upstreams::peers(uscf);
        names.push((name.clone(), Vec::new()));
        names.extend(peers.into_iter().map(|p| (name.clone(), p.name)));
    }
    // The entries this configuration names are marked first, then the generation moves on:
    // a full zone then reuses entries of the peers it no longer names, never of those it
    // names but has not registered yet.
    for (up, peer) in &names {
        if let Ok(s) = sh.find(hash(up, peer), up, peer) {
            s.seen.store(gen, Ordering::Relaxed);
        }
    }
    sh.generation.store(gen, Ordering::Relaxed);
    for (up, peer) in &names {
        if let Some(s) = sh.slot(up, peer, false) {
            s.seen.store(gen, Ordering::Relaxed);
        }
    }
    NGX_OK as ngx_int_t
}
