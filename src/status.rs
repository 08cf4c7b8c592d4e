//! The `triage_status` handler: read what the request asks for (`query`), snapshot the shared
//! counters (`collect`), render (`render`), send. Every response carries `Cache-Control:
//! no-store`; GET and HEAD only.

use core::ffi::c_void;
use core::ptr;
use std::time::Instant;

use ngx::ffi::*;
use ngx::http::HttpModule;

use crate::collect;
use crate::conf::LocConf;
use crate::module::Module;
use crate::query::{self, Format};
use crate::render::{self, html, json, prometheus, Selection};

/// Add a response header; `value` must live as long as the request.
///
/// # Safety
/// `r` must be a live request whose header is not sent yet.
pub unsafe fn add_header(
    r: *mut ngx_http_request_t,
    key: &'static [u8],
    value: &[u8],
) -> Option<*mut ngx_table_elt_t> {
    let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
    if h.is_null() {
        return None;
    }
    // Zeroed first: `next` (nginx >= 1.23) and `lowcase_key` must be NULL. Zeroing sets them
    // without naming `next`, a field nginx 1.22 (Debian bookworm) does not have.
    ptr::write_bytes(h, 0, 1);
    (*h).hash = 1;
    (*h).key = ngx_str_t {
        len: key.len(),
        data: key.as_ptr() as *mut u8,
    };
    (*h).value = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    Some(h)
}

/// A header whose value is copied into the request's pool.
///
/// # Safety
/// `r` must be a live request whose header is not sent yet.
unsafe fn add_header_copy(r: *mut ngx_http_request_t, key: &'static [u8], value: &[u8]) -> bool {
    let p = ngx_pnalloc((*r).pool, value.len()) as *mut u8;
    if p.is_null() {
        return false;
    }
    ptr::copy_nonoverlapping(value.as_ptr(), p, value.len());
    add_header(r, key, core::slice::from_raw_parts(p, value.len())).is_some()
}

/// Pool cleanup: frees a response body handed to nginx by `send`.
unsafe extern "C" fn drop_body(data: *mut c_void) {
    // SAFETY: `data` is the Box<Vec<u8>> leaked by `send`; the pool runs a cleanup once.
    drop(Box::from_raw(data as *mut Vec<u8>));
}

/// Send `body` as a complete response. The body is not copied: nginx sends it from the Vec,
/// which the request's pool frees (a status document can be megabytes).
///
/// # Safety
/// `r` must be a live request in its content phase.
pub unsafe fn send(
    r: *mut ngx_http_request_t,
    status: usize,
    content_type: &'static [u8],
    headers: &[Header],
    body: Vec<u8>,
) -> ngx_int_t {
    let rc = ngx_http_discard_request_body(r);
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    (*r).headers_out.status = status;
    (*r).headers_out.content_length_n = body.len() as off_t;
    (*r).headers_out.content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr() as *mut u8,
    };
    // the type without its parameters, which nginx's type lists (gzip_types...) compare
    (*r).headers_out.content_type_len = content_type
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(content_type.len());
    for &(k, v) in [(&b"Cache-Control"[..], &b"no-store"[..])]
        .iter()
        .chain(headers)
    {
        if add_header(r, k, v).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    }
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let b = ngx_pcalloc((*r).pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    if !body.is_empty() {
        let cln = ngx_pool_cleanup_add((*r).pool, 0);
        if cln.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // The Vec's heap buffer does not move when the Vec itself is boxed.
        let body = Box::new(body);
        let (p, len) = (body.as_ptr() as *mut u8, body.len());
        (*cln).handler = Some(drop_body);
        (*cln).data = Box::into_raw(body) as *mut c_void;
        (*b).pos = p;
        (*b).last = p.add(len);
        (*b).set_memory(1);
    }
    (*b).set_last_buf(if (*r).main == r { 1 } else { 0 });
    (*b).set_last_in_chain(1);
    let mut out = ngx_chain_t {
        buf: b,
        next: ptr::null_mut(),
    };
    ngx_http_output_filter(r, &mut out)
}

/// CPU time of this thread, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// The `Accept` header(s) of the request, joined with commas.
///
/// # Safety
/// `r` must be a live request.
unsafe fn accept(r: *mut ngx_http_request_t) -> String {
    let mut out = String::new();
    for (k, v) in ngx::http::list_iterator(&(*r).headers_in.headers) {
        if k.as_bytes().eq_ignore_ascii_case(b"accept") {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
    }
    out
}

/// A JSON error response.
///
/// # Safety
/// `r` must be a live request in its content phase.
unsafe fn error(r: *mut ngx_http_request_t, status: u32, body: Vec<u8>) -> ngx_int_t {
    let ct = Format::Json.content_type().as_bytes();
    send(r, status as usize, ct, &[NOSNIFF], body)
}

/// A response header, name and value.
type Header = (&'static [u8], &'static [u8]);

const NOSNIFF: Header = (b"X-Content-Type-Options", b"nosniff");

/// The content handler of a `triage_status` location.
///
/// # Safety
/// Called by nginx with a live request whose location has `triage_status`.
pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
        if add_header(r, b"Allow", b"GET, HEAD").is_none()
            || add_header(r, b"Cache-Control", b"no-store").is_none()
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let q = match query::parse((*r).args.as_bytes()) {
        Ok(q) => q,
        Err(e) => return error(r, NGX_HTTP_BAD_REQUEST, json::error(e.0, None)),
    };
    let lcf = *(*r).loc_conf.add(Module::module().ctx_index) as *const LocConf;
    let format = match q.format {
        Some(f) => f,
        None => query::negotiate(&accept(r), (*lcf).status_format),
    };
    let started = Instant::now();
    let cpu_started = thread_cpu_ms();
    let snap = collect::snapshot(r);
    let collected = Instant::now();
    if let Some(name) = q.upstream.as_deref() {
        if !render::has_upstream(&snap, name) {
            return error(
                r,
                NGX_HTTP_NOT_FOUND,
                json::error("unknown upstream", Some(name)),
            );
        }
    }
    let sel = Selection {
        upstream: q.upstream.as_deref(),
        state: q.state,
    };
    let vary: Header = (b"Vary", b"Accept");
    let (body, extra): (Vec<u8>, &[Header]) = match format {
        Format::Json => (json::json(&snap, sel), &[NOSNIFF, vary]),
        Format::Prometheus => (prometheus::prometheus(&snap, sel), &[NOSNIFF, vary]),
        Format::Html => (
            html::html(q.refresh()),
            &[
                NOSNIFF,
                vary,
                (b"Content-Security-Policy", html::CSP.as_bytes()),
            ],
        ),
    };
    // Server-Timing (W3C): what the snapshot and the rendering cost, in milliseconds of wall
    // time, and the CPU time of both (the same on an idle machine, less on a busy one); shown
    // by browsers' developer tools, loggable as $sent_http_server_timing (bench/status).
    let ms = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64() * 1000.0;
    let timing = format!(
        "collect;dur={:.3}, render;dur={:.3}, cpu;dur={:.3}",
        ms(started, collected),
        ms(collected, Instant::now()),
        thread_cpu_ms() - cpu_started
    );
    if !add_header_copy(r, b"Server-Timing", timing.as_bytes()) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    send(
        r,
        NGX_HTTP_OK as usize,
        format.content_type().as_bytes(),
        extra,
        body,
    )
}
