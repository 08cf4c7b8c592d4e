//! `triage_fallback`: answer an nginx-generated 502/504 with a prepared JSON, HTML or static
//! file body instead of nginx's built-in error page. The FFI glue: the directives' setters,
//! the merge, and a header filter plus a body filter. What the pages say is pure code in
//! [`fallback_body`], the `Accept` negotiation in [`accept`].
//!
//! How: nginx sends its built-in page for an error status through
//! `ngx_http_special_response_handler`, which either follows an `error_page` (an internal
//! redirect) or sends the page through the header and body filters. Our header filter sees
//! the page's header; it replaces it when
//! - the request's record says a failed upstream try decided the response (the record is
//!   written before nginx finalizes the request, see `peer.rs`),
//! - the status is still the one nginx set for that failure (`r->err_status`), and
//! - no internal redirect happened since the failure (`r->uri_changes` unchanged): a page
//!   sent by an `error_page` target is the user's, never replaced.
//!
//! It then sends the prepared body at once, and leaves `r->header_only` set so that
//! `ngx_http_send_special_response` stops there (it does for HEAD): nginx's page is never
//! built. The body is filled in the request pool from a template prepared at configuration
//! time; a run of identical failures copies the previous page with the new request id.
//! Both filters are installed only when a `triage_fallback` other than `off` appears in the
//! configuration: otherwise a request does not pass through this file at all.
//!
//! `upstream_errors=on` adds the backend's own 502: the header filter sees it while the
//! upstream runs (`u->headers_in.status_n == 502`, nothing sent yet); its headers are cleared,
//! and the body filter drops the backend's body as it comes and sends ours once.
//!
//! A response whose header already went out (a body cut mid-stream) never reaches the filter
//! again with an error status: nginx closes the connection, and so do we.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::rc::Rc;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_string};

use crate::accept;
use crate::cause::{Cause, Detail, Pass, Phase};
use crate::conf::{args, LocConf};
use crate::fallback_body::{self as body, Format, Mode, Page, PageCache, PeerHealth, Spec};
use crate::module::Module;
use crate::record;
use crate::status::add_header;
use crate::upstreams;
use crate::variables;

/// The http{}-level part: whether any location uses a fallback.
#[derive(Default)]
pub struct Main {
    pub used: bool,
    /// nginx's own filters are set up after this module, which installs its filters at
    /// init_module then (see [`install`]).
    pub late: bool,
}

/// `triage_fallback` as given (shared by the locations that inherit it).
#[derive(Debug)]
struct Given {
    spec: Spec,
    /// The file= body, read at configuration time.
    file: Vec<u8>,
}

/// The location-level part of the configuration.
#[derive(Debug)]
pub struct Conf {
    given: Option<Rc<Given>>,
    /// `triage_fallback_status`; 0 (unset): keep 502 / 504.
    status: u16,
    /// `triage_fallback_retry_after`; unset: only for `no_live_upstreams`, computed.
    pub retry_after: time_t,
    /// `triage_fallback_details`.
    pub details: ngx_flag_t,
    /// The file= body's Content-Type in this location (type=, or `types` by extension).
    file_type: Vec<u8>,
    file_charset: bool,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            given: None,
            status: 0,
            retry_after: NGX_CONF_UNSET as time_t,
            details: NGX_CONF_UNSET as ngx_flag_t,
            file_type: Vec::new(),
            file_charset: false,
        }
    }
}

impl Conf {
    /// Inherit what this level does not set.
    pub fn merge(&mut self, prev: &Conf) {
        if self.given.is_none() {
            self.given = prev.given.clone();
        }
        if self.status == 0 {
            self.status = prev.status;
        }
        if self.retry_after == NGX_CONF_UNSET as time_t {
            self.retry_after = prev.retry_after;
        }
        if self.details == NGX_CONF_UNSET as ngx_flag_t {
            self.details = prev.details;
        }
    }
}

/// Merge time, after [`Conf::merge`]: the file= body's Content-Type from this location's
/// `types` (nginx's core module has merged them by now: module merges run in module order).
///
/// # Safety
/// `cf` must be the configuration context of the location `lcf` belongs to (merge time).
pub unsafe fn prepare(cf: *mut ngx_conf_t, lcf: &mut LocConf) {
    let fb = &mut lcf.fallback;
    let Some(g) = fb.given.clone() else { return };
    let Mode::File(path) = &g.spec.mode else {
        return;
    };
    let t = match &g.spec.content_type {
        Some(t) => t.clone(),
        None => {
            let Some(clcf) = NgxHttpCoreModule::location_conf_mut(&*cf) else {
                return;
            };
            type_by_extension(clcf, path)
        }
    };
    fb.file_charset = body::wants_charset(&t);
    fb.file_type = t;
}

/// What `ngx_http_set_content_type` would say for a file of that name.
unsafe fn type_by_extension(clcf: &mut ngx_http_core_loc_conf_t, path: &[u8]) -> Vec<u8> {
    if let Some(ext) = body::extension(path) {
        let mut lower = ext.to_ascii_lowercase();
        let key = ngx_hash_key_lc(lower.as_mut_ptr(), lower.len());
        let t = ngx_hash_find(&mut clcf.types_hash, key, lower.as_mut_ptr(), lower.len())
            as *const ngx_str_t;
        if !t.is_null() {
            return (*t).as_bytes().to_vec();
        }
    }
    clcf.default_type.as_bytes().to_vec()
}

/// `triage_fallback off | json | html | auto | file=PATH [type=MIME] [upstream_errors=on];`
pub extern "C" fn set_fallback(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with our location conf and a valid cf during parsing.
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.fallback.given.is_some() {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: as above.
    let a: Vec<&[u8]> = unsafe { args(cf) }.iter().map(|s| s.as_bytes()).collect();
    let spec = match body::parse_spec(&a) {
        Ok(s) => s,
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
            return NGX_CONF_ERROR;
        }
    };
    let mut file = Vec::new();
    if let Mode::File(path) = &spec.mode {
        // Relative to the configuration prefix, like `include` and `ssl_certificate`.
        // SAFETY: cf is valid; ngx_conf_full_name allocates the result in the cycle pool.
        let full = unsafe {
            let mut name = ngx_str_t::empty();
            if let Some(n) = ngx_str_t::from_bytes((*cf).pool, path) {
                name = n;
            }
            if name.len == 0 || ngx_conf_full_name((*cf).cycle, &mut name, 1) != NGX_OK as ngx_int_t
            {
                return NGX_CONF_ERROR;
            }
            String::from_utf8_lossy(name.as_bytes()).into_owned()
        };
        match std::fs::read(&full) {
            Ok(b) => file = b,
            Err(e) => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "cannot read fallback file \"{}\": {}",
                    full,
                    e
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    if spec.mode != Mode::Off {
        // SAFETY: the http{} main conf exists while a location is parsed.
        let Some(mcf) = (unsafe { Module::main_conf_mut(&*cf) }) else {
            return NGX_CONF_ERROR;
        };
        // SAFETY: as above; the main conf outlives the parsing.
        let main = unsafe { &mut (*mcf).fallback };
        if !main.used {
            main.used = true;
            // Build the pages now, not on a request.
            for f in [Format::Json, Format::Html] {
                for d in [false, true] {
                    body::template(f, d);
                }
            }
        }
    }
    lcf.fallback.given = Some(Rc::new(Given { spec, file }));
    NGX_CONF_OK
}

/// `triage_fallback_status CODE;`
pub extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with our location conf and a valid cf during parsing.
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.fallback.status != 0 {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: as above.
    let a = unsafe { args(cf) };
    match body::parse_status(a[0].as_bytes()) {
        Ok(code) => {
            lcf.fallback.status = code;
            NGX_CONF_OK
        }
        Err(e) => {
            ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
            NGX_CONF_ERROR
        }
    }
}

/// Install the header and body filters (postconfiguration), if a location uses them. Not
/// yet when nginx's own filter modules come after this one in the module list (a static
/// build, `--add-module`, lists HTTP modules before the filters): their postconfiguration
/// restarts both chains from nginx's last filters, so [`install_late`] does it at
/// init_module. A dynamic module comes after every built-in one.
///
/// # Safety
/// Called once per configuration cycle, from postconfiguration, with its `cf`.
pub unsafe fn install(cf: *mut ngx_conf_t, main: &mut Main) {
    if !main.used {
        return;
    }
    main.late = before_core_filters(cf);
    if !main.late {
        chain();
    }
}

/// Install the filters held back by [`install`].
///
/// # Safety
/// Called from init_module, with the main configuration of the cycle being initialised.
pub unsafe fn install_late(main: &Main) {
    if main.used && main.late {
        chain();
    }
}

/// This module comes before nginx's header filter module in the cycle's module list.
unsafe fn before_core_filters(cf: *mut ngx_conf_t) -> bool {
    let cycle = (*cf).cycle;
    let ours = Module::module().index;
    (0..(*cycle).modules_n).any(|i| {
        let m = *(*cycle).modules.add(i);
        !m.is_null()
            && !(*m).name.is_null()
            && core::ffi::CStr::from_ptr((*m).name) == c"ngx_http_header_filter_module"
            && (*m).index > ours
    })
}

/// Put both filters on top of the chains.
unsafe fn chain() {
    NEXT_HEADER = ngx_http_top_header_filter;
    ngx_http_top_header_filter = Some(header_filter);
    NEXT_BODY = ngx_http_top_body_filter;
    ngx_http_top_body_filter = Some(body_filter);
}

static mut NEXT_HEADER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY: ngx_http_output_body_filter_pt = None;

unsafe fn next_header(r: *mut ngx_http_request_t) -> ngx_int_t {
    match NEXT_HEADER {
        Some(f) => f(r),
        None => NGX_ERROR as ngx_int_t,
    }
}

unsafe fn next_body(r: *mut ngx_http_request_t, cl: *mut ngx_chain_t) -> ngx_int_t {
    match NEXT_BODY {
        Some(f) => f(r, cl),
        None => NGX_ERROR as ngx_int_t,
    }
}

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    let status = (*r).headers_out.status;
    if (status == NGX_HTTP_BAD_GATEWAY as ngx_uint_t
        || status == NGX_HTTP_GATEWAY_TIME_OUT as ngx_uint_t)
        && (*r).main == r
    {
        if let Some(rc) = replace(r, status as u16) {
            return rc;
        }
    }
    next_header(r)
}

/// The failure a 502/504 header answers, when a fallback takes it over.
struct Failure {
    cause: Cause,
    phase: Option<Phase>,
    errno: Option<i32>,
    peer: ngx_str_t,
    /// The upstream module (the directives the hint names).
    pass: Pass,
    /// What else says why (the hint).
    detail: Detail,
    /// The backend's own 502 (its headers and body are dropped).
    from_backend: bool,
}

/// Does a fallback answer this 502/504, and for which failure?
unsafe fn failure(r: *mut ngx_http_request_t, status: u16, spec: &Spec) -> Option<Failure> {
    let u = (*r).upstream;
    if (*r).err_status == status as ngx_uint_t && record::any() {
        // nginx's own page for a failure: the record's deciding try, and no redirect since.
        let rec = &*record::get(r)?;
        let t = rec.deciding()?;
        let ours = t.cause.is_failure() || spec.upstream_errors;
        if !ours || rec.uri_changes != (*r).uri_changes() {
            return None;
        }
        return Some(Failure {
            cause: t.cause,
            phase: Some(t.phase),
            errno: t.errno,
            peer: t.peer,
            pass: t.pass,
            detail: t.detail,
            from_backend: false,
        });
    }
    if spec.upstream_errors
        && status == 502
        && (*r).err_status == 0
        && !u.is_null()
        && (!(*u).cleanup.is_null() || from_cache(u))
        && (*u).header_sent() == 0
        && (*u).headers_in.status_n == 502
    {
        // The backend's own 502, on its way to the client (from the backend, or stored
        // earlier by proxy_cache).
        let pc = &(*u).peer;
        return Some(Failure {
            cause: Cause::Upstream502,
            phase: Some(Phase::ReadHeader),
            errno: None,
            peer: if pc.name.is_null() {
                ngx_str_t::empty()
            } else {
                *pc.name
            },
            pass: Pass::from_schema((*u).schema.as_bytes()),
            detail: Detail::None,
            from_backend: true,
        });
    }
    None
}

/// `u`'s response comes from the cache (`proxy_cache` and the like): nginx sends it before
/// it sets up an upstream connection, so `u->cleanup` is not set.
#[cfg(ngx_feature = "http_cache")]
unsafe fn from_cache(u: *const ngx_http_upstream_t) -> bool {
    matches!(
        (*u).cache_status(),
        NGX_HTTP_CACHE_HIT
            | NGX_HTTP_CACHE_STALE
            | NGX_HTTP_CACHE_UPDATING
            | NGX_HTTP_CACHE_REVALIDATED
    )
}

#[cfg(not(ngx_feature = "http_cache"))]
unsafe fn from_cache(_u: *const ngx_http_upstream_t) -> bool {
    false
}

#[cold]
unsafe fn replace(r: *mut ngx_http_request_t, status: u16) -> Option<ngx_int_t> {
    let lcf = &*(*(*r).loc_conf.add(Module::module().ctx_index) as *const LocConf);
    let fb = &lcf.fallback;
    let g = fb.given.as_deref()?;
    if g.spec.mode == Mode::Off {
        return None;
    }
    let f = failure(r, status, &g.spec)?;
    let main = &*(*(*r).main_conf.add(Module::module().ctx_index) as *const crate::conf::MainConf);

    let sent = if fb.status == 0 { status } else { fb.status };
    let retry_after = if fb.retry_after != NGX_CONF_UNSET as time_t {
        Some(fb.retry_after.max(0) as u64)
    } else if f.cause == Cause::NoLiveUpstreams {
        Some(next_retry(r))
    } else {
        None
    };
    let format = match &g.spec.mode {
        Mode::Json => Some(Format::Json),
        Mode::Html => Some(Format::Html),
        Mode::Auto if accept::prefers_json(&accept_header(r)) => Some(Format::Json),
        Mode::Auto => Some(Format::Html),
        _ => None,
    };

    // The body: a page filled in the request pool, or the file's bytes where they are.
    let (data, len, content_type, charset): (*const u8, usize, &[u8], bool) = match format {
        Some(format) => {
            let page = Page {
                status: sent,
                gateway_status: status,
                cause: f.cause,
                request_id: variables::request_id(r, main.request_id),
                retry_after,
                peer: f.peer.as_bytes(),
                errno: f.errno,
                phase: f.phase,
                pass: f.pass,
                detail: f.detail,
            };
            // Filled straight into request pool memory of the page's largest size.
            let t = body::template(format, fb.details == 1);
            let cap = t.max_len(&page);
            let p = ngx_pnalloc((*r).pool, cap) as *mut u8;
            if p.is_null() {
                return Some(NGX_ERROR as ngx_int_t);
            }
            let mut out = body::PageBuf::new(core::slice::from_raw_parts_mut(p, cap));
            if (*PAGES.0.get()).fill(t, &page, &mut out).is_err() {
                return Some(NGX_ERROR as ngx_int_t);
            }
            let len = out.len();
            match format {
                Format::Json => (p as *const u8, len, b"application/json", false),
                Format::Html => (p as *const u8, len, b"text/html", true),
            }
        }
        None => (
            g.file.as_ptr(),
            g.file.len(),
            &fb.file_type[..],
            fb.file_charset,
        ),
    };

    let ho = &mut (*r).headers_out;
    if f.from_backend {
        // Nothing of the backend's answer stays.
        ngx_http_clean_header(r);
    }
    ho.status = sent as ngx_uint_t;
    ho.status_line.len = 0;
    (*r).err_status = sent as ngx_uint_t;
    ho.content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr() as *mut u8,
    };
    ho.content_type_len = content_type.len();
    ho.content_type_lowcase = ptr::null_mut();
    ho.charset = if charset {
        ngx_string!("utf-8")
    } else {
        ngx_str_t::empty()
    };
    ho.content_length_n = len as off_t;
    if !ho.content_length.is_null() {
        (*ho.content_length).hash = 0;
        ho.content_length = ptr::null_mut();
    }
    // Not made known to later filters as headers_out.cache_control: `expires` (on a page sent
    // as 2xx or 3xx) would rewrite it to max-age. It adds its own instead, and no-store wins.
    add_header(r, b"Cache-Control", b"no-store")?;
    if let Some(secs) = retry_after {
        let v = ngx_str_t::from_bytes((*r).pool, secs.to_string().as_bytes())?;
        add_header(r, b"Retry-After", v.as_bytes())?;
    }
    if g.spec.mode == Mode::Auto {
        add_header(r, b"Vary", b"Accept")?;
    }

    if f.from_backend {
        // The backend's body is still to come: the body filter drops it and sends ours.
        if !start_serving(r, data, len) {
            return Some(NGX_ERROR as ngx_int_t);
        }
        return Some(next_header(r));
    }
    Some(send_now(r, data, len))
}

/// The worker's last page (see `PageCache`).
struct WorkerPages(UnsafeCell<PageCache>);

// SAFETY: an nginx worker runs its event loop, and so every use of this cache, on one thread.
unsafe impl Sync for WorkerPages {}

static PAGES: WorkerPages = WorkerPages(UnsafeCell::new(PageCache::new()));

/// Send the header and the prepared body now, in place of nginx's own page.
///
/// nginx's `ngx_http_send_special_response` sent this header and would send its page next,
/// unless the header filter left `r->header_only` set (as for HEAD). The page goes out here
/// and `header_only` is set afterwards, so nginx stops there: its page is never built.
unsafe fn send_now(r: *mut ngx_http_request_t, data: *const u8, len: usize) -> ngx_int_t {
    let rc = next_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let Some(mut out) = last_buf(r, data, len) else {
        return NGX_ERROR as ngx_int_t;
    };
    let rc = ngx_http_output_filter(r, &mut out);
    (*r).set_header_only(1);
    rc
}

/// A chain of one buffer: the whole body, the response's last.
unsafe fn last_buf(r: *mut ngx_http_request_t, data: *const u8, len: usize) -> Option<ngx_chain_t> {
    let b = ngx_pcalloc((*r).pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    if b.is_null() {
        return None;
    }
    if len > 0 {
        (*b).pos = data as *mut u8;
        (*b).last = (*b).pos.add(len);
        (*b).set_memory(1);
    }
    (*b).set_last_buf(1);
    (*b).set_last_in_chain(1);
    Some(ngx_chain_t {
        buf: b,
        next: ptr::null_mut(),
    })
}

/// The request's `Accept` headers, joined by commas.
unsafe fn accept_header(r: *mut ngx_http_request_t) -> Vec<u8> {
    let mut out = Vec::new();
    let mut part: *const ngx_list_part_t = &(*r).headers_in.headers.part;
    while !part.is_null() {
        let h = (*part).elts as *const ngx_table_elt_t;
        for i in 0..(*part).nelts {
            let h = &*h.add(i);
            if h.key.as_bytes().eq_ignore_ascii_case(b"accept") {
                if !out.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(h.value.as_bytes());
            }
        }
        part = (*part).next;
    }
    out
}

/// Seconds until a peer of the request's upstream that `max_fails` took out is tried again.
unsafe fn next_retry(r: *mut ngx_http_request_t) -> u64 {
    let u = (*r).upstream;
    if u.is_null() || (*u).upstream.is_null() {
        return body::DEFAULT_RETRY_AFTER;
    }
    let mut peers = Vec::new();
    upstreams::visit_peers((*u).upstream, |p, _| {
        peers.push(PeerHealth {
            down: p.down != 0,
            max_fails: p.max_fails as u64,
            fails: p.fails as u64,
            fail_timeout: p.fail_timeout,
            checked: p.checked,
        })
    });
    body::retry_after(peers, (*ngx_cached_time).sec)
}

/// A response being replaced: found by the body filter through its pool cleanup.
struct Serving {
    r: *mut ngx_http_request_t,
    data: *const u8,
    len: usize,
    sent: bool,
}

/// Responses being replaced in this worker: while there are none, the body filter has
/// nothing to look for.
static SERVING: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn serving_done(_data: *mut c_void) {
    SERVING.fetch_sub(1, Ordering::Relaxed);
}

/// `serving_done`'s one address (see `record::OWNER`: a small function can have several).
static SERVING_DONE: unsafe extern "C" fn(*mut c_void) = serving_done;

unsafe fn start_serving(r: *mut ngx_http_request_t, data: *const u8, len: usize) -> bool {
    if let Some(s) = serving(r) {
        // A second header for the same request (cannot happen in nginx; be safe).
        (*s).data = data;
        (*s).len = len;
        (*s).sent = false;
        return true;
    }
    let cln = ngx_pool_cleanup_add((*r).pool, core::mem::size_of::<Serving>());
    if cln.is_null() {
        return false;
    }
    ptr::write(
        (*cln).data as *mut Serving,
        Serving {
            r,
            data,
            len,
            sent: false,
        },
    );
    (*cln).handler = Some(SERVING_DONE);
    SERVING.fetch_add(1, Ordering::Relaxed);
    true
}

unsafe fn serving(r: *mut ngx_http_request_t) -> Option<*mut Serving> {
    let mut cln = (*(*r).pool).cleanup;
    while !cln.is_null() {
        if (*cln)
            .handler
            .is_some_and(|h| ptr::fn_addr_eq(h, SERVING_DONE))
        {
            let s = (*cln).data as *mut Serving;
            if (*s).r == r {
                return Some(s);
            }
        }
        cln = (*cln).next;
    }
    None
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    if SERVING.load(Ordering::Relaxed) == 0 {
        return next_body(r, input);
    }
    let Some(s) = serving(r) else {
        return next_body(r, input);
    };
    // Whatever comes (nginx's page, the backend's body) is dropped: mark it consumed.
    let mut cl = input;
    while !cl.is_null() {
        let b = (*cl).buf;
        (*b).pos = (*b).last;
        if (*b).in_file() != 0 {
            (*b).file_pos = (*b).file_last;
        }
        cl = (*cl).next;
    }
    let s = &mut *s;
    if s.sent || (*r).header_only() != 0 {
        // Flush what the next filters still hold.
        return next_body(r, ptr::null_mut());
    }
    s.sent = true;
    let Some(mut out) = last_buf(r, s.data, s.len) else {
        return NGX_ERROR as ngx_int_t;
    };
    next_body(r, &mut out)
}
