//! The cause taxonomy: what made nginx answer 502/504 for an upstream try.
//!
//! Pure code (no FFI): the peer wrappers gather [`Facts`] from nginx's structures, and
//! [`classify`] turns them into a [`Cause`] and a [`Phase`]. Covered by `cargo test`.

use core::fmt;

use crate::listeners::Elsewhere;

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

    /// One line of remediation, from the troubleshooting guides (shared/seeds/), for a try of
    /// any upstream module: where it names a directive, it names proxy's and fastcgi's.
    pub fn hint(self) -> &'static str {
        self.hint_in(None, Detail::None, Pass::Any)
    }

    /// The hint for a try that failed with `errno`, through any upstream module.
    pub fn hint_for(self, errno: Option<i32>) -> &'static str {
        self.hint_in(errno, Detail::None, Pass::Any)
    }

    /// The hint for a try through `pass` that failed with `errno` and `detail`: the cause's
    /// own, that one made longer ([`Cause::longer_hint`]), or one those make sharper
    /// ([`Cause::sharp_hint`]). The directives it names are
    /// those of `pass` (`fastcgi_read_timeout` for fastcgi_pass).
    pub fn hint_in(self, errno: Option<i32>, detail: Detail, pass: Pass) -> &'static str {
        if let Some(h) = self.longer_hint(detail, pass) {
            return h;
        }
        self.sharp_hint(errno, detail).unwrap_or_else(|| {
            static HINTS: std::sync::OnceLock<Vec<Vec<String>>> = std::sync::OnceLock::new();
            let all = HINTS.get_or_init(|| {
                Pass::ALL
                    .iter()
                    .map(|&p| Cause::ALL.iter().map(|c| c.hint_text(p)).collect())
                    .collect()
            });
            &all[pass as usize][self.index()]
        })
    }

    /// The cause's own hint through `pass`, made longer by `detail`, if the detail lengthens
    /// it ([`Detail::LENGTHENING`], texts in [`Cause::longer_text`]): built once.
    fn longer_hint(self, detail: Detail, pass: Pass) -> Option<&'static str> {
        let i = Detail::LENGTHENING.iter().position(|&d| d == detail)?;
        type Table = Vec<Vec<Option<String>>>;
        static LONGER: std::sync::OnceLock<Vec<Table>> = std::sync::OnceLock::new();
        let all = LONGER.get_or_init(|| {
            Detail::LENGTHENING
                .iter()
                .map(|&d| {
                    Pass::ALL
                        .iter()
                        .map(|&p| Cause::ALL.iter().map(|c| c.longer_text(p, d)).collect())
                        .collect()
                })
                .collect()
        });
        all[i][pass as usize][self.index()].as_deref()
    }

    /// The text of [`Cause::longer_hint`]; None: the detail leaves this cause's hint as it is.
    fn longer_text(self, p: Pass, detail: Detail) -> Option<String> {
        match detail {
            Detail::PlainUnanswered => self.unanswered_text(p, false),
            Detail::SocketUnanswered => self.unanswered_text(p, true),
            Detail::ContainerLoopback if self == Cause::ConnectRefused => {
                Some(format!("{}; {CONTAINER_LOOPBACK}", self.hint_text(p)))
            }
            _ => None,
        }
    }

    /// The errnos that can make a hint sharper ([`Cause::sharp_hint`]): whoever sizes or lists
    /// every hint reads them here.
    pub const SHARP_ERRNOS: [i32; 2] = [libc::EAGAIN, errno::ETIMEDOUT];

    /// A hint the errno or the detail makes sharper where the cause alone says little; None:
    /// the cause's own applies. These name no directive of an upstream module, so they serve
    /// every one.
    pub fn sharp_hint(self, errno: Option<i32>, detail: Detail) -> Option<&'static str> {
        match detail {
            Detail::None => {}
            Detail::Reused => return Some(
                "the backend closed a kept-alive connection just as nginx reused it: make keepalive_timeout in the upstream block shorter than the backend's idle timeout (Node.js keepAliveTimeout 5 s, gunicorn --keep-alive 2 s)",
            ),
            Detail::MaxConns => return Some(
                "every server of the upstream is at its max_conns: the backends answer too slowly for the traffic, or max_conns is too low (raise it, or add servers)",
            ),
            Detail::Down => return Some(
                "every server of the upstream is down: marked down in the configuration, or failing its health checks (check_status and the status page say why)",
            ),
            Detail::TlsStalled => return Some(
                "the backend accepted the connection but did not finish the TLS handshake in time: it may not speak TLS on that port (a plain HTTP server waits for a request line), or it is overloaded",
            ),
            Detail::Unresolved => return Some(
                "the upstream has no server address now: the names of its servers (server ... resolve) resolve to nothing; check the names and the resolver: error.log says why they could not be resolved",
            ),
            // the cause's own hint, made longer for the pass (Cause::longer_hint)
            Detail::PlainUnanswered | Detail::SocketUnanswered | Detail::ContainerLoopback => {}
            Detail::NoSni => return Some(
                "the backend refused the TLS handshake, and nginx sent it no server name (SNI), which shared TLS front ends and CDNs need: set proxy_ssl_server_name on (grpc_ssl_server_name...), and proxy_ssl_name to the backend's host name if the upstream's name is not it",
            ),
            Detail::CertExpired => return Some(
                "the backend's TLS certificate has expired (error.log: certificate has expired): renew it on the backend, and check that both hosts' clocks are right",
            ),
            Detail::CertChainDepth => return Some(
                "nginx could not follow the backend's certificate chain to a trusted CA (error.log: unable to get local issuer certificate): proxy_ssl_verify_depth (grpc_, uwsgi_) is 1 by default, enough for one intermediate CA; set it to the number of intermediate CAs in the chain (2 for two). If that is not it, proxy_ssl_trusted_certificate lacks the root CA that issued the chain",
            ),
            Detail::CertChainIncomplete => return Some(
                "the backend sent its certificate without the intermediate CA certificates that link it to a trusted CA (error.log: unable to verify the first certificate): configure the backend with its full chain (its certificate, then the intermediates), or add the intermediates to proxy_ssl_trusted_certificate (grpc_, uwsgi_)",
            ),
            Detail::TcpForbidden => return Some(
                "the kernel refused nginx's connect to a TCP port (13: Permission denied): on SELinux systems (RHEL, Fedora, Rocky...) nginx may connect only to ports labelled http_port_t; run setsebool -P httpd_can_network_connect 1, or label the port (semanage port -a -t http_port_t -p tcp PORT); getenforce says whether SELinux enforces, ausearch -m avc -c nginx shows the denial",
            ),
            Detail::OnIpv6Only => return Some(
                "nothing listens on this IPv4 address, but the backend listens on the same port on IPv6 ([::1]) only: a server told to listen on \"localhost\" binds the first address the name resolves to, ::1 on many systems (Node.js 17 and later, for one); connect to [::1] at that port, or make the backend listen on 127.0.0.1 (or on both)",
            ),
            Detail::OnIpv4Only => return Some(
                "nothing listens on [::1], but the backend listens on the same port on IPv4 (127.0.0.1 or 0.0.0.0) only: connect to 127.0.0.1 at that port, or make the backend listen on [::1] too",
            ),
            Detail::NoResolver => return Some(
                "the host name comes from a variable (proxy_pass http://$backend...), which nginx resolves per request, and no resolver directive is in effect: add one (resolver 127.0.0.11 in Docker, 127.0.0.53 with systemd-resolved, or your DNS servers; valid= bounds the caching), or name the host in an upstream block, resolved once at start",
            ),
            Detail::OnOtherAddress => return Some(
                "nothing listens on this loopback address, but the backend listens on the same port on another address of this host only (ss -ltn 'sport = :PORT' names it): it was told to listen on one address (gunicorn --bind, a container port published on one address); connect to that address, or make the backend listen on 127.0.0.1 (or 0.0.0.0)",
            ),
            Detail::TempFile => return Some(
                "nginx could not write the response to a temporary file (the error.log line names it): the worker user must be able to write the temp path (proxy_temp_path, fastcgi_temp_path...) and its disk must have space; or set *_max_temp_file_size 0 to pass large responses on without one",
            ),
            Detail::StaleSocket => return Some(
                "the unix socket file exists but nothing listens on it: the backend (php-fpm, gunicorn, uwsgi) stopped or crashed without removing it; start it, and check that it listens on this path",
            ),
            Detail::LateClose => return Some(
                "the backend closed the connection without answering, 5 s or more after the request: its own request timeout most likely killed it (gunicorn --timeout, 30 s by default; uwsgi harakiri; php-fpm request_terminate_timeout): find what makes the request slow, or raise that timeout",
            ),
        }
        match (self, errno) {
            // connect() to a unix socket whose listen queue is full (the TCP equivalent is a
            // connect timeout): "11: Resource temporarily unavailable"
            (Cause::Other, Some(libc::EAGAIN)) => Some(
                "the backend's listen queue is full (EAGAIN on its unix socket): it is overloaded; raise its backlog (php-fpm listen.backlog, net.core.somaxconn) or its workers (pm.max_children)",
            ),
            // "could not be resolved (110: Operation timed out)": no answer, not a missing name
            (Cause::HostNotFound, Some(errno::ETIMEDOUT)) => Some(
                "the DNS server of the resolver directive did not answer within resolver_timeout: is it running, and reachable from nginx?",
            ),
            _ => None,
        }
    }

    /// The hint of a new connection closed or reset at once, without a byte of an answer
    /// (`Detail::PlainUnanswered` on a TCP port, `SocketUnanswered` on a unix socket): a
    /// crash, or a server that drops the request. On a TCP port, a TLS server (OpenSSL,
    /// Node.js) closes on a plain request; php-fpm reads a FastCGI record header, finds none,
    /// and closes with the rest of the request unread, which the kernel turns into a reset;
    /// through fastcgi_pass, php-fpm closes a connection from a client its
    /// `listen.allowed_clients` does not list as soon as it accepts it (before nginx wrote,
    /// end of file; after, a reset). Through uwsgi_pass, on either: uWSGI drops a request
    /// bigger than its buffer-size. Through proxy_pass to a unix socket: uWSGI's (--socket)
    /// reads a plain HTTP request as a too big uwsgi packet and closes; php-fpm's resets, as
    /// on a port. None: the cause's own hint.
    fn unanswered_text(self, p: Pass, unix: bool) -> Option<String> {
        if !self.unanswered_applies(p, unix) {
            return None;
        }
        let own = self.hint_text(p);
        Some(match (self, p) {
            (_, Pass::Uwsgi) => format!(
                "{own}; uWSGI drops a request bigger than its buffer-size (4 KB by default: long cookies or query strings) this way and logs \"invalid request block size\": raise buffer-size (uwsgi --buffer-size 32768)"
            ),
            (Cause::PrematureClose, Pass::Proxy) if unix => format!(
                "{own}; a uWSGI socket (uwsgi --socket) closes a plain HTTP request the same way (then uwsgi_pass, or uwsgi --http-socket)"
            ),
            (Cause::ConnectionReset, Pass::Proxy) if unix => format!(
                "{own}; a php-fpm socket resets a plain HTTP request this way (then fastcgi_pass)"
            ),
            (Cause::PrematureClose, Pass::Proxy) => format!(
                "{own}; a TLS port closes the same way on plain HTTP (then proxy_pass https://), and so does a uWSGI socket (then uwsgi_pass)"
            ),
            (Cause::PrematureClose, Pass::Grpc) => format!(
                "{own}; a TLS port closes the same way on plain HTTP/2 (then grpc_pass grpcs://)"
            ),
            (_, Pass::Fastcgi) => format!(
                "{own}; php-fpm also closes a connection at once, unread, from an address its pool's listen.allowed_clients does not list (nginx on another host or container)"
            ),
            // the status page's, for a peer whatever module passed to it
            (Cause::PrematureClose, _) => format!(
                "{own}; a TLS port closes the same way on a plain request (then https:// in proxy_pass, grpcs:// in grpc_pass)"
            ),
            (Cause::ConnectionReset, Pass::Proxy) => format!(
                "{own}; a FastCGI port (php-fpm) resets a plain HTTP request this way (then fastcgi_pass)"
            ),
            _ => format!(
                "{own}; php-fpm resets a plain HTTP request this way (proxy_pass to its port where fastcgi_pass was meant)"
            ),
        })
    }

    /// Does a new connection unanswered (on a unix socket: `unix`) lengthen this cause's hint
    /// through `p`? A unix socket is no TLS port and has no client address to refuse.
    fn unanswered_applies(self, p: Pass, unix: bool) -> bool {
        if !matches!(self, Cause::PrematureClose | Cause::ConnectionReset) {
            return false;
        }
        match p {
            Pass::Uwsgi | Pass::Proxy => true,
            _ if unix => false,
            Pass::Any | Pass::Fastcgi => true,
            Pass::Grpc => self == Cause::PrematureClose,
            _ => false,
        }
    }

    /// Is the hint for these the cause's own through `pass` (`hint_in(None, Detail::None,
    /// pass)`), which pages keep ready, rather than one the errno or the detail changes?
    pub fn hint_is_own(self, errno: Option<i32>, detail: Detail, pass: Pass) -> bool {
        self.sharp_hint(errno, detail).is_none() && self.longer_hint(detail, pass).is_none()
    }

    fn hint_text(self, p: Pass) -> String {
        match self {
            Cause::ConnectRefused => format!(
                "nothing listens at that address: is the backend running, and does {} match its listen port?",
                p.directive("pass")
            ),
            Cause::ConnectTimeout => {
                "the backend did not accept the connection in time: check its listen backlog, firewall rules and load".into()
            }
            Cause::SendTimeout => format!(
                "the backend stopped reading the request: check that it is not stuck, or raise {}",
                p.directive("send_timeout")
            ),
            Cause::ReadTimeout => format!(
                "the backend accepted the request but did not answer in time: look for slow queries, or for every one of its workers being busy (php-fpm pm.max_children, gunicorn --workers: requests wait in its listen queue), or raise {}",
                p.directive("read_timeout")
            ),
            Cause::PrematureClose => {
                "the backend closed the connection before answering: check its logs for crashes, OOM kills or worker restarts".into()
            }
            Cause::ConnectionReset => {
                "the backend reset the connection: check its logs for crashes, and that keepalive timeouts match on both sides".into()
            }
            Cause::InvalidHeader => format!(
                "the backend answered something that is not valid {}: check that {} speaks the backend's protocol (http, fastcgi, uwsgi)",
                p.protocol(),
                p.directive("pass")
            ),
            Cause::HeaderTooBig => format!(
                "the response headers exceed the buffer: raise {}, or trim the cookies and headers",
                p.directive("buffer_size")
            ),
            Cause::NoLiveUpstreams => {
                "every server of the upstream is marked failed (max_fails/fail_timeout): fix the backends, nginx retries after fail_timeout".into()
            }
            Cause::PermissionDenied => {
                "nginx's worker user cannot connect: check the unix socket's owner and mode (listen.owner/listen.mode), or SELinux (to a TCP port: setsebool -P httpd_can_network_connect 1)".into()
            }
            Cause::SocketNotFound => {
                "the unix socket does not exist: is the backend (e.g. php-fpm) running, and does the path match its listen setting?".into()
            }
            Cause::HostNotFound => {
                "the upstream host name did not resolve: check the name and the resolver directive".into()
            }
            Cause::HostUnreachable => {
                "no route to the backend host: check the address, the network and firewall rules".into()
            }
            Cause::AddressUnavailable => {
                "no local address/port available to connect: too many TIME-WAIT sockets, enable upstream keepalive".into()
            }
            Cause::TlsHandshakeFailed => {
                // fastcgi has no TLS to the backend
                let ssl = match p {
                    Pass::Any => "proxy_ssl".into(),
                    p => p.directive("ssl"),
                };
                format!(
                    "the TLS handshake with the backend failed: does the backend speak TLS on that port, and do {ssl}_* settings match? With {ssl}_verify on, its certificate must be trusted by {ssl}_trusted_certificate and name {ssl}_name"
                )
            }
            Cause::WorkerConnections => {
                "nginx ran out of connections: raise worker_connections (and the open files limit)".into()
            }
            Cause::Upstream502 => {
                "the backend itself answered 502: look at the backend's own logs and its upstreams".into()
            }
            Cause::Other => "see error.log for this request".into(),
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

/// What a refused connect to loopback adds to its hint when nginx runs in a container.
const CONTAINER_LOOPBACK: &str = "nginx runs in a container, where 127.0.0.1 and ::1 are the container's own loopback: a backend on the host or in another container is not there; connect to another container by its service name (Docker Compose, a Kubernetes Service), to the host by host.docker.internal or its address, unless nginx shares the backend's network (network_mode: host, the same pod)";

/// How long after the try began a close without an answer stops looking like a crash on
/// arrival and starts looking like the backend's own request timeout (gunicorn --timeout is
/// 30 s by default, uwsgi harakiri and php-fpm request_terminate_timeout are set in tens of
/// seconds): well under all of them, well over a crash on arrival.
pub const LATE_CLOSE_MS: u64 = 5_000;

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

/// What an error.log line tells about the failure in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogLine {
    /// The errno nginx printed as "(NNN: text)".
    pub errno: Option<i32>,
    /// "worker_connections are not enough".
    pub out_of_connections: bool,
    /// "upstream sent ...": nginx refused what the backend sent ("invalid header",
    /// "unsupported FastCGI protocol version", "too large http2 frame"...).
    pub sent_invalid: bool,
    /// The errno is that of a file operation (`open() "/path" failed (13: ...)`,
    /// `pwrite() "/path" failed (28: ...)`): nginx names the file, quoted, right after the
    /// call; socket calls name none (`recv() failed`, `connect() to unix:/path failed`).
    pub file_error: bool,
    /// Why nginx refused the backend's certificate: OpenSSL's verify error ("upstream SSL
    /// certificate verify error: (10:certificate has expired)": X509_V_ERR_CERT_HAS_EXPIRED).
    pub cert_verify: Option<u16>,
    /// The TLS alert the backend sent ("SSL alert number 112"), if the line names one.
    pub tls_alert: Option<u16>,
    /// "no resolver defined to resolve NAME": a host name in a variable (`proxy_pass
    /// http://$host`), and no `resolver` in effect.
    pub no_resolver: bool,
}

/// Parse one error.log line as nginx writes it:
/// `2026/04/24 09:22:18 [error] 12487#0: *9234 connect() failed (111: Connection refused) while ...`.
/// The errno is the first "(digits: " after the level tag; the request line, which may hold
/// anything, comes later (", client: ..., request: ...") and nothing in it is taken.
///
/// This runs on every error.log line of a failing request, so each search looks for the
/// rarest byte of what it wants (`memchr`, vectorised in glibc) and a line is read about once.
pub fn parse_log_line(line: &[u8]) -> LogLine {
    let mut out = LogLine::default();
    let mut i = 0;
    while let Some(off) = memchr(b'(', &line[i..]) {
        let start = i + off + 1;
        let (mut n, mut digits) = (0i32, 0);
        while let Some(d) = line.get(start + digits).filter(|b| b.is_ascii_digit()) {
            if digits == 5 {
                break;
            }
            n = n * 10 + i32::from(d - b'0');
            digits += 1;
        }
        if digits > 0 && line[start + digits..].starts_with(b": ") {
            // Past the message (", client: ..." follows it), the line is not read: the
            // request line may hold anything.
            if memchr(b',', &line[..start]).is_some()
                && find(&line[..start], b", client: ", 0).is_some()
            {
                break;
            }
            // "could not be resolved (3: Host not found)" carries a resolver code (1 to 5), not
            // an errno; for a timeout nginx's code is ETIMEDOUT itself (110), kept.
            let resolver =
                matches!(n, 1..=5) && find(&line[..start], b"could not be resolved", 18).is_some();
            if !resolver {
                out.errno = Some(n);
                // only where a file's errno could pass for a socket's: not for those only
                // sockets give (refused, reset, timed out... the lines of every failure)
                out.file_error =
                    !SOCKET_ONLY_ERRNOS.contains(&n) && find(&line[..start], b"() \"", 3).is_some();
            }
            return out;
        }
        i = start;
    }
    // Logged without an errno, so looked for only when there is none.
    let msg = &line[..find(line, b", client: ", 0).unwrap_or(line.len())];
    out.out_of_connections = find(msg, b"worker_connections are not enough", 3).is_some();
    out.sent_invalid = find(msg, b"upstream sent ", 0).is_some();
    out.no_resolver = find(msg, b"no resolver defined to resolve ", 8).is_some();
    if let Some(at) = find(msg, b"certificate verify error: (", 26) {
        out.cert_verify = leading_number(&msg[at + 27..]);
    }
    if let Some(at) = find(msg, b"SSL alert number ", 13) {
        out.tls_alert = leading_number(&msg[at + 17..]);
    }
    out
}

/// The number of up to 3 digits that `s` starts with (an OpenSSL verify error, a TLS alert).
fn leading_number(s: &[u8]) -> Option<u16> {
    let n = s.iter().take(3).take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then(|| s[..n].iter().fold(0, |v, d| v * 10 + u16::from(d - b'0')))
}

/// errnos no file operation gives: a line with one of them is a socket's.
const SOCKET_ONLY_ERRNOS: [i32; 7] = [
    errno::ECONNREFUSED,
    errno::ECONNRESET,
    errno::ETIMEDOUT,
    errno::EPIPE,
    errno::EHOSTUNREACH,
    errno::ENETUNREACH,
    errno::EADDRNOTAVAIL,
];

/// First position of `b` in `hay`: the C library's `memchr`.
fn memchr(b: u8, hay: &[u8]) -> Option<usize> {
    // SAFETY: the pointer is valid for hay.len() bytes; memchr only reads them.
    let p = unsafe { libc::memchr(hay.as_ptr().cast(), i32::from(b), hay.len()) };
    (!p.is_null()).then(|| p as usize - hay.as_ptr() as usize)
}

/// First position of `needle` (not empty) in `hay`, found through `memchr` for its byte at
/// `key` (pick a byte that is rare in the text searched), then a compare.
fn find(hay: &[u8], needle: &[u8], key: usize) -> Option<usize> {
    let k = *needle.get(key)?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        i += memchr(k, &hay[i + key..=last_start + key])?;
        if hay[i..i + needle.len()] == *needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Facts {
        Facts {
            connected: true,
            ..Default::default()
        }
    }

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

    #[test]
    fn errno_sharpens_the_hint() {
        let full = Cause::Other.hint_for(Some(libc::EAGAIN));
        assert_ne!(full, Cause::Other.hint());
        assert!(full.contains("listen queue is full"));
        assert_eq!(Cause::Other.hint_for(Some(5)), Cause::Other.hint());
        assert_eq!(Cause::Other.hint_for(None), Cause::Other.hint());
        for &c in &Cause::ALL {
            if c != Cause::Other {
                assert_eq!(c.hint_for(Some(libc::EAGAIN)), c.hint(), "{c}");
            }
        }
    }

    #[test]
    fn sharp_errnos_are_all_listed() {
        for &c in &Cause::ALL {
            for e in -1..1000 {
                if c.sharp_hint(Some(e), Detail::None).is_some() {
                    assert!(Cause::SHARP_ERRNOS.contains(&e), "{c} {e}");
                }
            }
        }
    }

    #[test]
    fn hints_name_the_directives_of_the_upstream_module() {
        let schemas: [(&[u8], Pass); 14] = [
            (b"http://", Pass::Proxy),
            (b"https://", Pass::Proxy),
            (b"fastcgi://", Pass::Fastcgi),
            (b"uwsgi://", Pass::Uwsgi),
            (b"suwsgi://", Pass::Uwsgi),
            (b"scgi://", Pass::Scgi),
            (b"grpc://", Pass::Grpc),
            (b"grpcs://", Pass::Grpc),
            (b"memcached://", Pass::Memcached),
            (b"", Pass::Any),
            (b"http:/", Pass::Any),
            (b"scgi:/", Pass::Any),
            (b"ftp://", Pass::Any),
            (b"redis://", Pass::Any),
        ];
        for (schema, pass) in schemas {
            assert_eq!(Pass::from_schema(schema), pass, "{schema:?}");
        }
        let read = |p| Cause::ReadTimeout.hint_in(None, Detail::None, p);
        assert!(read(Pass::Fastcgi).ends_with("raise fastcgi_read_timeout"));
        assert!(read(Pass::Grpc).ends_with("raise grpc_read_timeout"));
        assert!(read(Pass::Any).ends_with("raise proxy_read_timeout / fastcgi_read_timeout"));
        assert_eq!(Cause::ReadTimeout.hint(), read(Pass::Any));
        assert!(Cause::ConnectRefused
            .hint_in(None, Detail::None, Pass::Uwsgi)
            .contains("does uwsgi_pass match its listen port"));
        assert!(Cause::InvalidHeader
            .hint_in(None, Detail::None, Pass::Fastcgi)
            .contains("not valid FastCGI: check that fastcgi_pass"));
        assert!(Cause::TlsHandshakeFailed
            .hint_in(None, Detail::None, Pass::Any)
            .contains("proxy_ssl_*"));
        for &pass in &Pass::ALL {
            for &c in &Cause::ALL {
                let h = c.hint_in(None, Detail::None, pass);
                assert!(!h.is_empty() && !h.contains('{'), "{c} {pass:?}: {h}");
                // a module's hint names no other module's directives, but for the other
                // module's *_pass where the backend speaks its protocol
                if pass == Pass::Fastcgi {
                    assert!(!h.contains("proxy_"), "{c}: {h}");
                }
                if pass == Pass::Proxy {
                    assert!(
                        !h.replace("fastcgi_pass", "").contains("fastcgi_"),
                        "{c}: {h}"
                    );
                }
            }
        }
    }

    #[test]
    fn log_lines() {
        let l = parse_log_line(b"2026/04/24 09:22:18 [error] 12487#0: *9234 connect() failed (111: Connection refused) while connecting to upstream, client: 198.51.100.23, server: x, request: \"POST /a(12: b) HTTP/1.1\"");
        assert_eq!(l.errno, Some(111));
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *1 connect() to unix:/run/php.sock failed (13: Permission denied) while connecting to upstream");
        assert_eq!(l.errno, Some(13));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1");
        assert_eq!(l.errno, Some(104));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, request: \"GET /(7: x)\"");
        assert_eq!(l.errno, None);
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 nx.test could not be resolved (3: Host not found), client: 127.0.0.1");
        assert_eq!(l.errno, None);
        // nginx refused what the backend sent; the request line is not read
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream sent unsupported FastCGI protocol version: 72 while reading response header from upstream, client: 127.0.0.1");
        assert!(l.sent_invalid && l.errno.is_none());
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, request: \"GET /upstream sent x\"");
        assert!(!l.sent_invalid);
        // a file's errno, not the connection's; a socket's call names no file
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *2 open() \"/var/cache/nginx/proxy_temp/0000000001\" failed (13: Permission denied) while reading upstream, client: 127.0.0.1");
        assert_eq!((l.errno, l.file_error), (Some(13), true));
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *2 pwrite() \"/t/1\" failed (28: No space left on device) while reading upstream, client: 127.0.0.1");
        assert_eq!((l.errno, l.file_error), (Some(28), true));
        for line in [
            &b"2026/04/24 [crit] 1#0: *1 connect() to unix:/run/php.sock failed (13: Permission denied) while connecting to upstream"[..],
            b"2026/04/24 [error] 1#0: *1 writev() failed (32: Broken pipe) while sending request to upstream, client: 1, request: \"GET /open() \\\"x\\\"\"",
        ] {
            assert!(!parse_log_line(line).file_error);
        }
        // an expired certificate, and another verify error
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream SSL certificate verify error: (10:certificate has expired) while SSL handshaking to upstream, client: 127.0.0.1");
        assert_eq!((l.cert_verify, l.errno), (Some(10), None));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream SSL certificate verify error: (18:self-signed certificate) while SSL handshaking to upstream, client: 127.0.0.1, request: \"GET /verify error: (10:x\"");
        assert_eq!(l.cert_verify, Some(18));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream SSL certificate verify error: (22:certificate chain too long) while SSL handshaking to upstream, client: 127.0.0.1");
        assert_eq!(l.cert_verify, Some(22));
        // only in the request line: not taken
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream timed out while SSL handshaking to upstream, client: 127.0.0.1, request: \"GET /certificate verify error: (22:x\"");
        assert_eq!(l.cert_verify, None);
        // the backend's TLS alert
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *1 SSL_do_handshake() failed (SSL: error:0A000458:SSL routines::tlsv1 unrecognized name:SSL alert number 112) while SSL handshaking to upstream, client: 127.0.0.1");
        assert_eq!((l.tls_alert, l.errno), (Some(112), None));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream, client: 1, request: \"GET /SSL alert number 40\"");
        assert_eq!(l.tls_alert, None);
        // nginx's resolver reports a timeout as ETIMEDOUT
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 app.test could not be resolved (110: Operation timed out), client: 127.0.0.1");
        assert_eq!(l.errno, Some(110));
        let l = parse_log_line(
            b"2026/04/24 [alert] 1#0: *1 8 worker_connections are not enough while connecting to upstream, client: 127.0.0.1",
        );
        assert!(l.out_of_connections);
        assert_eq!(l.errno, None);
        assert_eq!(parse_log_line(b""), LogLine::default());
        assert_eq!(parse_log_line(b"(((((((").errno, None);
        assert_eq!(parse_log_line(b"x (123456: y)").errno, None);
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abcabd", b"abd", 2), Some(3));
        assert_eq!(find(b"abcab", b"abd", 1), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"(", b"(", 0), Some(0));
        assert_eq!(find(b"x(", b"(", 0), Some(1));
        assert_eq!(find(b"aab", b"ab", 1), Some(1));
        assert_eq!(find(b"abab", b"ab", 1), Some(0));
        assert_eq!(find(b"ab", b"ab", 2), None);
        assert_eq!(find(b"", b"a", 0), None);
        // against a plain window scan, bytes around the match included
        for len in 0..24 {
            for at in 0..len {
                for fill in [0x00u8, 0x28, 0x80, 0xff] {
                    let mut hay = vec![fill; len];
                    hay[at] = b'(';
                    if at + 1 < len {
                        hay[at + 1] = b'x';
                    }
                    let expected = hay.windows(2).position(|w| w == b"(x");
                    for key in [0, 1] {
                        assert_eq!(
                            find(&hay, b"(x", key),
                            expected,
                            "len {len} at {at} fill {fill}"
                        );
                    }
                }
            }
        }
    }
}
