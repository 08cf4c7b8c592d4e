//! The per-request record: every failed try of the request, and what the wrappers saved.
//!
//! It lives in the request pool, reachable from `r->ctx` and, after an internal redirect
//! (which zeroes `r->ctx`, e.g. `error_page 502 = @fallback`), from the pool cleanup that
//! owns it — the way nginx's realip module finds its context again.

use core::ffi::c_void;
use core::{mem, ptr};

use ngx::ffi::*;
use ngx::http::HttpModule;

use crate::cause::{Cause, LogLine, Phase};
use crate::logtap::Tap;
use crate::module::Module;

/// Tries kept per request (`proxy_next_upstream_tries` is rarely above a handful).
pub const MAX_TRIES: usize = 16;

#[derive(Clone, Copy)]
pub struct Try {
    pub cause: Cause,
    pub phase: Phase,
    pub errno: Option<i32>,
    pub peer: ngx_str_t,
}

/// The originals a wrapper delegates to.
#[derive(Clone, Copy)]
pub struct Saved {
    pub data: *mut c_void,
    pub get: ngx_event_get_peer_pt,
    pub free: ngx_event_free_peer_pt,
    pub set_session: ngx_event_set_peer_session_pt,
    pub save_session: ngx_event_save_peer_session_pt,
    pub finalize: Option<unsafe extern "C" fn(*mut ngx_http_request_t, ngx_int_t)>,
}

impl Saved {
    pub const NONE: Saved = Saved {
        data: ptr::null_mut(),
        get: None,
        free: None,
        set_session: None,
        save_session: None,
        finalize: None,
    };
}

pub struct Ctx {
    pub r: *mut ngx_http_request_t,
    /// Counters key: the upstream's display name (memory owned by the main conf or the pool).
    pub upstream: ngx_str_t,
    /// The upstream is not in the configuration (resolved at run time).
    pub dynamic: bool,
    /// Allocated from the request pool on the first failed try (most requests have none).
    tries: *mut [Try; MAX_TRIES],
    ntries: usize,
    /// Every failed try, including those beyond MAX_TRIES.
    pub total_tries: usize,
    /// The response was decided by the last recorded try (it was not followed by a success).
    pub decided: bool,
    /// The current try already failed (free(NGX_PEER_FAILED) seen since the last get()).
    pub attempt_failed: bool,
    /// What the error log said since the current try began.
    pub log: LogLine,
    pub saved: Option<Saved>,
    pub tap: Tap,
}

impl Ctx {
    fn tries_slice(&self) -> &[Try] {
        if self.tries.is_null() {
            return &[];
        }
        // SAFETY: allocated in push(); the first ntries entries are initialised.
        unsafe { core::slice::from_raw_parts(self.tries as *const Try, self.ntries) }
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

    pub fn push(&mut self, t: Try) {
        self.total_tries += 1;
        if self.tries.is_null() {
            // SAFETY: r is the live request owning this record.
            let p = unsafe {
                ngx_palloc((*self.r).pool, mem::size_of::<[Try; MAX_TRIES]>())
                    as *mut [Try; MAX_TRIES]
            };
            if p.is_null() {
                return;
            }
            self.tries = p;
        }
        // Keep the first tries and the latest one.
        let i = self.ntries.min(MAX_TRIES - 1);
        // SAFETY: allocated above with room for MAX_TRIES entries; i < MAX_TRIES.
        unsafe { (self.tries as *mut Try).add(i).write(t) };
        self.ntries = i + 1;
    }
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    // SAFETY: data is the Ctx this cleanup was registered with; the pool is being destroyed,
    // the connection (and its log) still exists.
    let ctx = data as *mut Ctx;
    crate::logtap::remove(ctx, true);
    ptr::drop_in_place(ctx);
}

fn ctx_index() -> usize {
    Module::module().ctx_index
}

/// The record of `r`, if it has one (also after an internal redirect).
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn get(r: *mut ngx_http_request_t) -> Option<*mut Ctx> {
    let p = *(*r).ctx.add(ctx_index()) as *mut Ctx;
    if !p.is_null() {
        return Some(p);
    }
    let mut cln = (*(*r).pool).cleanup;
    while !cln.is_null() {
        if (*cln)
            .handler
            .is_some_and(|h| ptr::fn_addr_eq(h, cleanup as unsafe extern "C" fn(*mut c_void)))
        {
            let c = (*cln).data as *mut Ctx;
            if (*c).r == r {
                *(*r).ctx.add(ctx_index()) = c as *mut c_void;
                return Some(c);
            }
        }
        cln = (*cln).next;
    }
    None
}

/// The record of `r`, created on first use.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn get_or_create(r: *mut ngx_http_request_t) -> Option<*mut Ctx> {
    if let Some(c) = get(r) {
        return Some(c);
    }
    create(r)
}

/// A record for `r` unless `r->ctx` already holds one. After an internal redirect (which
/// zeroes `r->ctx`) the new location gets a record of its own.
///
/// # Safety
/// `r` must be a valid request.
pub unsafe fn current_or_create(r: *mut ngx_http_request_t) -> Option<*mut Ctx> {
    let p = *(*r).ctx.add(ctx_index()) as *mut Ctx;
    if !p.is_null() {
        return Some(p);
    }
    create(r)
}

unsafe fn create(r: *mut ngx_http_request_t) -> Option<*mut Ctx> {
    let cln = ngx_pool_cleanup_add((*r).pool, mem::size_of::<Ctx>());
    if cln.is_null() {
        return None;
    }
    let c = (*cln).data as *mut Ctx;
    ptr::write(
        c,
        Ctx {
            r,
            upstream: ngx_str_t::empty(),
            dynamic: false,
            tries: ptr::null_mut(),
            ntries: 0,
            total_tries: 0,
            decided: false,
            attempt_failed: false,
            log: LogLine::default(),
            saved: None,
            tap: Tap::default(),
        },
    );
    (*cln).handler = Some(cleanup);
    *(*r).ctx.add(ctx_index()) = c as *mut c_void;
    Some(c)
}
