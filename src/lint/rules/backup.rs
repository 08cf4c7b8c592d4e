//! `all-backup`: an upstream whose every server is `backup` or `down`. No server takes traffic
//! in normal operation: requests go to backups only, or fail with 502 no_live_upstreams.
//! (nginx itself refuses an upstream whose servers are all `backup`; `down` ones pass.)

use super::Report;
use crate::lint::code::Code;
use crate::lint::model::Config;

pub(super) fn check(cfg: &Config, r: &mut Report) {
    for u in &cfg.upstreams {
        if u.servers.is_empty() || !u.servers.iter().all(|s| s.backup || s.down) {
            continue;
        }
        let backups = u.servers.iter().any(|s| s.backup && !s.down);
        r.emit(
            Code::AllBackup,
            &u.site,
            format!(
                "every server of upstream \"{}\" is backup or down — {}; remove \"down\" (or \
                 \"backup\") from the servers meant to take traffic",
                u.name,
                if backups {
                    "only the backups ever get requests"
                } else {
                    "every request fails with 502 no_live_upstreams"
                }
            ),
            &[&u.ignore, &cfg.http_ignore],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::super::testing::*;
    use crate::lint::code::Code;
    use crate::lint::model::Config;

    fn app(flags: &[(bool, bool)]) -> Config {
        let mut cfg = config();
        let servers: Vec<(&str, usize)> =
            (0..flags.len()).map(|i| ("10.0.0.1:80", i + 2)).collect();
        let mut u = upstream("app", 1, &servers);
        for (s, &(backup, down)) in u.servers.iter_mut().zip(flags) {
            s.backup = backup;
            s.down = down;
        }
        cfg.upstreams.push(u);
        cfg
    }

    #[test]
    fn fires_when_no_server_takes_traffic() {
        let f = run(
            &app(&[(false, true), (true, false)]),
            &FakeSystem::default(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].site.line), (Code::AllBackup, 1));
        assert!(f[0].message.contains("only the backups ever get requests"));
        let f = run(&app(&[(false, true)]), &FakeSystem::default());
        assert!(f[0].message.contains("502 no_live_upstreams"));
    }

    #[test]
    fn silent_with_one_primary() {
        assert!(lines(&app(&[(false, false), (true, false)])).is_empty());
        assert!(lines(&app(&[(false, false), (false, true)])).is_empty());
        assert!(lines(&app(&[])).is_empty());
    }

    #[test]
    fn ignored_at_http_level() {
        let mut cfg = app(&[(false, true)]);
        cfg.http_ignore = vec![Code::AllBackup];
        assert!(lines(&cfg).is_empty());
    }
}
