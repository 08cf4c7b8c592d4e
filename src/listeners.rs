//! Who listens on the port of a refused loopback address: the backend that nginx's connect
//! missed.
//!
//! A server told to listen on "localhost" binds the first address the name resolves to: ::1
//! on many systems (Node.js 17 and later, for one), 127.0.0.1 on others. One told to listen on
//! an interface's address (`--bind 10.0.0.5`, a container port published on one address) is
//! not on loopback at all. nginx connecting to 127.0.0.1 gets "111: Connection refused" while
//! the backend runs. When a connect to a loopback address is refused, the kernel's table of
//! listening sockets on that port is read, both families, through netlink's sock_diag (what
//! `ss -ltn` reads; the kernel filters by state and port, so the answer is a few sockets
//! however busy the machine): never by connecting to the backend. A worker reads it at most
//! once a second per address, and at most [`LOOKS_PER_SECOND`] times a second ([`Answers`]).
//!
//! Pure: the request's bytes, the reply's parser, the rules ([`other_family`], [`elsewhere`])
//! and the cache. The system calls are in [`listening`].
//!
//! When nothing listens on that port at all and nginx runs in a container
//! ([`note_container`]), the loopback nginx connected to is the container's own: the hint says
//! that instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::lint::target::is_loopback;

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: &SocketAddr) -> Family {
        if a.ip().to_canonical().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn af(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// A listening socket on `target`'s port, on the loopback (or every address) of the other
/// address family: the backend is there, on the family nginx does not use.
pub fn other_family(listeners: &[SocketAddr], target: &SocketAddr) -> Option<SocketAddr> {
    let t = target.ip().to_canonical();
    listeners.iter().copied().find(|l| {
        let ip = l.ip().to_canonical();
        l.port() == target.port()
            && ip.is_ipv4() != t.is_ipv4()
            && (ip.is_loopback() || ip.is_unspecified())
    })
}

/// Where the backend listens, on the port of a refused loopback address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elsewhere {
    /// On the other family's loopback (or every address of it): IPv6 only.
    Ipv6Only,
    /// IPv4 only.
    Ipv4Only,
    /// On another address only: one interface's (`--bind 10.0.0.5`, a port published on
    /// one address), or another loopback address.
    OtherAddress,
}

/// The listening socket on `target`'s port that says where the backend is instead (`target`
/// itself refused connections), and what it says: the other family first (see
/// [`other_family`]), else any other address.
pub fn elsewhere(listeners: &[SocketAddr], target: &SocketAddr) -> Option<(Elsewhere, SocketAddr)> {
    if let Some(l) = other_family(listeners, target) {
        let e = match Family::of(&l) {
            Family::V6 => Elsewhere::Ipv6Only,
            Family::V4 => Elsewhere::Ipv4Only,
        };
        return Some((e, l));
    }
    let t = target.ip().to_canonical();
    listeners
        .iter()
        .copied()
        .find(|l| {
            let ip = l.ip().to_canonical();
            l.port() == target.port() && !ip.is_unspecified() && ip != t
        })
        .map(|l| (Elsewhere::OtherAddress, l))
}

/// netlink's sock_diag (linux/sock_diag.h, linux/inet_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then the 48 bytes of
/// `struct inet_diag_sockid` (source port first, big-endian).
const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, the sockid (source port at 4, source
/// address at 8), then five u32.
const MSG_LEN: usize = 72;

/// A dump request for the TCP sockets of `family` listening on `port`.
pub fn diag_request(family: Family, port: u16, seq: u32) -> [u8; NLMSG_HDRLEN + REQ_LEN] {
    let mut b = [0u8; NLMSG_HDRLEN + REQ_LEN];
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    b[0..4].copy_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    let r = &mut b[NLMSG_HDRLEN..];
    r[0] = family.af();
    r[1] = libc::IPPROTO_TCP as u8;
    r[4..8].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    // the kernel skips listening sockets on other ports
    r[8..10].copy_from_slice(&port.to_be_bytes());
    b
}

/// What a datagram of the reply held.
#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    /// Sockets, more to come.
    More,
    /// The end of the dump.
    Done,
    /// The kernel refused the request (its errno), or the reply made no sense (0).
    Failed(i32),
}

/// Read one datagram of the reply to [`diag_request`] of `seq`, adding the listening
/// addresses it holds to `out`.
pub fn parse_reply(buf: &[u8], seq: u32, out: &mut Vec<SocketAddr>) -> Part {
    let mut at = 0;
    while buf.len() - at >= NLMSG_HDRLEN {
        let h = &buf[at..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let hseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDRLEN || len > h.len() {
            return Part::Failed(0);
        }
        if hseq != seq {
            // an answer to another request of this socket: not ours (there is none)
            return Part::Failed(0);
        }
        let body = &h[NLMSG_HDRLEN..len];
        match i32::from(kind) {
            libc::NLMSG_DONE => return Part::Done,
            libc::NLMSG_ERROR => {
                let e = body
                    .get(..4)
                    .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]));
                return Part::Failed(-e);
            }
            _ if kind == SOCK_DIAG_BY_FAMILY && body.len() >= MSG_LEN => {
                if let Some(a) = diag_addr(body) {
                    out.push(a);
                }
            }
            _ => {}
        }
        // messages are aligned to 4 bytes
        at += (len + 3) & !3;
        if at >= buf.len() {
            break;
        }
    }
    Part::More
}

/// The local address of an `inet_diag_msg`.
fn diag_addr(m: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([m[4], m[5]]);
    let ip = match i32::from(m[0]) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::new(m[8], m[9], m[10], m[11])),
        libc::AF_INET6 => {
            let b: [u8; 16] = m[8..24].try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The TCP sockets of `family` listening on `port`, from the kernel; None if it could not
/// be asked (no netlink, another system).
#[cfg(target_os = "linux")]
pub fn listening(family: Family, port: u16) -> Option<Vec<SocketAddr>> {
    use core::ffi::c_void;
    use core::mem;

    struct Fd(i32);
    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: the descriptor is ours, opened below and closed once.
            unsafe { libc::close(self.0) };
        }
    }
    // SAFETY: plain system calls on a socket this function owns; every buffer passed is
    // valid for the length given.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return None;
        }
        let fd = Fd(fd);
        // The kernel answers at once; a bound on the wait all the same (a worker's loop).
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const c_void,
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mut kernel: libc::sockaddr_nl = mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let seq = 1;
        let req = diag_request(family, port, seq);
        let sent = libc::sendto(
            fd.0,
            req.as_ptr() as *const c_void,
            req.len(),
            0,
            &kernel as *const _ as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        );
        if sent != req.len() as isize {
            return None;
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        // a dump of listeners on one port is one datagram or two; bounded all the same
        for _ in 0..64 {
            let n = libc::recv(fd.0, buf.as_mut_ptr() as *mut c_void, buf.len(), 0);
            if n <= 0 {
                return None;
            }
            match parse_reply(&buf[..n as usize], seq, &mut out) {
                Part::More => {}
                Part::Done => return Some(out),
                Part::Failed(_) => return None,
            }
        }
        None
    }
}

#[cfg(not(target_os = "linux"))]
pub fn listening(_family: Family, _port: u16) -> Option<Vec<SocketAddr>> {
    None
}

static CONTAINER: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Note whether nginx runs in a container, where loopback is the container's own (read at
/// configuration time, in the master: workers inherit it), as the lint judges it
/// ([`crate::lint::system::SystemView::container`]).
pub fn note_container() {
    use crate::lint::system::{Root, SystemView};
    CONTAINER.store(
        Root::system().container(),
        core::sync::atomic::Ordering::Relaxed,
    );
}

/// nginx runs in a container ([`note_container`]).
pub fn in_container() -> bool {
    CONTAINER.load(core::sync::atomic::Ordering::Relaxed)
}

/// How long a worker keeps what it read of a port (ms): a backend started elsewhere is
/// seen within this time.
pub const KEEP_MS: u64 = 1_000;

/// The most reads of the table a worker makes in a second, whatever the number of refused
/// addresses (an upstream of many servers, all down, with `max_fails=0`): past it, a refusal
/// gets the plain hint, and the next second reads again.
pub const LOOKS_PER_SECOND: u32 = 16;

const ENTRIES: usize = 64;

/// A worker's recent answers, by the address refused (direct-mapped), and its reads of the
/// table in the current second.
#[derive(Clone, Copy, Debug)]
pub struct Answers {
    entries: [Entry; ENTRIES],
    second_ms: u64,
    looks: u32,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The refused address (None: empty).
    target: Option<SocketAddr>,
    at_ms: u64,
    found: Option<Elsewhere>,
}

impl Default for Answers {
    fn default() -> Self {
        Self::new()
    }
}

/// The entry of an address: its port and the last byte of its IP.
fn slot(a: &SocketAddr) -> usize {
    let last = match a.ip() {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    };
    (a.port() as usize ^ (last as usize) << 3) % ENTRIES
}

impl Answers {
    pub const fn new() -> Answers {
        Answers {
            entries: [Entry {
                target: None,
                at_ms: 0,
                found: None,
            }; ENTRIES],
            second_ms: 0,
            looks: 0,
        }
    }

    /// For a refused connect to `target` (a loopback address), at `now_ms`: where the backend
    /// listens instead, if it does. `look` reads the kernel's table (of a family, on the
    /// port), for both families, when this worker has no answer younger than [`KEEP_MS`] and
    /// has read it fewer than [`LOOKS_PER_SECOND`] times this second.
    pub fn elsewhere(
        &mut self,
        target: &SocketAddr,
        now_ms: u64,
        mut look: impl FnMut(Family, u16) -> Option<Vec<SocketAddr>>,
    ) -> Option<Elsewhere> {
        if !is_loopback(target.ip()) || target.port() == 0 {
            return None;
        }
        let e = &mut self.entries[slot(target)];
        if e.target == Some(*target) && now_ms.wrapping_sub(e.at_ms) < KEEP_MS {
            return e.found;
        }
        if now_ms.wrapping_sub(self.second_ms) >= 1_000 {
            self.second_ms = now_ms;
            self.looks = 0;
        }
        if self.looks >= LOOKS_PER_SECOND {
            return None;
        }
        self.looks += 1;
        let mut all = look(Family::V4, target.port()).unwrap_or_default();
        all.extend(look(Family::V6, target.port()).unwrap_or_default());
        let found = elsewhere(&all, target).map(|(e, _)| e);
        *e = Entry {
            target: Some(*target),
            at_ms: now_ms,
            found,
        };
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_backend_on_the_other_family() {
        let v6 = [sa("[::1]:3000"), sa("127.0.0.1:4000")];
        assert_eq!(
            other_family(&v6, &sa("127.0.0.1:3000")),
            Some(sa("[::1]:3000"))
        );
        // the same family is no other family; another port is not the backend
        assert_eq!(other_family(&v6, &sa("127.0.0.1:4001")), None);
        assert_eq!(other_family(&v6, &sa("[::1]:3000")), None);
        // every address of the other family serves loopback too
        assert_eq!(
            other_family(&[sa("0.0.0.0:9000")], &sa("[::1]:9000")),
            Some(sa("0.0.0.0:9000"))
        );
        assert_eq!(
            other_family(&[sa("[::]:9000")], &sa("127.0.0.1:9000")),
            Some(sa("[::]:9000"))
        );
        // an address that is not loopback is another host's interface, not the backend
        assert_eq!(
            other_family(&[sa("[2001:db8::1]:3000")], &sa("127.0.0.1:3000")),
            None
        );
    }

    /// A reply as the kernel writes it: one inet_diag_msg per socket, then NLMSG_DONE.
    fn reply(seq: u32, socks: &[SocketAddr]) -> Vec<u8> {
        let mut b = Vec::new();
        for s in socks {
            let mut m = vec![0u8; NLMSG_HDRLEN + MSG_LEN];
            m[0..4].copy_from_slice(&((NLMSG_HDRLEN + MSG_LEN) as u32).to_ne_bytes());
            m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            m[8..12].copy_from_slice(&seq.to_ne_bytes());
            let d = &mut m[NLMSG_HDRLEN..];
            d[1] = TCP_LISTEN as u8;
            d[4..6].copy_from_slice(&s.port().to_be_bytes());
            match s.ip() {
                IpAddr::V4(v4) => {
                    d[0] = libc::AF_INET as u8;
                    d[8..12].copy_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    d[0] = libc::AF_INET6 as u8;
                    d[8..24].copy_from_slice(&v6.octets());
                }
            }
            b.extend_from_slice(&m);
        }
        let mut done = vec![0u8; NLMSG_HDRLEN + 4];
        done[0..4].copy_from_slice(&((NLMSG_HDRLEN + 4) as u32).to_ne_bytes());
        done[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        done[8..12].copy_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&done);
        b
    }

    #[test]
    fn request_bytes() {
        let r = diag_request(Family::V6, 3000, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], 6); // TCP
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), 1 << 10);
        assert_eq!(&r[24..26], &[0x0b, 0xb8]); // 3000, big-endian
    }

    #[test]
    fn replies() {
        let socks = [sa("[::1]:3000"), sa("0.0.0.0:3000"), sa("[::]:3000")];
        let mut out = Vec::new();
        assert_eq!(parse_reply(&reply(5, &socks), 5, &mut out), Part::Done);
        assert_eq!(out, socks);
        // sockets, the end in a later datagram
        let whole = reply(5, &socks[..1]);
        let mut out = Vec::new();
        assert_eq!(parse_reply(&whole[..88], 5, &mut out), Part::More);
        assert_eq!(parse_reply(&whole[88..], 5, &mut out), Part::Done);
        assert_eq!(out, socks[..1]);
        // an error: the kernel's errno
        let mut err = vec![0u8; NLMSG_HDRLEN + 4];
        err[0..4].copy_from_slice(&20u32.to_ne_bytes());
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[8..12].copy_from_slice(&5u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse_reply(&err, 5, &mut out), Part::Failed(libc::EPERM));
        // another sequence number, a length past the datagram, cut bytes: nothing read wrong
        assert_eq!(parse_reply(&reply(6, &socks), 5, &mut out), Part::Failed(0));
        let mut long = reply(5, &socks);
        long[0] = 0xff;
        long[1] = 0xff;
        assert_eq!(parse_reply(&long, 5, &mut out), Part::Failed(0));
        for cut in 0..whole.len() {
            let _ = parse_reply(&whole[..cut], 5, &mut Vec::new());
        }
    }

    #[test]
    fn the_kernel_answers() {
        // a socket of this test, listening on IPv4 loopback: found by its port
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let Some(found) = listening(Family::V4, port) else {
            panic!("sock_diag unavailable: netlink refused");
        };
        assert!(found.contains(&l.local_addr().unwrap()), "{found:?}");
        assert!(found.iter().all(|a| a.port() == port), "{found:?}");
        drop(l);
        assert_eq!(listening(Family::V4, port), Some(vec![]));
    }

    #[test]
    fn where_else() {
        let t = sa("127.0.0.1:3000");
        let found = |ls: &[&str]| {
            let ls: Vec<_> = ls.iter().map(|l| sa(l)).collect();
            elsewhere(&ls, &t)
        };
        assert_eq!(
            found(&["[::1]:3000"]),
            Some((Elsewhere::Ipv6Only, sa("[::1]:3000")))
        );
        // one interface's address, another loopback address, another family's interface
        for l in ["10.0.0.5:3000", "127.0.0.2:3000", "[fd00::5]:3000"] {
            assert_eq!(found(&[l]), Some((Elsewhere::OtherAddress, sa(l))), "{l}");
        }
        // the other family's loopback says more than another address
        assert_eq!(
            found(&["10.0.0.5:3000", "[::]:3000"]).map(|f| f.0),
            Some(Elsewhere::Ipv6Only)
        );
        // another port; the refused address itself (a race with its close): nothing
        assert_eq!(found(&["10.0.0.5:3001", "127.0.0.1:3000"]), None);
        let v6 = sa("[::1]:9000");
        assert_eq!(
            elsewhere(&[sa("0.0.0.0:9000")], &v6).map(|f| f.0),
            Some(Elsewhere::Ipv4Only)
        );
    }

    #[test]
    fn a_worker_looks_once_a_second() {
        let mut seen = Answers::new();
        let t = sa("127.0.0.1:3000");
        let mut looks = Vec::new();
        // the table read: the backend on ::1 or nowhere
        let mut ask = |seen: &mut Answers, now: u64, on_v6: bool| {
            seen.elsewhere(&t, now, |f, port| {
                looks.push(f);
                Some(if on_v6 && f == Family::V6 {
                    vec![SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port)]
                } else {
                    vec![]
                })
            })
        };
        assert_eq!(ask(&mut seen, 10_000, false), None);
        // the backend moves to ::1: not seen until the answer is a second old
        assert_eq!(ask(&mut seen, 10_999, true), None);
        assert_eq!(ask(&mut seen, 11_000, true), Some(Elsewhere::Ipv6Only));
        assert_eq!(ask(&mut seen, 11_500, false), Some(Elsewhere::Ipv6Only));
        // both families read, twice
        assert_eq!(looks, [Family::V4, Family::V6, Family::V4, Family::V6]);
        // not loopback: another host, whose sockets this one cannot see
        let far = sa("192.0.2.1:3000");
        assert_eq!(seen.elsewhere(&far, 0, |_, _| panic!("looked")), None);
        // another loopback address on the same port is its own entry
        let other = sa("127.0.0.2:3000");
        let found = seen.elsewhere(&other, 11_600, |f, p| {
            Some(match f {
                Family::V4 => vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), p)],
                Family::V6 => vec![],
            })
        });
        assert_eq!(found, Some(Elsewhere::OtherAddress));
        // a table that cannot be read: nothing said
        let v6 = sa("[::1]:4000");
        assert_eq!(seen.elsewhere(&v6, 20_000, |_, _| None), None);
    }

    #[test]
    fn a_worker_reads_the_table_at_most_16_times_a_second() {
        // 40 servers of an upstream, all refused, all on [::1] instead: each read once, 16 a
        // second at most
        let mut seen = Answers::new();
        let on_v6 = |f: Family, port: u16| {
            Some(match f {
                Family::V6 => vec![SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port)],
                Family::V4 => vec![],
            })
        };
        let targets: Vec<_> = (0..40u16)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 8000 + i)))
            .collect();
        let answered = |seen: &mut Answers, now: u64| {
            targets
                .iter()
                .filter(|t| seen.elsewhere(t, now, on_v6).is_some())
                .count()
        };
        assert_eq!(answered(&mut seen, 50_000), 16);
        // within the second: the 16 answers kept, no more reads
        assert_eq!(answered(&mut seen, 50_900), 16);
        // the next second: 16 reads again (the first 16 answers, a second old, are read anew)
        assert_eq!(answered(&mut seen, 51_000), 16);
        // 40 ports of one address take 40 entries: none evicts another
        let mut slots: Vec<_> = targets.iter().map(slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 40, "40 ports of one address take 40 entries");
    }
}
