//! `keepalive-http10` and `keepalive-connection-header`: an upstream with `keepalive` reached
//! by `proxy_pass` from a location that speaks HTTP/1.0 to it or sends it `Connection: close`
//! (nginx's defaults). The connections are never reused: keepalive is silently unused, and
//! under load the missing reuse ends in TIME-WAIT exhaustion (502 address_unavailable).

use super::{Index, Report};
use crate::lint::code::Code;
use crate::lint::model::{Location, PassKind};

pub(super) fn check(ix: &Index, r: &mut Report) {
    for (loc, u) in ix.locations() {
        let Some(u) = u.filter(|_| loc.pass.kind == PassKind::Proxy) else {
            continue;
        };
        if u.keepalive.is_none() {
            continue;
        }
        let ignore: &[&[Code]] = &[&loc.ignore, &u.ignore];
        if loc.http_version.as_ref().map(|v| v.value.as_str()) != Some("1.1") {
            r.emit(
                Code::KeepaliveHttp10,
                &loc.pass.site,
                format!(
                    "upstream \"{}\" has keepalive but location \"{}\" proxies to it without \
                     \"proxy_http_version 1.1\" — keepalive is silently unused",
                    u.name, loc.name
                ),
                ignore,
            );
        }
        if let Some(problem) = connection_header_problem(loc) {
            r.emit(
                Code::KeepaliveConnectionHeader,
                &loc.pass.site,
                format!(
                    "upstream \"{}\" has keepalive but location \"{}\" {} — add \
                     proxy_set_header Connection \"\"; or keepalive is silently unused",
                    u.name, loc.name, problem
                ),
                ignore,
            );
        }
    }
}

/// What is wrong with the `Connection` header the location sends, if anything: absent (nginx
/// then sends `Connection: close`) or set to a literal `close`. A value with variables (the
/// WebSocket `$connection_upgrade` idiom) is not judged.
fn connection_header_problem(loc: &Location) -> Option<&'static str> {
    let value = loc
        .proxy_headers
        .iter()
        .flatten()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| v.as_str());
    match value {
        None => Some("does not clear the Connection header (nginx sends \"Connection: close\")"),
        Some(v) if v.eq_ignore_ascii_case("close") => Some("sends \"Connection: close\""),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::super::testing::*;
    use crate::lint::code::Code;
    use crate::lint::model::{Config, PassKind, Setting};

    /// upstream "app" with keepalive, location "/" proxying to it (line 23).
    fn setup(version: Option<&str>, headers: Option<Vec<(&str, &str)>>) -> Config {
        let mut cfg = config();
        let mut u = upstream("app", 1, &[]);
        u.keepalive = Some(site(3));
        cfg.upstreams.push(u);
        let mut loc = location("/", PassKind::Proxy, "http://app", 23);
        loc.http_version = version.map(|v| Setting {
            value: v.into(),
            site: site(24),
        });
        loc.proxy_headers =
            headers.map(|h| h.into_iter().map(|(n, v)| (n.into(), v.into())).collect());
        cfg.locations.push(loc);
        cfg
    }

    #[test]
    fn both_fire_on_nginx_defaults_with_the_issue_s_wording() {
        let cfg = setup(None, None);
        let f = run(&cfg, &FakeSystem::default());
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0].render(),
            "triage [keepalive-http10]: upstream \"app\" has keepalive but location \"/\" \
             proxies to it without \"proxy_http_version 1.1\" — keepalive is silently unused \
             (/etc/nginx/nginx.conf:23)"
        );
        assert_eq!(f[1].code, Code::KeepaliveConnectionHeader);
        assert!(f[1].message.contains("proxy_set_header Connection \"\";"));
    }

    #[test]
    fn silent_when_configured_right() {
        let cfg = setup(
            Some("1.1"),
            Some(vec![("Host", "$host"), ("connection", "")]),
        );
        assert!(lines(&cfg).is_empty());
        // the WebSocket idiom is not judged
        let cfg = setup(
            Some("1.1"),
            Some(vec![("Connection", "$connection_upgrade")]),
        );
        assert!(lines(&cfg).is_empty());
    }

    #[test]
    fn each_mistake_alone() {
        let cfg = setup(Some("1.0"), Some(vec![("Connection", "")]));
        assert_eq!(lines(&cfg), vec![(Code::KeepaliveHttp10, 23)]);
        let cfg = setup(Some("1.1"), Some(vec![("Host", "$host")]));
        assert_eq!(lines(&cfg), vec![(Code::KeepaliveConnectionHeader, 23)]);
        let cfg = setup(Some("1.1"), Some(vec![("Connection", "close")]));
        assert_eq!(lines(&cfg), vec![(Code::KeepaliveConnectionHeader, 23)]);
    }

    #[test]
    fn silent_without_keepalive_or_for_other_modules() {
        let mut cfg = setup(None, None);
        cfg.upstreams[0].keepalive = None;
        assert!(lines(&cfg).is_empty());
        let mut cfg = setup(None, None);
        cfg.locations[0].pass.kind = PassKind::Grpc;
        cfg.locations[0].pass.target = "grpc://app".into();
        assert!(lines(&cfg).is_empty());
    }

    #[test]
    fn ignored_in_location_or_upstream() {
        let mut cfg = setup(None, None);
        cfg.locations[0].ignore = vec![Code::KeepaliveHttp10];
        assert_eq!(lines(&cfg), vec![(Code::KeepaliveConnectionHeader, 23)]);
        let mut cfg = setup(None, None);
        cfg.upstreams[0].ignore = vec![Code::KeepaliveConnectionHeader];
        assert_eq!(lines(&cfg), vec![(Code::KeepaliveHttp10, 23)]);
    }
}
