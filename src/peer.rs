//! The peer-wrapping idiom of ngx_http_upstream_keepalive_module: save the original
//! `peer.init` / `get` / `free` (and the TLS session hooks, and `u->finalize_request`), wrap,
//! delegate. The wrappers only gather facts; `cause::classify` decides, `state` counts.

use core::ffi::c_void;
use core::ptr;

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::cause::{classify, Event, Facts};
use crate::conf::MainConf;
use crate::ctx::{self, Ctx, Saved, Try};
use crate::module::Module;
use crate::upstreams::{self, Wrapped};
use crate::{logtap, state};

/// Wrap `peer.init` of every upstream of the http{} block (postconfiguration).
///
/// # Safety
/// `cf` must be the http{} configuration being finished.
pub unsafe fn wrap_upstreams(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Status {
    let Some(umcf) = NgxHttpUpstreamModule::main_conf_mut(&*cf) else {
        return Status::NGX_OK;
    };
    for &uscf in upstreams::all(umcf) {
        if (*uscf).peer.init.is_none()
            || (*uscf)
                .peer
                .init
                .is_some_and(|f| ptr::fn_addr_eq(f, init_peer as InitPeer))
        {
            continue;
        }
        mcf.wrapped.push(Wrapped {
            uscf,
            orig_init: (*uscf).peer.init,
            name: upstreams::display_name(uscf),
        });
        (*uscf).peer.init = Some(init_peer);
    }
    mcf.wrapped.sort_by_key(|w| w.uscf as usize);
    Status::NGX_OK
}

unsafe fn main_conf(r: *mut ngx_http_request_t) -> &'static MainConf {
    // SAFETY: our main conf exists in every http{} request context.
    let p = *(*r).main_conf.add(Module::module().ctx_index) as *const MainConf;
    &*p
}

unsafe fn enabled(r: *mut ngx_http_request_t) -> bool {
    let p = *(*r).loc_conf.add(Module::module().ctx_index)
        as *const <Module as HttpModuleLocationConf>::LocationConf;
    (*p).enable != 0
}

type InitPeer =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t;

unsafe extern "C" fn init_peer(
    r: *mut ngx_http_request_t,
    us: *mut ngx_http_upstream_srv_conf_t,
) -> ngx_int_t {
    let mcf = main_conf(r);
    let Ok(i) = mcf
        .wrapped
        .binary_search_by_key(&(us as usize), |w| w.uscf as usize)
    else {
        return NGX_ERROR as ngx_int_t;
    };
    let w = &mcf.wrapped[i];
    let Some(orig) = w.orig_init else {
        return NGX_ERROR as ngx_int_t;
    };
    let rc = orig(r, us);
    if rc != NGX_OK as ngx_int_t || !enabled(r) {
        return rc;
    }
    let name = ngx_str_t {
        len: w.name.len(),
        data: w.name.as_ptr() as *mut u8,
    };
    hook(r, name, false);
    rc
}

/// Take over the request's upstream hooks: finalize always, get/free when the balancer has
/// set them up. Idempotent.
unsafe fn hook(r: *mut ngx_http_request_t, name: ngx_str_t, dynamic: bool) {
    let u = (*r).upstream;
    let Some(c) = ctx::current_or_create(r) else {
        return; // out of memory: nginx goes on untouched
    };
    let ctx = &mut *c;
    ctx.upstream = name;
    ctx.dynamic = dynamic;
    let finalize_hooked = (*u)
        .finalize_request
        .is_some_and(|f| ptr::fn_addr_eq(f, finalize as Finalize));
    let finalize_orig = if finalize_hooked {
        ctx.saved.and_then(|s| s.finalize)
    } else {
        (*u).finalize_request
    };
    let peer_hooked = (*u)
        .peer
        .get
        .is_some_and(|f| ptr::fn_addr_eq(f, get_peer as GetPeer));
    ctx.saved = Some(if peer_hooked || (*u).peer.get.is_none() {
        Saved {
            finalize: finalize_orig,
            ..ctx.saved.unwrap_or(Saved::NONE)
        }
    } else {
        let s = Saved {
            data: (*u).peer.data,
            get: (*u).peer.get,
            free: (*u).peer.free,
            set_session: (*u).peer.set_session,
            save_session: (*u).peer.save_session,
            finalize: finalize_orig,
        };
        (*u).peer.data = c as *mut c_void;
        (*u).peer.get = Some(get_peer);
        (*u).peer.free = Some(free_peer);
        (*u).peer.set_session = Some(set_session);
        (*u).peer.save_session = Some(save_session);
        s
    });
    (*u).finalize_request = Some(finalize);
    logtap::install(c);
}

type Finalize = unsafe extern "C" fn(*mut ngx_http_request_t, ngx_int_t);
type GetPeer = unsafe extern "C" fn(*mut ngx_peer_connection_t, *mut c_void) -> ngx_int_t;

/// Precontent phase: run the location's content handler (proxy_pass & co.) through
/// [`content`], so that upstreams built without `peer.init` (`proxy_pass http://$var`) are
/// seen too. Requests without a content handler are left alone.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    if (*r).content_handler.is_some() && enabled(r) {
        let clcf =
            *(*r).loc_conf.add(ngx_http_core_module.ctx_index) as *const ngx_http_core_loc_conf_t;
        let same = match ((*r).content_handler, (*clcf).handler) {
            (Some(a), Some(b)) => ptr::fn_addr_eq(a, b),
            _ => false,
        };
        if same {
            (*r).content_handler = Some(content);
        }
    }
    NGX_DECLINED as ngx_int_t
}

/// The location's own content handler, then a look at the upstream it set up.
unsafe extern "C" fn content(r: *mut ngx_http_request_t) -> ngx_int_t {
    let clcf =
        *(*r).loc_conf.add(ngx_http_core_module.ctx_index) as *const ngx_http_core_loc_conf_t;
    let Some(h) = (*clcf).handler else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let rc = h(r);
    let u = (*r).upstream;
    if u.is_null() || (*u).resolved.is_null() || (*u).finalize_request.is_none() {
        return rc;
    }
    // Already taken over through peer.init (the variable named an upstream{} block)?
    if let Some(c) = ctx::get(r) {
        if (*c).saved.is_some() {
            return rc;
        }
    }
    if let Some(name) = dynamic_name(r) {
        hook(r, name, true);
    }
    rc
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

unsafe fn saved(data: *mut c_void) -> (&'static mut Ctx, Saved) {
    // SAFETY: peer.data was set to our Ctx in init_peer, and saved is always Some there.
    let ctx = &mut *(data as *mut Ctx);
    let s = ctx.saved.expect("saved peer hooks");
    (ctx, s)
}

unsafe extern "C" fn get_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    let (ctx, s) = saved(data);
    ctx.log = Default::default();
    ctx.attempt_failed = false;
    let rc = match s.get {
        Some(get) => get(pc, s.data),
        None => NGX_ERROR as ngx_int_t,
    };
    if rc == NGX_BUSY as ngx_int_t {
        let facts = Facts {
            event: Event::NoLivePeers,
            ..Default::default()
        };
        // The balancer names the upstream in pc->name; count at upstream level.
        record(ctx, &facts, ngx_str_t::empty());
        ctx.attempt_failed = true;
    }
    rc
}

unsafe extern "C" fn free_peer(
    pc: *mut ngx_peer_connection_t,
    data: *mut c_void,
    state: ngx_uint_t,
) {
    let (ctx, s) = saved(data);
    if state & NGX_PEER_FAILED as ngx_uint_t != 0 && !ctx.attempt_failed {
        let facts = gather(ctx.r, pc, Event::PeerFailed, ctx.log.errno);
        let peer = if (*pc).name.is_null() {
            ngx_str_t::empty()
        } else {
            *(*pc).name
        };
        record(ctx, &facts, peer);
        ctx.attempt_failed = true;
    }
    if let Some(free) = s.free {
        free(pc, s.data, state);
    }
}

unsafe extern "C" fn set_session(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    let (_, s) = saved(data);
    match s.set_session {
        Some(f) => f(pc, s.data),
        None => NGX_OK as ngx_int_t,
    }
}

unsafe extern "C" fn save_session(pc: *mut ngx_peer_connection_t, data: *mut c_void) {
    let (_, s) = saved(data);
    if let Some(f) = s.save_session {
        f(pc, s.data)
    }
}

/// Facts about the current try, read from the request's upstream and its connection.
unsafe fn gather(
    r: *mut ngx_http_request_t,
    pc: *mut ngx_peer_connection_t,
    event: Event,
    logged_errno: Option<i32>,
) -> Facts {
    let u = (*r).upstream;
    let c = (*pc).connection;
    let mut f = Facts {
        event,
        connected: !c.is_null(),
        request_sent: (*u).request_sent() != 0,
        header_sent: (*u).header_sent() != 0,
        upstream_status: (*u).headers_in.status_n.clamp(0, 999) as u16,
        ..Default::default()
    };
    if !(*u).buffer.start.is_null() {
        f.bytes_received = (*u).buffer.last.offset_from((*u).buffer.start).max(0) as usize;
        f.header_buffer_full = (*u).buffer.last == (*u).buffer.end;
    }
    if !c.is_null() {
        let (rd, wr) = (&*(*c).read, &*(*c).write);
        f.write_timedout = wr.timedout() != 0;
        f.read_timedout = rd.timedout() != 0;
        f.read_eof = rd.eof() != 0;
        f.read_pending_eof = rd.pending_eof() != 0;
        f.read_error = rd.error() != 0;
        f.tls_incomplete = tls_incomplete(c);
    }
    f.errno = logged_errno.or_else(|| {
        // A synchronous connect() failure leaves errno set (unix sockets).
        let e = ngx_socket_errno();
        (c.is_null() && e != 0).then_some(e)
    });
    f
}

/// TLS was started on the upstream connection and the handshake did not complete.
#[cfg(ngx_feature = "ssl")]
unsafe fn tls_incomplete(c: *const ngx_connection_t) -> bool {
    let ssl = (*c).ssl;
    !ssl.is_null() && (*ssl).handshaked() == 0
}

/// nginx built without SSL: no upstream TLS.
#[cfg(not(ngx_feature = "ssl"))]
unsafe fn tls_incomplete(_c: *const ngx_connection_t) -> bool {
    false
}

/// Classify, remember in the request record, count in shared memory.
unsafe fn record(ctx: &mut Ctx, facts: &Facts, peer: ngx_str_t) {
    let v = classify(facts);
    let status = if v.cause.is_failure() {
        v.cause.status()
    } else {
        502
    };
    ctx.push(Try {
        cause: v.cause,
        phase: v.phase,
        errno: v.errno,
        peer,
    });
    state::count(
        ctx.upstream.as_bytes(),
        peer.as_bytes(),
        ctx.dynamic,
        v.cause,
        v.phase,
        v.errno,
        status,
    );
}

unsafe extern "C" fn finalize(r: *mut ngx_http_request_t, rc: ngx_int_t) {
    let Some(c) = ctx::get(r) else { return };
    let ctx = &mut *c;
    let u = (*r).upstream;
    let Some(s) = ctx.saved else { return };
    let rc_status = rc as u32;
    let error = matches!(
        rc_status,
        NGX_HTTP_BAD_GATEWAY | NGX_HTTP_GATEWAY_TIME_OUT | NGX_HTTP_INTERNAL_SERVER_ERROR
    );

    if !ctx.attempt_failed {
        let pc = ptr::addr_of_mut!((*u).peer);
        let peer = if (*pc).name.is_null() {
            ngx_str_t::empty()
        } else {
            *(*pc).name
        };
        if rc_status == NGX_HTTP_INTERNAL_SERVER_ERROR
            && (*pc).connection.is_null()
            && (ctx.log.out_of_connections || (*ngx_cycle).free_connection_n == 0)
        {
            // ngx_event_connect_peer() found no free connection: nginx answers 500.
            let facts = Facts {
                event: Event::OutOfConnections,
                ..Default::default()
            };
            record(ctx, &facts, peer);
            ctx.attempt_failed = true;
        } else if (*u).header_sent() != 0
            && (error || rc == NGX_ERROR as ngx_int_t)
            && !(*pc).connection.is_null()
        {
            // The body was cut after the header went out: no error page, but a failure.
            let facts = gather(r, pc, Event::BodyFailed, ctx.log.errno);
            record(ctx, &facts, peer);
            ctx.attempt_failed = true;
        } else if ctx.dynamic && rc_status != NGX_HTTP_INTERNAL_SERVER_ERROR && error {
            // A run-time upstream whose peers nginx built without a hook: the failed
            // connection is still open here, its flags tell the cause. No peer at all: the
            // name did not resolve.
            let res = (*u).resolved;
            if (*pc).name.is_null() && (*res).naddrs == 0 && (*res).sockaddr.is_null() {
                let facts = Facts {
                    event: Event::ResolveFailed,
                    ..Default::default()
                };
                record(ctx, &facts, ngx_str_t::empty());
            } else {
                let facts = gather(r, pc, Event::PeerFailed, ctx.log.errno);
                record(ctx, &facts, peer);
            }
            ctx.attempt_failed = true;
        } else if (*u).headers_in.status_n == 502 {
            // The backend's own 502, passed through: all that matters is its status.
            let facts = Facts {
                connected: true,
                request_sent: true,
                upstream_status: 502,
                ..Default::default()
            };
            record(ctx, &facts, peer);
            ctx.attempt_failed = true;
        }
    }
    // A failure decided the response unless a later try succeeded.
    ctx.decided = ctx.attempt_failed && ctx.last().is_some();

    logtap::remove(c, false);
    if let Some(f) = s.finalize {
        f(r, rc);
    }
}

/// Log phase: the safety net for requests that failed before any peer was chosen, e.g. an
/// upstream name that did not resolve (`proxy_pass http://$host` + `resolver`).
pub unsafe extern "C" fn log_phase_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    let u = (*r).upstream;
    if u.is_null() || !enabled(r) {
        return NGX_OK as ngx_int_t;
    }
    let status = (*r).headers_out.status;
    if status != NGX_HTTP_BAD_GATEWAY as ngx_uint_t
        && (*r).err_status != NGX_HTTP_BAD_GATEWAY as ngx_uint_t
    {
        return NGX_OK as ngx_int_t;
    }
    let res = (*u).resolved;
    if res.is_null()
        || !(*res).sockaddr.is_null()
        || (*res).naddrs != 0
        || !(*u).peer.sockaddr.is_null()
    {
        return NGX_OK as ngx_int_t;
    }
    if let Some(c) = ctx::get(r) {
        if (*c).total_tries > 0 {
            return NGX_OK as ngx_int_t;
        }
    }
    let Some(c) = ctx::get_or_create(r) else {
        return NGX_OK as ngx_int_t;
    };
    let ctx = &mut *c;
    let Some(name) = dynamic_name(r) else {
        return NGX_OK as ngx_int_t;
    };
    ctx.upstream = name;
    ctx.dynamic = true;
    let facts = Facts {
        event: Event::ResolveFailed,
        ..Default::default()
    };
    record(ctx, &facts, ngx_str_t::empty());
    ctx.decided = true;
    NGX_OK as ngx_int_t
}
