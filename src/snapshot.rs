//! What the status shows: a consistent, FFI-free copy of the configuration and the shared
//! counters, taken by the status handler (`collect`) and turned into bytes by `render`.
//!
//! Everything here is plain data and arithmetic over it (totals, rates, states), covered by
//! `cargo test`.

use crate::cause::{Cause, Detail, Pass, Phase};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastFailure {
    pub cause: Cause,
    pub phase: Phase,
    pub errno: Option<i32>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub status: u16,
    /// What else said why (`Verdict::detail`): only the hint shows it.
    pub detail: Detail,
}

// LastFailure::pack's fields: a cause and a detail in 8 bits each, a phase in 4.
const _: () = assert!(Cause::COUNT <= 256 && Detail::ALL.len() <= 256 && Phase::ALL.len() <= 16);

impl LastFailure {
    /// The failure in one word, for a slot in shared memory (one store, one load, never
    /// torn): cause | phase << 8 | detail << 12 | status << 20 | (errno + 1) << 32. Bits:
    /// cause 8, phase 4, detail 8, status 12, errno 32. A failure's status is never 0, nor
    /// then its word: 0 is "no failure yet".
    pub fn pack(
        cause: Cause,
        phase: Phase,
        detail: Detail,
        status: u16,
        errno: Option<i32>,
    ) -> u64 {
        let e = errno.map_or(0u64, |e| (e as u32 as u64).wrapping_add(1) & 0xffff_ffff);
        cause.index() as u64
            | (phase as u64) << 8
            | (detail as u64) << 12
            | u64::from(status & 0xfff) << 20
            | e << 32
    }

    /// What [`LastFailure::pack`] made (None for 0, nothing recorded), at `time_ms`.
    pub fn unpack(info: u64, time_ms: u64) -> Option<LastFailure> {
        if info == 0 {
            return None;
        }
        let errno = ((info >> 32) as u32) as i64 - 1;
        Some(LastFailure {
            cause: Cause::from_index((info & 0xff) as usize)?,
            phase: Phase::from_index(((info >> 8) & 0xf) as usize)?,
            detail: Detail::from_index(((info >> 12) & 0xff) as usize).unwrap_or_default(),
            status: ((info >> 20) & 0xfff) as u16,
            errno: (errno >= 0).then_some(errno as i32),
            time_ms,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    pub by_cause: [u64; Cause::COUNT],
}

impl Failures {
    /// Failures of nginx: every cause but the backend's own 502.
    pub fn total(&self) -> u64 {
        Cause::ALL
            .iter()
            .filter(|c| c.is_failure())
            .map(|c| self.by_cause[c.index()])
            .sum()
    }

    pub fn add(&mut self, other: &Failures) {
        for (a, b) in self.by_cause.iter_mut().zip(other.by_cause.iter()) {
            *a += b;
        }
    }

    /// Non-zero counters, in taxonomy order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Cause, u64)> + '_ {
        Cause::ALL
            .iter()
            .map(|&c| (c, self.by_cause[c.index()]))
            .filter(|&(_, n)| n > 0)
    }
}

/// Responses the peer sent, by status class (a try that failed has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Responses {
    /// Index 0 = 1xx … 4 = 5xx.
    pub by_class: [u64; 5],
}

impl Responses {
    pub fn total(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// `1xx` … `5xx`.
    pub const CLASSES: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
}

/// Activity in a sliding window (1 or 5 minutes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Tries sent to upstreams (each try of `proxy_next_upstream` counts).
    pub requests: u64,
    /// Requests that nginx answered with its own 502/504 (or 500 for worker_connections).
    pub failures: u64,
    /// Responses with a measured time, and the sums of their times in milliseconds.
    pub timed: u64,
    pub header_ms: u64,
    pub response_ms: u64,
}

impl Window {
    pub fn add(&mut self, o: &Window) {
        self.requests += o.requests;
        self.failures += o.failures;
        self.timed += o.timed;
        self.header_ms += o.header_ms;
        self.response_ms += o.response_ms;
    }

    /// Failures over requests; None without requests (JSON null: no rate to speak of).
    pub fn failure_rate(&self) -> Option<f64> {
        (self.requests > 0)
            .then(|| (self.failures.min(self.requests)) as f64 / self.requests as f64)
    }

    /// Mean header time (ms) of the responses in the window.
    pub fn mean_header_ms(&self) -> Option<u64> {
        (self.timed > 0).then(|| self.header_ms / self.timed)
    }

    /// Mean response time (ms) of the responses in the window.
    pub fn mean_response_ms(&self) -> Option<u64> {
        (self.timed > 0).then(|| self.response_ms / self.timed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Selectable.
    Up,
    /// Configured `down`.
    Down,
    /// `max_fails` tripped: nginx skips it until `fail_timeout` passes.
    Unavailable,
    /// Failed its active health checks.
    Unhealthy,
    /// Active checks configured, no verdict yet.
    Checking,
}

impl PeerState {
    pub const ALL: [PeerState; 5] = [
        PeerState::Up,
        PeerState::Down,
        PeerState::Unavailable,
        PeerState::Unhealthy,
        PeerState::Checking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Up => "up",
            PeerState::Down => "down",
            PeerState::Unavailable => "unavailable",
            PeerState::Unhealthy => "unhealthy",
            PeerState::Checking => "checking",
        }
    }

    pub fn parse(s: &str) -> Option<PeerState> {
        PeerState::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Active health-check state of a peer (filled once active checks exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub kind: String,
    pub state: PeerState,
    pub checks: u64,
    pub fails: u64,
    /// Transitions to unhealthy.
    pub unhealthy: u64,
    pub rise_count: u32,
    pub fall_count: u32,
    pub last_check_ms: Option<u64>,
    pub last_passed: Option<bool>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub downtime_ms: u64,
    pub since_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSnap {
    /// The address (`127.0.0.1:8081`, `unix:/run/app.sock`): the counters' key.
    pub name: String,
    /// The `server` as written in the configuration (a host name may give several peers).
    pub server: String,
    pub backup: bool,
    pub weight: u64,
    pub max_fails: u64,
    /// Seconds.
    pub fail_timeout: u64,
    /// None: unlimited.
    pub max_conns: Option<u64>,
    pub state: PeerState,
    pub requests: u64,
    pub responses: Responses,
    pub failures: Failures,
    pub last_failure: Option<LastFailure>,
    /// Last minute (times, 1m rate) and last five minutes (5m rate).
    pub window_1m: Window,
    pub window_5m: Window,
    pub health: Option<Health>,
    /// Most frequent cause of the last five minutes.
    pub top_cause_5m: Option<Cause>,
}

impl PeerSnap {
    /// A peer with nothing counted: `up`, weight 1, no limits, not checked.
    pub fn new(name: String, server: String) -> PeerSnap {
        PeerSnap {
            name,
            server,
            backup: false,
            weight: 1,
            max_fails: 0,
            fail_timeout: 0,
            max_conns: None,
            state: PeerState::Up,
            requests: 0,
            responses: Responses::default(),
            failures: Failures::default(),
            last_failure: None,
            window_1m: Window::default(),
            window_5m: Window::default(),
            health: None,
            top_cause_5m: None,
        }
    }

    /// The remediation line for the peer's most frequent recent cause (made sharper by the
    /// last failure's errno and detail, when that failure had the same cause).
    pub fn hint(&self) -> Option<&'static str> {
        let c = self.top_cause_5m?;
        let last = self.last_failure.as_ref().filter(|l| l.cause == c);
        let errno = last.and_then(|l| l.errno);
        let detail = last.map_or(Detail::None, |l| l.detail);
        Some(c.hint_in(errno, detail, Pass::Any))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub peers: u64,
    pub up: u64,
    pub down: u64,
    pub unhealthy: u64,
    pub requests: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSnap {
    pub name: String,
    /// Resolved at run time (`proxy_pass` with variables), not in the configuration.
    pub dynamic: bool,
    /// The nginx `zone` of the upstream block.
    pub zone: Option<String>,
    /// `keepalive N`.
    pub keepalive: Option<u64>,
    pub peers: Vec<PeerSnap>,
    /// Failures counted at upstream level, before a peer was chosen (no_live_upstreams,
    /// host_not_found).
    pub own: Failures,
    /// Upstream-level windows (failures before a peer was chosen).
    pub own_window_1m: Window,
    pub own_window_5m: Window,
}

impl UpstreamSnap {
    /// The peers whose counters are their own: the first of each address. Two servers of an
    /// upstream can be the same address (`server a.internal; server b.internal;` resolving
    /// alike, a server listed twice for weight): nginx tries them as two peers, the zone
    /// counts the address once, and each is shown with its counters.
    pub fn counted_peers(&self) -> impl Iterator<Item = &PeerSnap> {
        let mut seen = std::collections::HashSet::new();
        self.peers
            .iter()
            .filter(move |p| seen.insert(p.name.as_str()))
    }

    /// Peers' and the upstream's own failures together.
    pub fn failures(&self) -> Failures {
        let mut f = self.own.clone();
        for p in self.counted_peers() {
            f.add(&p.failures);
        }
        f
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            peers: self.peers.len() as u64,
            failures: self.failures().total(),
            ..Default::default()
        };
        for p in &self.peers {
            match p.state {
                PeerState::Up => t.up += 1,
                PeerState::Down => t.down += 1,
                PeerState::Unavailable | PeerState::Unhealthy | PeerState::Checking => {
                    t.unhealthy += 1
                }
            }
        }
        t.requests = self.counted_peers().map(|p| p.requests).sum();
        t
    }

    fn window(&self, own: &Window, f: impl Fn(&PeerSnap) -> &Window) -> Window {
        let mut w = *own;
        for p in self.counted_peers() {
            w.add(f(p));
        }
        w
    }

    pub fn window_1m(&self) -> Window {
        self.window(&self.own_window_1m, |p| &p.window_1m)
    }

    pub fn window_5m(&self) -> Window {
        self.window(&self.own_window_5m, |p| &p.window_5m)
    }
}

/// One entry of the recent failures ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentFailure {
    pub time_ms: u64,
    pub upstream: String,
    pub peer: String,
    pub cause: Cause,
    pub errno: Option<i32>,
    pub phase: Phase,
    pub status: u16,
    pub method: String,
    /// Without the query string.
    pub path: String,
    pub request_id: String,
}

/// How full one of the module's shared zones is (`triage`: the counters, one entry per
/// upstream and per peer; `triage_check`: one health record per checked peer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneSnap {
    pub name: &'static str,
    /// Bytes.
    pub size: u64,
    pub entries: u64,
    /// Entries given to a new peer since the zone was made (the zone was full, and a peer
    /// that no configuration names any more had been idle long enough).
    pub reused: u64,
    /// A new peer found no room (the zone-full alert) since the zone was made: it is not
    /// counted (`triage`) or not checked (`triage_check`).
    pub full: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: &'static str,
    pub nginx_version: String,
    pub pid: u32,
    /// Configuration loads seen by the zone (start = 1, +1 per reload).
    pub generation: u64,
    pub load_time_ms: u64,
    pub time_ms: u64,
    pub upstreams: Vec<UpstreamSnap>,
    /// Newest first.
    pub recent_failures: Vec<RecentFailure>,
    /// `triage`, then `triage_check` when health checks are configured (in the metrics
    /// only: the JSON's top-level keys are the status issue's contract).
    pub zones: Vec<ZoneSnap>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_failure_survives_its_packing() {
        assert_eq!(LastFailure::unpack(0, 5), None);
        for &cause in &Cause::ALL {
            for &phase in &Phase::ALL {
                for (detail, status, errno) in [
                    (Detail::None, 502, None),
                    (Detail::ALL[Detail::ALL.len() - 1], 504, Some(0)),
                    (Detail::StaleSocket, 500, Some(111)),
                    (Detail::Reused, 502, Some(i32::MAX)),
                ] {
                    let info = LastFailure::pack(cause, phase, detail, status, errno);
                    assert_ne!(info, 0);
                    let f = LastFailure {
                        cause,
                        phase,
                        errno,
                        time_ms: 7,
                        status,
                        detail,
                    };
                    assert_eq!(LastFailure::unpack(info, 7), Some(f));
                }
            }
        }
    }

    fn peer(state: PeerState, requests: u64) -> PeerSnap {
        PeerSnap {
            max_fails: 1,
            fail_timeout: 10,
            state,
            requests,
            window_1m: Window {
                requests,
                failures: 1,
                ..Default::default()
            },
            ..PeerSnap::new("127.0.0.1:1".into(), "127.0.0.1:1".into())
        }
    }

    #[test]
    fn totals_and_rates() {
        let mut own = Failures::default();
        own.by_cause[Cause::NoLiveUpstreams.index()] = 2;
        own.by_cause[Cause::Upstream502.index()] = 5;
        let u = UpstreamSnap {
            name: "app".into(),
            dynamic: false,
            zone: None,
            keepalive: None,
            peers: [
                peer(PeerState::Up, 10),
                peer(PeerState::Down, 0),
                peer(PeerState::Unavailable, 30),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, p)| PeerSnap {
                name: format!("127.0.0.1:{}", i + 1),
                ..p
            })
            .collect(),
            own,
            own_window_1m: Window {
                failures: 2,
                ..Default::default()
            },
            own_window_5m: Window::default(),
        };
        let t = u.totals();
        assert_eq!((t.peers, t.up, t.down, t.unhealthy), (3, 1, 1, 1));
        assert_eq!(t.requests, 40);
        assert_eq!(t.failures, 2, "upstream_502 is not a failure of nginx");
        let w = u.window_1m();
        assert_eq!((w.requests, w.failures), (40, 5));
        assert_eq!(w.failure_rate(), Some(5.0 / 40.0));
        assert_eq!(u.window_5m().failure_rate(), None);
    }

    #[test]
    fn an_address_listed_twice_is_counted_once() {
        let mut twice = peer(PeerState::Up, 10);
        twice.failures.by_cause[Cause::ConnectRefused.index()] = 3;
        let mut other = peer(PeerState::Up, 5);
        other.name = "127.0.0.1:2".into();
        let u = UpstreamSnap {
            name: "app".into(),
            dynamic: false,
            zone: None,
            keepalive: None,
            peers: vec![twice.clone(), other, twice],
            own: Failures::default(),
            own_window_1m: Window::default(),
            own_window_5m: Window::default(),
        };
        let t = u.totals();
        assert_eq!((t.peers, t.up, t.requests, t.failures), (3, 3, 15, 3));
        let w = u.window_1m();
        assert_eq!((w.requests, w.failures), (15, 2));
        assert_eq!(u.counted_peers().count(), 2);
    }

    #[test]
    fn peer_hint_follows_top_cause_and_last_errno() {
        let mut p = peer(PeerState::Up, 1);
        assert_eq!(p.hint(), None);
        p.top_cause_5m = Some(Cause::Other);
        assert_eq!(p.hint(), Some(Cause::Other.hint()));
        let last = |cause, errno| LastFailure {
            cause,
            phase: Phase::Connect,
            errno,
            time_ms: 0,
            status: 502,
            detail: Detail::None,
        };
        p.last_failure = Some(last(Cause::Other, Some(libc::EAGAIN)));
        assert_eq!(p.hint(), Some(Cause::Other.hint_for(Some(libc::EAGAIN))));
        assert_ne!(p.hint(), Some(Cause::Other.hint()));
        // the last failure had another cause: its errno says nothing about the top one
        p.last_failure = Some(last(Cause::ConnectRefused, Some(libc::EAGAIN)));
        assert_eq!(p.hint(), Some(Cause::Other.hint()));
        // a kept-alive connection closed as nginx reused it: the keepalive hint
        p.top_cause_5m = Some(Cause::PrematureClose);
        p.last_failure = Some(LastFailure {
            detail: Detail::Reused,
            ..last(Cause::PrematureClose, None)
        });
        assert_eq!(
            p.hint(),
            Some(Cause::PrematureClose.hint_in(None, Detail::Reused, Pass::Any))
        );
        assert_ne!(p.hint(), Some(Cause::PrematureClose.hint()));
    }

    #[test]
    fn window_means() {
        let w = Window {
            timed: 4,
            header_ms: 10,
            response_ms: 41,
            ..Default::default()
        };
        assert_eq!(w.mean_header_ms(), Some(2));
        assert_eq!(w.mean_response_ms(), Some(10));
        assert_eq!(Window::default().mean_response_ms(), None);
        // a window can see a failure whose request was counted before it began
        let w = Window {
            requests: 1,
            failures: 3,
            ..Default::default()
        };
        assert_eq!(w.failure_rate(), Some(1.0));
    }

    #[test]
    fn states_round_trip() {
        for s in PeerState::ALL {
            assert_eq!(PeerState::parse(s.as_str()), Some(s));
        }
        assert_eq!(PeerState::parse("sideways"), None);
    }
}
