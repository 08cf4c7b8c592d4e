//! What the status shows: a consistent, FFI-free copy of the shared counters, taken by the
//! status handler and turned into bytes by `render`.

use crate::cause::{Cause, Phase};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastFailure {
    pub cause: Cause,
    pub phase: Phase,
    pub errno: Option<i32>,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub status: u16,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSnap {
    pub name: String,
    pub failures: Failures,
    pub last_failure: Option<LastFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSnap {
    pub name: String,
    /// Resolved at run time (`proxy_pass` with variables), not in the configuration.
    pub dynamic: bool,
    pub peers: Vec<PeerSnap>,
    /// Failures counted at upstream level, before a peer was chosen (no_live_upstreams,
    /// host_not_found).
    pub own: Failures,
}

impl UpstreamSnap {
    /// Peers' and the upstream's own failures together.
    pub fn failures(&self) -> Failures {
        let mut f = self.own.clone();
        for p in &self.peers {
            f.add(&p.failures);
        }
        f
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: &'static str,
    pub nginx_version: String,
    pub upstreams: Vec<UpstreamSnap>,
}
