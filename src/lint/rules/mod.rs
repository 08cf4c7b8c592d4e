//! The lint rules: pure functions from a [`Config`] and a [`SystemView`] to [`Finding`]s. Each
//! rule file is one concern; this file runs them all, drops silenced findings
//! (`triage_lint_ignore`), removes duplicates and orders them as the configuration is written.

mod backup;
mod check;
mod keepalive;
mod network;
mod sockets;
mod tls_port;

use std::collections::{HashMap, HashSet};

use crate::lint::code::Code;
use crate::lint::model::{Config, Location, Site, Upstream};
use crate::lint::system::SystemView;
use crate::lint::target::{self, Target};

/// One warning: what, where, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub code: Code,
    /// The directive concerned.
    pub site: Site,
    /// The explanation and the fix (without code and site).
    pub message: String,
}

impl Finding {
    /// The log line: `triage [code]: message (file:line)`.
    pub fn render(&self) -> String {
        format!(
            "triage [{}]: {} ({}:{})",
            self.code.as_str(),
            self.message,
            self.site.file,
            self.site.line
        )
    }
}

/// Every finding of the configuration, in configuration order, each (code, file, line) once.
pub fn run(cfg: &Config, sys: &dyn SystemView) -> Vec<Finding> {
    let ix = Index::new(cfg);
    let mut r = Report::default();
    keepalive::check(&ix, &mut r);
    sockets::check(&ix, sys, &mut r);
    network::nothing_listening(&ix, sys, &mut r);
    tls_port::check(&ix, &mut r);
    network::selinux(&ix, sys, &mut r);
    check::timeouts(&ix, &mut r);
    check::max_fails(cfg, &mut r);
    backup::check(cfg, &mut r);
    r.finish()
}

/// Findings being gathered.
#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

impl Report {
    /// Add a finding unless one of the ignore lists of the contexts it concerns holds its code.
    fn emit(&mut self, code: Code, site: &Site, message: String, ignore: &[&[Code]]) {
        if ignore.iter().any(|l| l.contains(&code)) {
            return;
        }
        self.findings.push(Finding {
            code,
            site: site.clone(),
            message,
        });
    }

    fn finish(mut self) -> Vec<Finding> {
        let mut seen = HashSet::new();
        self.findings
            .retain(|f| seen.insert((f.code, f.site.file.clone(), f.site.line)));
        self.findings.sort_by_key(|f| f.site.seq);
        shown(self.findings)
    }
}

/// Findings of one code logged one by one; the rest are counted in one line. A configuration
/// of hundreds of servers, started before its backends, logged a paragraph per server at
/// every start and reload.
pub const SHOWN_PER_CODE: usize = 20;

/// The first [`SHOWN_PER_CODE`] findings of each code, and for a code with more, one finding
/// that counts the others, in the place of the first of them (`findings` in configuration
/// order, kept).
fn shown(findings: Vec<Finding>) -> Vec<Finding> {
    let mut count: HashMap<Code, usize> = HashMap::new();
    // per code with more: where its counting finding is in `out`
    let mut counting: HashMap<Code, usize> = HashMap::new();
    let mut out = Vec::new();
    for f in findings {
        let n = count.entry(f.code).or_default();
        *n += 1;
        if *n == SHOWN_PER_CODE + 1 {
            counting.insert(f.code, out.len());
        }
        if *n <= SHOWN_PER_CODE + 1 {
            out.push(f);
        }
    }
    for (code, i) in counting {
        let more = count[&code] - SHOWN_PER_CODE;
        out[i].message = format!(
            "{more} more finding{} of this kind from here on, not shown one by one (the first {SHOWN_PER_CODE} are); \"triage_lint_ignore {}\" where they are silences them",
            if more == 1 { "" } else { "s" },
            code.as_str()
        );
    }
    out
}

/// What several rules need, worked out once: the upstream block each location passes to, and
/// every address nginx will connect to.
struct Index<'a> {
    cfg: &'a Config,
    /// Per location (same order as `cfg.locations`), the upstream block its `*_pass` names.
    links: Vec<Option<&'a Upstream>>,
    dests: Vec<Dest<'a>>,
}

impl<'a> Index<'a> {
    fn new(cfg: &'a Config) -> Index<'a> {
        let by_name: HashMap<String, &Upstream> = cfg
            .upstreams
            .iter()
            .rev() // nginx refuses duplicate names; the first one wins anyway
            .map(|u| (u.name.to_ascii_lowercase(), u))
            .collect();
        let links: Vec<_> = cfg
            .locations
            .iter()
            .map(|loc| upstream_of(&by_name, loc))
            .collect();
        let dests = dests(cfg, &links);
        Index { cfg, links, dests }
    }

    /// Every location with the upstream block it passes to, if any.
    fn locations(&self) -> impl Iterator<Item = (&'a Location, Option<&'a Upstream>)> + '_ {
        self.cfg.locations.iter().zip(self.links.iter().copied())
    }
}

/// The upstream block a location's `*_pass` names, if any (`proxy_pass http://app`,
/// `fastcgi_pass php`: the host, without port, equals the block's name, case-insensitively).
fn upstream_of<'a>(
    by_name: &HashMap<String, &'a Upstream>,
    loc: &Location,
) -> Option<&'a Upstream> {
    let Target::Host { host, port: None } = target::parse_pass(&loc.pass.target) else {
        return None;
    };
    by_name.get(&host.to_ascii_lowercase()).copied()
}

/// An address nginx will connect to, where it was written and which contexts may silence
/// findings about it.
struct Dest<'a> {
    target: Target,
    site: &'a Site,
    /// `proxy_pass in location "/"`, `server "127.0.0.1:8000" of upstream "app"`.
    what: String,
    ignore: Vec<&'a [Code]>,
}

/// Every address of the configuration: `*_pass` targets that are not upstream blocks, and the
/// servers of upstream blocks (except those marked `down`).
fn dests<'a>(cfg: &'a Config, links: &[Option<&Upstream>]) -> Vec<Dest<'a>> {
    let mut out = Vec::new();
    for (loc, link) in cfg.locations.iter().zip(links) {
        if link.is_some() {
            continue;
        }
        out.push(Dest {
            target: target::parse_pass(&loc.pass.target),
            site: &loc.pass.site,
            what: format!(
                "{}_pass in location \"{}\"",
                loc.pass.kind.prefix(),
                loc.name
            ),
            ignore: vec![&loc.ignore],
        });
    }
    for u in &cfg.upstreams {
        for s in u.servers.iter().filter(|s| !s.down) {
            out.push(Dest {
                target: target::parse_server(&s.addr),
                site: &s.site,
                what: format!("server \"{}\" of upstream \"{}\"", s.addr, u.name),
                ignore: vec![&u.ignore, &cfg.http_ignore],
            });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to write configurations and system views by hand in the rules' tests.

    use std::collections::HashMap;
    use std::net::SocketAddr;

    use crate::lint::code::Code;
    use crate::lint::model::*;
    use crate::lint::system::{Selinux, Stat, SystemView};

    pub fn site(line: usize) -> Site {
        Site {
            file: "/etc/nginx/nginx.conf".into(),
            line,
            seq: line,
        }
    }

    pub fn config() -> Config {
        Config {
            upstreams: vec![],
            locations: vec![],
            listens: vec![],
            unix_listens: vec![],
            http_ignore: vec![],
            worker: Some(Worker {
                name: "nobody".into(),
                uid: 65534,
                gids: vec![65534],
            }),
        }
    }

    pub fn location(name: &str, kind: PassKind, target: &str, line: usize) -> Location {
        Location {
            name: name.into(),
            pass: Pass {
                kind,
                target: target.into(),
                site: site(line),
            },
            http_version: None,
            proxy_headers: None,
            read_timeout: None,
            ignore: vec![],
        }
    }

    pub fn upstream(name: &str, line: usize, servers: &[(&str, usize)]) -> Upstream {
        Upstream {
            name: name.into(),
            site: site(line),
            servers: servers
                .iter()
                .map(|&(addr, l)| Server {
                    addr: addr.into(),
                    backup: false,
                    down: false,
                    max_fails: None,
                    fail_timeout: None,
                    site: site(l),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// (code, line) of every finding of `cfg` on system `sys`.
    pub fn found(cfg: &Config, sys: &dyn SystemView) -> Vec<(Code, usize)> {
        super::run(cfg, sys)
            .into_iter()
            .map(|f| (f.code, f.site.line))
            .collect()
    }

    /// (code, line) of every finding of `cfg` on a system with nothing in it.
    pub fn lines(cfg: &Config) -> Vec<(Code, usize)> {
        found(cfg, &FakeSystem::default())
    }

    /// A system with the given files, listeners and SELinux state.
    #[derive(Default)]
    pub struct FakeSystem {
        pub files: HashMap<String, Stat>,
        pub listeners: Option<Vec<SocketAddr>>,
        pub selinux: Option<Selinux>,
        pub container: bool,
    }

    impl SystemView for FakeSystem {
        fn stat(&self, path: &str) -> Stat {
            self.files.get(path).copied().unwrap_or(Stat::Missing)
        }
        fn listeners(&self) -> Option<Vec<SocketAddr>> {
            self.listeners.clone()
        }
        fn selinux(&self) -> Option<Selinux> {
            self.selinux
        }
        fn container(&self) -> bool {
            self.container
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::lint::model::PassKind;

    #[test]
    fn render_names_code_and_site() {
        let f = Finding {
            code: Code::AllBackup,
            site: site(7),
            message: "m".into(),
        };
        assert_eq!(
            f.render(),
            "triage [all-backup]: m (/etc/nginx/nginx.conf:7)"
        );
    }

    #[test]
    fn past_twenty_of_a_code_one_line_counts_the_rest() {
        let mut r = Report::default();
        for line in 1..=25 {
            r.emit(Code::NothingListening, &site(line * 2), "n".into(), &[]);
        }
        for line in [5, 41, 99] {
            r.emit(Code::AllBackup, &site(line), "b".into(), &[]);
        }
        let out = r.finish();
        let of = |c| out.iter().filter(|f| f.code == c).count();
        assert_eq!(of(Code::NothingListening), 21);
        assert_eq!(of(Code::AllBackup), 3);
        // the count stands where the first finding not shown is (line 42), in order
        let summary = out.iter().position(|f| f.site.line == 42).unwrap();
        assert_eq!(
            out[summary].render(),
            "triage [nothing-listening]: 5 more findings of this kind from here on, not shown one by one (the first 20 are); \"triage_lint_ignore nothing-listening\" where they are silences them (/etc/nginx/nginx.conf:42)"
        );
        assert_eq!(out[summary - 1].site.line, 41);
        assert!(out.windows(2).all(|w| w[0].site.seq <= w[1].site.seq));
        // exactly twenty: no count
        let mut r = Report::default();
        for line in 1..=20 {
            r.emit(Code::NothingListening, &site(line), "n".into(), &[]);
        }
        assert_eq!(r.finish().len(), 20);
    }

    #[test]
    fn duplicates_dropped_and_order_is_the_configuration_order() {
        let mut r = Report::default();
        r.emit(Code::AllBackup, &site(9), "b".into(), &[]);
        r.emit(Code::SocketMissing, &site(3), "a".into(), &[]);
        r.emit(Code::AllBackup, &site(9), "b again".into(), &[]);
        r.emit(
            Code::SocketMissing,
            &site(3),
            "other code same line".into(),
            &[&[Code::SocketMissing]],
        );
        let f = r.finish();
        assert_eq!(
            f.iter().map(|f| f.site.line).collect::<Vec<_>>(),
            vec![3, 9]
        );
        assert_eq!(f[1].message, "b");
    }

    #[test]
    fn upstream_is_found_by_name_without_port() {
        let mut cfg = config();
        cfg.upstreams
            .push(upstream("App", 1, &[("127.0.0.1:1", 2)]));
        let by_name = location("/", PassKind::Proxy, "http://app/x", 5);
        let with_port = location("/", PassKind::Proxy, "http://app:80", 5);
        let fcgi = location("/", PassKind::Fastcgi, "app", 5);
        cfg.locations = vec![by_name, with_port, fcgi];
        let ix = Index::new(&cfg);
        let names: Vec<_> = ix
            .locations()
            .map(|(_, u)| u.map(|u| u.name.as_str()))
            .collect();
        assert_eq!(names, vec![Some("App"), None, Some("App")]);
    }

    #[test]
    fn dests_skip_upstream_names_and_down_servers() {
        let mut cfg = config();
        let mut u = upstream("app", 1, &[("127.0.0.1:1", 2), ("127.0.0.1:2", 3)]);
        u.servers[1].down = true;
        cfg.upstreams.push(u);
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://app", 10));
        cfg.locations
            .push(location("/b", PassKind::Proxy, "http://127.0.0.1:3", 11));
        let ix = Index::new(&cfg);
        let d = &ix.dests;
        let lines: Vec<_> = d.iter().map(|d| d.site.line).collect();
        assert_eq!(lines, vec![11, 2]);
        assert_eq!(d[0].what, "proxy_pass in location \"/b\"");
        assert_eq!(d[1].what, "server \"127.0.0.1:1\" of upstream \"app\"");
    }
}
