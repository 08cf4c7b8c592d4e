//! Where a `*_pass` or an upstream `server` sends requests, read from the directive's argument
//! as written: a unix socket, a literal IP address and port, a host name (maybe an upstream
//! block's name), or something only known at run time (variables).

use std::net::{IpAddr, SocketAddr};

/// The destination of a `*_pass` or `server` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `unix:/path` (path as written).
    Unix(String),
    /// A literal IP address with a known port (explicit, or the scheme's default).
    Inet(SocketAddr),
    /// A host name, or an IP address without a port: an upstream block's name when one
    /// matches.
    Host { host: String, port: Option<u16> },
    /// The address part has variables: only known per request.
    Variable,
}

impl Target {
    /// Is this a TCP destination (as opposed to a unix socket or a run-time one)?
    pub fn is_tcp(&self) -> bool {
        matches!(self, Target::Inet(_) | Target::Host { .. })
    }
}

/// The target of a `*_pass` argument. `proxy_pass` and `grpc_pass` URLs carry a scheme
/// (`http://`, `https://`, `grpc://`, `grpcs://`) whose default port applies when none is
/// given; `fastcgi_pass`, `uwsgi_pass` and `scgi_pass` take `host:port` or `unix:path`
/// (`uwsgi://` and `suwsgi://` are accepted too).
pub fn parse_pass(arg: &str) -> Target {
    let lower = arg.to_ascii_lowercase();
    let (rest, default_port) = [
        ("http://", Some(80)),
        ("https://", Some(443)),
        ("grpc://", Some(80)),
        ("grpcs://", Some(443)),
        ("uwsgi://", None),
        ("suwsgi://", None),
    ]
    .into_iter()
    .find(|(scheme, _)| lower.starts_with(scheme))
    .map(|(scheme, port)| (&arg[scheme.len()..], port))
    .unwrap_or((arg, None));
    parse_address(rest, default_port, true)
}

/// The target of an upstream `server` argument (`host[:port]`, default port 80, or
/// `unix:path`).
pub fn parse_server(arg: &str) -> Target {
    parse_address(arg, Some(80), false)
}

fn parse_address(s: &str, default_port: Option<u16>, has_uri: bool) -> Target {
    if s.len() >= 5 && s[..5].eq_ignore_ascii_case("unix:") {
        // unix:/path[:/uri] — the path ends at the first ':' (ngx_parse_unix_domain_url)
        let path = &s[5..];
        let path = if has_uri {
            path.split(':').next().unwrap_or(path)
        } else {
            path
        };
        if path.contains('$') {
            return Target::Variable;
        }
        return Target::Unix(path.to_string());
    }
    let authority = if has_uri {
        s.split(['/', '?']).next().unwrap_or(s)
    } else {
        s
    };
    if authority.contains('$') || authority.is_empty() {
        return Target::Variable;
    }
    let (host, port) = split_host_port(authority);
    let Some(port) = port else {
        return Target::Host {
            host: host.to_string(),
            port: None,
        }
        .with_default(default_port);
    };
    match port.parse::<u16>() {
        Ok(p) => Target::Host {
            host: host.to_string(),
            port: Some(p),
        }
        .with_default(None),
        Err(_) => Target::Variable,
    }
}

impl Target {
    /// A host that is an IP literal becomes `Inet` once a port is known.
    fn with_default(self, default_port: Option<u16>) -> Target {
        let Target::Host { host, port } = self else {
            return self;
        };
        let ip = host.parse::<IpAddr>().ok();
        match (ip, port.or(default_port)) {
            (Some(ip), Some(p)) => Target::Inet(SocketAddr::new(ip, p)),
            _ => Target::Host { host, port },
        }
    }
}

/// `[::1]:80` → (`::1`, `80`); `host:80` → (`host`, `80`); `host` → (`host`, none).
fn split_host_port(a: &str) -> (&str, Option<&str>) {
    if let Some(rest) = a.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':');
            return (&rest[..end], port);
        }
        return (a, None);
    }
    match a.rfind(':') {
        Some(i) if a[..i].contains(':') => (a, None), // a bare IPv6 address
        Some(i) => (&a[..i], Some(&a[i + 1..])),
        None => (a, None),
    }
}

/// Is this an address on the loopback interface (127.0.0.0/8, ::1, or ::ffff:127.x)?
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(s: &str) -> Target {
        Target::Inet(s.parse().unwrap())
    }

    fn host(h: &str, p: Option<u16>) -> Target {
        Target::Host {
            host: h.into(),
            port: p,
        }
    }

    #[test]
    fn proxy_pass_urls() {
        assert_eq!(parse_pass("http://127.0.0.1:8000"), inet("127.0.0.1:8000"));
        assert_eq!(
            parse_pass("http://127.0.0.1:8000/api/"),
            inet("127.0.0.1:8000")
        );
        assert_eq!(parse_pass("HTTP://127.0.0.1"), inet("127.0.0.1:80"));
        assert_eq!(parse_pass("https://127.0.0.1"), inet("127.0.0.1:443"));
        assert_eq!(parse_pass("http://[::1]:9000/x"), inet("[::1]:9000"));
        assert_eq!(parse_pass("http://app"), host("app", None));
        assert_eq!(parse_pass("http://app/"), host("app", None));
        assert_eq!(parse_pass("http://app$request_uri"), Target::Variable);
        assert_eq!(parse_pass("http://app/$request_uri"), host("app", None));
        assert_eq!(
            parse_pass("http://example.com:8080"),
            host("example.com", Some(8080))
        );
        assert_eq!(parse_pass("http://$backend"), Target::Variable);
        assert_eq!(
            parse_pass("http://unix:/run/app.sock:/api"),
            Target::Unix("/run/app.sock".into())
        );
        assert_eq!(
            parse_pass("http://unix:/run/app.sock"),
            Target::Unix("/run/app.sock".into())
        );
        assert_eq!(
            parse_pass("grpc://127.0.0.1:50051"),
            inet("127.0.0.1:50051")
        );
    }

    #[test]
    fn fastcgi_style_addresses() {
        assert_eq!(parse_pass("127.0.0.1:9000"), inet("127.0.0.1:9000"));
        assert_eq!(
            parse_pass("unix:/run/php/php8.3-fpm.sock"),
            Target::Unix("/run/php/php8.3-fpm.sock".into())
        );
        assert_eq!(parse_pass("php"), host("php", None));
        assert_eq!(parse_pass("127.0.0.1"), host("127.0.0.1", None));
        assert_eq!(parse_pass("localhost:9000"), host("localhost", Some(9000)));
        assert_eq!(parse_pass("uwsgi://127.0.0.1:3031"), inet("127.0.0.1:3031"));
        assert_eq!(parse_pass("unix:/run/$app.sock"), Target::Variable);
    }

    #[test]
    fn upstream_servers() {
        assert_eq!(parse_server("127.0.0.1:8000"), inet("127.0.0.1:8000"));
        assert_eq!(parse_server("127.0.0.1"), inet("127.0.0.1:80"));
        assert_eq!(parse_server("[::1]"), inet("[::1]:80"));
        assert_eq!(
            parse_server("backend.internal:8000"),
            host("backend.internal", Some(8000))
        );
        assert_eq!(
            parse_server("unix:/tmp/app.sock"),
            Target::Unix("/tmp/app.sock".into())
        );
        assert!(parse_server("10.0.0.1:80").is_tcp());
        assert!(!parse_server("unix:/x").is_tcp());
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.3.2.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("0.0.0.0".parse().unwrap()));
    }
}
