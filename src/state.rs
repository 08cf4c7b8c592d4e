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
use ngx::http::{HttpModule, HttpModuleMainConf, NgxHttpUpstreamModule};
use ngx::ngx_log_error;

use crate::cause::{Cause, Phase};
use crate::conf::{MainConf, DEFAULT_ZONE_SIZE};
use crate::module::Module;
use crate::snapshot::LastFailure;
use crate::upstreams;

const MAGIC: u64 = 0x7472_6961_6765_0002;

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
    pool: *mut ngx_slab_pool_t,
}

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
    /// cause | phase << 8 | status << 16 | (errno + 1) << 32; 0 = none.
    last_info: AtomicU64,
    last_time_ms: AtomicU64,
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

    pub fn last_failure(&self) -> Option<LastFailure> {
        let info = self.last_info.load(Ordering::Acquire);
        if info == 0 {
            return None;
        }
        let errno = ((info >> 32) as u32) as i64 - 1;
        Some(LastFailure {
            cause: Cause::from_index((info & 0xff) as usize)?,
            phase: Phase::from_index(((info >> 8) & 0xff) as usize)?,
            status: ((info >> 16) & 0xffff) as u16,
            errno: (errno >= 0).then_some(errno as i32),
            time_ms: self.last_time_ms.load(Ordering::Relaxed),
        })
    }
}

static SHARED: AtomicPtr<Shared> = AtomicPtr::new(ptr::null_mut());
static ZONE_NAME: &[u8] = b"triage";

fn hash(upstream: &[u8], peer: &[u8]) -> u64 {
    // FNV-1a over "upstream \xff peer".
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in upstream.iter().chain(&[0xff]).chain(peer) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
    let mut name = ngx_str_t {
        len: ZONE_NAME.len(),
        data: ZONE_NAME.as_ptr() as *mut u8,
    };
    let zone = ngx_shared_memory_add(
        cf,
        &mut name,
        size,
        Module::module() as *const ngx_module_t as *mut c_void,
    );
    if zone.is_null() {
        return Status::NGX_ERROR;
    }
    (*zone).init = Some(init_zone);
    (*zone).data = ptr::null_mut();
    mcf.zone = zone;
    Status::NGX_OK
}

unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    let pool = (*zone).shm.addr as *mut ngx_slab_pool_t;
    // Reused across a reload (same name and size): keep everything.
    if !data.is_null() {
        (*zone).data = data;
        SHARED.store(data as *mut Shared, Ordering::Release);
        return NGX_OK as ngx_int_t;
    }
    if (*zone).shm.exists != 0 && !(*pool).data.is_null() {
        (*zone).data = (*pool).data;
        SHARED.store((*pool).data as *mut Shared, Ordering::Release);
        return NGX_OK as ngx_int_t;
    }
    let size = (*zone).shm.size;
    // One index entry per 256 bytes of zone, a power of two; filled to 3/4 at most.
    let cap = (size / 256).next_power_of_two().max(64);
    let sh = ngx_slab_calloc(pool, mem::size_of::<Shared>()) as *mut Shared;
    let index =
        ngx_slab_calloc(pool, cap * mem::size_of::<AtomicPtr<Slot>>()) as *mut AtomicPtr<Slot>;
    if sh.is_null() || index.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
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
            pool,
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
        let idx = self.index();
        let mask = self.cap - 1;
        let mut i = h as usize & mask;
        for _ in 0..self.cap {
            let p = idx[i].load(Ordering::Acquire);
            if p.is_null() {
                return Err(i);
            }
            // SAFETY: published slots are fully written before their pointer is stored.
            let s = unsafe { &*p };
            if s.hash == h && s.upstream() == upstream && s.peer() == peer {
                return Ok(s);
            }
            i = (i + 1) & mask;
        }
        Err(usize::MAX)
    }

    /// Find or insert the slot of (upstream, peer).
    pub fn slot(&self, upstream: &[u8], peer: &[u8], dynamic: bool) -> Option<&Slot> {
        let h = hash(upstream, peer);
        if let Ok(s) = self.find(h, upstream, peer) {
            return Some(s);
        }
        // SAFETY: the slab pool and its mutex live in this zone.
        unsafe {
            ngx_shmtx_lock(&mut (*self.pool).mutex);
            let r = self.insert_locked(h, upstream, peer, dynamic);
            ngx_shmtx_unlock(&mut (*self.pool).mutex);
            r
        }
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
        let s = ngx_slab_calloc_locked(self.pool, mem::size_of::<Slot>()) as *mut Slot;
        let names = ngx_slab_alloc_locked(self.pool, upstream.len() + peer.len() + 1) as *mut u8;
        if s.is_null() || names.is_null() {
            if !s.is_null() {
                ngx_slab_free_locked(self.pool, s as *mut c_void);
            }
            self.log_full();
            return None;
        }
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
        Some(&*s)
    }

    fn log_full(&self) {
        if !self.full_logged.swap(true, Ordering::Relaxed) {
            // SAFETY: the cycle log is valid in any nginx process.
            let log = unsafe { (*ngx_cycle).log };
            ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "triage: zone \"triage\" is full ({} peers), new peers are not counted: raise triage_zone",
                self.slots.load(Ordering::Relaxed)
            );
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
            (!p.is_null()).then(|| unsafe { &*p })
        })
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

/// Count one classified try.
#[allow(clippy::too_many_arguments)]
pub fn count(
    upstream: &[u8],
    peer: &[u8],
    dynamic: bool,
    cause: Cause,
    phase: Phase,
    errno: Option<i32>,
    status: u16,
) {
    let Some(sh) = shared() else { return };
    let Some(s) = sh.slot(upstream, peer, dynamic) else {
        return;
    };
    s.by_cause[cause.index()].fetch_add(1, Ordering::Relaxed);
    if cause.is_failure() {
        let e = errno.map_or(0u64, |e| (e as u32 as u64).wrapping_add(1) & 0xffff_ffff);
        let info = cause.index() as u64 | (phase as u64) << 8 | (status as u64) << 16 | e << 32;
        s.last_time_ms.store(now_ms(), Ordering::Relaxed);
        s.last_info.store(info, Ordering::Release);
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
