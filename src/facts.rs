//! What nginx's structures say about a failed try: the FFI side of [`Facts`], read from the
//! request's upstream, its peer connection and the balancer's peers. `cause::classify`
//! decides from them.

use std::net::SocketAddr;

use ngx::ffi::*;

use crate::cause::{Event, Facts, LogLine, Skipped, Tls};
use crate::lint::target::is_loopback;
use crate::listeners::{self, Answers};
use crate::upstreams;

/// Why the balancer found no server: the states of the upstream's servers, in the order the
/// round-robin balancer (which every built-in one builds on) skips them. Upstreams made at
/// run time (`proxy_pass http://$var`) have no such list: nothing is said.
pub unsafe fn skipped(r: *mut ngx_http_request_t) -> Skipped {
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

/// Facts about the current try, read from the request's upstream and its connection.
pub unsafe fn gather(
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
