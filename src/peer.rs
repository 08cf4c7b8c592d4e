//! The peer-wrapping idiom of ngx_http_upstream_keepalive_module: save the original
//! `peer.init` / `get` / `free` (and the TLS session hooks, and `u->finalize_request`), wrap,
//! delegate. The wrappers only gather facts; `cause::classify` decides, `state` counts.

use core::ffi::c_void;
use core::ptr;
use std::net::SocketAddr;

use ngx::core::Status;
use ngx::ffi::*;
use ngx::http::{
    HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule,
    NgxHttpUpstreamModule,
};

use crate::cause::{classify, Event, Facts, LogLine, Pass, Skipped, Tls};
use crate::conf::{LocConf, MainConf};
use crate::lint::target::is_loopback;
use crate::listeners::{self, Answers};
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

unsafe fn main_conf(r: *mut ngx_http_request_t) -> &'static MainConf {
    // SAFETY: our main conf exists in every http{} request context.
    let p = *(*r).main_conf.add(Module::module().ctx_index) as *const MainConf;
    &*p
}

unsafe fn enabled(r: *mut ngx_http_request_t) -> bool {
    let p = *(*r).loc_conf.add(Module::module().ctx_index) as *const LocConf;
    (*p).enable != 0
}

type InitPeer =
    unsafe extern "C" fn(*mut ngx_http_request_t, *mut ngx_http_upstream_srv_conf_t) -> ngx_int_t;

// The one address of each wrapper that is installed and compared. Rust may give a function a
// copy per codegen unit, so `f as fn` taken in two places can differ; a static cannot.
static INIT_PEER: InitPeer = init_peer;
static GET_PEER: GetPeer = get_peer;
static CONTENT: Handler = content;
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
unsafe fn hook(
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
    let seen = (*lcf).seen.get();
    let pre = if seen != Seen::Configured {
        pre_tap(r)
    } else {
        None
    };
    let rc = h(r);
    // the tap recorded a synchronous failure already (see no_resolver)
    let mut recorded = false;
    if let Some(p) = pre {
        recorded = (*p).attempt_failed;
        logtap::remove(p);
        watch::release(p);
    }
    let u = (*r).upstream;
    // Nothing to see: no upstream, or one named in the configuration (peer.init hooks it).
    if !run_time(u) {
        if seen == Seen::Nothing {
            (*lcf).seen.set(Seen::Configured);
        }
        return rc;
    }
    (*lcf).seen.set(Seen::RunTime);
    if (*u).cleanup.is_null() {
        // Already finalized: nginx failed synchronously, before any peer (no resolver, a
        // cached negative answer).
        if !(*u).peer.sockaddr.is_null() || recorded {
            return rc;
        }
        resolve_failed_now(r);
        return rc;
    }
    if (*u).finalize_request.is_some() {
        if let Some(name) = dynamic_name(r) {
            hook(r, name, true, true, main_conf(r).stats);
        }
    }
    rc
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

/// Why the balancer found no server: the states of the upstream's servers, in the order the
/// round-robin balancer (which every built-in one builds on) skips them. Upstreams made at
/// run time (`proxy_pass http://$var`) have no such list: nothing is said.
unsafe fn skipped(r: *mut ngx_http_request_t) -> Skipped {
    let u = (*r).upstream;
    let mut s = Skipped::default();
    if u.is_null() || (*u).upstream.is_null() {
        return s;
    }
    let now = ngx_time();
    s.no_servers = true;
    upstreams::visit_peers((*u).upstream, |q, _| {
        s.no_servers = false;
        if q.down != 0 {
            s.down += 1;
        } else if upstreams::failed(q, now) {
            s.failed += 1;
        } else if q.max_conns != 0 && q.conns >= q.max_conns {
            s.busy += 1;
        }
    });
    s
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

/// Facts about the current try, read from the request's upstream and its connection.
unsafe fn gather(
    r: *mut ngx_http_request_t,
    pc: *mut ngx_peer_connection_t,
    event: Event,
    logged: &LogLine,
) -> Facts {
    let u = (*r).upstream;
    let c = (*pc).connection;
    // the peer's address family, once the balancer chose one
    let family = (!(*pc).sockaddr.is_null()).then(|| (*(*pc).sockaddr).sa_family);
    let mut f = Facts {
        event,
        connected: !c.is_null(),
        request_sent: (*u).request_sent() != 0,
        header_sent: (*u).header_sent() != 0,
        upstream_status: (*u).headers_in.status_n.clamp(0, 999) as u16,
        reused: (*pc).cached() != 0,
        sent_invalid: logged.sent_invalid,
        file_error: logged.file_error,
        cert_verify: logged.cert_verify,
        tls_alert: logged.tls_alert,
        sni: sni(u),
        elapsed_ms: ngx_current_msec.wrapping_sub((*u).start_time) as u64,
        unix: family == Some(AF_UNIX as u16),
        tcp: matches!(family, Some(f) if f == AF_INET as u16 || f == AF_INET6 as u16),
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
        f.tls = tls(c);
    }
    f.errno = logged.errno.or_else(|| {
        // A synchronous connect() failure leaves errno set (unix sockets).
        let e = ngx_socket_errno();
        (c.is_null() && e != 0).then_some(e)
    });
    if f.tcp && f.errno == Some(crate::cause::errno::ECONNREFUSED) {
        if let Some(a) = peer_addr((*pc).sockaddr).filter(|a| is_loopback(a.ip())) {
            f.loopback = true;
            f.container = listeners::in_container();
            // SAFETY: single-threaded worker (see WorkerAnswers); the borrow ends here.
            let answers = &mut *ANSWERS.0.get();
            f.listens_on = answers.elsewhere(&a, ngx_current_msec as u64, listeners::listening);
        }
    }
    f
}

/// What a worker last read of the listening sockets on refused ports (see `listeners`).
struct WorkerAnswers(core::cell::UnsafeCell<Answers>);

// SAFETY: an nginx worker runs its event loop, and so every use of this cache, on one thread.
unsafe impl Sync for WorkerAnswers {}

static ANSWERS: WorkerAnswers = WorkerAnswers(core::cell::UnsafeCell::new(Answers::new()));

/// The try's TCP peer address.
///
/// # Safety
/// `sa` must be the try's peer address (`pc->sockaddr`, valid while the try is).
unsafe fn peer_addr(sa: *const sockaddr) -> Option<SocketAddr> {
    Some(match i32::from((*sa).sa_family) {
        libc::AF_INET => {
            let a = &*(sa as *const libc::sockaddr_in);
            SocketAddr::from((a.sin_addr.s_addr.to_ne_bytes(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            let a = &*(sa as *const libc::sockaddr_in6);
            SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
        }
        _ => return None,
    })
}

/// TLS on the upstream connection.
#[cfg(ngx_feature = "ssl")]
unsafe fn tls(c: *const ngx_connection_t) -> Tls {
    let ssl = (*c).ssl;
    if ssl.is_null() {
        Tls::Off
    } else if (*ssl).handshaked() == 0 {
        Tls::Handshaking
    } else {
        Tls::Established
    }
}

/// nginx built without SSL: no upstream TLS.
#[cfg(not(ngx_feature = "ssl"))]
unsafe fn tls(_c: *const ngx_connection_t) -> Tls {
    Tls::Off
}

/// nginx sends the server name in its TLS handshakes with this upstream
/// (`proxy_ssl_server_name`).
#[cfg(ngx_feature = "ssl")]
unsafe fn sni(u: *const ngx_http_upstream_t) -> bool {
    !(*u).conf.is_null() && (*(*u).conf).ssl_server_name != 0
}

#[cfg(not(ngx_feature = "ssl"))]
unsafe fn sni(_u: *const ngx_http_upstream_t) -> bool {
    false
}

/// Classify, remember in the request's record, count in shared memory.
unsafe fn record(
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
