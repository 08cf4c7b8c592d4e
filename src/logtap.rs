//! A tap on the request's connection log, to learn the errno of a failure.
//!
//! nginx logs "connect() failed (111: Connection refused)" and then moves on; for an
//! asynchronous connect the errno is nowhere else. While a request talks to its upstream, the
//! connection log's `writer` is ours: it reads each line (pure parser in `cause`) and forwards
//! it unchanged to where it was going (the previous writer, or the log file). Removed at
//! finalize, with a pool cleanup as the safety net. It sees lines only when the location's
//! `error_log` level lets them through (`error` or more verbose: nginx's default).

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;

use crate::cause::parse_log_line;
use crate::ctx::Ctx;

#[derive(Clone, Copy)]
pub struct Tap {
    log: *mut ngx_log_t,
    writer: ngx_log_writer_pt,
    wdata: *mut c_void,
}

impl Default for Tap {
    fn default() -> Self {
        Tap {
            log: ptr::null_mut(),
            writer: None,
            wdata: ptr::null_mut(),
        }
    }
}

/// Start tapping `ctx.r`'s connection log.
///
/// # Safety
/// `ctx` must be a live record of a live request.
pub unsafe fn install(ctx: *mut Ctx) {
    let c = &mut *ctx;
    if !c.tap.log.is_null() {
        return;
    }
    let log = (*(*c.r).connection).log;
    if log.is_null() {
        return;
    }
    c.tap = Tap {
        log,
        writer: (*log).writer,
        wdata: (*log).wdata,
    };
    (*log).writer = Some(writer);
    (*log).wdata = ctx as *mut c_void;
}

/// Stop tapping. `always`: from the pool cleanup, also when an inner tap was removed out of
/// order and left ours in place.
///
/// # Safety
/// `ctx` must be a live record.
pub unsafe fn remove(ctx: *mut Ctx, always: bool) {
    let c = &mut *ctx;
    let log = c.tap.log;
    if log.is_null() && !always {
        return;
    }
    if !log.is_null()
        && (*log)
            .writer
            .is_some_and(|w| ptr::fn_addr_eq(w, writer as Writer))
        && (*log).wdata == ctx as *mut c_void
    {
        (*log).writer = c.tap.writer;
        (*log).wdata = c.tap.wdata;
    }
    c.tap.log = ptr::null_mut();
}

type Writer = unsafe extern "C" fn(*mut ngx_log_t, ngx_uint_t, *mut u_char, usize);

unsafe extern "C" fn writer(log: *mut ngx_log_t, level: ngx_uint_t, buf: *mut u_char, len: usize) {
    // SAFETY: nginx calls the writer with the log we installed it on and a valid buffer; wdata
    // is our live Ctx (the tap is removed before the pool that holds it goes away).
    let ctx = &mut *((*log).wdata as *mut Ctx);
    let line = core::slice::from_raw_parts(buf, len);
    let seen = parse_log_line(line);
    if seen.errno.is_some() {
        ctx.log.errno = seen.errno;
    }
    ctx.log.out_of_connections |= seen.out_of_connections;

    // Forward unchanged.
    match ctx.tap.writer {
        Some(w) => {
            let ours = (*log).wdata;
            (*log).wdata = ctx.tap.wdata;
            w(log, level, buf, len);
            (*log).wdata = ours;
        }
        None => {
            // What ngx_log_error_core does for a file log.
            if (*log).file.is_null() || ngx_time() == (*log).disk_full_time {
                return;
            }
            let n = libc::write((*(*log).file).fd, buf as *const c_void, len);
            if n == -1 && ngx_errno() == libc::ENOSPC {
                (*log).disk_full_time = ngx_time();
            }
        }
    }
}
