//! The peer-wrapping idiom of ngx_http_upstream_keepalive_module: save the original
//! `peer.init` / `get` / `free` (and the TLS session hooks, and `u->finalize_request`), wrap,
//! delegate. The wrappers only gather facts (`facts.rs`); `cause::classify` decides, `state`
//! counts. Upstreams made at run time, which have no `peer.init`, are hooked from the content
//! handler (`run_time.rs`).

use core::ffi::c_void;
use core::ptr;

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{HttpModule, HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::cause::{classify, Event, Facts, Pass};
use crate::conf::{LocConf, MainConf};
use crate::facts::{gather, skipped};
use crate::module::Module;
use crate::record::{self, Record, Try};
use crate::upstreams::{self, Wrapped};
use crate::watch::{self, Saved, Watch};
use crate::{logtap, state, variables};

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
                .is_some_and(|f| ptr::fn_addr_eq(f, INIT_PEER))
        {
            continue;
        }
        mcf.wrapped.push(Wrapped {
            uscf,
            orig_init: (*uscf).peer.init,
            name: upstreams::display_name(uscf),
        });
        (*uscf).peer.init = Some(INIT_PEER);
    }
    mcf.wrapped.sort_by_key(|w| w.uscf as usize);
    Status::NGX_OK
}

pub(crate) unsafe fn main_conf(r: *mut ngx_http_request_t) -> &'static MainConf {
    // SAFETY: our main conf exists in every http{} request context.
    let p = *(*r).main_conf.add(Module::module().ctx_index) as *const MainConf;
    &*p
}

pub(crate) unsafe fn enabled(r: *mut ngx_http_request_t) -> bool {
    let p = *(*r).loc_conf.add(Module::module().ctx_index) as *const LocConf;
    (*p).enable != 0
}

type InitPeer =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t;

// The one address of each wrapper that is installed and compared. Rust may give a function a
// copy per codegen unit, so `f as fn` taken in two places can differ; a static cannot.
static INIT_PEER: InitPeer = init_peer;
static GET_PEER: GetPeer = get_peer;
static FINALIZE: watch::Finalize = finalize;

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
    hook(r, name, false, !(*us).shm_zone.is_null(), mcf.stats);
    rc
}

/// Take over the request's upstream hooks: finalize always, get/free (and the TLS session
/// hooks) when the balancer has set them up. Called once per upstream: from `init_peer` for
/// upstreams in the configuration, from `content` for the others.
pub(crate) unsafe fn hook(
    r: *mut ngx_http_request_t,
    name: ngx_str_t,
    dynamic: bool,
    zone: bool,
    stats: bool,
) {
    let u = (*r).upstream;
    if (*u)
        .finalize_request
        .is_some_and(|f| ptr::fn_addr_eq(f, FINALIZE))
    {
        return; // hooked already (see early_failure)
    }
    let Some(wp) = watch::take(r, u) else {
        return; // out of memory: nginx goes on untouched
    };
    let w = &mut *wp;
    w.upstream = name;
    w.dynamic = dynamic;
    w.zone = zone;
    w.stats = stats;
    w.finalize = (*u).finalize_request;
    hook_peer(u, wp);
    (*u).finalize_request = Some(FINALIZE);
    logtap::install(wp);
}

/// Wrap get/free (and the TLS session hooks) of `u`'s balancer, if it has set them up.
unsafe fn hook_peer(u: *mut ngx_http_upstream_t, wp: *mut Watch) {
    if (*u).peer.get.is_none() {
        return;
    }
    (*wp).saved = Some(Saved {
        data: (*u).peer.data,
        get: (*u).peer.get,
        free: (*u).peer.free,
        set_session: (*u).peer.set_session,
        save_session: (*u).peer.save_session,
    });
    (*u).peer.data = wp as *mut c_void;
    (*u).peer.get = Some(GET_PEER);
    (*u).peer.free = Some(free_peer);
    (*u).peer.set_session = Some(set_session);
    (*u).peer.save_session = Some(save_session);
}

/// The tap of a run-time upstream hooked before its peers existed saw a line. nginx resolves
/// a name it has not cached asynchronously, then builds the peers in the resolver's handler
/// and connects at once: nothing of ours runs in between. A failing try is logged before
/// nginx frees its peer, so wrapping get/free here counts that try, and every later one,
/// like those of any other upstream.
///
/// # Safety
/// `w` must be the watch of a tap set by [`hook`], called from its log writer.
pub unsafe fn peers_built(w: *mut Watch) {
    let u = (*w).u;
    if (*(*w).r).upstream == u {
        hook_peer(u, w);
    }
}

/// Give the peer hooks back to the balancer (the last `free`, which nginx calls after
/// `finalize_request`, goes straight to it). False if someone wrapped them after us.
unsafe fn unhook_peer(u: *mut ngx_http_upstream_t, wp: *mut Watch) -> bool {
    let Some(s) = (*wp).saved else { return true };
    let ours = (*u).peer.get.is_some_and(|f| ptr::fn_addr_eq(f, GET_PEER))
        && (*u).peer.data == wp as *mut c_void;
    if ours {
        (*u).peer.data = s.data;
        (*u).peer.get = s.get;
        (*u).peer.free = s.free;
        (*u).peer.set_session = s.set_session;
        (*u).peer.save_session = s.save_session;
    }
    ours
}

type GetPeer = unsafe extern "C" fn(*mut ngx_peer_connection_t, *mut c_void) -> ngx_int_t;

unsafe fn saved(data: *mut c_void) -> (&'static mut Watch, Saved) {
    // SAFETY: peer.data is a watch in use whose peer hooks were saved (hook()).
    let w = &mut *(data as *mut Watch);
    let s = w.saved.expect("saved peer hooks");
    (w, s)
}

unsafe extern "C" fn get_peer(pc: *mut ngx_peer_connection_t, data: *mut c_void) -> ngx_int_t {
    let (w, s) = saved(data);
    w.log = Default::default();
    w.attempt_failed = false;
    let rc = match s.get {
        Some(get) => get(pc, s.data),
        None => NGX_ERROR as ngx_int_t,
    };
    if rc == NGX_BUSY as ngx_int_t {
        let facts = Facts {
            event: Event::NoLivePeers,
            skipped: skipped(w.r),
            ..Default::default()
        };
        // The balancer names the upstream in pc->name; count at upstream level.
        record_try(w, &facts, ngx_str_t::empty(), false);
        w.attempt_failed = true;
    }
    rc
}

unsafe extern "C" fn free_peer(
    pc: *mut ngx_peer_connection_t,
    data: *mut c_void,
    state: ngx_uint_t,
) {
    let (w, s) = saved(data);
    if state & NGX_PEER_FAILED as ngx_uint_t != 0 && !w.attempt_failed {
        let facts = gather(w.r, pc, Event::PeerFailed, &w.log);
        let peer = if (*pc).name.is_null() {
            ngx_str_t::empty()
        } else {
            *(*pc).name
        };
        // a try sent to the peer: counted as one of its requests too
        record_try(w, &facts, peer, true);
        w.attempt_failed = true;
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

/// Classify, remember in the request's record, count in shared memory.
pub(crate) unsafe fn record(
    r: *mut ngx_http_request_t,
    rec: &mut *mut Record,
    upstream: ngx_str_t,
    dynamic: bool,
    facts: &Facts,
    peer: ngx_str_t,
    tried: bool,
) {
    let v = classify(facts);
    let status = if v.cause.is_failure() {
        v.cause.status()
    } else {
        502
    };
    if rec.is_null() {
        *rec = record::get_or_create(r).unwrap_or(ptr::null_mut());
    }
    if !rec.is_null() {
        let u = (*r).upstream;
        (**rec).push(Try {
            cause: v.cause,
            phase: v.phase,
            errno: v.errno,
            peer,
            detail: v.detail,
            pass: if u.is_null() {
                Pass::Any
            } else {
                Pass::from_schema((*u).schema.as_bytes())
            },
        });
    }
    let req = state::RequestInfo {
        method: (*r).method_name.as_bytes(),
        path: (*r).uri.as_bytes(),
        request_id: variables::request_id(r, main_conf(r).request_id),
    };
    state::count(
        upstream.as_bytes(),
        peer.as_bytes(),
        dynamic,
        v,
        status,
        Some(&req),
        tried,
    );
}

unsafe fn record_try(w: &mut Watch, facts: &Facts, peer: ngx_str_t, tried: bool) {
    record(
        w.r,
        &mut w.record,
        w.upstream,
        w.dynamic,
        facts,
        peer,
        tried,
    );
}

unsafe extern "C" fn finalize(r: *mut ngx_http_request_t, rc: ngx_int_t) {
    let u = (*r).upstream;
    let Some(wp) = watch::find(r, u) else { return };
    let w = &mut *wp;
    // A response nginx got from the upstream and passes on (rc 0) needs no second look,
    // unless it is the backend's own 502.
    if !w.attempt_failed && (rc != 0 || (*u).headers_in.status_n == 502) {
        classify_at_finalize(r, u, w, rc);
    }
    // The last try, unless its failure already gave it back to the balancer.
    if w.stats && !(*u).peer.sockaddr.is_null() && !(*u).peer.name.is_null() {
        count_last_try(u, w);
    }
    // A failure decided the response unless a later try succeeded. A record made before an
    // internal redirect learns that this upstream succeeded.
    let rec = if !w.record.is_null() {
        Some(w.record)
    } else if record::any() {
        record::get(r)
    } else {
        None
    };
    if let Some(rec) = rec {
        (*rec).decide(r, w.attempt_failed);
    }

    logtap::remove(wp);
    let orig = w.finalize;
    if unhook_peer(u, wp) {
        watch::release(wp);
    } else {
        // Someone wrapped the peer hooks after us and still calls ours: keep the watch (it
        // delegates, and records nothing more).
        w.attempt_failed = true;
    }
    if let Some(f) = orig {
        f(r, rc);
    }
}

/// Count the try in progress at finalize: its response's status class and times.
unsafe fn count_last_try(u: *mut ngx_http_upstream_t, w: &Watch) {
    let status = (*u).headers_in.status_n.clamp(0, 999) as u16;
    let st = (*u).state;
    let times = if status != 0 && !st.is_null() && (*st).header_time != ngx_msec_t::MAX {
        Some(((*st).header_time as u64, (*st).response_time as u64))
    } else {
        None
    };
    state::request(
        w.upstream.as_bytes(),
        (*(*u).peer.name).as_bytes(),
        w.dynamic,
        w.zone,
        status,
        times,
    );
}

/// The client's side failed: nginx timed out writing to it (`c->timedout`), a write to it
/// failed (`c->error`, also set on the streams of an HTTP/2 connection that closes), or the
/// buffered pipe says so (`downstream_error`).
unsafe fn client_failed(r: *const ngx_http_request_t, u: *const ngx_http_upstream_t) -> bool {
    let c = (*r).connection;
    (*c).error() != 0
        || (*c).timedout() != 0
        || (!(*u).pipe.is_null() && (*(*u).pipe).downstream_error() != 0)
}

/// Failures nginx does not report through `free(NGX_PEER_FAILED)`.
#[cold]
unsafe fn classify_at_finalize(
    r: *mut ngx_http_request_t,
    u: *mut ngx_http_upstream_t,
    w: &mut Watch,
    rc: ngx_int_t,
) {
    if (*u).upgrade() != 0 {
        // A tunnel (WebSocket) after its 101: nginx ends it when either side has been idle
        // for proxy_read_timeout ("upstream timed out ... while proxying upgraded
        // connection", finalized as 504) or closes it. That is how such a session ends, not a
        // failed response: the client has its 101, and no 502/504 is ever sent.
        return;
    }
    let rc_status = rc as u32;
    let error = matches!(
        rc_status,
        NGX_HTTP_BAD_GATEWAY | NGX_HTTP_GATEWAY_TIME_OUT | NGX_HTTP_INTERNAL_SERVER_ERROR
    );
    let pc = ptr::addr_of_mut!((*u).peer);
    let peer = if (*pc).name.is_null() {
        ngx_str_t::empty()
    } else {
        *(*pc).name
    };
    let facts = if rc_status == NGX_HTTP_INTERNAL_SERVER_ERROR
        && (*pc).connection.is_null()
        && (w.log.out_of_connections || (*ngx_cycle).free_connection_n == 0)
    {
        // ngx_event_connect_peer() found no free connection: nginx answers 500.
        Facts {
            event: Event::OutOfConnections,
            ..Default::default()
        }
    } else if (*u).header_sent() != 0
        && (error || rc == NGX_ERROR as ngx_int_t)
        && !(*pc).connection.is_null()
    {
        if client_failed(r, u) {
            // nginx gave up on the client (send_timeout, a failed write, an HTTP/2
            // connection closing) and closes the backend's connection: not the backend's
            // failure.
            return;
        }
        // The body was cut after the header went out: no error page, but a failure.
        gather(r, pc, Event::BodyFailed, &w.log)
    } else if w.dynamic && rc_status != NGX_HTTP_INTERNAL_SERVER_ERROR && error {
        // A run-time upstream whose peers nginx built without a hook: the failed connection
        // is still open here, its flags tell the cause. No peer at all: the name did not
        // resolve.
        let res = (*u).resolved;
        if (*pc).name.is_null() && (*res).naddrs == 0 && (*res).sockaddr.is_null() {
            record_try(
                w,
                &Facts {
                    event: Event::ResolveFailed,
                    // the resolver's line: 110 when the DNS server did not answer
                    errno: w.log.errno,
                    ..Default::default()
                },
                ngx_str_t::empty(),
                false,
            );
            w.attempt_failed = true;
            return;
        }
        gather(r, pc, Event::PeerFailed, &w.log)
    } else if (*u).headers_in.status_n == 502 {
        // The backend's own 502, passed through: all that matters is its status.
        Facts {
            connected: true,
            request_sent: true,
            upstream_status: 502,
            ..Default::default()
        }
    } else {
        return;
    };
    record_try(w, &facts, peer, false);
    w.attempt_failed = true;
}
