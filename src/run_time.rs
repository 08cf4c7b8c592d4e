//! Upstreams made at run time (`proxy_pass http://$var`): nginx builds them inside the
//! location's content handler, without `peer.init`, so the module runs that handler through
//! its own ([`wrap_content`]) and hooks the upstream it set up (`peer::hook`). A failure met
//! inside the handler itself (a unix socket's synchronous connect, a name that does not
//! resolve, no `resolver`) is seen through a tap on the connection log while it runs.

use core::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, NgxHttpCoreModule};

use crate::cause::{Event, Facts};
use crate::conf::LocConf;
use crate::logtap;
use crate::module::Module;
use crate::peer::{enabled, hook, main_conf, record};
use crate::watch::{self, Watch};

/// Merge time: run the location's content handler (proxy_pass & co.) through [`content`],
/// so that upstreams built without `peer.init` (`proxy_pass http://$var`) are seen too.
/// Module merges run in module order, so the handlers of nginx's own modules (proxy sets
/// one in its merge for `limit_except`) are in place by now.
///
/// # Safety
/// `cf` must be the configuration context of the location `lcf` belongs to (merge time).
pub unsafe fn wrap_content(cf: *mut ngx_conf_t, lcf: &mut LocConf) {
    if lcf.enable == 0 || lcf.status {
        return;
    }
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(&*cf) else {
        return;
    };
    match clcf.handler {
        Some(h) if !ptr::fn_addr_eq(h, CONTENT) => {
            lcf.content = Some(h);
            clcf.handler = Some(CONTENT);
        }
        _ => {}
    }
}

type Handler = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

/// The one address of [`content`] that is installed and compared (see `peer::INIT_PEER`).
static CONTENT: Handler = content;

/// What a worker has seen a location's content handler set up, which decides whether the
/// connection log is tapped while the handler runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Seen {
    /// Nothing yet: tapped.
    #[default]
    Nothing,
    /// No upstream, or one named in the configuration (its peer.init hooks it): not tapped.
    Configured,
    /// A run-time upstream (`proxy_pass http://$var`): tapped. nginx connects to it inside
    /// the handler, and a unix socket fails right there (connect() is synchronous): the tap
    /// sees the error line and hooks the upstream before nginx finalizes it.
    RunTime,
}

/// The location's own content handler, then a look at the upstream it set up.
unsafe extern "C" fn content(r: *mut ngx_http_request_t) -> ngx_int_t {
    let lcf = *(*r).loc_conf.add(Module::module().ctx_index) as *const LocConf;
    let Some(h) = (*lcf).content else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let mut rc = NGX_OK as ngx_int_t;
    look(r, lcf, || rc = h(r));
    rc
}

type BodyHandler = unsafe extern "C" fn(*mut ngx_http_request_t);

/// The one address of [`body_read`] that is installed (see `peer::INIT_PEER`).
static BODY_READ: BodyHandler = body_read;

/// The request body that the content handler started to read is whole: nginx sets the
/// upstream up now (`ngx_http_upstream_init`, the handler's post handler), after the content
/// handler returned.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    let lcf = *(*r).loc_conf.add(Module::module().ctx_index) as *const LocConf;
    look(r, lcf, || ngx_http_upstream_init(r));
}

/// Run `set_up` (the content handler, or the upstream's set-up once the body is read) with
/// the connection log tapped, then look at the upstream it set up.
unsafe fn look(r: *mut ngx_http_request_t, lcf: *const LocConf, set_up: impl FnOnce()) {
    let seen = (*lcf).seen.get();
    let pre = if seen != Seen::Configured {
        pre_tap(r)
    } else {
        None
    };
    let loc = (*r).loc_conf;
    set_up();
    // the tap recorded a synchronous failure already (see no_resolver)
    let mut recorded = false;
    if let Some(p) = pre {
        recorded = (*p).attempt_failed;
        logtap::remove(p);
        watch::release(p);
    }
    if (*r).loc_conf != loc {
        // A failure inside the handler, and an error_page that sent the request on at once:
        // the upstream now is that location's (which looked at its own), not this one's.
        return;
    }
    let u = (*r).upstream;
    if body_pending(r, u) {
        // The body comes later (a slow client, Expect: 100-continue, HTTP/2): nginx sets the
        // upstream up when it is read, without peer.init. Looked at again then.
        (*(*r).request_body).post_handler = Some(BODY_READ);
        return;
    }
    // Nothing to see: no upstream, or one named in the configuration (peer.init hooks it).
    if !run_time(u) {
        if seen == Seen::Nothing {
            (*lcf).seen.set(Seen::Configured);
        }
        return;
    }
    (*lcf).seen.set(Seen::RunTime);
    if (*u).cleanup.is_null() {
        // Already finalized: nginx failed synchronously, before any peer (no resolver, a
        // cached negative answer).
        if !(*u).peer.sockaddr.is_null() || recorded {
            return;
        }
        resolve_failed_now(r);
        return;
    }
    if (*u).finalize_request.is_some() {
        if let Some(name) = dynamic_name(r) {
            hook(r, name, true, true, main_conf(r).stats);
        }
    }
}

/// `u` is set up once the request body is read: not yet (`ngx_http_upstream_init` is still
/// the body's post handler, and nothing finalized the request).
unsafe fn body_pending(r: *const ngx_http_request_t, u: *const ngx_http_upstream_t) -> bool {
    let rb = (*r).request_body;
    !u.is_null()
        && (*u).cleanup.is_null()
        && (*r).err_status == 0
        && (*r).headers_out.status == 0
        && !rb.is_null()
        && (*rb)
            .post_handler
            .is_some_and(|f| ptr::fn_addr_eq(f, ngx_http_upstream_init as unsafe extern "C" fn(_)))
}

/// `u` is an upstream nginx resolved at run time (`proxy_pass http://$var`), not one named in
/// the configuration.
unsafe fn run_time(u: *const ngx_http_upstream_t) -> bool {
    !u.is_null() && !(*u).resolved.is_null() && (*u).upstream.is_null()
}

/// Tap the request's connection log while its content handler runs.
unsafe fn pre_tap(r: *mut ngx_http_request_t) -> Option<*mut Watch> {
    let wp = watch::take(r, ptr::null_mut())?;
    (*wp).upstream = ngx_str_t::empty();
    (*wp).pre = true;
    logtap::install(wp);
    Some(wp)
}

/// The tap set by [`content`] saw an error with an errno: if it is a run-time upstream's try
/// failing before we hooked it (a unix socket: nginx logs, then goes straight to the next
/// try or finalizes), hook it now. The failed try then reaches our `free` like any other,
/// with the errno just seen, and the record exists before nginx sends its 502.
///
/// # Safety
/// `pre` must be the watch of a tap set by [`content`], called from its log writer.
pub unsafe fn early_failure(pre: *mut Watch) {
    let r = (*pre).r;
    let u = (*r).upstream;
    if !run_time(u)
        || (*u).cleanup.is_null()
        || (*u).peer.sockaddr.is_null()
        || (*u).peer.get.is_none()
        || !enabled(r)
    {
        return;
    }
    let Some(name) = dynamic_name(r) else { return };
    hook(r, name, true, true, main_conf(r).stats);
    if let Some(w) = watch::current(r, u) {
        (*w).log.errno = (*pre).log.errno;
    }
}

/// A run-time upstream name that did not resolve, met synchronously.
unsafe fn resolve_failed_now(r: *mut ngx_http_request_t) {
    let status = (*r).headers_out.status.max((*r).err_status);
    if status == NGX_HTTP_BAD_GATEWAY as ngx_uint_t {
        resolve_failed(r, false);
    }
}

/// The tap set by [`content`] saw "no resolver defined to resolve NAME": a run-time upstream
/// whose name nginx cannot resolve without a `resolver`. nginx finalizes the request with 502
/// right after the line, inside the content handler, so the failure is recorded now: the
/// fallback (`triage_fallback`) and the variables find it when nginx's 502 goes out.
///
/// # Safety
/// `pre` must be the watch of a tap set by [`content`], called from its log writer.
pub unsafe fn no_resolver(pre: *mut Watch) {
    let r = (*pre).r;
    let u = (*r).upstream;
    if (*pre).attempt_failed || !run_time(u) || !enabled(r) {
        return;
    }
    (*pre).attempt_failed = resolve_failed(r, true);
}

/// Record a run-time upstream's name that resolved to nothing (no try was made). True if it
/// was recorded.
unsafe fn resolve_failed(r: *mut ngx_http_request_t, no_resolver: bool) -> bool {
    let res = (*(*r).upstream).resolved;
    if !(*res).sockaddr.is_null() || (*res).naddrs != 0 {
        return false;
    }
    let Some(name) = dynamic_name(r) else {
        return false;
    };
    let mut rec = ptr::null_mut();
    let facts = Facts {
        event: Event::ResolveFailed,
        no_resolver,
        ..Default::default()
    };
    record(r, &mut rec, name, true, &facts, ngx_str_t::empty(), false);
    if !rec.is_null() {
        (*rec).decide(r, true);
    }
    true
}

/// A run-time upstream's name as proxy_pass wrote it: host[:port], in the request pool.
unsafe fn dynamic_name(r: *mut ngx_http_request_t) -> Option<ngx_str_t> {
    let res = (*(*r).upstream).resolved;
    let host = String::from_utf8_lossy((*res).host.as_bytes());
    let name = if (*res).port != 0 && (*res).no_port == 0 {
        format!("{host}:{}", (*res).port)
    } else {
        host.into_owned()
    };
    ngx_str_t::from_bytes((*r).pool, name.as_bytes())
}
