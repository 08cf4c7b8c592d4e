//! One check of one peer on an nginx connection: connect (non-blocking, through
//! `ngx_event_connect_peer`), TLS handshake for https / ssl_hello (`check::tls`), send the
//! request, read the response into the pure `exchange`, all under one deadline timer that
//! covers the whole probe. Nothing blocks the worker; every failure becomes an outcome with
//! a reason, reported to `worker::finished`.
//!
//! With `check_keepalive_requests N` (N > 1), an http/https check whose response allows it
//! leaves its connection to the next check of the peer, up to N checks; a kept connection
//! that the peer closed meanwhile is replaced by a new one within the same check.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;

use super::directives;
use super::exchange::{Exchange, Judge, Phase};
use super::health::{Outcome, Reason};
use super::worker::{self, Target};
use crate::cause::Cause;

pub(super) struct Probe {
    pc: ngx_peer_connection_t,
    /// The deadline of the whole probe.
    timer: ngx_event_t,
    log: ngx_log_t,
    name: ngx_str_t,
    target: *mut Target,
    exchange: Exchange,
    phase: Phase,
    sent: usize,
    /// The connection was kept from an earlier check.
    reused: bool,
    /// Response bytes were received.
    got_bytes: bool,
}

/// Checks per connection (1: a new connection each time).
fn keepalive(uc: &super::directives::UpstreamCheck) -> u32 {
    if uc.conf().kind.is_http() {
        uc.keepalive_requests.unwrap_or(1)
    } else {
        1
    }
}

/// Start a probe of `t` (its check was just claimed).
///
/// # Safety
/// `t` must be a target of this worker, not busy.
pub unsafe fn start(t: *mut Target) {
    let w = worker::get();
    let uc = &*(*t).uc;
    let peer = &*(*t).peer;
    let c = uc.conf();
    let p = Box::into_raw(Box::new(Probe {
        // SAFETY (both): all-zero is nginx's initial state for these structures.
        pc: core::mem::zeroed(),
        timer: core::mem::zeroed(),
        log: (*w).log,
        name: ngx_str_t {
            len: peer.name.len(),
            data: peer.name.as_ptr() as *mut u8,
        },
        target: t,
        exchange: Exchange::new(c.kind, &uc.request, !uc.body.is_null(), keepalive(uc) > 1),
        phase: Phase::Connect,
        sent: 0,
        reused: false,
        got_bytes: false,
    }));
    (*t).probe = p;
    (*p).log.handler = Some(log_context);
    (*p).log.data = p.cast();
    let tm = ptr::addr_of_mut!((*p).timer);
    (*tm).handler = Some(on_timeout);
    (*tm).data = p.cast();
    (*tm).log = ptr::addr_of_mut!((*p).log);
    (*tm).set_cancelable(1);
    ngx_add_timer(tm, c.timeout_ms as ngx_msec_t);

    let idle = (*t).idle;
    if !idle.is_null() {
        (*t).idle = ptr::null_mut();
        ngx_reusable_connection(idle, 0);
        (*p).pc.connection = idle;
        (*p).reused = true;
        attach(p, idle);
        (*p).phase = Phase::Send;
        send(p);
        return;
    }
    connect(p);
}

/// What the probe's error lines end with (the log's handler, as a request's lines end with
/// its client and upstream): which peer of which upstream was being checked. nginx writes
/// them only when `error_log` is at `info` or more verbose (see `Worker::log`).
unsafe extern "C" fn log_context(log: *mut ngx_log_t, buf: *mut u_char, len: usize) -> *mut u_char {
    // SAFETY: the handler is set on a probe's own log, whose data is the probe (start()).
    let t = (*((*log).data as *const Probe)).target;
    let text = format!(
        " while checking peer {} of upstream \"{}\"",
        String::from_utf8_lossy(&(*(*t).peer).name),
        String::from_utf8_lossy(&(*(*t).uc).name)
    );
    let n = text.len().min(len);
    ptr::copy_nonoverlapping(text.as_ptr(), buf, n);
    buf.add(n)
}

/// Open a new connection to the peer.
unsafe fn connect(p: *mut Probe) {
    let t = (*p).target;
    let peer = &*(*t).peer;
    (*t).uses = 0;
    let pc = ptr::addr_of_mut!((*p).pc);
    (*pc).sockaddr = peer.sockaddr.as_ptr() as *mut sockaddr;
    (*pc).socklen = peer.sockaddr.len() as socklen_t;
    (*pc).name = ptr::addr_of_mut!((*p).name);
    (*pc).get = Some(ngx_event_get_peer);
    (*pc).log = ptr::addr_of_mut!((*p).log);
    (*pc).set_log_error(ngx_connection_log_error_e_NGX_ERROR_ERR);

    ngx_set_socket_errno(0);
    let rc = ngx_event_connect_peer(pc);
    if rc == NGX_ERROR as ngx_int_t
        || rc == NGX_BUSY as ngx_int_t
        || rc == NGX_DECLINED as ngx_int_t
    {
        let err = ngx_socket_errno();
        let cause = if (*pc).connection.is_null() && (*ngx_cycle).free_connection_n == 0 {
            Cause::WorkerConnections
        } else {
            Phase::Connect.error(err)
        };
        finish(p, Outcome::fail(Reason::Cause(cause), None));
        return;
    }
    let conn = (*pc).connection;
    attach(p, conn);
    // Closed at once by a graceful shutdown (ngx_close_idle_connections).
    (*conn).set_idle(1);
    if rc == NGX_OK as ngx_int_t {
        connected(p);
    }
}

/// Make `c` the probe's connection: its events and log.
unsafe fn attach(p: *mut Probe, c: *mut ngx_connection_t) {
    let log = ptr::addr_of_mut!((*p).log);
    (*c).data = p.cast();
    (*c).log = log;
    (*(*c).read).log = log;
    (*(*c).write).log = log;
    (*(*c).read).handler = Some(on_event);
    (*(*c).write).handler = Some(on_event);
}

unsafe extern "C" fn on_timeout(ev: *mut ngx_event_t) {
    let p = (*ev).data as *mut Probe;
    finish(p, Outcome::fail(Reason::Cause((*p).phase.timeout()), None));
}

/// Read and write events of the probe's connection (outside the TLS handshake, which
/// nginx's SSL code drives).
unsafe extern "C" fn on_event(ev: *mut ngx_event_t) {
    let c = (*ev).data as *mut ngx_connection_t;
    let p = (*c).data as *mut Probe;
    if (*c).close() != 0 {
        // graceful shutdown: give up quietly
        abort(p);
        return;
    }
    match (*p).phase {
        Phase::Connect => {
            let err = socket_error(c);
            if err != 0 {
                finish(
                    p,
                    Outcome::fail(Reason::Cause(Phase::Connect.error(err)), None),
                );
            } else {
                connected(p);
            }
        }
        Phase::Handshake => {}
        Phase::Send => {
            if (*ev).write() != 0 {
                send(p);
            } else {
                // the peer answered (or closed) before reading the whole request
                receive(p);
            }
        }
        Phase::Read => {
            if (*ev).write() == 0 {
                receive(p);
            }
        }
    }
}

/// The pending error of a non-blocking connect (0: connected).
unsafe fn socket_error(c: *mut ngx_connection_t) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    if libc::getsockopt(
        (*c).fd,
        libc::SOL_SOCKET,
        libc::SO_ERROR,
        ptr::addr_of_mut!(err).cast::<c_void>(),
        &mut len,
    ) == -1
    {
        return ngx_socket_errno();
    }
    err
}

/// TCP connected: TLS first for the TLS kinds.
unsafe fn connected(p: *mut Probe) {
    let uc = &*(*(*p).target).uc;
    if uc.conf().kind.is_tls() {
        (*p).phase = Phase::Handshake;
        let c = (*p).pc.connection;
        match super::tls::handshake(c, uc, handshake_done) {
            Err(()) => finish(
                p,
                Outcome::fail(Reason::Cause(Cause::TlsHandshakeFailed), None),
            ),
            Ok(false) => {} // nginx calls handshake_done
            Ok(true) => handshake_done(c),
        }
    } else {
        ready(p);
    }
}

unsafe extern "C" fn handshake_done(c: *mut ngx_connection_t) {
    let p = (*c).data as *mut Probe;
    let uc = &*(*(*p).target).uc;
    if !super::tls::verified(c, uc) {
        finish(
            p,
            Outcome::fail(Reason::Cause(Cause::TlsHandshakeFailed), None),
        );
        return;
    }
    (*(*c).read).handler = Some(on_event);
    (*(*c).write).handler = Some(on_event);
    ready(p);
}

/// Connected (and TLS done): a verdict now, or send the request.
unsafe fn ready(p: *mut Probe) {
    if let Some(o) = (*p).exchange.connected() {
        finish(p, o);
        return;
    }
    (*p).phase = Phase::Send;
    send(p);
}

unsafe fn send(p: *mut Probe) {
    let c = (*p).pc.connection;
    let req = &(*(*(*p).target).uc).request;
    let Some(sendf) = (*c).send else {
        finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
        return;
    };
    while (*p).sent < req.len() {
        let n = sendf(
            c,
            req.as_ptr().add((*p).sent) as *mut u8,
            req.len() - (*p).sent,
        );
        if n > 0 {
            (*p).sent += n as usize;
        } else if n == NGX_AGAIN as isize {
            if ngx_handle_write_event((*c).write, 0) != NGX_OK as ngx_int_t {
                finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
            }
            return;
        } else {
            let err = ngx_socket_errno();
            finish(
                p,
                Outcome::fail(Reason::Cause(Phase::Send.error(err)), None),
            );
            return;
        }
    }
    // All sent: no more interest in writing. A no-op with epoll; poll and select (level-
    // triggered) would otherwise report the socket writable at every turn of the loop.
    if ngx_handle_write_event((*c).write, 0) != NGX_OK as ngx_int_t {
        finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
        return;
    }
    (*p).phase = Phase::Read;
    if (*(*c).read).ready() == 0 {
        // nothing to read yet: wait for the event rather than try (one syscall less)
        if ngx_handle_read_event((*c).read, 0) != NGX_OK as ngx_int_t {
            finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
        }
        return;
    }
    receive(p);
}

unsafe fn receive(p: *mut Probe) {
    let c = (*p).pc.connection;
    let w = worker::get();
    let uc = &*(*(*p).target).uc;
    // SAFETY: uc.body is the configuration's compiled regex (checked non-null below).
    let matches = |b: &[u8]| unsafe { directives::body_matches(uc.body, b) };
    let judge = Judge {
        expect: &uc.expect,
        body: if uc.body.is_null() {
            None
        } else {
            Some(&matches)
        },
    };
    let Some(recv) = (*c).recv else {
        finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
        return;
    };
    loop {
        let buf = &mut (*w).buf;
        let n = recv(c, buf.as_mut_ptr(), buf.len());
        if n > 0 {
            (*p).got_bytes = true;
            if let Some(o) = (*p).exchange.data(&buf[..n as usize], &judge) {
                finish(p, o);
                return;
            }
            if (*(*c).read).ready() == 0 {
                // What the socket had is read; over TLS, what OpenSSL still holds comes back
                // as a posted event. Reading on regardless would let a peer that sends as fast
                // as the worker decrypts keep it here for ever (its timeout never runs).
                if ngx_handle_read_event((*c).read, 0) != NGX_OK as ngx_int_t {
                    finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
                }
                return;
            }
        } else if n == 0 {
            let o = (*p).exchange.eof(&judge);
            finish(p, o);
            return;
        } else if n == NGX_AGAIN as isize {
            if ngx_handle_read_event((*c).read, 0) != NGX_OK as ngx_int_t {
                finish(p, Outcome::fail(Reason::Cause(Cause::Other), None));
            }
            return;
        } else {
            let err = ngx_socket_errno();
            let phase = (*p).phase;
            finish(p, Outcome::fail(Reason::Cause(phase.error(err)), None));
            return;
        }
    }
}

/// Close a probe or kept connection.
unsafe fn close(c: *mut ngx_connection_t) {
    super::tls::shutdown(c);
    let pool = (*c).pool;
    ngx_close_connection(c);
    if !pool.is_null() {
        ngx_destroy_pool(pool);
    }
}

/// Release the probe's timer, connection and memory.
unsafe fn release(p: *mut Probe) -> *mut Target {
    let tm = ptr::addr_of_mut!((*p).timer);
    if (*tm).timer_set() != 0 {
        ngx_del_timer(tm);
    }
    let c = (*p).pc.connection;
    if !c.is_null() {
        close(c);
        (*p).pc.connection = ptr::null_mut();
    }
    let t = (*p).target;
    (*t).probe = ptr::null_mut();
    drop(Box::from_raw(p));
    t
}

/// A kept connection that failed before any byte of response came back: the peer closed
/// it while it was idle. Not a verdict on the peer.
fn stale(p: &Probe, o: &Outcome) -> bool {
    p.reused
        && !p.got_bytes
        && matches!(
            o.failure,
            Some(Reason::Cause(
                Cause::PrematureClose | Cause::ConnectionReset
            ))
        )
}

unsafe fn finish(p: *mut Probe, o: Outcome) {
    let t = (*p).target;
    if stale(&*p, &o) {
        // start over on a new connection, within the same deadline
        close((*p).pc.connection);
        (*p).pc.connection = ptr::null_mut();
        let uc = &*(*t).uc;
        (*p).exchange = Exchange::new(uc.conf().kind, &uc.request, !uc.body.is_null(), true);
        (*p).reused = false;
        (*p).phase = Phase::Connect;
        (*p).sent = 0;
        connect(p);
        return;
    }
    let c = (*p).pc.connection;
    let uc = &*(*t).uc;
    if o.passed()
        && !c.is_null()
        && (*p).exchange.reusable()
        && (*t).uses + 1 < keepalive(uc)
        && !worker::exiting()
        && plenty_of_connections()
    {
        park(t, c);
        (*t).uses += 1;
        (*p).pc.connection = ptr::null_mut();
    }
    let t = release(p);
    worker::finished(t, &o);
}

unsafe fn abort(p: *mut Probe) {
    let t = release(p);
    worker::release(t);
}

/// The worker exits: close the probe of `t` still in flight and its kept connection.
/// nginx's graceful shutdown closes the connections marked idle through their read handler,
/// which ends a probe in any phase but the TLS handshake: there the handler is OpenSSL's,
/// which only retries. What is left open when the worker exits nginx reports as an alert.
///
/// # Safety
/// `t` must be a target of this worker.
pub unsafe fn close_all(t: *mut Target) {
    if !(*t).probe.is_null() {
        abort((*t).probe);
    }
    let idle = (*t).idle;
    if !idle.is_null() {
        (*t).idle = ptr::null_mut();
        close(idle);
    }
}

/// Kept connections must not starve client traffic: keep one only while a quarter of the
/// worker's connections are free (and nginx may close kept ones when it runs short).
unsafe fn plenty_of_connections() -> bool {
    let cy = ngx_cycle;
    (*cy).free_connection_n * 4 >= (*cy).connection_n
}

/// Keep `c` for the next check of `t`.
unsafe fn park(t: *mut Target, c: *mut ngx_connection_t) {
    let log = ptr::addr_of_mut!((*worker::get()).log);
    (*c).data = t.cast();
    (*c).log = log;
    (*(*c).read).log = log;
    (*(*c).write).log = log;
    (*(*c).read).handler = Some(on_idle);
    (*(*c).write).handler = Some(on_idle);
    (*t).idle = c;
    // nginx may close it when it runs out of connections (read handler, c->close set)
    ngx_reusable_connection(c, 1);
}

/// An event on a kept connection: the peer closed it (or sent something unasked), or a
/// graceful shutdown closes idle connections. Close it; the next check opens a new one.
unsafe extern "C" fn on_idle(ev: *mut ngx_event_t) {
    let c = (*ev).data as *mut ngx_connection_t;
    let t = (*c).data as *mut Target;
    if (*ev).write() != 0 {
        return;
    }
    if (*c).close() == 0 {
        let mut b = 0u8;
        let n = libc::recv((*c).fd, ptr::addr_of_mut!(b).cast(), 1, libc::MSG_PEEK);
        if n == -1 && ngx_socket_errno() == libc::EAGAIN {
            return;
        }
    }
    (*t).idle = ptr::null_mut();
    close(c);
}
