//! Turn the facts of one failed try into a cause, a phase and a detail ([`classify`]).
//! The FFI layer (`peer.rs`) gathers the [`Facts`] from nginx's structures.

use super::{errno, Cause, Detail, Phase};
use crate::listeners::Elsewhere;

/// How long after the try began a close without an answer stops looking like a crash on
/// arrival and starts looking like the backend's own request timeout (gunicorn --timeout is
/// 30 s by default, uwsgi harakiri and php-fpm request_terminate_timeout are set in tens of
/// seconds): well under all of them, well over a crash on arrival.
pub const LATE_CLOSE_MS: u64 = 5_000;

/// What kind of event the FFI layer observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Event {
    /// `peer.free(.., NGX_PEER_FAILED)`: nginx gave up on this peer for this try.
    #[default]
    PeerFailed,
    /// `peer.get()` returned `NGX_BUSY`: no peer left to try.
    NoLivePeers,
    /// The request was finalized with an error before a connection could be made and the
    /// worker had no free connection left.
    OutOfConnections,
    /// The upstream name did not resolve (`resolver` path; no peer was ever selected).
    ResolveFailed,
    /// The request ended with an error after the response header was sent (body cut).
    BodyFailed,
}

/// Why the balancer found no server to pick (`Event::NoLivePeers`): how many of the servers
/// it had left were in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// `max_fails` tripped, `fail_timeout` not over.
    pub failed: u32,
    /// At their `max_conns`.
    pub busy: u32,
    /// `down` (configured, or set by the health checks).
    pub down: u32,
    /// The upstream's list was read and held no server at all (every `server ... resolve`
    /// name resolved to nothing).
    pub no_servers: bool,
}

impl Skipped {
    fn detail(&self) -> Detail {
        if self.no_servers {
            Detail::Unresolved
        } else if self.failed > 0 {
            Detail::None // the cause's own hint: max_fails / fail_timeout
        } else if self.busy > 0 {
            Detail::MaxConns
        } else if self.down > 0 {
            Detail::Down
        } else {
            Detail::None
        }
    }
}

/// TLS on the upstream connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// Not in use (or nginx built without SSL).
    #[default]
    Off,
    /// Started, the handshake not complete.
    Handshaking,
    /// The handshake completed.
    Established,
}

/// Raw observations about one failed try, gathered by the FFI layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub event: Event,
    /// The upstream connection existed (an asynchronous connect was started).
    pub connected: bool,
    pub request_sent: bool,
    pub write_timedout: bool,
    pub read_timedout: bool,
    pub read_eof: bool,
    pub read_pending_eof: bool,
    pub read_error: bool,
    pub tls: Tls,
    /// The response header buffer was full (`u->buffer.last == u->buffer.end`).
    pub header_buffer_full: bool,
    /// Bytes of response received into the header buffer.
    pub bytes_received: usize,
    /// The upstream's own status code, if a status line was parsed (0 otherwise).
    pub upstream_status: u16,
    /// The response header was already passed on to the client.
    pub header_sent: bool,
    /// errno of the failure as nginx logged it, or as left by a synchronous call.
    pub errno: Option<i32>,
    /// The try reused a kept-alive connection (`upstream { keepalive }`).
    pub reused: bool,
    /// `Event::NoLivePeers`: the states of the servers the balancer skipped.
    pub skipped: Skipped,
    /// nginx logged, at level error, that it refused what the backend sent ("upstream sent
    /// ..."): the verdict on the header, also when the backend closed the connection after.
    pub sent_invalid: bool,
    /// Milliseconds from the start of the try (its connect) to the failure.
    pub elapsed_ms: u64,
    /// The peer is a unix socket.
    pub unix: bool,
    /// The peer is a TCP address (IPv4 or IPv6).
    pub tcp: bool,
    /// `errno` is that of nginx's own file operation (a temporary file), not the connection's.
    pub file_error: bool,
    /// nginx refused the backend's certificate: OpenSSL's verify error, as nginx logged it.
    pub cert_verify: Option<u16>,
    /// The TLS alert the backend sent during the handshake, as nginx logged it.
    pub tls_alert: Option<u16>,
    /// nginx sends the server name in the handshake (`proxy_ssl_server_name on`).
    pub sni: bool,
    /// A refused connect to a loopback address: where the backend listens on the same port
    /// instead (the kernel's table of listening sockets, [`crate::listeners`]).
    pub listens_on: Option<Elsewhere>,
    /// The refused address is a loopback one (127.0.0.0/8, ::1).
    pub loopback: bool,
    /// nginx runs in a container (its own loopback).
    pub container: bool,
    /// `Event::ResolveFailed`: no `resolver` was in effect (nginx logged "no resolver defined").
    pub no_resolver: bool,
}

/// The outcome of classifying one try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub cause: Cause,
    pub phase: Phase,
    /// errno to report (nginx's own: 110 for timeouts, as its error.log line says).
    pub errno: Option<i32>,
    /// What else the facts say (the hint says what to do about it).
    pub detail: Detail,
}

/// A cause decided by errno alone, when the errno is specific enough.
pub fn cause_from_errno(errno: i32) -> Option<Cause> {
    Some(match errno {
        errno::ECONNREFUSED => Cause::ConnectRefused,
        errno::EACCES => Cause::PermissionDenied,
        errno::ENOENT => Cause::SocketNotFound,
        errno::EHOSTUNREACH | errno::ENETUNREACH => Cause::HostUnreachable,
        errno::EADDRNOTAVAIL => Cause::AddressUnavailable,
        errno::ECONNRESET => Cause::ConnectionReset,
        _ => return None,
    })
}

/// Turn the facts of one failed try into a cause and a phase.
pub fn classify(f: &Facts) -> Verdict {
    let mut v = decide(f);
    let unanswered = f.bytes_received == 0
        && !f.header_sent
        && matches!(v.cause, Cause::PrematureClose | Cause::ConnectionReset);
    v.detail = if f.event == Event::NoLivePeers {
        f.skipped.detail()
    } else if f.event == Event::ResolveFailed && f.no_resolver {
        Detail::NoResolver
    } else if f.file_error {
        Detail::TempFile
    } else if v.cause == Cause::PermissionDenied && f.tcp {
        Detail::TcpForbidden
    } else if let Some(d) = f
        .cert_verify
        .filter(|_| v.cause == Cause::TlsHandshakeFailed)
        .and_then(Detail::of_verify_error)
    {
        d
    } else if v.cause == Cause::TlsHandshakeFailed
        && !f.sni
        && matches!(f.tls_alert, Some(40 | 112))
    {
        Detail::NoSni
    } else if unanswered && f.elapsed_ms >= LATE_CLOSE_MS {
        // before the kept-alive race: that one strikes as the connection is reused
        Detail::LateClose
    } else if unanswered && f.reused {
        Detail::Reused
    } else if unanswered && f.unix {
        Detail::SocketUnanswered
    } else if unanswered && f.tls == Tls::Off {
        // a TCP port: TLS there says it is no port mistaken for another
        Detail::PlainUnanswered
    } else if v.cause == Cause::ConnectRefused && f.unix {
        Detail::StaleSocket
    } else if let (Cause::ConnectRefused, true, Some(e)) = (v.cause, f.tcp, f.listens_on) {
        match e {
            Elsewhere::Ipv6Only => Detail::OnIpv6Only,
            Elsewhere::Ipv4Only => Detail::OnIpv4Only,
            Elsewhere::OtherAddress => Detail::OnOtherAddress,
        }
    } else if v.cause == Cause::ConnectRefused && f.tcp && f.loopback && f.container {
        Detail::ContainerLoopback
    } else if v.cause == Cause::ConnectTimeout && f.tls == Tls::Handshaking {
        // TLS starts once the TCP connection is made
        Detail::TlsStalled
    } else {
        Detail::None
    };
    v
}

/// Cause, phase and errno of a try.
fn decide(f: &Facts) -> Verdict {
    let v = |cause, phase, errno| Verdict {
        cause,
        phase,
        errno,
        detail: Detail::None,
    };
    let after_connect = if f.header_sent {
        Phase::ReadBody
    } else {
        Phase::ReadHeader
    };

    match f.event {
        Event::NoLivePeers => return v(Cause::NoLiveUpstreams, Phase::Select, None),
        Event::OutOfConnections => return v(Cause::WorkerConnections, Phase::Connect, f.errno),
        // A resolver's answer code is no errno, but for a timeout nginx uses ETIMEDOUT.
        Event::ResolveFailed => {
            let timed_out = f.errno.filter(|&e| e == errno::ETIMEDOUT);
            return v(Cause::HostNotFound, Phase::Resolve, timed_out);
        }
        Event::PeerFailed | Event::BodyFailed => {}
    }

    // nginx failed to write the response to its temporary file: the backend is not at fault,
    // and the errno (13, 28...) says nothing of the connection.
    if f.file_error {
        let phase = if f.connected {
            after_connect
        } else {
            Phase::Connect
        };
        return v(Cause::Other, phase, f.errno);
    }

    // No connection object: the connect() call itself failed synchronously (unix sockets,
    // local errors). errno is reliable here.
    if !f.connected && f.event == Event::PeerFailed {
        let cause = f.errno.and_then(cause_from_errno).unwrap_or(Cause::Other);
        return v(cause, Phase::Connect, f.errno);
    }

    if f.upstream_status == 502 && !f.read_timedout && !f.read_error && !f.header_buffer_full {
        // The 502 arrived in the response header.
        return v(Cause::Upstream502, Phase::ReadHeader, None);
    }

    let timed_out = Some(errno::ETIMEDOUT);
    if f.write_timedout {
        return if f.request_sent {
            v(Cause::SendTimeout, Phase::Send, timed_out)
        } else {
            v(Cause::ConnectTimeout, Phase::Connect, timed_out)
        };
    }
    if f.tls == Tls::Handshaking {
        if f.read_timedout {
            return v(Cause::ConnectTimeout, Phase::Connect, timed_out);
        }
        // A refused connect is caught before TLS starts, but keep errno-specific causes.
        return match f.errno.and_then(cause_from_errno) {
            Some(c @ (Cause::ConnectRefused | Cause::HostUnreachable)) => {
                v(c, Phase::Connect, f.errno)
            }
            _ => v(Cause::TlsHandshakeFailed, Phase::Connect, f.errno),
        };
    }
    if f.read_timedout {
        return v(Cause::ReadTimeout, after_connect, timed_out);
    }
    // The handshake completed and the request never went out (nginx sends it right after):
    // nginx refused the backend's certificate (`proxy_ssl_verify`: not trusted, or not for
    // `proxy_ssl_name`).
    if f.tls == Tls::Established && !f.request_sent {
        return v(Cause::TlsHandshakeFailed, Phase::Connect, f.errno);
    }

    // nginx reads before it writes when both events come at once: a backend that accepted
    // the connection and closed it at once (an address allowlist: php-fpm's
    // listen.allowed_clients) is read as end of file before the request goes out. A failed
    // connect is never read (nginx tests the connection first).
    if !f.request_sent && f.read_eof && f.errno.is_none() {
        return v(Cause::PrematureClose, Phase::ReadHeader, None);
    }

    // The connection never got established (asynchronous connect failed).
    if !f.request_sent {
        let cause = match f.errno.and_then(cause_from_errno) {
            Some(c) => c,
            None if f.read_eof || f.read_pending_eof || f.read_error || f.errno.is_none() => {
                Cause::ConnectRefused
            }
            None => Cause::Other,
        };
        return v(cause, Phase::Connect, f.errno);
    }

    if f.errno == Some(errno::ECONNRESET) || (f.read_error && f.errno.is_none()) {
        return v(Cause::ConnectionReset, after_connect, f.errno);
    }
    if f.errno == Some(errno::EPIPE) {
        return v(Cause::PrematureClose, Phase::Send, f.errno);
    }
    if f.header_buffer_full && !f.header_sent {
        return v(Cause::HeaderTooBig, Phase::ReadHeader, None);
    }
    if f.sent_invalid && !f.header_sent {
        return v(Cause::InvalidHeader, Phase::ReadHeader, None);
    }
    if f.read_eof || f.read_pending_eof {
        return v(Cause::PrematureClose, after_connect, None);
    }
    if let Some(c) = f.errno.and_then(cause_from_errno) {
        return v(c, after_connect, f.errno);
    }
    if f.bytes_received > 0 && !f.header_sent {
        return v(Cause::InvalidHeader, Phase::ReadHeader, None);
    }
    v(Cause::Other, after_connect, f.errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::hint::CONTAINER_LOOPBACK;
    use crate::cause::{parse_log_line, Pass};

    fn failed() -> Facts {
        Facts {
            connected: true,
            ..Default::default()
        }
    }

    #[test]
    fn refused_async_connect() {
        let f = Facts {
            read_pending_eof: true,
            errno: Some(111),
            ..failed()
        };
        assert_eq!(
            classify(&f),
            Verdict {
                cause: Cause::ConnectRefused,
                phase: Phase::Connect,
                errno: Some(111),
                detail: Detail::None
            }
        );
        // Without the log tap the flags still say refused.
        let f = Facts {
            read_pending_eof: true,
            ..failed()
        };
        assert_eq!(classify(&f).cause, Cause::ConnectRefused);
    }

    #[test]
    fn unreachable_async_connect() {
        let f = Facts {
            read_pending_eof: true,
            errno: Some(113),
            ..failed()
        };
        assert_eq!(classify(&f).cause, Cause::HostUnreachable);
    }

    #[test]
    fn sync_connect_errors() {
        for (e, c) in [
            (13, Cause::PermissionDenied),
            (2, Cause::SocketNotFound),
            (111, Cause::ConnectRefused),
            (99, Cause::AddressUnavailable),
            (101, Cause::HostUnreachable),
            (24, Cause::Other),
        ] {
            let f = Facts {
                connected: false,
                errno: Some(e),
                ..Default::default()
            };
            let v = classify(&f);
            assert_eq!((v.cause, v.phase, v.errno), (c, Phase::Connect, Some(e)));
        }
    }

    #[test]
    fn timeouts() {
        let f = Facts {
            write_timedout: true,
            ..failed()
        };
        assert_eq!(
            classify(&f),
            Verdict {
                cause: Cause::ConnectTimeout,
                phase: Phase::Connect,
                errno: Some(110),
                detail: Detail::None
            }
        );
        let f = Facts {
            write_timedout: true,
            request_sent: true,
            ..failed()
        };
        assert_eq!(classify(&f).cause, Cause::SendTimeout);
        assert_eq!(classify(&f).phase, Phase::Send);
        let f = Facts {
            read_timedout: true,
            request_sent: true,
            ..failed()
        };
        assert_eq!(
            classify(&f),
            Verdict {
                cause: Cause::ReadTimeout,
                phase: Phase::ReadHeader,
                errno: Some(110),
                detail: Detail::None
            }
        );
        assert_eq!(Cause::ReadTimeout.status(), 504);
        assert_eq!(Cause::ConnectRefused.status(), 502);
    }

    #[test]
    fn read_side_failures() {
        let sent = Facts {
            request_sent: true,
            ..failed()
        };
        let f = Facts {
            read_eof: true,
            ..sent
        };
        assert_eq!(classify(&f).cause, Cause::PrematureClose);
        assert_eq!(classify(&f).phase, Phase::ReadHeader);
        let f = Facts {
            read_error: true,
            errno: Some(104),
            ..sent
        };
        assert_eq!(
            classify(&f),
            Verdict {
                cause: Cause::ConnectionReset,
                phase: Phase::ReadHeader,
                errno: Some(104),
                // plain, new, nothing received: a crash or another protocol's port
                detail: Detail::PlainUnanswered,
            }
        );
        let f = Facts {
            header_buffer_full: true,
            bytes_received: 4096,
            ..sent
        };
        assert_eq!(classify(&f).cause, Cause::HeaderTooBig);
        let f = Facts {
            bytes_received: 40,
            upstream_status: 200,
            ..sent
        };
        assert_eq!(classify(&f).cause, Cause::InvalidHeader);
        let f = Facts {
            bytes_received: 40,
            upstream_status: 502,
            ..sent
        };
        assert_eq!(classify(&f).cause, Cause::Upstream502);
        assert!(!Cause::Upstream502.is_failure());
        assert_eq!(classify(&sent).cause, Cause::Other);
    }

    #[test]
    fn refused_answer_then_close() {
        // a FastCGI pass to an HTTP server: "HTTP/1.1 400 ..." is no FastCGI record, and the
        // server closes after it; nginx's verdict is the header, not the close
        let f = Facts {
            request_sent: true,
            read_eof: true,
            bytes_received: 80,
            sent_invalid: true,
            ..failed()
        };
        let v = classify(&f);
        assert_eq!(
            (v.cause, v.phase),
            (Cause::InvalidHeader, Phase::ReadHeader)
        );
        assert_eq!(
            classify(&Facts {
                sent_invalid: false,
                ..f
            })
            .cause,
            Cause::PrematureClose
        );
        let big = Facts {
            header_buffer_full: true,
            ..f
        };
        assert_eq!(classify(&big).cause, Cause::HeaderTooBig);
        let body = Facts {
            header_sent: true,
            event: Event::BodyFailed,
            ..f
        };
        assert_eq!(classify(&body).cause, Cause::PrematureClose);
    }

    #[test]
    fn reused_keepalive_connection() {
        // the backend's idle timeout ran out as nginx reused the connection: it closed (FIN)
        // or reset it before any byte of an answer
        let closed = Facts {
            request_sent: true,
            read_eof: true,
            reused: true,
            ..failed()
        };
        let v = classify(&closed);
        assert_eq!((v.cause, v.detail), (Cause::PrematureClose, Detail::Reused));
        let reset = Facts {
            errno: Some(errno::ECONNRESET),
            ..closed
        };
        let v = classify(&reset);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::ConnectionReset, Detail::Reused)
        );
        let h = Cause::PrematureClose.hint_in(None, Detail::Reused, Pass::Proxy);
        assert!(h.contains("kept-alive connection") && h.contains("keepalive_timeout"));
        assert_eq!(
            Cause::ConnectionReset.hint_in(Some(104), Detail::Reused, Pass::Fastcgi),
            h
        );
        assert!(!Cause::PrematureClose.hint().contains("keepalive_timeout"));
        // a fresh connection, a partial answer, or another cause: not the race
        for f in [
            Facts {
                reused: false,
                ..closed
            },
            Facts {
                bytes_received: 10,
                ..closed
            },
            Facts {
                read_eof: false,
                read_timedout: true,
                ..closed
            },
        ] {
            assert_ne!(classify(&f).detail, Detail::Reused, "{f:?}");
        }
    }

    #[test]
    fn plain_connection_unanswered() {
        // closed or reset at once, nothing received, on a new plain connection: a crash, or
        // a TLS / FastCGI port given plain HTTP; the hint says which fix fits the pass
        let closed = Facts {
            request_sent: true,
            read_eof: true,
            ..failed()
        };
        let reset = Facts {
            read_eof: false,
            errno: Some(errno::ECONNRESET),
            ..closed
        };
        for f in [closed, reset] {
            assert_eq!(classify(&f).detail, Detail::PlainUnanswered, "{f:?}");
        }
        let hint = |c: Cause, p| c.hint_in(None, Detail::PlainUnanswered, p);
        assert!(hint(Cause::PrematureClose, Pass::Proxy).ends_with(
            "; a TLS port closes the same way on plain HTTP (then proxy_pass https://), and so does a uWSGI socket (then uwsgi_pass)"
        ));
        assert!(hint(Cause::PrematureClose, Pass::Grpc).ends_with("(then grpc_pass grpcs://)"));
        assert!(hint(Cause::ConnectionReset, Pass::Proxy).contains("php-fpm"));
        // through fastcgi_pass neither port mistake applies; php-fpm's allowlist does
        for c in [Cause::PrematureClose, Cause::ConnectionReset] {
            let own = c.hint_in(None, Detail::None, Pass::Fastcgi);
            let h = hint(c, Pass::Fastcgi);
            assert!(
                h.starts_with(own) && h.contains("listen.allowed_clients"),
                "{h}"
            );
            assert!(!h.contains("TLS"), "{h}");
        }
        // uwsgi: its buffer-size; scgi: the cause's own hint
        for c in [Cause::PrematureClose, Cause::ConnectionReset] {
            let h = hint(c, Pass::Uwsgi);
            assert!(h.contains("uwsgi --buffer-size"), "{h}");
            assert_eq!(
                hint(c, Pass::Scgi),
                c.hint_in(None, Detail::None, Pass::Scgi)
            );
        }
        // on a unix socket: its own detail, which only uwsgi_pass (buffer-size) and
        // proxy_pass (a uWSGI or php-fpm socket) make longer
        for f in [closed, reset] {
            let unix = Facts { unix: true, ..f };
            assert_eq!(classify(&unix).detail, Detail::SocketUnanswered, "{f:?}");
        }
        for p in Pass::ALL {
            let longer = matches!(p, Pass::Uwsgi | Pass::Proxy);
            for c in [Cause::PrematureClose, Cause::ConnectionReset] {
                let h = c.hint_in(None, Detail::SocketUnanswered, p);
                let own = c.hint_in(None, Detail::None, p);
                assert_eq!(h != own, longer, "{p:?} {c:?}: {h}");
                assert!(h.starts_with(own) && !h.contains("TLS"), "{h}");
                assert_eq!(c.hint_is_own(None, Detail::SocketUnanswered, p), !longer);
            }
        }
        let h = |c: Cause| c.hint_in(None, Detail::SocketUnanswered, Pass::Proxy);
        assert!(h(Cause::PrematureClose).ends_with("(then uwsgi_pass, or uwsgi --http-socket)"));
        assert!(h(Cause::ConnectionReset).ends_with(
            "a php-fpm socket resets a plain HTTP request this way (then fastcgi_pass)"
        ));
        // over TLS (the handshake done), with bytes received, or after the header: not this
        for f in [
            Facts {
                tls: Tls::Established,
                ..closed
            },
            Facts {
                bytes_received: 12,
                ..closed
            },
            Facts {
                header_sent: true,
                event: Event::BodyFailed,
                ..closed
            },
        ] {
            assert_eq!(classify(&f).detail, Detail::None, "{f:?}");
        }
    }

    #[test]
    fn handshake_refused_without_sni() {
        let f = Facts {
            tls: Tls::Handshaking,
            tls_alert: Some(112),
            ..failed()
        };
        let v = classify(&f);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::TlsHandshakeFailed, Detail::NoSni)
        );
        assert!(Cause::TlsHandshakeFailed
            .hint_in(None, v.detail, Pass::Proxy)
            .contains("proxy_ssl_server_name on"));
        let forty = Facts {
            tls_alert: Some(40),
            ..f
        };
        assert_eq!(classify(&forty).detail, Detail::NoSni);
        // the name was sent, another alert, or none: the cause's own hint
        for g in [
            Facts { sni: true, ..f },
            Facts {
                tls_alert: Some(70),
                ..f
            },
            Facts {
                tls_alert: None,
                ..f
            },
        ] {
            assert_eq!(classify(&g).detail, Detail::None, "{g:?}");
        }
    }

    #[test]
    fn expired_certificate() {
        // the handshake completed, nginx refused the certificate (the request never went
        // out), and the verify error was "certificate has expired"
        let f = Facts {
            tls: Tls::Established,
            cert_verify: Some(10),
            ..failed()
        };
        let v = classify(&f);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::TlsHandshakeFailed, Detail::CertExpired)
        );
        assert!(Cause::TlsHandshakeFailed
            .hint_in(None, v.detail, Pass::Proxy)
            .contains("certificate has expired"));
        let other = Facts {
            cert_verify: None,
            ..f
        };
        assert_eq!(classify(&other).detail, Detail::None);
        // self-signed (18): the cause's own hint (trust it) applies
        let self_signed = Facts {
            cert_verify: Some(18),
            ..f
        };
        assert_eq!(classify(&self_signed).detail, Detail::None);
    }

    #[test]
    fn certificate_chains_nginx_cannot_follow() {
        // two intermediate CAs under proxy_ssl_verify_depth 1 (nginx's default): nginx logs 20
        let f = Facts {
            tls: Tls::Established,
            cert_verify: Some(20),
            ..failed()
        };
        let v = classify(&f);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::TlsHandshakeFailed, Detail::CertChainDepth)
        );
        let hint = Cause::TlsHandshakeFailed.hint_in(None, v.detail, Pass::Proxy);
        assert!(hint.contains("proxy_ssl_verify_depth (grpc_, uwsgi_) is 1 by default"));
        assert!(hint.contains("lacks the root CA"));
        let f22 = Facts {
            cert_verify: Some(22),
            ..f
        };
        assert_eq!(classify(&f22).detail, Detail::CertChainDepth);
        // the backend sends its certificate without its intermediates: 21
        let f21 = Facts {
            cert_verify: Some(21),
            ..f
        };
        assert_eq!(classify(&f21).detail, Detail::CertChainIncomplete);
        // a verify error is only read into a TLS failure
        let f = Facts {
            cert_verify: Some(20),
            ..failed()
        };
        assert_ne!(classify(&f).cause, Cause::TlsHandshakeFailed);
        assert_eq!(classify(&f).detail, Detail::None);
    }

    #[test]
    fn a_tcp_connect_the_kernel_forbids() {
        // "connect() to 127.0.0.1:8080 failed (13: Permission denied)": SELinux
        let f = Facts {
            errno: Some(errno::EACCES),
            tcp: true,
            ..failed()
        };
        let v = classify(&f);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::PermissionDenied, Detail::TcpForbidden)
        );
        let hint = v.cause.hint_in(v.errno, v.detail, Pass::Proxy);
        assert!(hint.starts_with("the kernel refused nginx's connect to a TCP port"));
        assert!(hint.contains("setsebool -P httpd_can_network_connect 1"));
        // a unix socket's mode: the cause's own hint (owner and mode)
        let unix = Facts {
            tcp: false,
            unix: true,
            ..f
        };
        let v = classify(&unix);
        assert_eq!(v.detail, Detail::None);
        assert!(v
            .cause
            .hint_in(v.errno, v.detail, Pass::Proxy)
            .contains("listen.owner/listen.mode"));
    }

    #[test]
    fn temp_file_failure_is_not_the_backends() {
        // the response could not go to its temporary file: nginx aborts the body, logging
        // the file's errno (13 here); the socket to the backend is fine
        let f = Facts {
            request_sent: true,
            header_sent: true,
            event: Event::BodyFailed,
            errno: Some(errno::EACCES),
            file_error: true,
            ..failed()
        };
        let v = classify(&f);
        assert_eq!(
            (v.cause, v.phase, v.errno, v.detail),
            (Cause::Other, Phase::ReadBody, Some(13), Detail::TempFile)
        );
        assert!(Cause::Other
            .hint_in(Some(13), Detail::TempFile, Pass::Proxy)
            .contains("temporary file"));
        // the same errno from the socket: still the socket's cause
        let socket = Facts {
            file_error: false,
            connected: false,
            event: Event::PeerFailed,
            ..f
        };
        assert_eq!(classify(&socket).cause, Cause::PermissionDenied);
    }

    #[test]
    fn refused_unix_socket_is_stale() {
        // connect() to a socket file nobody listens on fails at once with ECONNREFUSED
        let stale = Facts {
            connected: false,
            errno: Some(errno::ECONNREFUSED),
            unix: true,
            ..Default::default()
        };
        let v = classify(&stale);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::ConnectRefused, Detail::StaleSocket)
        );
        let h = Cause::ConnectRefused.hint_in(Some(111), v.detail, Pass::Fastcgi);
        assert!(h.contains("socket file exists but nothing listens"), "{h}");
        // a TCP port, or another failure on a unix socket: not this
        let tcp = Facts {
            unix: false,
            ..stale
        };
        assert_eq!(classify(&tcp).detail, Detail::None);
        let denied = Facts {
            errno: Some(errno::EACCES),
            ..stale
        };
        assert_eq!(classify(&denied).detail, Detail::None);
    }

    #[test]
    fn refused_with_the_backend_on_the_other_family() {
        // proxy_pass http://127.0.0.1:3000, Node.js listening on [::1]:3000
        let refused = Facts {
            connected: true,
            errno: Some(errno::ECONNREFUSED),
            tcp: true,
            listens_on: Some(Elsewhere::Ipv6Only),
            ..Default::default()
        };
        let v = classify(&refused);
        assert_eq!(
            (v.cause, v.phase, v.detail),
            (Cause::ConnectRefused, Phase::Connect, Detail::OnIpv6Only)
        );
        let h = Cause::ConnectRefused.hint_in(Some(111), v.detail, Pass::Proxy);
        assert!(h.contains("connect to [::1] at that port"), "{h}");
        let v4 = Facts {
            listens_on: Some(Elsewhere::Ipv4Only),
            ..refused
        };
        assert_eq!(classify(&v4).detail, Detail::OnIpv4Only);
        let h = Cause::ConnectRefused.hint_in(Some(111), Detail::OnIpv4Only, Pass::Fastcgi);
        assert!(h.contains("connect to 127.0.0.1 at that port"), "{h}");
        // on another address only (gunicorn --bind 10.0.0.5:3000)
        let other = Facts {
            listens_on: Some(Elsewhere::OtherAddress),
            ..refused
        };
        assert_eq!(classify(&other).detail, Detail::OnOtherAddress);
        let h = Cause::ConnectRefused.hint_in(Some(111), Detail::OnOtherAddress, Pass::Proxy);
        assert!(h.contains("on another address of this host only"), "{h}");
        // the backend elsewhere says more than the container does
        let contained = Facts {
            loopback: true,
            container: true,
            ..other
        };
        assert_eq!(classify(&contained).detail, Detail::OnOtherAddress);
        // nothing on either family: the cause's own hint
        let nowhere = Facts {
            listens_on: None,
            ..refused
        };
        assert_eq!(classify(&nowhere).detail, Detail::None);
        // another failure on the same peer says nothing of it
        let reset = Facts {
            errno: Some(errno::ECONNRESET),
            request_sent: true,
            ..refused
        };
        assert_ne!(classify(&reset).detail, Detail::OnIpv6Only);
    }

    #[test]
    fn refused_on_loopback_in_a_container() {
        // nginx in a container, proxy_pass http://127.0.0.1:3000, the app on the host
        let refused = Facts {
            connected: true,
            errno: Some(errno::ECONNREFUSED),
            tcp: true,
            loopback: true,
            container: true,
            ..Default::default()
        };
        let v = classify(&refused);
        assert_eq!(
            (v.cause, v.detail),
            (Cause::ConnectRefused, Detail::ContainerLoopback)
        );
        for p in Pass::ALL {
            let h = Cause::ConnectRefused.hint_in(Some(111), v.detail, p);
            // the cause's own hint first, for the module that passed
            let own = Cause::ConnectRefused.hint_in(Some(111), Detail::None, p);
            assert!(h.starts_with(own), "{h}");
            assert!(h.ends_with(CONTAINER_LOOPBACK), "{h}");
            assert!(!Cause::ConnectRefused.hint_is_own(Some(111), v.detail, p));
        }
        assert!(Cause::ConnectRefused
            .hint_in(Some(111), v.detail, Pass::Fastcgi)
            .contains("does fastcgi_pass match"));
        // the backend found on the other family says more than the container does
        let other = Facts {
            listens_on: Some(Elsewhere::Ipv6Only),
            ..refused
        };
        assert_eq!(classify(&other).detail, Detail::OnIpv6Only);
        // not loopback (another host), or not in a container: the plain refusal
        for f in [
            Facts {
                loopback: false,
                ..refused
            },
            Facts {
                container: false,
                ..refused
            },
        ] {
            assert_eq!(classify(&f).detail, Detail::None, "{f:?}");
        }
        // another cause keeps its own detail and hint
        assert_eq!(
            Cause::ConnectTimeout.hint_in(None, Detail::ContainerLoopback, Pass::Proxy),
            Cause::ConnectTimeout.hint_in(None, Detail::None, Pass::Proxy)
        );
    }

    #[test]
    fn closed_late_without_an_answer() {
        // gunicorn's worker timeout: the request went out, nothing came back, and the
        // connection closed (or reset) 30 s later
        let closed = Facts {
            request_sent: true,
            read_eof: true,
            elapsed_ms: 30_000,
            ..failed()
        };
        let reset = Facts {
            errno: Some(errno::ECONNRESET),
            read_eof: false,
            ..closed
        };
        for (f, cause) in [
            (closed, Cause::PrematureClose),
            (reset, Cause::ConnectionReset),
            // a kept-alive connection closed that late is no idle-timeout race
            (
                Facts {
                    reused: true,
                    ..closed
                },
                Cause::PrematureClose,
            ),
        ] {
            let v = classify(&f);
            assert_eq!((v.cause, v.detail), (cause, Detail::LateClose), "{f:?}");
        }
        let h = Cause::PrematureClose.hint_in(None, Detail::LateClose, Pass::Proxy);
        assert!(h.contains("request timeout") && h.contains("gunicorn --timeout"));
        // at once, after a partial answer, after the header, or a read timeout: not this
        for f in [
            Facts {
                elapsed_ms: LATE_CLOSE_MS - 1,
                ..closed
            },
            Facts {
                bytes_received: 10,
                ..closed
            },
            Facts {
                header_sent: true,
                event: Event::BodyFailed,
                ..closed
            },
            Facts {
                read_eof: false,
                read_timedout: true,
                ..closed
            },
        ] {
            assert_ne!(classify(&f).detail, Detail::LateClose, "{f:?}");
        }
    }

    #[test]
    fn no_live_upstreams_says_why() {
        let nolive = |failed, busy, down| Facts {
            event: Event::NoLivePeers,
            skipped: Skipped {
                failed,
                busy,
                down,
                ..Default::default()
            },
            ..Default::default()
        };
        let detail = |f: Facts| {
            let v = classify(&f);
            assert_eq!((v.cause, v.phase), (Cause::NoLiveUpstreams, Phase::Select));
            v.detail
        };
        // a failed server: max_fails / fail_timeout, the cause's own hint
        assert_eq!(detail(nolive(1, 1, 1)), Detail::None);
        assert_eq!(detail(nolive(2, 0, 0)), Detail::None);
        // none failed: busy ones are the limit, else down ones
        assert_eq!(detail(nolive(0, 1, 3)), Detail::MaxConns);
        assert_eq!(detail(nolive(0, 0, 2)), Detail::Down);
        assert_eq!(detail(nolive(0, 0, 0)), Detail::None);
        let hint = |d| Cause::NoLiveUpstreams.hint_in(None, d, Pass::Proxy);
        assert!(hint(Detail::None).contains("max_fails"));
        assert!(hint(Detail::MaxConns).contains("at its max_conns"));
        assert!(hint(Detail::Down).contains("failing its health checks"));
        // no server at all: `server NAME resolve` names that resolve to nothing
        let empty = Facts {
            skipped: Skipped {
                no_servers: true,
                ..Default::default()
            },
            ..nolive(0, 0, 0)
        };
        assert_eq!(detail(empty), Detail::Unresolved);
        assert!(hint(Detail::Unresolved).contains("server ... resolve"));
        // the facts of a peer's failure never make a no-live detail
        let refused = Facts {
            skipped: Skipped {
                busy: 1,
                ..Default::default()
            },
            ..failed()
        };
        assert_eq!(classify(&refused).detail, Detail::None);
        for (i, d) in Detail::ALL.iter().enumerate() {
            assert_eq!(Detail::from_index(i), Some(*d));
            assert_eq!(*d as usize, i);
        }
    }

    #[test]
    fn resolve() {
        let nx = Facts {
            event: Event::ResolveFailed,
            ..Default::default()
        };
        let v = classify(&nx);
        assert_eq!(
            (v.cause, v.phase, v.errno),
            (Cause::HostNotFound, Phase::Resolve, None)
        );
        assert_eq!(
            Cause::HostNotFound.hint_for(v.errno),
            Cause::HostNotFound.hint()
        );
        // the DNS server did not answer: the same cause, its own errno and hint
        let silent = Facts {
            errno: Some(errno::ETIMEDOUT),
            ..nx
        };
        let v = classify(&silent);
        assert_eq!((v.cause, v.errno), (Cause::HostNotFound, Some(110)));
        assert!(Cause::HostNotFound
            .hint_for(v.errno)
            .contains("did not answer within resolver_timeout"));
        // any other number left over from a connect is not the resolver's
        let other = Facts {
            errno: Some(errno::ECONNREFUSED),
            ..nx
        };
        assert_eq!(classify(&other).errno, None);
        // proxy_pass http://$name with no resolver in effect
        let none = Facts {
            no_resolver: true,
            ..nx
        };
        let v = classify(&none);
        assert_eq!(
            (v.cause, v.phase, v.detail),
            (Cause::HostNotFound, Phase::Resolve, Detail::NoResolver)
        );
        let h = Cause::HostNotFound.hint_in(None, v.detail, Pass::Proxy);
        assert!(h.contains("no resolver directive is in effect"), "{h}");
        // the line that says so, and lines that do not
        let line = b"2026/11/22 03:40:01 [error] 7#7: *1 no resolver defined to resolve nothere.invalid, client: 127.0.0.1, server: , request: \"GET /x HTTP/1.1\", host: \"a\"";
        assert!(parse_log_line(line).no_resolver);
        let cached = b"2026/11/22 03:40:01 [error] 7#7: *1 nothere.invalid could not be resolved (3: Host not found), client: 127.0.0.1";
        assert!(!parse_log_line(cached).no_resolver);
        // in the request line it is the client's text, not nginx's
        let client = b"2026/11/22 03:40:01 [error] 7#7: *1 upstream prematurely closed connection, client: 127.0.0.1, server: , request: \"GET /no resolver defined to resolve x HTTP/1.1\"";
        assert!(!parse_log_line(client).no_resolver);
    }

    #[test]
    fn tls() {
        let f = Facts {
            tls: Tls::Handshaking,
            read_eof: true,
            ..failed()
        };
        assert_eq!(classify(&f).cause, Cause::TlsHandshakeFailed);
        assert_eq!(classify(&f).phase, Phase::Connect);
        assert_eq!(classify(&f).detail, Detail::None);
        // the handshake stalled: a connect timeout, said to be the TLS one
        for stalled in [
            Facts {
                tls: Tls::Handshaking,
                read_timedout: true,
                ..failed()
            },
            Facts {
                tls: Tls::Handshaking,
                write_timedout: true,
                ..failed()
            },
        ] {
            let v = classify(&stalled);
            assert_eq!(
                (v.cause, v.errno, v.detail),
                (Cause::ConnectTimeout, Some(110), Detail::TlsStalled)
            );
        }
        let tcp = Facts {
            write_timedout: true,
            ..failed()
        };
        assert_eq!(classify(&tcp).detail, Detail::None);
        assert!(Cause::ConnectTimeout
            .hint_in(Some(110), Detail::TlsStalled, Pass::Proxy)
            .contains("did not finish the TLS handshake"));
        // Handshake done, request not sent: the certificate failed verification (nothing
        // tells it apart from a refused connect but the TLS state).
        let unverified = Facts {
            tls: Tls::Established,
            ..failed()
        };
        assert_eq!(classify(&unverified).cause, Cause::TlsHandshakeFailed);
        assert_eq!(classify(&unverified).phase, Phase::Connect);
        assert_eq!(classify(&unverified).errno, None);
        let plain = Facts {
            tls: Tls::Off,
            ..failed()
        };
        assert_eq!(classify(&plain).cause, Cause::ConnectRefused);
        // Once the request went out, TLS says nothing more.
        let sent = Facts {
            tls: Tls::Established,
            request_sent: true,
            read_eof: true,
            ..failed()
        };
        assert_eq!(classify(&sent).cause, Cause::PrematureClose);
    }

    #[test]
    fn closed_once_accepted_before_the_request() {
        // php-fpm's listen.allowed_clients: accepted, closed at once; nginx read the end of
        // file before it wrote (nginx logs "upstream prematurely closed connection")
        let f = Facts {
            read_eof: true,
            read_pending_eof: true,
            ..failed()
        };
        assert_eq!(
            classify(&f),
            Verdict {
                cause: Cause::PrematureClose,
                phase: Phase::ReadHeader,
                errno: None,
                detail: Detail::PlainUnanswered
            }
        );
        let h = Cause::PrematureClose.hint_in(None, Detail::PlainUnanswered, Pass::Fastcgi);
        assert!(h.contains("listen.allowed_clients"), "{h}");
        assert!(h.starts_with("the backend closed the connection before answering"));
        // the same reset after nginx wrote
        let h = Cause::ConnectionReset.hint_in(Some(104), Detail::PlainUnanswered, Pass::Fastcgi);
        assert!(h.contains("listen.allowed_clients"), "{h}");
        // a proxied connection keeps its TLS-port text; a unix socket has no allowlist
        let h = Cause::PrematureClose.hint_in(None, Detail::PlainUnanswered, Pass::Proxy);
        assert!(
            !h.contains("allowed_clients") && h.contains("TLS port"),
            "{h}"
        );
        let unix = Facts { unix: true, ..f };
        assert_eq!(classify(&unix).detail, Detail::SocketUnanswered);
        let h = Cause::PrematureClose.hint_in(None, Detail::SocketUnanswered, Pass::Fastcgi);
        assert!(!h.contains("allowed_clients"), "{h}");
    }

    #[test]
    fn body_cut_after_header() {
        let f = Facts {
            event: Event::BodyFailed,
            connected: true,
            request_sent: true,
            header_sent: true,
            read_eof: true,
            upstream_status: 200,
            bytes_received: 100,
            ..Default::default()
        };
        let v = classify(&f);
        assert_eq!((v.cause, v.phase), (Cause::PrematureClose, Phase::ReadBody));
    }

    #[test]
    fn events_without_connection() {
        let f = Facts {
            event: Event::NoLivePeers,
            ..Default::default()
        };
        assert_eq!(
            (classify(&f).cause, classify(&f).phase),
            (Cause::NoLiveUpstreams, Phase::Select)
        );
        let f = Facts {
            event: Event::ResolveFailed,
            ..Default::default()
        };
        assert_eq!(
            (classify(&f).cause, classify(&f).phase),
            (Cause::HostNotFound, Phase::Resolve)
        );
        let f = Facts {
            event: Event::OutOfConnections,
            ..Default::default()
        };
        assert_eq!(classify(&f).cause, Cause::WorkerConnections);
        assert_eq!(Cause::WorkerConnections.status(), 500);
    }
}
