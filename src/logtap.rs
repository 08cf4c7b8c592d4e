//! A tap on the request's connection log, to learn the errno of a failure.
//!
//! nginx logs "connect() failed (111: Connection refused)" and then moves on; for an
//! asynchronous connect the errno is nowhere else. While a request talks to its upstream, the
//! connection log's `writer` is ours: it reads each line (pure parser in `cause`) and forwards
//! it unchanged to where it was going (the previous writer, or the log file). Removed when the
//! upstream finalizes (nginx always finalizes an upstream it started, also when the client
//! goes away: the upstream's request cleanup does it). It sees lines only when the location's
//! `error_log` level lets them through (`error` or more verbose: nginx's default).

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;

use crate::cause::parse_log_line;
use crate::watch::Watch;

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

/// Start tapping `w.r`'s connection log (once per watch: its tap is empty when taken).
///
/// # Safety
/// `w` must be a watch in use by a live request.
pub unsafe fn install(ctx: *mut Watch) {
    let c = &mut *ctx;
    let log = (*(*c.r).connection).log;
    if log.is_null() {
        return;
    }
    c.tap = Tap {
        log,
        writer: (*log).writer,
        wdata: (*log).wdata,
    };
    (*log).writer = Some(WRITER);
    (*log).wdata = ctx as *mut c_void;
}

/// Stop tapping. Taps of requests sharing a connection (a subrequest's upstream, a mirror)
/// form a chain through `log.writer`/`wdata`; `w` is unlinked wherever it is in it.
///
/// # Safety
/// `w` must be a watch in use.
pub unsafe fn remove(w: *mut Watch) {
    let tap = (*w).tap;
    if tap.log.is_null() {
        return;
    }
    (*w).tap.log = ptr::null_mut();
    let mut link: (*mut ngx_log_writer_pt, *mut *mut c_void) =
        (&mut (*tap.log).writer, &mut (*tap.log).wdata);
    while (*link.0).is_some_and(|f| ptr::fn_addr_eq(f, WRITER)) {
        if *link.1 == w as *mut c_void {
            *link.0 = tap.writer;
            *link.1 = tap.wdata;
            return;
        }
        let later = *link.1 as *mut Watch;
        link = (&mut (*later).tap.writer, &mut (*later).tap.wdata);
    }
}

type Writer = unsafe extern "C" fn(*mut ngx_log_t, ngx_uint_t, *mut u_char, usize);

/// The one address of [`writer`] that is installed and compared (see `peer::INIT_PEER`).
static WRITER: Writer = writer;

unsafe extern "C" fn writer(log: *mut ngx_log_t, level: ngx_uint_t, buf: *mut u_char, len: usize) {
    // SAFETY: nginx calls the writer with the log we installed it on and a valid buffer; wdata
    // is a watch in use (a tap is unlinked before its watch is given back).
    let ctx = &mut *((*log).wdata as *mut Watch);
    let line = core::slice::from_raw_parts(buf, len);
    let seen = parse_log_line(line);
    if seen.errno.is_some() {
        ctx.log.errno = seen.errno;
        ctx.log.file_error = seen.file_error;
    }
    ctx.log.out_of_connections |= seen.out_of_connections;
    // "upstream sent duplicate header line" and the like are warnings: only errors decide
    ctx.log.sent_invalid |= seen.sent_invalid && level <= NGX_LOG_ERR as ngx_uint_t;
    if seen.cert_verify.is_some() {
        ctx.log.cert_verify = seen.cert_verify;
    }
    if seen.tls_alert.is_some() {
        ctx.log.tls_alert = seen.tls_alert;
    }
    if ctx.pre {
        if seen.errno.is_some() && !seen.file_error {
            // A failure while the content handler runs, before we hooked its upstream.
            crate::run_time::early_failure(ctx);
        } else if seen.no_resolver {
            // nginx finalizes with 502 right after this line, inside the content handler.
            crate::run_time::no_resolver(ctx);
        }
    } else if ctx.dynamic && ctx.saved.is_none() {
        // A run-time upstream whose peers did not exist when we hooked it.
        crate::peer::peers_built(ctx);
    }

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
