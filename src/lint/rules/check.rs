//! `timeout-below-check` and `max-fails-with-check`: timeouts and ejection settings that fight
//! each other or the backend.
//! - A `*_read_timeout` under 5 s turns every slower response into 504 read_timeout; one below
//!   the upstream's active check timeout makes requests give up on a server the check still
//!   calls healthy.
//! - `max_fails`/`fail_timeout` on a server of an upstream with an active `check`: passive and
//!   active ejection decide on different evidence and for different times (Tengine's docs warn
//!   about the combination).
//!
//! [`Upstream::check`] comes from the `check` directive (`check::directives`), attached by the
//! glue at the end of the http{} block.
//!
//! [`Upstream::check`]: crate::lint::model::Upstream::check

use super::{Index, Report};
use crate::lint::code::Code;
use crate::lint::model::Config;
use crate::lint::time::show_ms;

/// Below this, a read timeout is reported even without an active check.
pub const MIN_READ_TIMEOUT_MS: u64 = 5000;
/// nginx's default `*_read_timeout`.
const DEFAULT_READ_TIMEOUT_MS: u64 = 60_000;

pub(super) fn timeouts(ix: &Index, r: &mut Report) {
    for (loc, upstream) in ix.locations() {
        let directive = format!("{}_read_timeout", loc.pass.kind.prefix());
        let (ms, site) = match &loc.read_timeout {
            Some(t) => (t.value, &t.site),
            None => (DEFAULT_READ_TIMEOUT_MS, &loc.pass.site),
        };
        let mut ignore: Vec<&[_]> = vec![&loc.ignore];
        if let Some(u) = upstream {
            ignore.push(&u.ignore);
        }
        if let Some((u, check)) = upstream.and_then(|u| u.check.as_ref().map(|c| (u, c))) {
            if ms < check.timeout_ms {
                r.emit(
                    Code::TimeoutBelowCheck,
                    site,
                    format!(
                        "{directive} {} (in effect in location \"{}\") is below the active \
                         check timeout {} of upstream \"{}\" ({}:{}) — requests give up (504) \
                         on servers the check calls healthy; raise {directive} above the check \
                         timeout",
                        show_ms(ms),
                        loc.name,
                        show_ms(check.timeout_ms),
                        u.name,
                        check.site.file,
                        check.site.line
                    ),
                    &ignore,
                );
                continue;
            }
        }
        if loc.read_timeout.is_some() && ms < MIN_READ_TIMEOUT_MS {
            r.emit(
                Code::TimeoutBelowCheck,
                site,
                format!(
                    "{directive} {} (in effect in location \"{}\") is under 5 s — every response \
                     slower than that becomes 504 read_timeout; raise it (nginx's default is \
                     60s)",
                    show_ms(ms),
                    loc.name
                ),
                &ignore,
            );
        }
    }
}

pub(super) fn max_fails(cfg: &Config, r: &mut Report) {
    for u in &cfg.upstreams {
        let Some(check) = &u.check else { continue };
        for s in &u.servers {
            let passive = match s.max_fails {
                Some(0) => false,
                Some(_) => true,
                None => s.fail_timeout.is_some(),
            };
            if passive {
                r.emit(
                    Code::MaxFailsWithCheck,
                    &s.site,
                    format!(
                        "server \"{}\" of upstream \"{}\" sets max_fails/fail_timeout and the \
                         upstream has an active check ({}:{}) — two ejection mechanisms \
                         conflict; remove max_fails/fail_timeout (or set max_fails=0) and let \
                         the check decide",
                        s.addr, u.name, check.site.file, check.site.line
                    ),
                    &[&u.ignore, &cfg.http_ignore],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::super::testing::*;
    use crate::lint::code::Code;
    use crate::lint::model::{Check, Config, PassKind, Setting};

    fn with_timeout(ms: Option<u64>) -> Config {
        let mut cfg = config();
        cfg.upstreams
            .push(upstream("app", 1, &[("10.0.0.1:80", 2)]));
        let mut loc = location("/", PassKind::Proxy, "http://app", 10);
        loc.read_timeout = ms.map(|v| Setting {
            value: v,
            site: site(4),
        });
        cfg.locations.push(loc);
        cfg
    }

    #[test]
    fn read_timeout_under_5s() {
        let f = run(&with_timeout(Some(3000)), &FakeSystem::default());
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].site.line), (Code::TimeoutBelowCheck, 4));
        assert!(f[0]
            .message
            .starts_with("proxy_read_timeout 3s (in effect in location \"/\") is under 5 s"));
        assert!(lines(&with_timeout(Some(5000))).is_empty());
        assert!(lines(&with_timeout(None)).is_empty());
    }

    #[test]
    fn the_module_s_own_timeout_is_named() {
        let mut cfg = config();
        let mut loc = location("/", PassKind::Grpc, "grpc://10.0.0.1:50051", 10);
        loc.read_timeout = Some(Setting {
            value: 500,
            site: site(4),
        });
        cfg.locations.push(loc);
        let f = run(&cfg, &FakeSystem::default());
        assert!(f[0].message.starts_with("grpc_read_timeout 500ms"));
    }

    fn with_check(cfg: &mut Config, timeout_ms: u64) {
        cfg.upstreams[0].check = Some(Check {
            timeout_ms,
            site: site(3),
        });
    }

    #[test]
    fn read_timeout_below_the_check_timeout() {
        let mut cfg = with_timeout(Some(10_000));
        with_check(&mut cfg, 30_000);
        let f = run(&cfg, &FakeSystem::default());
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].site.line), (Code::TimeoutBelowCheck, 4));
        assert!(f[0]
            .message
            .contains("below the active check timeout 30s of upstream \"app\""));
        // the default 60s, against a longer check: reported at the pass
        let mut cfg = with_timeout(None);
        with_check(&mut cfg, 90_000);
        assert_eq!(lines(&cfg), vec![(Code::TimeoutBelowCheck, 10)]);
        // one finding per location even when also under 5 s
        let mut cfg = with_timeout(Some(1000));
        with_check(&mut cfg, 3000);
        assert_eq!(lines(&cfg), vec![(Code::TimeoutBelowCheck, 4)]);
        // above the check timeout: silent
        let mut cfg = with_timeout(Some(10_000));
        with_check(&mut cfg, 1000);
        assert!(lines(&cfg).is_empty());
    }

    #[test]
    fn max_fails_with_check() {
        let mut cfg = config();
        let mut u = upstream(
            "app",
            1,
            &[
                ("10.0.0.1:80", 2),
                ("10.0.0.2:80", 3),
                ("10.0.0.3:80", 4),
                ("10.0.0.4:80", 5),
            ],
        );
        u.servers[0].max_fails = Some(3);
        u.servers[1].fail_timeout = Some(10_000);
        u.servers[2].max_fails = Some(0);
        u.servers[2].fail_timeout = Some(10_000);
        cfg.upstreams.push(u);
        assert!(
            lines(&cfg).is_empty(),
            "no check: passive ejection alone is fine"
        );
        cfg.upstreams[0].check = Some(Check {
            timeout_ms: 1000,
            site: site(6),
        });
        assert_eq!(
            lines(&cfg),
            vec![(Code::MaxFailsWithCheck, 2), (Code::MaxFailsWithCheck, 3)]
        );
        cfg.upstreams[0].ignore = vec![Code::MaxFailsWithCheck];
        assert!(lines(&cfg).is_empty());
    }
}
