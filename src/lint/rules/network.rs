//! `nothing-listening` and `selinux-network-connect`: TCP targets that will be refused.
//! - A literal loopback `IP:port` (127.0.0.0/8, ::1), or `localhost:port`, where no socket is
//!   listening right now, read from the kernel's table (never by connecting): the deploy
//!   mistake of an app moved from :8000 to :8001, or not started. A hint — the backend may simply start after nginx. Not for an
//!   address a server of the same configuration listens on (nginx in front of itself: at the
//!   first start nothing listens there yet).
//! - SELinux enforcing with `httpd_can_network_connect` off: nginx (httpd_t) may not connect
//!   to ports not labelled `http_port_t`; connect() fails with 13: Permission denied.

use std::net::{IpAddr, SocketAddr};

use super::{Index, Report};
use crate::cause::CONTAINER_LOOPBACK;
use crate::lint::code::Code;
use crate::lint::system::SystemView;
use crate::lint::target::{is_loopback, Target};
use crate::listeners::{elsewhere, Elsewhere};

pub(super) fn nothing_listening(ix: &Index, sys: &dyn SystemView, r: &mut Report) {
    let targets: Vec<_> = ix
        .dests
        .iter()
        .filter_map(|d| loopback_addrs(&d.target).map(|(shown, addrs)| (d, shown, addrs)))
        .collect();
    if targets.is_empty() {
        return;
    }
    let Some(listeners) = sys.listeners() else {
        return;
    };
    let in_container = sys.container();
    for (d, shown, addrs) in targets {
        let served = addrs.iter().any(|addr| {
            listeners
                .iter()
                .chain(&ix.cfg.listens)
                .any(|l| serves(l, addr))
        });
        if served {
            continue;
        }
        let message = match addrs
            .iter()
            .find_map(|a| elsewhere(&listeners, a).map(|(e, l)| (e, l, *a)))
        {
            None => format!(
                "nothing listens on {shown} ({}) at the moment — requests get 502 \
                 connect_refused until a backend listens there; check that the backend's \
                 listen port matches (fine if it starts after nginx){}",
                d.what,
                if in_container {
                    format!("; {CONTAINER_LOOPBACK}")
                } else {
                    String::new()
                }
            ),
            Some((Elsewhere::Ipv6Only, l, target)) => format!(
                "nothing listens on {shown} ({}), but something listens on {l}: the backend \
                 listens on IPv6 only (a server told to listen on \"localhost\" binds the first \
                 address it resolves to, ::1 on many systems: Node.js 17 and later, for one) — \
                 requests get 502 connect_refused; connect to {l}, or make the backend listen \
                 on {}",
                d.what,
                target.ip()
            ),
            Some((Elsewhere::Ipv4Only, l, _)) => format!(
                "nothing listens on {shown} ({}), but something listens on {l}: the backend \
                 listens on IPv4 only — requests get 502 connect_refused; connect to {l}, or \
                 make the backend listen on [::1]",
                d.what
            ),
            Some((Elsewhere::OtherAddress, l, target)) => format!(
                "nothing listens on {shown} ({}), but something listens on {l}: the backend \
                 listens on that address only — requests get 502 connect_refused; connect to \
                 {l}, or make the backend listen on {} (or on every address)",
                d.what,
                target.ip()
            ),
        };
        r.emit(Code::NothingListening, d.site, message, &d.ignore);
    }
}

/// The loopback addresses a target connects to, and how to name them: a literal loopback
/// `IP:port`, or `localhost:port` (127.0.0.1 or ::1, whichever the system resolves it to:
/// a backend on either one serves it).
fn loopback_addrs(t: &Target) -> Option<(String, Vec<SocketAddr>)> {
    match t {
        Target::Inet(a) if is_loopback(a.ip()) => Some((a.to_string(), vec![*a])),
        Target::Host {
            host,
            port: Some(p),
        } if host.eq_ignore_ascii_case("localhost") => Some((
            format!("localhost:{p} (127.0.0.1 or [::1])"),
            vec![
                SocketAddr::from(([127, 0, 0, 1], *p)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, *p)),
            ],
        )),
        _ => None,
    }
}

/// Does a listening socket bound to `l` accept connections to `target`? A wildcard address
/// accepts every address of its family; `[::]` accepts IPv4 too unless it is IPv6-only, which
/// the kernel's table does not tell (so it counts, to stay silent rather than wrong).
fn serves(l: &SocketAddr, target: &SocketAddr) -> bool {
    if l.port() != target.port() {
        return false;
    }
    let (li, ti) = (l.ip().to_canonical(), target.ip().to_canonical());
    li == ti
        || match li {
            IpAddr::V4(v4) => v4.is_unspecified() && ti.is_ipv4(),
            IpAddr::V6(v6) => v6.is_unspecified(),
        }
}

pub(super) fn selinux(ix: &Index, sys: &dyn SystemView, r: &mut Report) {
    let Some(se) = sys.selinux() else {
        return;
    };
    if !se.enforcing || se.network_connect != Some(false) {
        return;
    }
    // One finding, at the first TCP target not silenced.
    let Some(d) = ix.dests.iter().filter(|d| d.target.is_tcp()).find(|d| {
        !d.ignore
            .iter()
            .any(|l| l.contains(&Code::SelinuxNetworkConnect))
    }) else {
        return;
    };
    r.emit(
        Code::SelinuxNetworkConnect,
        d.site,
        format!(
            "SELinux is enforcing and httpd_can_network_connect is off: nginx may not connect \
             to {} ({}) nor to any port not labelled http_port_t — connects fail with \"13: \
             Permission denied\"; run setsebool -P httpd_can_network_connect on",
            show(&d.target),
            d.what
        ),
        &d.ignore,
    );
}

fn show(t: &Target) -> String {
    match t {
        Target::Inet(a) => a.to_string(),
        Target::Host {
            host,
            port: Some(p),
        } => format!("{host}:{p}"),
        Target::Host { host, port: None } => host.clone(),
        Target::Unix(p) => format!("unix:{p}"),
        Target::Variable => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::super::testing::*;
    use super::*;
    use crate::lint::model::{Config, PassKind};
    use crate::lint::system::{fake::FakeRoot, Root, Selinux};

    fn listening(addrs: &[&str]) -> FakeSystem {
        FakeSystem {
            listeners: Some(addrs.iter().map(|a| a.parse().unwrap()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn the_deploy_mistake() {
        // app moved from :8000 to :8001, proxy_pass still says :8000
        let mut cfg = config();
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://127.0.0.1:8000", 9));
        let f = run(&cfg, &listening(&["127.0.0.1:8001"]));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, Code::NothingListening);
        assert!(f[0].message.starts_with(
            "nothing listens on 127.0.0.1:8000 (proxy_pass in location \"/\") at the moment"
        ));
        assert!(found(&cfg, &listening(&["127.0.0.1:8000"])).is_empty());
    }

    #[test]
    fn nginx_in_front_of_itself() {
        // a server of the same configuration listens there: at the first start, nothing yet
        let mut cfg = config();
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://127.0.0.1:8000", 9));
        cfg.listens = vec!["0.0.0.0:8000".parse().unwrap()];
        assert!(found(&cfg, &listening(&[])).is_empty());
        cfg.listens = vec!["127.0.0.1:8001".parse().unwrap()];
        assert_eq!(
            found(&cfg, &listening(&[])),
            vec![(Code::NothingListening, 9)]
        );
    }

    #[test]
    fn wildcard_and_family_rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(serves(&a("0.0.0.0:80"), &a("127.0.0.5:80")));
        assert!(serves(&a("[::]:80"), &a("127.0.0.1:80")));
        assert!(serves(&a("[::]:80"), &a("[::1]:80")));
        assert!(serves(&a("[::ffff:127.0.0.1]:80"), &a("127.0.0.1:80")));
        assert!(!serves(&a("0.0.0.0:80"), &a("[::1]:80")));
        assert!(!serves(&a("127.0.0.1:80"), &a("127.0.0.2:80")));
        assert!(!serves(&a("127.0.0.1:81"), &a("127.0.0.1:80")));
    }

    #[test]
    fn the_backend_on_the_other_family() {
        // proxy_pass to 127.0.0.1:3000, the app on [::1]:3000 only
        let mut cfg = config();
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://127.0.0.1:3000", 9));
        let f = run(&cfg, &listening(&["[::1]:3000", "127.0.0.1:8080"]));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.starts_with(
            "nothing listens on 127.0.0.1:3000 (proxy_pass in location \"/\"), but something listens on [::1]:3000: the backend listens on IPv6 only"
        ), "{}", f[0].message);
        assert!(f[0]
            .message
            .ends_with("connect to [::1]:3000, or make the backend listen on 127.0.0.1"));
        // another port on the other family: the plain finding
        let f = run(&cfg, &listening(&["[::1]:3001"]));
        assert!(f[0].message.contains("at the moment"), "{}", f[0].message);
        // fastcgi_pass to [::1]:9000, php-fpm on 127.0.0.1:9000 (or every IPv4 address)
        let mut cfg = config();
        cfg.locations
            .push(location("/", PassKind::Fastcgi, "[::1]:9000", 4));
        for l in ["127.0.0.1:9000", "0.0.0.0:9000"] {
            let f = run(&cfg, &listening(&[l]));
            assert_eq!(f.len(), 1, "{l}");
            assert!(f[0].message.starts_with(&format!(
                "nothing listens on [::1]:9000 (fastcgi_pass in location \"/\"), but something listens on {l}: the backend listens on IPv4 only"
            )), "{}", f[0].message);
        }
        // an address that is not loopback, on the other family: the backend on that address
        let f = run(&cfg, &listening(&["10.0.0.1:9000"]));
        assert!(f[0].message.starts_with(
            "nothing listens on [::1]:9000 (fastcgi_pass in location \"/\"), but something listens on 10.0.0.1:9000: the backend listens on that address only"
        ), "{}", f[0].message);
        assert!(f[0].message.ends_with(
            "connect to 10.0.0.1:9000, or make the backend listen on ::1 (or on every address)"
        ));
    }

    #[test]
    fn localhost_is_loopback() {
        // proxy_pass http://localhost:3000 with the app not running
        let mut cfg = config();
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://localhost:3000", 9));
        let f = run(&cfg, &listening(&["127.0.0.1:8080"]));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.starts_with(
            "nothing listens on localhost:3000 (127.0.0.1 or [::1]) (proxy_pass in location \"/\")"
        ));
        // a backend on either family serves it
        for l in ["127.0.0.1:3000", "[::1]:3000", "0.0.0.0:3000", "[::]:3000"] {
            assert!(found(&cfg, &listening(&[l])).is_empty(), "{l}");
        }
        // no port (an upstream block's name, or port 80 by the scheme): not judged
        cfg.locations[0].pass.target = "http://localhost".into();
        assert!(found(&cfg, &listening(&[])).is_empty());
    }

    #[test]
    fn in_a_container_loopback_is_the_containers() {
        // nginx in a container, proxy_pass to 127.0.0.1 where the app is on the host
        let mut cfg = config();
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://127.0.0.1:3000", 9));
        let mut sys = listening(&["127.0.0.1:8080"]);
        let plain = run(&cfg, &sys);
        assert!(
            !plain[0].message.contains("container"),
            "{}",
            plain[0].message
        );
        sys.container = true;
        let f = run(&cfg, &sys);
        assert_eq!(f.len(), 1);
        assert!(f[0]
            .message
            .starts_with("nothing listens on 127.0.0.1:3000"));
        assert!(
            f[0].message.ends_with(
                "(fine if it starts after nginx); nginx runs in a container, where 127.0.0.1 and ::1 are the container's own loopback: a backend on the host or in another container is not there; connect to another container by its service name (Docker Compose, a Kubernetes Service), to the host by host.docker.internal or its address, unless nginx shares the backend's network (network_mode: host, the same pod)"
            ),
            "{}",
            f[0].message
        );
        // the backend found on the other family: that finding, not the container's
        let f = run(
            &cfg,
            &FakeSystem {
                container: true,
                ..listening(&["[::1]:3000"])
            },
        );
        assert!(!f[0].message.contains("container"), "{}", f[0].message);
    }

    #[test]
    fn only_loopback_targets_are_checked() {
        let mut cfg = config();
        cfg.locations
            .push(location("/a", PassKind::Proxy, "http://10.0.0.1:8000", 1));
        cfg.locations
            .push(location("/b", PassKind::Proxy, "http://localhost:8000", 2));
        cfg.locations
            .push(location("/c", PassKind::Proxy, "http://$backend", 3));
        cfg.locations
            .push(location("/d", PassKind::Fastcgi, "[::1]:9000", 4));
        let mut u = upstream("app", 5, &[("127.0.0.1:8001", 6), ("127.0.0.1:8002", 7)]);
        u.servers[1].down = true; // deliberately off
        cfg.upstreams.push(u);
        assert_eq!(
            found(&cfg, &listening(&[])),
            vec![
                (Code::NothingListening, 2),
                (Code::NothingListening, 4),
                (Code::NothingListening, 6)
            ]
        );
        // unreadable /proc: silent
        assert!(found(&cfg, &FakeSystem::default()).is_empty());
    }

    #[test]
    fn ignored_in_upstream() {
        let mut cfg = config();
        let mut u = upstream("app", 5, &[("127.0.0.1:8001", 6)]);
        u.ignore = vec![Code::NothingListening];
        cfg.upstreams.push(u);
        assert!(found(&cfg, &listening(&[])).is_empty());
    }

    fn selinux_cfg() -> Config {
        let mut cfg = config();
        cfg.locations
            .push(location("/s", PassKind::Fastcgi, "unix:/run/x.sock", 1));
        cfg.locations
            .push(location("/", PassKind::Proxy, "http://127.0.0.1:8000", 2));
        cfg.locations
            .push(location("/b", PassKind::Proxy, "http://10.0.0.2:8000", 3));
        cfg
    }

    fn se(enforcing: bool, network_connect: Option<bool>) -> FakeSystem {
        let mut s = listening(&["0.0.0.0:8000"]);
        s.files
            .insert("/run/x.sock".into(), crate::lint::system::Stat::Unknown);
        s.selinux = Some(Selinux {
            enforcing,
            network_connect,
        });
        s
    }

    #[test]
    fn selinux_decision() {
        let cfg = selinux_cfg();
        let f = run(&cfg, &se(true, Some(false)));
        assert_eq!(f.len(), 1, "one finding, not one per target");
        assert_eq!(
            (f[0].code, f[0].site.line),
            (Code::SelinuxNetworkConnect, 2)
        );
        assert!(f[0]
            .message
            .contains("setsebool -P httpd_can_network_connect on"));
        assert!(found(&cfg, &se(true, Some(true))).is_empty());
        assert!(
            found(&cfg, &se(false, Some(false))).is_empty(),
            "permissive"
        );
        assert!(found(&cfg, &se(true, None)).is_empty(), "no such boolean");
        let mut s = se(true, Some(false));
        s.selinux = None;
        assert!(found(&cfg, &s).is_empty(), "SELinux not enabled");
        // only unix sockets: nothing to refuse
        let mut cfg = selinux_cfg();
        cfg.locations.truncate(1);
        assert!(found(&cfg, &se(true, Some(false))).is_empty());
        // silenced where the first target is: reported at the next one
        let mut cfg = selinux_cfg();
        cfg.locations[1].ignore = vec![Code::SelinuxNetworkConnect];
        assert_eq!(
            found(&cfg, &se(true, Some(false))),
            vec![(Code::SelinuxNetworkConnect, 3)]
        );
    }

    #[test]
    fn selinux_decision_from_a_fake_root() {
        let r = FakeRoot::fresh();
        r.write("/proc/net/tcp", "header\n");
        let cfg = selinux_cfg();
        let codes = |r: &FakeRoot| -> Vec<Code> {
            run(&cfg, &Root::new(r.root()))
                .into_iter()
                .map(|f| f.code)
                .filter(|c| *c == Code::SelinuxNetworkConnect)
                .collect()
        };
        assert!(codes(&r).is_empty(), "no /sys/fs/selinux");
        r.write("/sys/fs/selinux/enforce", "1\n")
            .write("/sys/fs/selinux/booleans/httpd_can_network_connect", "0 0");
        assert_eq!(codes(&r), vec![Code::SelinuxNetworkConnect]);
        r.write("/sys/fs/selinux/booleans/httpd_can_network_connect", "1 1");
        assert!(codes(&r).is_empty());
        r.write("/sys/fs/selinux/enforce", "0\n")
            .write("/sys/fs/selinux/booleans/httpd_can_network_connect", "0 0");
        assert!(codes(&r).is_empty());
    }
}
