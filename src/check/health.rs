//! Health-state arithmetic: what one check result does to a peer's state (UCM's rise/fall
//! counting), why a check failed, and the words logged for a transition. Pure: the prober
//! reports a [`Outcome`], the shared-memory record stores [`State::pack`]ed words.

use crate::cause::Cause;
use crate::snapshot::PeerState;

/// Why a check failed: a cause of the taxonomy (connect, timeouts, TLS...), or the response
/// was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Cause(Cause),
    /// The status is not an expected one.
    BadStatus,
    /// The body does not match `check_http_expect_body`.
    BodyMismatch,
    /// A MySQL server answered with an error packet instead of its handshake.
    Mysql(MysqlError),
}

/// The error a MySQL (or MariaDB) server sends in place of its handshake: it refuses the
/// connection before any login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MysqlError {
    /// 1040 (ER_CON_COUNT_ERROR): `max_connections` reached.
    TooManyConnections,
    /// 1129 (ER_HOST_IS_BLOCKED): `max_connect_errors` reached for this host (`FLUSH HOSTS`).
    HostBlocked,
    /// 1130 (ER_HOST_NOT_PRIVILEGED): no account may connect from this host.
    HostNotAllowed,
    /// Any other error code.
    Other,
}

impl MysqlError {
    pub const ALL: [MysqlError; 4] = [
        MysqlError::TooManyConnections,
        MysqlError::HostBlocked,
        MysqlError::HostNotAllowed,
        MysqlError::Other,
    ];

    pub fn from_code(code: u16) -> MysqlError {
        match code {
            1040 => MysqlError::TooManyConnections,
            1129 => MysqlError::HostBlocked,
            1130 => MysqlError::HostNotAllowed,
            _ => MysqlError::Other,
        }
    }
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Cause(c) => c.as_str(),
            Reason::BadStatus => "bad_status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::Mysql(MysqlError::TooManyConnections) => "mysql_too_many_connections",
            Reason::Mysql(MysqlError::HostBlocked) => "mysql_host_blocked",
            Reason::Mysql(MysqlError::HostNotAllowed) => "mysql_host_not_allowed",
            Reason::Mysql(MysqlError::Other) => "mysql_error",
        }
    }

    /// Stored in one byte: 1..=COUNT causes, then the two verdicts, then the MySQL errors;
    /// 0 is "none".
    pub fn code(self) -> u8 {
        let n = Cause::COUNT as u8;
        match self {
            Reason::Cause(c) => c.index() as u8 + 1,
            Reason::BadStatus => n + 1,
            Reason::BodyMismatch => n + 2,
            Reason::Mysql(e) => n + 3 + e as u8,
        }
    }

    pub fn from_code(c: u8) -> Option<Reason> {
        let n = Cause::COUNT as u8;
        match c {
            0 => None,
            c if c <= n => Cause::from_index(c as usize - 1).map(Reason::Cause),
            c if c == n + 1 => Some(Reason::BadStatus),
            c if c == n + 2 => Some(Reason::BodyMismatch),
            c => MysqlError::ALL
                .get(usize::from(c - n - 3))
                .copied()
                .map(Reason::Mysql),
        }
    }
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status, for http/https checks that got one.
    pub status: Option<u16>,
    /// None: the check passed.
    pub failure: Option<Reason>,
}

impl Outcome {
    pub fn pass(status: Option<u16>) -> Outcome {
        Outcome {
            status,
            failure: None,
        }
    }

    pub fn fail(reason: Reason, status: Option<u16>) -> Outcome {
        Outcome {
            status,
            failure: Some(reason),
        }
    }

    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// A peer's health as rise/fall counting sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Takes traffic (as far as checks are concerned).
    pub up: bool,
    /// A verdict was reached since the peer appeared (before: `default_down` decides `up`).
    pub verdict: bool,
    /// Consecutive passed checks.
    pub rise_count: u32,
    /// Consecutive failed checks.
    pub fall_count: u32,
}

/// A change of verdict, to log and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Now healthy after `after` consecutive passed checks.
    Healthy { after: u32 },
    /// Now unhealthy after `after` consecutive failed checks.
    Unhealthy { after: u32 },
}

impl State {
    /// A peer never checked.
    pub fn initial(default_down: bool) -> State {
        State {
            up: !default_down,
            verdict: false,
            rise_count: 0,
            fall_count: 0,
        }
    }

    /// One check result. A peer becomes healthy after `rise` consecutive passes and
    /// unhealthy after `fall` consecutive failures; the first verdict on a new peer is a
    /// transition even when it confirms `default_down`.
    pub fn apply(self, passed: bool, rise: u32, fall: u32) -> (State, Option<Transition>) {
        let mut s = self;
        if passed {
            s.rise_count = s.rise_count.saturating_add(1);
            s.fall_count = 0;
            if s.rise_count >= rise.max(1) && !(s.up && s.verdict) {
                s.up = true;
                s.verdict = true;
                let after = s.rise_count;
                return (s, Some(Transition::Healthy { after }));
            }
        } else {
            s.fall_count = s.fall_count.saturating_add(1);
            s.rise_count = 0;
            if s.fall_count >= fall.max(1) && (s.up || !s.verdict) {
                s.up = false;
                s.verdict = true;
                let after = s.fall_count;
                return (s, Some(Transition::Unhealthy { after }));
            }
        }
        (s, None)
    }

    /// One word in shared memory: up | verdict << 1 | rise << 2 (31 bits) | fall << 33.
    pub fn pack(self) -> u64 {
        let c = |n: u32| (n.min(0x7fff_ffff)) as u64;
        self.up as u64
            | (self.verdict as u64) << 1
            | c(self.rise_count) << 2
            | c(self.fall_count) << 33
    }

    pub fn unpack(w: u64) -> State {
        State {
            up: w & 1 != 0,
            verdict: w & 2 != 0,
            rise_count: ((w >> 2) & 0x7fff_ffff) as u32,
            fall_count: ((w >> 33) & 0x7fff_ffff) as u32,
        }
    }
}

/// The state shown for a checked peer: its `health.state` (checking until a verdict, then
/// up or unhealthy) and the peer's own `state`, where configured `down` comes first, then
/// the checks (a peer not yet checked under `default_down=true` is `checking`), then
/// `max_fails` (`unavailable`).
pub fn peer_states(s: State, configured_down: bool, unavailable: bool) -> (PeerState, PeerState) {
    let health = match (s.verdict, s.up) {
        (false, _) => PeerState::Checking,
        (true, true) => PeerState::Up,
        (true, false) => PeerState::Unhealthy,
    };
    let peer = if configured_down {
        PeerState::Down
    } else if !s.up {
        health
    } else if unavailable {
        PeerState::Unavailable
    } else {
        PeerState::Up
    };
    (health, peer)
}

/// The error.log line of a transition (logged at `warn`).
pub fn transition_message(
    upstream: &[u8],
    peer: &[u8],
    t: Transition,
    last: Option<Reason>,
) -> String {
    let (u, p) = (
        String::from_utf8_lossy(upstream),
        String::from_utf8_lossy(peer),
    );
    match t {
        Transition::Healthy { after } => {
            format!("upstream {u} peer {p} is healthy after {after} checks")
        }
        Transition::Unhealthy { after } => format!(
            "upstream {u} peer {p} is unhealthy: {} after {after} checks",
            last.map_or("check failed", Reason::as_str)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut s: State, results: &[bool], rise: u32, fall: u32) -> (State, Vec<Transition>) {
        let mut ts = Vec::new();
        for &r in results {
            let (n, t) = s.apply(r, rise, fall);
            s = n;
            ts.extend(t);
        }
        (s, ts)
    }

    #[test]
    fn default_down_needs_rise_passes() {
        let s = State::initial(true);
        assert!(!s.up && !s.verdict);
        let (s1, t) = s.apply(true, 2, 3);
        assert!(!s1.up && t.is_none(), "one pass of two");
        let (s2, t) = s1.apply(true, 2, 3);
        assert!(s2.up && s2.verdict);
        assert_eq!(t, Some(Transition::Healthy { after: 2 }));
    }

    #[test]
    fn default_up_falls_after_fall_failures() {
        let (s, ts) = run(State::initial(false), &[false, false], 2, 3);
        assert!(s.up && ts.is_empty(), "two failures of three");
        let (s, t) = s.apply(false, 2, 3);
        assert!(!s.up);
        assert_eq!(t, Some(Transition::Unhealthy { after: 3 }));
        // further failures: no new transition
        let (s, t) = s.apply(false, 2, 3);
        assert!(t.is_none() && s.fall_count == 4);
    }

    #[test]
    fn first_verdict_confirming_default_down_is_reported() {
        let (s, ts) = run(State::initial(true), &[false, false], 2, 2);
        assert!(!s.up && s.verdict);
        assert_eq!(ts, vec![Transition::Unhealthy { after: 2 }]);
    }

    #[test]
    fn first_verdict_confirming_default_up_is_reported() {
        let (s, ts) = run(State::initial(false), &[true, true, true], 2, 2);
        assert!(s.up && s.verdict);
        assert_eq!(ts, vec![Transition::Healthy { after: 2 }]);
    }

    #[test]
    fn flapping_resets_the_other_count() {
        // pass, fail, pass, fail...: never two in a row, never a transition
        let (s, ts) = run(
            State::initial(false),
            &[true, false, true, false, true, false],
            2,
            2,
        );
        assert!(ts.is_empty());
        assert!(s.up && !s.verdict);
        assert_eq!((s.rise_count, s.fall_count), (0, 1));
    }

    #[test]
    fn recovery_cycle() {
        let (s, ts) = run(
            State::initial(true),
            &[true, true, false, false, false, true, true],
            2,
            3,
        );
        assert!(s.up);
        assert_eq!(
            ts,
            vec![
                Transition::Healthy { after: 2 },
                Transition::Unhealthy { after: 3 },
                Transition::Healthy { after: 2 }
            ]
        );
    }

    #[test]
    fn rise_and_fall_of_one() {
        let (s, ts) = run(State::initial(true), &[true, false, true], 1, 1);
        assert!(s.up);
        assert_eq!(ts.len(), 3);
    }

    #[test]
    fn pack_round_trip() {
        for s in [
            State::initial(true),
            State::initial(false),
            State {
                up: true,
                verdict: true,
                rise_count: 123_456,
                fall_count: 0,
            },
            State {
                up: false,
                verdict: true,
                rise_count: 0,
                fall_count: 0x7fff_ffff,
            },
        ] {
            assert_eq!(State::unpack(s.pack()), s);
        }
    }

    #[test]
    fn reason_codes_round_trip() {
        assert_eq!(Reason::from_code(0), None);
        for c in Cause::ALL {
            let r = Reason::Cause(c);
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        let verdicts = [Reason::BadStatus, Reason::BodyMismatch];
        for r in verdicts
            .into_iter()
            .chain(MysqlError::ALL.map(Reason::Mysql))
        {
            assert_eq!(Reason::from_code(r.code()), Some(r));
        }
        assert_eq!(Reason::from_code(Cause::COUNT as u8 + 7), None);
        assert_eq!(Reason::from_code(255), None);
        assert_eq!(
            Reason::Mysql(MysqlError::TooManyConnections).as_str(),
            "mysql_too_many_connections"
        );
        assert_eq!(Reason::BadStatus.as_str(), "bad_status");
        assert_eq!(
            Reason::Cause(Cause::ConnectRefused).as_str(),
            "connect_refused"
        );
    }

    #[test]
    fn shown_states() {
        let new_down = State::initial(true);
        let new_up = State::initial(false);
        let (healthy, _) = new_up.apply(true, 1, 1);
        let (sick, _) = new_up.apply(false, 1, 1);
        use PeerState::*;
        assert_eq!(peer_states(new_down, false, false), (Checking, Checking));
        assert_eq!(peer_states(new_up, false, false), (Checking, Up));
        assert_eq!(peer_states(healthy, false, false), (Up, Up));
        assert_eq!(peer_states(healthy, false, true), (Up, Unavailable));
        assert_eq!(peer_states(sick, false, false), (Unhealthy, Unhealthy));
        assert_eq!(peer_states(sick, true, false), (Unhealthy, Down));
    }

    #[test]
    fn messages() {
        assert_eq!(
            transition_message(
                b"backend",
                b"127.0.0.1:8081",
                Transition::Unhealthy { after: 2 },
                Some(Reason::Cause(Cause::ConnectRefused))
            ),
            "upstream backend peer 127.0.0.1:8081 is unhealthy: connect_refused after 2 checks"
        );
        assert_eq!(
            transition_message(b"b", b"p", Transition::Healthy { after: 3 }, None),
            "upstream b peer p is healthy after 3 checks"
        );
    }
}
