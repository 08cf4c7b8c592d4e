//! Pure renderers: a [`Snapshot`] and the request's [`Selection`] → the bytes of the status
//! document, in one of three formats: [`json`] (serde_json), [`prometheus`] (text exposition
//! format 0.0.4), [`html`] (a self-contained page that renders the JSON itself). No FFI.

pub mod html;
pub mod json;
pub mod prometheus;

use crate::query::StateFilter;
use crate::snapshot::{PeerSnap, RecentFailure, Snapshot, UpstreamSnap};

/// `n` in decimal, as `to_string` and serde_json write it, without going through `core::fmt`
/// (hot in the Prometheus renderer and the fallback pages), in `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

/// Which part of the snapshot a request shows (`?upstream=`, `?state=`).
///
/// The state filter selects the peers that are listed; an upstream's aggregates (`totals`,
/// rates, `failures`) stay those of all its peers. `recent_failures` follow the upstream
/// filter only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Selection<'a> {
    pub upstream: Option<&'a str>,
    pub state: Option<StateFilter>,
}

impl<'a> Selection<'a> {
    pub fn upstreams<'s>(&self, s: &'s Snapshot) -> impl Iterator<Item = &'s UpstreamSnap> + 'a
    where
        's: 'a,
    {
        let only = self.upstream;
        s.upstreams
            .iter()
            .filter(move |u| only.is_none_or(|n| u.name == n))
    }

    pub fn peers<'s>(&self, u: &'s UpstreamSnap) -> impl Iterator<Item = &'s PeerSnap> {
        let state = self.state;
        u.peers
            .iter()
            .filter(move |p| state.is_none_or(|f| f.keeps(p.state)))
    }

    pub fn recent<'s>(&self, s: &'s Snapshot) -> impl Iterator<Item = &'s RecentFailure> + 'a
    where
        's: 'a,
    {
        let only = self.upstream;
        s.recent_failures
            .iter()
            .filter(move |f| only.is_none_or(|n| f.upstream == n))
    }
}

/// Whether the snapshot has an upstream of that name (`?upstream=` of an unknown one is 404).
pub fn has_upstream(s: &Snapshot, name: &str) -> bool {
    s.upstreams.iter().any(|u| u.name == name)
}

/// RFC 3339 UTC time with milliseconds, from milliseconds since the Unix epoch.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 502, 1_000_000, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string());
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn selection() {
        let s = fixture::snapshot();
        let all = Selection::default();
        assert_eq!(all.upstreams(&s).count(), 2);
        assert_eq!(all.recent(&s).count(), 2);
        let one = Selection {
            upstream: Some("app"),
            state: Some(StateFilter::Unhealthy),
        };
        let ups: Vec<_> = one.upstreams(&s).collect();
        assert_eq!(ups.len(), 1);
        let peers: Vec<_> = one.peers(ups[0]).map(|p| p.name.as_str()).collect();
        assert_eq!(peers, ["127.0.0.1:8082", "127.0.0.1:8084"]);
        assert_eq!(one.recent(&s).count(), 1);
        assert!(has_upstream(&s, fixture::EVIL));
        assert!(!has_upstream(&s, "ap"));
    }
}

/// A snapshot with every kind of value, for the renderers' tests.
#[cfg(test)]
pub mod fixture {
    use crate::cause::{Cause, Detail, Phase};
    use crate::snapshot::*;

    /// An upstream name that breaks every format that does not escape.
    pub const EVIL: &str = "evil\"<b>&'\\\n</script>";

    pub fn peer(name: &str, state: PeerState) -> PeerSnap {
        PeerSnap {
            max_fails: 1,
            fail_timeout: 10,
            state,
            ..PeerSnap::new(name.into(), name.into())
        }
    }

    pub fn snapshot() -> Snapshot {
        let mut busy = peer("127.0.0.1:8081", PeerState::Up);
        busy.server = "localhost:8081".into();
        busy.weight = 3;
        busy.max_conns = Some(100);
        busy.requests = 12;
        busy.responses.by_class = [0, 7, 1, 1, 2];
        busy.failures.by_cause[Cause::ConnectRefused.index()] = 3;
        busy.failures.by_cause[Cause::Upstream502.index()] = 2;
        busy.last_failure = Some(LastFailure {
            cause: Cause::ConnectRefused,
            phase: Phase::Connect,
            errno: Some(111),
            time_ms: 1_795_000_000_123,
            status: 502,
            detail: Detail::None,
        });
        busy.window_1m = Window {
            requests: 8,
            failures: 2,
            timed: 4,
            header_ms: 10,
            response_ms: 41,
        };
        busy.window_5m = Window {
            requests: 12,
            failures: 3,
            ..Window::default()
        };
        busy.top_cause_5m = Some(Cause::ConnectRefused);
        let mut checked = peer("127.0.0.1:8084", PeerState::Unhealthy);
        checked.backup = true;
        checked.health = Some(Health {
            kind: "http".into(),
            state: PeerState::Unhealthy,
            checks: 10,
            fails: 4,
            unhealthy: 1,
            rise_count: 0,
            fall_count: 3,
            last_check_ms: Some(1_795_000_000_000),
            last_passed: Some(false),
            last_status: Some(500),
            last_error: Some("status 500".into()),
            downtime_ms: 2500,
            since_ms: Some(1_794_999_997_500),
        });
        let mut own = Failures::default();
        own.by_cause[Cause::NoLiveUpstreams.index()] = 1;
        let recent = |upstream: &str, peer: &str, cause| RecentFailure {
            time_ms: 1_795_000_000_123,
            upstream: upstream.into(),
            peer: peer.into(),
            cause,
            errno: None,
            phase: Phase::Select,
            status: 502,
            method: "GET".into(),
            path: "/a".into(),
            request_id: "0123456789abcdef0123456789abcdef".into(),
        };
        Snapshot {
            zones: vec![
                ZoneSnap {
                    name: "triage",
                    size: 4 << 20,
                    entries: 12,
                    reused: 3,
                    full: false,
                },
                ZoneSnap {
                    name: "triage_check",
                    size: 1 << 20,
                    entries: 2,
                    reused: 0,
                    full: true,
                },
            ],
            version: "0.1.0",
            nginx_version: "1.28.3".into(),
            pid: 4242,
            generation: 2,
            load_time_ms: 1_794_999_000_000,
            time_ms: 1_795_000_001_000,
            upstreams: vec![
                UpstreamSnap {
                    name: "app".into(),
                    dynamic: false,
                    zone: Some("app_zone".into()),
                    keepalive: Some(16),
                    peers: vec![
                        busy,
                        peer("127.0.0.1:8082", PeerState::Unavailable),
                        peer("127.0.0.1:8083", PeerState::Down),
                        checked,
                    ],
                    own,
                    own_window_1m: Window {
                        failures: 1,
                        ..Window::default()
                    },
                    own_window_5m: Window::default(),
                },
                UpstreamSnap {
                    name: EVIL.into(),
                    dynamic: true,
                    zone: None,
                    keepalive: None,
                    peers: vec![peer(EVIL, PeerState::Checking)],
                    own: Failures::default(),
                    own_window_1m: Window::default(),
                    own_window_5m: Window::default(),
                },
            ],
            recent_failures: vec![
                recent("app", "", Cause::NoLiveUpstreams),
                RecentFailure {
                    errno: Some(111),
                    phase: Phase::Connect,
                    path: "/x\"<y>".into(),
                    ..recent(EVIL, EVIL, Cause::ConnectRefused)
                },
            ],
        }
    }
}
