//! What the lint reads from the running system — file metadata of unix sockets, the kernel's
//! listening TCP sockets (`/proc/net/tcp`, `/proc/net/tcp6`), the SELinux state
//! (`/sys/fs/selinux`) — behind [`SystemView`], so the rules can be tested against a fake root
//! directory. Reads only: nothing here connects or writes.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// What kind of file a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Socket,
    Dir,
    Other,
}

/// The metadata that decides whether a process may connect to a unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub kind: FileKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The result of looking a path up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Found(FileInfo),
    /// The path does not exist (connect() would fail with ENOENT).
    Missing,
    /// Could not tell (relative path, no permission to look): the rules stay silent.
    Unknown,
}

/// SELinux as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selinux {
    pub enforcing: bool,
    /// The current value of the `httpd_can_network_connect` boolean (`None`: the policy has no
    /// such boolean).
    pub network_connect: Option<bool>,
}

/// The system facts the rules need.
pub trait SystemView {
    /// Metadata of an absolute path, following symbolic links (as connect() does).
    fn stat(&self, path: &str) -> Stat;
    /// Local addresses of the TCP sockets in LISTEN state; `None` if they cannot be read.
    fn listeners(&self) -> Option<Vec<SocketAddr>>;
    /// `None` when SELinux is not enabled.
    fn selinux(&self) -> Option<Selinux>;
    /// nginx runs in a container (Docker, Podman, Kubernetes, LXC), as its files (or, for
    /// the real system, Kubernetes' environment) say.
    fn container(&self) -> bool;
}

/// The system under a root directory: `/` for real, a temporary directory in tests.
pub struct Root {
    root: PathBuf,
    /// Also read the process environment (the real system's, not a test root's).
    env: bool,
}

impl Root {
    /// The files under `root` only (tests: a temporary directory).
    pub fn new(root: impl Into<PathBuf>) -> Root {
        Root {
            root: root.into(),
            env: false,
        }
    }

    /// The system nginx runs on: `/`, and the process environment.
    pub fn system() -> Root {
        Root {
            root: PathBuf::from("/"),
            env: true,
        }
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs)).ok()
    }
}

impl SystemView for Root {
    fn stat(&self, path: &str) -> Stat {
        if !path.starts_with('/') {
            return Stat::Unknown;
        }
        match std::fs::metadata(self.path(path)) {
            Ok(m) => {
                let ft = m.file_type();
                let kind = if ft.is_socket() {
                    FileKind::Socket
                } else if ft.is_dir() {
                    FileKind::Dir
                } else {
                    FileKind::Other
                };
                Stat::Found(FileInfo {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Stat::Missing,
            Err(_) => Stat::Unknown,
        }
    }

    fn listeners(&self) -> Option<Vec<SocketAddr>> {
        let v4 = self.read("/proc/net/tcp");
        let v6 = self.read("/proc/net/tcp6");
        if v4.is_none() && v6.is_none() {
            return None;
        }
        let mut out = parse_proc_net_tcp(v4.as_deref().unwrap_or(""));
        out.extend(parse_proc_net_tcp(v6.as_deref().unwrap_or("")));
        Some(out)
    }

    fn selinux(&self) -> Option<Selinux> {
        let enforce = self.read("/sys/fs/selinux/enforce")?;
        let network_connect = self
            .read("/sys/fs/selinux/booleans/httpd_can_network_connect")
            .and_then(|s| s.split_whitespace().next().map(|v| v == "1"));
        Some(Selinux {
            enforcing: enforce.trim() == "1",
            network_connect,
        })
    }

    fn container(&self) -> bool {
        // Docker's and Podman's marker files; else PID 1's cgroup (cgroup v1 names the
        // container's; under v2 a container sees "0::/"); else Kubernetes' environment
        (self.env && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
            || self.path("/.dockerenv").exists()
            || self.path("/run/.containerenv").exists()
            || self.read("/proc/1/cgroup").is_some_and(|c| {
                ["docker", "kubepods", "libpod", "containerd", "/lxc/"]
                    .iter()
                    .any(|k| c.contains(k))
            })
    }
}

/// Local addresses of the LISTEN (state `0A`) lines of `/proc/net/tcp` or `/proc/net/tcp6`.
/// Addresses are the kernel's in-memory (network order) bytes printed as native-endian 32-bit
/// hex words; ports are plain hex.
pub fn parse_proc_net_tcp(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            // "sl local_address rem_address st ...": only the first four fields matter, and a
            // busy machine has many lines
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            if f.nth(1)? != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let mut bytes = Vec::with_capacity(16);
            for i in (0..addr.len()).step_by(8) {
                let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
                bytes.extend_from_slice(&word.to_ne_bytes());
            }
            let ip = match bytes.len() {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
                16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
                _ => return None,
            };
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

#[cfg(test)]
pub mod fake {
    //! A fake root directory for tests: files written under a fresh temporary directory.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct FakeRoot {
        pub dir: PathBuf,
    }

    impl FakeRoot {
        pub fn fresh() -> FakeRoot {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "triage-lint-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            FakeRoot { dir }
        }

        /// Write `content` at the absolute path `abs` under the root.
        pub fn write(&self, abs: &str, content: &str) -> &FakeRoot {
            let p = self.dir.join(abs.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
            self
        }

        pub fn path(&self, abs: &str) -> PathBuf {
            self.dir.join(abs.trim_start_matches('/'))
        }

        pub fn root(&self) -> &Path {
            &self.dir
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeRoot;
    use super::*;

    // Real lines from a little-endian machine: 127.0.0.1:8080 LISTEN, 0.0.0.0:22 LISTEN,
    // 127.0.0.1:8080 ESTABLISHED (01, not a listener).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
";
    // [::1]:9000 and [::]:443 LISTEN.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn proc_net_tcp_listeners() {
        let l = parse_proc_net_tcp(TCP);
        assert_eq!(
            l,
            vec![
                "127.0.0.1:8080".parse().unwrap(),
                "0.0.0.0:22".parse().unwrap()
            ]
        );
        let l6 = parse_proc_net_tcp(TCP6);
        assert_eq!(
            l6,
            vec!["[::1]:9000".parse().unwrap(), "[::]:443".parse().unwrap()]
        );
        assert!(parse_proc_net_tcp("header\n garbage line\n").is_empty());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn listeners_from_a_fake_root() {
        let r = FakeRoot::fresh();
        let view = Root::new(r.root());
        assert_eq!(view.listeners(), None);
        r.write("/proc/net/tcp", TCP);
        assert_eq!(view.listeners().unwrap().len(), 2);
        r.write("/proc/net/tcp6", TCP6);
        assert_eq!(view.listeners().unwrap().len(), 4);
    }

    #[test]
    fn this_machine_lists_a_socket_we_listen_on() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let all = Root::new("/").listeners().expect("/proc/net/tcp readable");
        assert!(all.contains(&addr), "{addr} not in {all:?}");
        drop(l);
        let all = Root::new("/").listeners().unwrap();
        assert!(!all.contains(&addr));
    }

    #[test]
    fn container_signs() {
        let container = |r: &FakeRoot| Root::new(r.root()).container();
        let r = FakeRoot::fresh();
        r.write("/proc/1/cgroup", "0::/init.scope\n");
        assert!(!container(&r), "a host's systemd");
        for (file, content) in [
            ("/.dockerenv", ""),
            ("/run/.containerenv", "engine=\"podman-4.3\"\n"),
            (
                "/proc/1/cgroup",
                "12:pids:/docker/3f2a9c\n11:memory:/docker/3f2a9c\n",
            ),
            (
                "/proc/1/cgroup",
                "1:name=systemd:/kubepods/burstable/pod1/ab12\n",
            ),
        ] {
            let r = FakeRoot::fresh();
            r.write(file, content);
            assert!(container(&r), "{file}: {content}");
        }
    }

    #[test]
    fn selinux_states() {
        let r = FakeRoot::fresh();
        let view = Root::new(r.root());
        assert_eq!(view.selinux(), None, "no /sys/fs/selinux: not enabled");
        r.write("/sys/fs/selinux/enforce", "0");
        assert_eq!(
            view.selinux(),
            Some(Selinux {
                enforcing: false,
                network_connect: None
            })
        );
        r.write("/sys/fs/selinux/enforce", "1")
            .write("/sys/fs/selinux/booleans/httpd_can_network_connect", "0 0");
        assert_eq!(
            view.selinux(),
            Some(Selinux {
                enforcing: true,
                network_connect: Some(false)
            })
        );
        // current value first, pending second
        r.write("/sys/fs/selinux/booleans/httpd_can_network_connect", "1 0");
        assert_eq!(view.selinux().unwrap().network_connect, Some(true));
    }

    #[test]
    fn stat_kinds() {
        let r = FakeRoot::fresh();
        let view = Root::new(r.root());
        r.write("/run/plain", "x");
        let sock = r.path("/run/app.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(matches!(
            view.stat("/run/app.sock"),
            Stat::Found(FileInfo {
                kind: FileKind::Socket,
                ..
            })
        ));
        assert!(matches!(
            view.stat("/run/plain"),
            Stat::Found(FileInfo {
                kind: FileKind::Other,
                ..
            })
        ));
        assert!(matches!(
            view.stat("/run"),
            Stat::Found(FileInfo {
                kind: FileKind::Dir,
                ..
            })
        ));
        assert_eq!(view.stat("/run/missing.sock"), Stat::Missing);
        assert_eq!(view.stat("relative.sock"), Stat::Unknown);
    }
}
