//! From directives to the [`model`](crate::lint::model): what a directive's arguments mean for
//! the lint, and nginx's inheritance of those settings from http{} to server{} to location{}
//! (and into `if`/`limit_except` blocks). The glue feeds directives in as nginx parses them and
//! calls [`Level::inherit`] in merge order; nothing here touches nginx.

use crate::lint::code::Code;
use crate::lint::model::{Location, Pass, PassKind, Server, Setting, Site, Upstream};
use crate::lint::time;

/// The directives the lint notes while nginx parses them: (module, directive). Those of
/// `ngx_http_upstream_module` and the keepalive module are written inside `upstream {}` and go
/// to [`note_upstream`]; the others to [`Level::note`].
pub const WATCHED: [(&str, &str); 15] = [
    ("ngx_http_proxy_module", "proxy_pass"),
    ("ngx_http_proxy_module", "proxy_http_version"),
    ("ngx_http_proxy_module", "proxy_set_header"),
    ("ngx_http_proxy_module", "proxy_read_timeout"),
    ("ngx_http_fastcgi_module", "fastcgi_pass"),
    ("ngx_http_fastcgi_module", "fastcgi_read_timeout"),
    ("ngx_http_uwsgi_module", "uwsgi_pass"),
    ("ngx_http_uwsgi_module", "uwsgi_read_timeout"),
    ("ngx_http_scgi_module", "scgi_pass"),
    ("ngx_http_scgi_module", "scgi_read_timeout"),
    ("ngx_http_grpc_module", "grpc_pass"),
    ("ngx_http_grpc_module", "grpc_read_timeout"),
    ("ngx_http_upstream_module", "upstream"),
    ("ngx_http_upstream_module", "server"),
    ("ngx_http_upstream_keepalive_module", "keepalive"),
];

/// Is this directive written inside `upstream {}` (see [`note_upstream`])?
pub fn in_upstream(directive: &str) -> bool {
    matches!(directive, "server" | "keepalive")
}

/// The settings of one configuration level (http, server, location, `if`, `limit_except`):
/// first those written at that level, after [`Level::inherit`] those in effect there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Level {
    pub pass: Option<Pass>,
    pub http_version: Option<Setting<String>>,
    /// `proxy_set_header` lines of this level (nginx inherits the list only when a level has
    /// none of its own).
    pub proxy_headers: Option<Vec<(String, String)>>,
    /// `<kind>_read_timeout` per [`PassKind::index`], in milliseconds.
    pub read_timeouts: [Option<Setting<u64>>; 5],
    /// `triage_lint_ignore` codes (inherited as a union: an enclosing level's codes stay
    /// silenced).
    pub ignore: Vec<Code>,
}

impl Level {
    /// Note one directive written at this level (`args` without the name). Directives the
    /// lint does not follow and malformed values are ignored (nginx has validated them).
    pub fn note(&mut self, name: &str, args: &[String], site: Site) {
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        if let Some(kind) = PassKind::ALL
            .into_iter()
            .find(|k| name.strip_prefix(k.prefix()) == Some("_pass"))
        {
            self.pass = Some(Pass {
                kind,
                target: arg(0),
                site,
            });
        } else if let Some(kind) = PassKind::ALL
            .into_iter()
            .find(|k| name.strip_prefix(k.prefix()) == Some("_read_timeout"))
        {
            if let Some(ms) = time::parse_ms(&arg(0), false) {
                self.read_timeouts[kind.index()] = Some(Setting { value: ms, site });
            }
        } else if name == "proxy_http_version" {
            self.http_version = Some(Setting {
                value: arg(0),
                site,
            });
        } else if name == "proxy_set_header" {
            self.proxy_headers
                .get_or_insert_with(Vec::new)
                .push((arg(0), arg(1)));
        }
    }

    /// Add `triage_lint_ignore` codes.
    pub fn ignore(&mut self, codes: &[Code]) {
        for c in codes {
            if !self.ignore.contains(c) {
                self.ignore.push(*c);
            }
        }
    }

    /// Take from the enclosing level (already inherited itself) what this level does not set,
    /// as nginx's merge does. `noname` is true for `if` and `limit_except` blocks, which also
    /// inherit the enclosing location's `*_pass`.
    pub fn inherit(&mut self, parent: &Level, noname: bool) {
        if noname && self.pass.is_none() {
            self.pass.clone_from(&parent.pass);
        }
        if self.http_version.is_none() {
            self.http_version.clone_from(&parent.http_version);
        }
        if self.proxy_headers.is_none() {
            self.proxy_headers.clone_from(&parent.proxy_headers);
        }
        for (mine, theirs) in self.read_timeouts.iter_mut().zip(&parent.read_timeouts) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
        let inherited = parent.ignore.clone();
        self.ignore(&inherited);
    }

    /// The location as the rules see it, if it passes requests to a backend.
    pub fn location(&self, name: &str) -> Option<Location> {
        let pass = self.pass.clone()?;
        Some(Location {
            name: name.to_string(),
            read_timeout: self.read_timeouts[pass.kind.index()].clone(),
            pass,
            http_version: self.http_version.clone(),
            proxy_headers: self.proxy_headers.clone(),
            ignore: self.ignore.clone(),
        })
    }
}

/// Note one directive written inside `upstream {}` (`server`, `keepalive`).
pub fn note_upstream(u: &mut Upstream, name: &str, args: &[String], site: Site) {
    match name {
        "keepalive" => u.keepalive = Some(site),
        "server" => {
            let mut s = Server {
                addr: args.first().cloned().unwrap_or_default(),
                backup: false,
                down: false,
                max_fails: None,
                fail_timeout: None,
                site,
            };
            for a in args.iter().skip(1) {
                match a.as_str() {
                    "backup" => s.backup = true,
                    "down" => s.down = true,
                    _ => {
                        if let Some(v) = a.strip_prefix("max_fails=") {
                            s.max_fails = v.parse().ok();
                        } else if let Some(v) = a.strip_prefix("fail_timeout=") {
                            s.fail_timeout = time::parse_ms(v, true);
                        }
                    }
                }
            }
            u.servers.push(s);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(line: usize) -> Site {
        Site {
            file: "nginx.conf".into(),
            line,
            seq: line,
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pass_and_settings_are_noted() {
        let mut l = Level::default();
        l.note("proxy_pass", &args(&["http://app"]), site(3));
        l.note("proxy_http_version", &args(&["1.1"]), site(4));
        l.note("proxy_set_header", &args(&["Connection", ""]), site(5));
        l.note("proxy_set_header", &args(&["Host", "$host"]), site(6));
        l.note("proxy_read_timeout", &args(&["3s"]), site(7));
        l.note("fastcgi_read_timeout", &args(&["1m"]), site(8));
        l.note("proxy_buffering", &args(&["off"]), site(9));
        let loc = l.location("/").unwrap();
        assert_eq!(loc.pass.kind, PassKind::Proxy);
        assert_eq!(loc.pass.target, "http://app");
        assert_eq!(loc.pass.site.line, 3);
        assert_eq!(loc.http_version.unwrap().value, "1.1");
        assert_eq!(
            loc.proxy_headers.unwrap(),
            vec![
                ("Connection".into(), "".into()),
                ("Host".into(), "$host".into())
            ]
        );
        // the timeout of the pass's own module
        assert_eq!(loc.read_timeout.unwrap().value, 3000);
    }

    #[test]
    fn a_level_without_pass_is_no_location() {
        let mut l = Level::default();
        l.note("proxy_http_version", &args(&["1.1"]), site(1));
        assert!(l.location("/").is_none());
    }

    #[test]
    fn fastcgi_location_uses_fastcgi_timeout() {
        let mut l = Level::default();
        l.note("fastcgi_pass", &args(&["unix:/run/php.sock"]), site(1));
        l.note("proxy_read_timeout", &args(&["1s"]), site(2));
        assert!(l.location("/").unwrap().read_timeout.is_none());
        l.note("fastcgi_read_timeout", &args(&["2s"]), site(3));
        let loc = l.location("/").unwrap();
        assert_eq!(loc.pass.kind, PassKind::Fastcgi);
        assert_eq!(loc.read_timeout.unwrap().value, 2000);
    }

    #[test]
    fn inheritance_follows_nginx() {
        let mut http = Level::default();
        http.note("proxy_http_version", &args(&["1.1"]), site(1));
        http.note("proxy_set_header", &args(&["Connection", ""]), site(2));
        http.note("proxy_read_timeout", &args(&["4s"]), site(3));
        http.ignore(&[Code::AllBackup]);

        let mut server = Level::default();
        server.ignore(&[Code::NothingListening]);
        server.inherit(&http, false);

        // a location with its own proxy_set_header loses the inherited list
        let mut loc = Level::default();
        loc.note("proxy_pass", &args(&["http://app"]), site(10));
        loc.note("proxy_set_header", &args(&["Host", "$host"]), site(11));
        loc.inherit(&server, false);
        let l = loc.location("/a").unwrap();
        assert_eq!(l.http_version.unwrap().site.line, 1);
        assert_eq!(
            l.proxy_headers.unwrap(),
            vec![("Host".into(), "$host".into())]
        );
        assert_eq!(l.read_timeout.unwrap().value, 4000);
        assert!(l.ignore.contains(&Code::AllBackup));
        assert!(l.ignore.contains(&Code::NothingListening));

        // a location without one keeps the inherited list
        let mut loc2 = Level::default();
        loc2.note("proxy_pass", &args(&["http://app"]), site(20));
        loc2.inherit(&server, false);
        assert_eq!(
            loc2.location("/b").unwrap().proxy_headers.unwrap(),
            vec![("Connection".into(), "".into())]
        );
    }

    #[test]
    fn pass_is_inherited_only_by_if_and_limit_except() {
        let mut loc = Level::default();
        loc.note("proxy_pass", &args(&["http://app"]), site(1));

        let mut nested = Level::default();
        nested.inherit(&loc, false);
        assert!(nested.location("/a/b").is_none());

        let mut if_block = Level::default();
        if_block.note("proxy_set_header", &args(&["X", "1"]), site(2));
        if_block.inherit(&loc, true);
        let l = if_block.location("/a").unwrap();
        assert_eq!(l.pass.site.line, 1);
        assert_eq!(l.proxy_headers.unwrap(), vec![("X".into(), "1".into())]);
    }

    #[test]
    fn ignore_is_a_union_without_duplicates() {
        let mut parent = Level::default();
        parent.ignore(&[Code::AllBackup, Code::SocketMissing]);
        let mut child = Level::default();
        child.ignore(&[Code::SocketMissing]);
        child.inherit(&parent, false);
        assert_eq!(child.ignore, vec![Code::SocketMissing, Code::AllBackup]);
    }

    #[test]
    fn every_watched_directive_is_understood() {
        for (_, d) in WATCHED {
            if d == "upstream" {
                continue;
            }
            let a = args(&["http://app", "v"]);
            if in_upstream(d) {
                let mut u = Upstream::default();
                note_upstream(&mut u, d, &a, site(1));
                assert_ne!(u, Upstream::default(), "{d}");
            } else {
                let mut l = Level::default();
                l.note(d, &args(&["5s", "v"]), site(1));
                l.note(d, &a, site(1));
                assert_ne!(l, Level::default(), "{d}");
            }
        }
    }

    #[test]
    fn upstream_servers_and_keepalive() {
        let mut u = Upstream {
            name: "app".into(),
            ..Default::default()
        };
        note_upstream(
            &mut u,
            "server",
            &args(&["127.0.0.1:8000", "max_fails=3", "fail_timeout=10s"]),
            site(2),
        );
        note_upstream(
            &mut u,
            "server",
            &args(&["127.0.0.1:8001", "backup"]),
            site(3),
        );
        note_upstream(
            &mut u,
            "server",
            &args(&["127.0.0.1:8002", "down", "weight=5"]),
            site(4),
        );
        note_upstream(&mut u, "keepalive", &args(&["32"]), site(5));
        note_upstream(&mut u, "zone", &args(&["z", "64k"]), site(6));
        assert_eq!(u.keepalive.as_ref().unwrap().line, 5);
        assert_eq!(u.servers.len(), 3);
        let s = &u.servers[0];
        assert_eq!(
            (s.max_fails, s.fail_timeout, s.backup, s.down),
            (Some(3), Some(10_000), false, false)
        );
        assert!(u.servers[1].backup && !u.servers[1].down);
        assert!(u.servers[2].down && !u.servers[2].backup);
        assert_eq!(u.servers[2].site.line, 4);
    }
}
