//! `socket-missing` and `socket-permission`: a unix socket target (`fastcgi_pass unix:…`,
//! `proxy_pass http://unix:…`, `server unix:…`) that does not exist, or that the worker user
//! may not connect to — connect() needs search permission on every directory of the path and
//! write permission on the socket. Seen at run time as 502 socket_not_found /
//! permission_denied. POSIX ACLs are not evaluated.

use super::{Index, Report};
use crate::lint::code::Code;
use crate::lint::model::Worker;
use crate::lint::system::{FileInfo, FileKind, Stat, SystemView};
use crate::lint::target::Target;

pub(super) fn check(ix: &Index, sys: &dyn SystemView, r: &mut Report) {
    for d in &ix.dests {
        let Target::Unix(path) = &d.target else {
            continue;
        };
        if ix.cfg.unix_listens.iter().any(|l| l == path) {
            // nginx in front of itself: it creates the socket as it starts
            continue;
        }
        match sys.stat(path) {
            Stat::Missing => r.emit(
                Code::SocketMissing,
                d.site,
                format!(
                    "unix socket \"{path}\" of {} does not exist — start the backend, or make \
                     the path match the socket it listens on",
                    d.what
                ),
                &d.ignore,
            ),
            Stat::Found(fi) if fi.kind != FileKind::Socket => r.emit(
                Code::SocketMissing,
                d.site,
                format!(
                    "\"{path}\" of {} is not a unix socket — make the path match the socket \
                     the backend listens on",
                    d.what
                ),
                &d.ignore,
            ),
            Stat::Found(fi) => {
                let Some(w) = &ix.cfg.worker else { continue };
                if let Some(why) = denied(w, path, &fi, sys) {
                    r.emit(
                        Code::SocketPermission,
                        d.site,
                        format!(
                            "worker user \"{}\" cannot connect to unix socket \"{path}\" of \
                             {}: {why} — give that user access (php-fpm: listen.owner, \
                             listen.group, listen.mode), or run the workers as a user who has \
                             it (\"user\")",
                            w.name, d.what
                        ),
                        &d.ignore,
                    );
                }
            }
            Stat::Unknown => {}
        }
    }
}

/// Why `w` may not connect to the socket at `path`, if it may not.
fn denied(w: &Worker, path: &str, sock: &FileInfo, sys: &dyn SystemView) -> Option<String> {
    if w.uid == 0 {
        return None;
    }
    let mut dir = String::new();
    for part in path
        .split('/')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .split_last()?
        .1
    {
        dir.push('/');
        dir.push_str(part);
        if let Stat::Found(d) = sys.stat(&dir) {
            if !allows(w, &d, 0o1) {
                return Some(format!(
                    "no search permission on directory \"{dir}\" ({})",
                    describe(&d)
                ));
            }
        }
    }
    if !allows(w, sock, 0o2) {
        return Some(format!(
            "no write permission on the socket ({})",
            describe(sock)
        ));
    }
    None
}

/// The kernel's check: the owner class if the user owns the file, else the group class if one
/// of its groups owns it, else others. `bit` is 0o4 (read), 0o2 (write) or 0o1 (search).
fn allows(w: &Worker, f: &FileInfo, bit: u32) -> bool {
    let shift = if f.uid == w.uid {
        6
    } else if w.gids.contains(&f.gid) {
        3
    } else {
        0
    };
    f.mode & (bit << shift) != 0
}

fn describe(f: &FileInfo) -> String {
    format!("mode {:04o}, owner {}:{}", f.mode, f.uid, f.gid)
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::super::testing::*;
    use super::*;
    use crate::lint::model::PassKind;
    use crate::lint::system::{fake::FakeRoot, Root};

    fn info(kind: FileKind, mode: u32, uid: u32, gid: u32) -> Stat {
        Stat::Found(FileInfo {
            kind,
            mode,
            uid,
            gid,
        })
    }

    fn sys(sock: Stat, run_dir: Stat) -> FakeSystem {
        let mut s = FakeSystem::default();
        s.files
            .insert("/run".into(), info(FileKind::Dir, 0o755, 0, 0));
        s.files.insert("/run/php".into(), run_dir);
        s.files.insert("/run/php/fpm.sock".into(), sock);
        s
    }

    fn php_location() -> Config {
        let mut cfg = config();
        cfg.locations.push(location(
            "~ \\.php$",
            PassKind::Fastcgi,
            "unix:/run/php/fpm.sock",
            12,
        ));
        cfg
    }

    use crate::lint::model::Config;

    fn findings(cfg: &Config, s: &FakeSystem) -> Vec<(Code, String)> {
        run(cfg, s)
            .into_iter()
            .map(|f| (f.code, f.message))
            .collect()
    }

    #[test]
    fn a_socket_this_configuration_listens_on_is_not_missing() {
        let mut cfg = php_location();
        cfg.unix_listens.push("/run/php/fpm.sock".into());
        assert_eq!(findings(&cfg, &FakeSystem::default()), vec![]);
    }

    #[test]
    fn missing_socket() {
        let f = findings(&php_location(), &FakeSystem::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, Code::SocketMissing);
        assert!(f[0]
            .1
            .starts_with("unix socket \"/run/php/fpm.sock\" of fastcgi_pass in location"));
    }

    #[test]
    fn not_a_socket() {
        let s = sys(
            info(FileKind::Other, 0o666, 0, 0),
            info(FileKind::Dir, 0o755, 0, 0),
        );
        let f = findings(&php_location(), &s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, Code::SocketMissing);
        assert!(f[0].1.contains("is not a unix socket"));
    }

    #[test]
    fn permission_by_class() {
        let dir = info(FileKind::Dir, 0o755, 0, 0);
        // mode 000: nobody may not
        let f = findings(
            &php_location(),
            &sys(info(FileKind::Socket, 0o000, 0, 0), dir),
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, Code::SocketPermission);
        assert!(f[0].1.contains("worker user \"nobody\""), "{}", f[0].1);
        assert!(f[0]
            .1
            .contains("no write permission on the socket (mode 0000, owner 0:0)"));
        // world-writable: fine
        assert!(findings(
            &php_location(),
            &sys(info(FileKind::Socket, 0o666, 0, 0), dir)
        )
        .is_empty());
        // group www-data (33) only, nobody not in it
        let s = sys(info(FileKind::Socket, 0o660, 33, 33), dir);
        assert_eq!(findings(&php_location(), &s)[0].0, Code::SocketPermission);
        // ... fine for a worker in that group
        let mut cfg = php_location();
        cfg.worker.as_mut().unwrap().gids.push(33);
        assert!(findings(&cfg, &s).is_empty());
        // the owner class decides for the owner, even if the group could write
        let mut cfg = php_location();
        cfg.worker = Some(Worker {
            name: "www-data".into(),
            uid: 33,
            gids: vec![33],
        });
        let s = sys(info(FileKind::Socket, 0o060, 33, 33), dir);
        assert_eq!(findings(&cfg, &s)[0].0, Code::SocketPermission);
        // root may always
        cfg.worker = Some(Worker {
            name: "root".into(),
            uid: 0,
            gids: vec![0],
        });
        assert!(findings(&cfg, &s).is_empty());
        // unknown worker user: not judged
        let mut cfg = php_location();
        cfg.worker = None;
        assert!(findings(&cfg, &sys(info(FileKind::Socket, 0, 0, 0), dir)).is_empty());
    }

    #[test]
    fn directory_without_search_permission() {
        let s = sys(
            info(FileKind::Socket, 0o666, 0, 0),
            info(FileKind::Dir, 0o700, 0, 0),
        );
        let f = findings(&php_location(), &s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0, Code::SocketPermission);
        assert!(f[0]
            .1
            .contains("no search permission on directory \"/run/php\" (mode 0700"));
    }

    #[test]
    fn upstream_unix_servers_and_ignore() {
        let mut cfg = config();
        cfg.upstreams
            .push(upstream("app", 1, &[("unix:/run/app.sock", 2)]));
        let f = run(&cfg, &FakeSystem::default());
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].code, f[0].site.line), (Code::SocketMissing, 2));
        assert!(f[0]
            .message
            .contains("of server \"unix:/run/app.sock\" of upstream \"app\""));
        cfg.http_ignore = vec![Code::SocketMissing];
        assert!(run(&cfg, &FakeSystem::default()).is_empty());
    }

    #[test]
    fn on_a_real_file_system() {
        let r = FakeRoot::fresh();
        let path = r.path("/run/app.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let mut cfg = config();
        cfg.locations.push(location(
            "/",
            PassKind::Proxy,
            "http://unix:/run/app.sock:/",
            5,
        ));
        cfg.locations
            .push(location("/gone", PassKind::Uwsgi, "unix:/run/gone.sock", 6));
        let f = run(&cfg, &Root::new(r.root()));
        let codes: Vec<_> = f.iter().map(|f| f.code).collect();
        // root (uid 0) runs the tests as a rule here; the worker in the config is "nobody"
        assert_eq!(codes, vec![Code::SocketPermission, Code::SocketMissing]);
    }
}
