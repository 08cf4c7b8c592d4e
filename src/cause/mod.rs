//! The cause taxonomy: what made nginx answer 502/504 for an upstream try, where in the
//! exchange ([`Phase`]), through which upstream module ([`Pass`]), and what else says why
//! ([`Detail`]). The names are a contract (variables, JSON, metrics).
//!
//! Pure code (no FFI), covered by `cargo test`:
//! - `classify.rs`: the facts the peer wrappers gather from nginx's structures ([`Facts`])
//!   turned into a cause, a phase and a detail ([`classify`]);
//! - `log_line.rs`: what an error.log line nginx writes during a try tells ([`LogLine`]);
//! - `hint.rs`: one line of remediation per cause, sharpened by the errno and the detail.

use core::fmt;

mod classify;
mod hint;
mod log_line;

pub use classify::{
    cause_from_errno, classify, Event, Facts, Skipped, Tls, Verdict, LATE_CLOSE_MS,
};
pub use hint::CONTAINER_LOOPBACK;
pub use log_line::{parse_log_line, LogLine};

/// errno values the taxonomy knows (Linux numbering).
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const EPIPE: i32 = 32;
    pub const EADDRNOTAVAIL: i32 = 99;
    pub const ENETUNREACH: i32 = 101;
    pub const ECONNRESET: i32 = 104;
    pub const ETIMEDOUT: i32 = 110;
    pub const ECONNREFUSED: i32 = 111;
    pub const EHOSTUNREACH: i32 = 113;
}

/// Why an upstream try failed. The names are a contract (variables, JSON, metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cause {
    ConnectRefused,
    ConnectTimeout,
    SendTimeout,
    ReadTimeout,
    PrematureClose,
    ConnectionReset,
    InvalidHeader,
    HeaderTooBig,
    NoLiveUpstreams,
    PermissionDenied,
    SocketNotFound,
    HostNotFound,
    HostUnreachable,
    AddressUnavailable,
    TlsHandshakeFailed,
    WorkerConnections,
    /// The backend itself answered 502: passed through, not a failure of nginx.
    Upstream502,
    Other,
}

impl Cause {
    /// Every cause, in the order used by counters and renderers.
    pub const ALL: [Cause; 18] = [
        Cause::ConnectRefused,
        Cause::ConnectTimeout,
        Cause::SendTimeout,
        Cause::ReadTimeout,
        Cause::PrematureClose,
        Cause::ConnectionReset,
        Cause::InvalidHeader,
        Cause::HeaderTooBig,
        Cause::NoLiveUpstreams,
        Cause::PermissionDenied,
        Cause::SocketNotFound,
        Cause::HostNotFound,
        Cause::HostUnreachable,
        Cause::AddressUnavailable,
        Cause::TlsHandshakeFailed,
        Cause::WorkerConnections,
        Cause::Upstream502,
        Cause::Other,
    ];

    /// Number of causes (size of per-cause counter arrays).
    pub const COUNT: usize = Self::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ConnectRefused => "connect_refused",
            Cause::ConnectTimeout => "connect_timeout",
            Cause::SendTimeout => "send_timeout",
            Cause::ReadTimeout => "read_timeout",
            Cause::PrematureClose => "premature_close",
            Cause::ConnectionReset => "connection_reset",
            Cause::InvalidHeader => "invalid_header",
            Cause::HeaderTooBig => "header_too_big",
            Cause::NoLiveUpstreams => "no_live_upstreams",
            Cause::PermissionDenied => "permission_denied",
            Cause::SocketNotFound => "socket_not_found",
            Cause::HostNotFound => "host_not_found",
            Cause::HostUnreachable => "host_unreachable",
            Cause::AddressUnavailable => "address_unavailable",
            Cause::TlsHandshakeFailed => "tls_handshake_failed",
            Cause::WorkerConnections => "worker_connections",
            Cause::Upstream502 => "upstream_502",
            Cause::Other => "other",
        }
    }

    /// Index into per-cause counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Cause> {
        Self::ALL.get(i).copied()
    }

    /// Whether this cause is a failure of the nginx → upstream exchange (everything but the
    /// backend's own 502).
    pub fn is_failure(self) -> bool {
        self != Cause::Upstream502
    }

    /// The status nginx itself answers for a try that failed this way.
    pub fn status(self) -> u16 {
        match self {
            Cause::ConnectTimeout | Cause::SendTimeout | Cause::ReadTimeout => 504,
            Cause::WorkerConnections => 500,
            _ => 502,
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the upstream exchange a try failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Resolve,
    Select,
    Connect,
    Send,
    ReadHeader,
    ReadBody,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Resolve,
        Phase::Select,
        Phase::Connect,
        Phase::Send,
        Phase::ReadHeader,
        Phase::ReadBody,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Select => "select",
            Phase::Connect => "connect",
            Phase::Send => "send",
            Phase::ReadHeader => "read_header",
            Phase::ReadBody => "read_body",
        }
    }

    pub fn from_index(i: usize) -> Option<Phase> {
        Self::ALL.get(i).copied()
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The upstream module a try went through (`proxy_pass`, `fastcgi_pass`...): the directives
/// a hint names are its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pass {
    /// Not known (the status, where one upstream can serve several modules): a hint names
    /// proxy's and fastcgi's directives.
    #[default]
    Any,
    Proxy,
    Fastcgi,
    Uwsgi,
    Scgi,
    Grpc,
    Memcached,
}

impl Pass {
    pub const ALL: [Pass; 7] = [
        Pass::Any,
        Pass::Proxy,
        Pass::Fastcgi,
        Pass::Uwsgi,
        Pass::Scgi,
        Pass::Grpc,
        Pass::Memcached,
    ];

    /// From the upstream's `u->schema` as nginx's modules set it ("http://", "fastcgi://"...),
    /// told apart by first byte and length: this runs on every failed try, and a hint is all
    /// it decides. Another module's schema is [`Pass::Any`] unless it looks like one of these.
    pub fn from_schema(schema: &[u8]) -> Pass {
        match (schema.first(), schema.len()) {
            (Some(b'h'), 7 | 8) => Pass::Proxy, // http:// https://
            (Some(b'f'), 10) => Pass::Fastcgi,  // fastcgi://
            (Some(b'u'), 8) | (Some(b's'), 9) => Pass::Uwsgi, // uwsgi:// suwsgi://
            (Some(b's'), 7) => Pass::Scgi,      // scgi://
            (Some(b'g'), 7 | 8) => Pass::Grpc,  // grpc:// grpcs://
            (Some(b'm'), 12) => Pass::Memcached, // memcached://
            _ => Pass::Any,
        }
    }

    /// The module's directive ending in `suffix`: `proxy_read_timeout`; for [`Pass::Any`]
    /// proxy's and fastcgi's.
    fn directive(self, suffix: &str) -> String {
        let prefix = match self {
            Pass::Any => return format!("proxy_{suffix} / fastcgi_{suffix}"),
            Pass::Proxy => "proxy",
            Pass::Fastcgi => "fastcgi",
            Pass::Uwsgi => "uwsgi",
            Pass::Scgi => "scgi",
            Pass::Grpc => "grpc",
            Pass::Memcached => "memcached",
        };
        format!("{prefix}_{suffix}")
    }

    /// What the module expects the backend to speak.
    fn protocol(self) -> &'static str {
        match self {
            Pass::Any | Pass::Proxy => "HTTP",
            Pass::Fastcgi => "FastCGI",
            Pass::Uwsgi => "uwsgi",
            Pass::Scgi => "SCGI",
            Pass::Grpc => "HTTP/2 (gRPC)",
            Pass::Memcached => "memcached",
        }
    }
}

/// What, besides the cause and the errno, says why a try failed: it makes the hint sharper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Detail {
    #[default]
    None,
    /// The backend closed or reset a kept-alive connection nginx had just reused, before any
    /// byte of an answer: its idle timeout ran out first.
    Reused,
    /// No live upstreams: no server had failed, those left were at their `max_conns`.
    MaxConns,
    /// No live upstreams: no server had failed or was busy, those left were down (configured
    /// `down`, or failing their health checks).
    Down,
    /// A connect timeout after the TCP connection was made: the TLS handshake stalled.
    TlsStalled,
    /// The backend closed or reset the connection without a byte of an answer, only after
    /// [`LATE_CLOSE_MS`] or more: its own request timeout killed the request.
    LateClose,
    /// A refused connect to a unix socket: the file is there, nothing listens on it.
    StaleSocket,
    /// nginx's own file operation failed (a temporary file for the response: `open()`,
    /// `write()` of `*_temp_path`), not the connection: the errno is the file's.
    TempFile,
    /// No live upstreams: the upstream has no server at all now, its `server NAME resolve`
    /// names resolving to nothing.
    Unresolved,
    /// A plain (not TLS) TCP connection, new, closed or reset at once without a byte of an
    /// answer: a crash, or a port that speaks another protocol (TLS, FastCGI).
    PlainUnanswered,
    /// nginx refused the backend's TLS certificate: it has expired.
    CertExpired,
    /// The backend refused the handshake (alert 40 handshake_failure or 112
    /// unrecognized_name) from nginx, which sent no server name (SNI).
    NoSni,
    /// A connection to a unix socket, new, closed or reset at once without a byte of an
    /// answer: a crash, or a server that drops the request (uWSGI, over its buffer-size).
    SocketUnanswered,
    /// nginx refused the backend's certificate: its chain did not reach a trusted CA within
    /// the verify depth (OpenSSL's 20, "unable to get local issuer certificate", as nginx
    /// logs a chain with two intermediate CAs under `proxy_ssl_verify_depth 1`, its default,
    /// and a chain whose root CA is not trusted; 22, "certificate chain too long").
    CertChainDepth,
    /// nginx refused the backend's certificate: it came without the intermediate CAs that
    /// link it to a trusted one (OpenSSL's 21, "unable to verify the first certificate").
    CertChainIncomplete,
    /// The kernel refused nginx's connect to a TCP address with 13: Permission denied, as
    /// SELinux does to nginx with `httpd_can_network_connect` off (not a unix socket's mode).
    TcpForbidden,
    /// A refused connect to an IPv4 loopback address, and the backend listening on the same
    /// port on IPv6 ([::1], or every IPv6 address with IPV6_V6ONLY) only.
    OnIpv6Only,
    /// A refused connect to [::1], and the backend listening on the same port on IPv4 only
    /// (127.0.0.1 or 0.0.0.0).
    OnIpv4Only,
    /// A refused connect to a loopback address, nothing on that port at all, and nginx in a
    /// container: there loopback is the container's own, not the host's.
    ContainerLoopback,
    /// A refused connect to a loopback address, and the backend listening on the same port on
    /// another address only (an interface's, or another loopback address).
    OnOtherAddress,
    /// A host name in a variable (`proxy_pass http://$backend`), resolved at request time,
    /// and no `resolver` directive in effect.
    NoResolver,
}
impl Detail {
    pub const ALL: [Detail; 21] = [
        Detail::None,
        Detail::Reused,
        Detail::MaxConns,
        Detail::Down,
        Detail::TlsStalled,
        Detail::LateClose,
        Detail::StaleSocket,
        Detail::TempFile,
        Detail::Unresolved,
        Detail::PlainUnanswered,
        Detail::CertExpired,
        Detail::NoSni,
        Detail::SocketUnanswered,
        Detail::CertChainDepth,
        Detail::CertChainIncomplete,
        Detail::TcpForbidden,
        Detail::OnIpv6Only,
        Detail::OnIpv4Only,
        Detail::ContainerLoopback,
        Detail::OnOtherAddress,
        Detail::NoResolver,
    ];

    /// The detail an OpenSSL verify error of the backend's certificate gives, if any.
    fn of_verify_error(code: u16) -> Option<Detail> {
        match code {
            10 => Some(Detail::CertExpired),
            20 | 22 => Some(Detail::CertChainDepth),
            21 => Some(Detail::CertChainIncomplete),
            _ => None,
        }
    }

    pub fn from_index(i: usize) -> Option<Detail> {
        Self::ALL.get(i).copied()
    }

    /// The details that lengthen the cause's own hint rather than replace it
    /// ([`Cause::longer_hint`]).
    const LENGTHENING: [Detail; 3] = [
        Detail::PlainUnanswered,
        Detail::SocketUnanswered,
        Detail::ContainerLoopback,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_contract() {
        let names: Vec<_> = Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "connect_refused",
                "connect_timeout",
                "send_timeout",
                "read_timeout",
                "premature_close",
                "connection_reset",
                "invalid_header",
                "header_too_big",
                "no_live_upstreams",
                "permission_denied",
                "socket_not_found",
                "host_not_found",
                "host_unreachable",
                "address_unavailable",
                "tls_handshake_failed",
                "worker_connections",
                "upstream_502",
                "other"
            ]
        );
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Cause::from_index(i), Some(*c));
            assert_eq!(Cause::parse(c.as_str()), Some(*c));
            assert!(!c.hint().is_empty());
        }
        let phases: Vec<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            phases,
            [
                "resolve",
                "select",
                "connect",
                "send",
                "read_header",
                "read_body"
            ]
        );
    }
}
