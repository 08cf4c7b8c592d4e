//! The request's record of failed tries: what the `$triage_*` variables read.
//!
//! Created on the first failed try only (most requests have none), in the request pool,
//! owned by a pool cleanup. `r->ctx` is not used for it: an internal redirect (e.g.
//! `error_page 502 = @fallback`) zeroes `r->ctx`, and the variables are read after it. The
//! record is found again by its cleanup, the way nginx's realip module finds its context.

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::{mem, ptr};

use ngx::ffi::*;

use crate::cause::{Cause, Detail, Pass, Phase};

/// Tries kept per request (`proxy_next_upstream_tries` is rarely above a handful).
pub const MAX_TRIES: usize = 16;

#[derive(Clone, Copy)]
pub struct Try {
    pub cause: Cause,
    pub phase: Phase,
    pub errno: Option<i32>,
    pub peer: ngx_str_t,
    /// The upstream module it went through (the directives its hint names). One byte, in
    /// what would be padding: the record stays small enough for the request pool's first
    /// block (a `u->schema` kept here instead cost every failed request a new pool block).
    pub pass: Pass,
    /// What else says why it failed (`Verdict::detail`). One byte of padding too.
    pub detail: Detail,
}

// The one-byte fields of a try share the padding after errno and peer: the record keeps
// fitting the request pool's first block.
const _: () = assert!(mem::size_of::<Try>() == 32);

pub struct Record {
    r: *mut ngx_http_request_t,
    tries: [mem::MaybeUninit<Try>; MAX_TRIES],
    ntries: usize,
    /// Every failed try, including those beyond MAX_TRIES.
    pub total_tries: usize,
    /// The response was decided by the last recorded try (it was not followed by a success).
    pub decided: bool,
    /// `r->uri_changes` when `decided` was last set: it drops with every internal redirect,
    /// so a response sent later in another location (`error_page`) is told apart.
    pub uri_changes: u32,
}

impl Record {
    fn tries_slice(&self) -> &[Try] {
        // SAFETY: the first ntries entries are initialised (push).
        unsafe { core::slice::from_raw_parts(self.tries.as_ptr() as *const Try, self.ntries) }
    }

    pub fn tries(&self) -> impl Iterator<Item = &Try> {
        self.tries_slice().iter()
    }

    pub fn last(&self) -> Option<&Try> {
        self.tries_slice().last()
    }

    /// The try that decided the response, if a failure did.
    pub fn deciding(&self) -> Option<&Try> {
        if self.decided {
            self.last()
        } else {
            None
        }
    }

    /// Set whether the last try decided the response, as `r` stands now.
    ///
    /// # Safety
    /// `r` must be the record's request.
    pub unsafe fn decide(&mut self, r: *const ngx_http_request_t, decided: bool) {
        self.decided = decided;
        self.uri_changes = (*r).uri_changes();
    }

    pub fn push(&mut self, t: Try) {
        self.total_tries += 1;
        // Keep the first tries and the latest one.
        let i = self.ntries.min(MAX_TRIES - 1);
        self.tries[i] = mem::MaybeUninit::new(t);
        self.ntries = i + 1;
    }
}

/// Records alive in this worker: while there are none (no request of the worker has failed
/// lately), nobody needs to look for one.
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// A request of this worker may have a record.
pub fn any() -> bool {
    ALIVE.load(Ordering::Relaxed) != 0
}

/// Marks the pool cleanup that owns a record; the pool frees the memory.
unsafe extern "C" fn owner(_data: *mut c_void) {
    ALIVE.fetch_sub(1, Ordering::Relaxed);
}

/// The one address of [`owner`] that is stored and compared. Rust may give a small function a
/// copy in every codegen unit (release builds did: three copies of `owner`), so `owner as fn`
/// taken in two places can differ; a value read from one static cannot.
static OWNER: unsafe extern "C" fn(*mut c_void) = owner;

/// The record of `r`, if a try of it failed (also after an internal redirect).
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn get(r: *mut ngx_http_request_t) -> Option<*mut Record> {
    let mut cln = (*(*r).pool).cleanup;
    while !cln.is_null() {
        if (*cln).handler.is_some_and(|h| ptr::fn_addr_eq(h, OWNER)) {
            let rec = (*cln).data as *mut Record;
            if (*rec).r == r {
                return Some(rec);
            }
        }
        cln = (*cln).next;
    }
    None
}

/// The record of `r`, created on first use; None when out of memory.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn get_or_create(r: *mut ngx_http_request_t) -> Option<*mut Record> {
    if let Some(rec) = any().then(|| get(r)).flatten() {
        return Some(rec);
    }
    let cln = ngx_pool_cleanup_add((*r).pool, mem::size_of::<Record>());
    if cln.is_null() {
        return None;
    }
    let rec = (*cln).data as *mut Record;
    // Field by field: the tries stay uninitialised (a whole `Record` written at once would be
    // built on the stack and copied, all 16 tries of it).
    ptr::addr_of_mut!((*rec).r).write(r);
    ptr::addr_of_mut!((*rec).ntries).write(0);
    ptr::addr_of_mut!((*rec).total_tries).write(0);
    ptr::addr_of_mut!((*rec).decided).write(false);
    ptr::addr_of_mut!((*rec).uri_changes).write(0);
    (*cln).handler = Some(OWNER);
    ALIVE.fetch_add(1, Ordering::Relaxed);
    Some(rec)
}
