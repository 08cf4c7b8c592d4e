//! One line of remediation per cause, from the troubleshooting guides (shared/seeds/): the
//! cause's own, made longer by what else is known ([`Detail`]), or sharper by the errno; the
//! directives it names are those of the upstream module the try went through ([`Pass`]).

use super::{errno, Cause, Detail, Pass};

/// What a refused connect to loopback adds to its hint when nginx runs in a container (and
/// the lint to its finding of a loopback address nothing listens on).
pub const CONTAINER_LOOPBACK: &str = "nginx runs in a container, where 127.0.0.1 and ::1 are the container's own loopback: a backend on the host or in another container is not there; connect to another container by its service name (Docker Compose, a Kubernetes Service), to the host by host.docker.internal or its address, unless nginx shares the backend's network (network_mode: host, the same pod)";

impl Cause {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
