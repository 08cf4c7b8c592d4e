//! `plain-to-tls-port`: `proxy_pass http://` (or `grpc_pass grpc://`) to port 443 or 8443,
//! directly or through a server of the upstream block it names. Those ports speak TLS: the
//! backend closes the connection on the plain request (502 premature_close), or answers 400
//! "plain HTTP request sent to HTTPS port". A hint — plain HTTP on 443 is possible, if rare.

use super::{Index, Report};
use crate::lint::code::Code;
use crate::lint::model::PassKind;
use crate::lint::target::{self, Target};

/// Ports that speak TLS by convention.
const TLS_PORTS: [u16; 2] = [443, 8443];

pub(super) fn check(ix: &Index, r: &mut Report) {
    for (loc, u) in ix.locations() {
        let (plain, tls) = match loc.pass.kind {
            PassKind::Proxy => ("http://", "https://"),
            PassKind::Grpc => ("grpc://", "grpcs://"),
            _ => continue,
        };
        let arg = &loc.pass.target;
        if !arg
            .get(..plain.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(plain))
        {
            continue;
        }
        let directive = format!("{}_pass", loc.pass.kind.prefix());
        let targets: Vec<(String, Target)> = match u {
            Some(u) => u
                .servers
                .iter()
                .filter(|s| !s.down)
                .map(|s| {
                    (
                        format!("server \"{}\" of upstream \"{}\"", s.addr, u.name),
                        target::parse_server(&s.addr),
                    )
                })
                .collect(),
            None => vec![(String::new(), target::parse_pass(arg))],
        };
        let ignore: Vec<&[Code]> = match u {
            Some(u) => vec![&loc.ignore, &u.ignore],
            None => vec![&loc.ignore],
        };
        for (what, t) in targets {
            let port = match t {
                Target::Inet(a) => a.port(),
                Target::Host { port: Some(p), .. } => p,
                _ => continue,
            };
            if !TLS_PORTS.contains(&port) {
                continue;
            }
            let to = if what.is_empty() {
                format!("port {port}")
            } else {
                format!("port {port} ({what})")
            };
            r.emit(
                Code::PlainToTlsPort,
                &loc.pass.site,
                format!(
                    "{directive} in location \"{}\" sends plain {plain} requests to {to}, which \
                     normally speaks TLS — use {tls} (otherwise the backend closes the \
                     connection: 502 premature_close)",
                    loc.name
                ),
                &ignore,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::super::testing::*;
    use crate::lint::code::Code;
    use crate::lint::model::PassKind;

    fn one(kind: PassKind, target: &str) -> Vec<(Code, usize)> {
        let mut cfg = config();
        cfg.locations.push(location("/", kind, target, 7));
        lines(&cfg)
    }

    #[test]
    fn plain_to_443_and_8443() {
        for t in [
            "http://127.0.0.1:443",
            "HTTP://api.example.test:8443/v1",
            "http://[::1]:443/",
        ] {
            assert_eq!(
                one(PassKind::Proxy, t),
                vec![(Code::PlainToTlsPort, 7)],
                "{t}"
            );
        }
        assert_eq!(
            one(PassKind::Grpc, "grpc://127.0.0.1:443"),
            vec![(Code::PlainToTlsPort, 7)]
        );
        let mut cfg = config();
        cfg.locations
            .push(location("/api", PassKind::Proxy, "http://api.test:443", 7));
        let f = run(&cfg, &FakeSystem::default());
        assert_eq!(
            f[0].render(),
            "triage [plain-to-tls-port]: proxy_pass in location \"/api\" sends plain http:// \
             requests to port 443, which normally speaks TLS — use https:// (otherwise the \
             backend closes the connection: 502 premature_close) (/etc/nginx/nginx.conf:7)"
        );
    }

    #[test]
    fn silent_for_tls_other_ports_and_other_modules() {
        for t in [
            "https://127.0.0.1:443",
            "http://127.0.0.1:8080",
            "http://api.test",
            "http://$backend:443",
        ] {
            assert!(
                !one(PassKind::Proxy, t).contains(&(Code::PlainToTlsPort, 7)),
                "{t}"
            );
        }
        assert!(one(PassKind::Grpc, "grpcs://127.0.0.1:443").is_empty());
        assert!(one(PassKind::Fastcgi, "127.0.0.1:443").is_empty());
    }

    #[test]
    fn through_an_upstream_s_servers() {
        let mut cfg = config();
        cfg.upstreams.push(upstream(
            "api",
            1,
            &[("10.0.0.1:443", 2), ("10.0.0.2:8080", 3)],
        ));
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://api", 9));
        let f = run(&cfg, &FakeSystem::default());
        let tls: Vec<_> = f
            .iter()
            .filter(|f| f.code == Code::PlainToTlsPort)
            .collect();
        assert_eq!(tls.len(), 1);
        assert_eq!(tls[0].site.line, 9);
        assert!(tls[0]
            .message
            .contains("port 443 (server \"10.0.0.1:443\" of upstream \"api\")"));
        // https:// to the same upstream, or the finding ignored in the upstream: silent
        cfg.locations[0].pass.target = "https://api".into();
        assert!(lines(&cfg).is_empty());
        cfg.locations[0].pass.target = "http://api".into();
        cfg.upstreams[0].ignore = vec![Code::PlainToTlsPort];
        assert!(!lines(&cfg).contains(&(Code::PlainToTlsPort, 9)));
    }
}
