//! Pure renderers: snapshot → bytes. No FFI; JSON through serde_json.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::snapshot::{Failures, Health, LastFailure, PeerSnap, Snapshot, UpstreamSnap};

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

struct ByCause<'a>(&'a Failures);

impl Serialize for ByCause<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (c, n) in self.0.nonzero() {
            m.serialize_entry(c.as_str(), &n)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct FailuresJson<'a> {
    total: u64,
    by_cause: ByCause<'a>,
}

impl<'a> From<&'a Failures> for FailuresJson<'a> {
    fn from(f: &'a Failures) -> Self {
        FailuresJson {
            total: f.total(),
            by_cause: ByCause(f),
        }
    }
}

#[derive(Serialize)]
struct LastFailureJson {
    cause: &'static str,
    errno: Option<i32>,
    phase: &'static str,
    time: String,
    status: u16,
}

impl From<&LastFailure> for LastFailureJson {
    fn from(l: &LastFailure) -> Self {
        LastFailureJson {
            cause: l.cause.as_str(),
            errno: l.errno,
            phase: l.phase.as_str(),
            time: rfc3339(l.time_ms),
            status: l.status,
        }
    }
}

/// Active health-check state of a peer (`health`).
#[derive(Serialize)]
struct HealthJson<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    state: &'static str,
    checks: u64,
    fails: u64,
    unhealthy: u64,
    rise_count: u32,
    fall_count: u32,
    last_check: Option<String>,
    last_passed: Option<bool>,
    last_status: Option<u16>,
    last_error: Option<&'a str>,
    downtime_ms: u64,
    since: Option<String>,
}

impl<'a> From<&'a Health> for HealthJson<'a> {
    fn from(h: &'a Health) -> Self {
        HealthJson {
            kind: &h.kind,
            state: h.state.as_str(),
            checks: h.checks,
            fails: h.fails,
            unhealthy: h.unhealthy,
            rise_count: h.rise_count,
            fall_count: h.fall_count,
            last_check: h.last_check_ms.map(rfc3339),
            last_passed: h.last_passed,
            last_status: h.last_status,
            last_error: h.last_error.as_deref(),
            downtime_ms: h.downtime_ms,
            since: h.since_ms.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
struct PeerJson<'a> {
    name: &'a str,
    state: &'static str,
    failures: FailuresJson<'a>,
    last_failure: Option<LastFailureJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthJson<'a>>,
}

impl<'a> From<&'a PeerSnap> for PeerJson<'a> {
    fn from(p: &'a PeerSnap) -> Self {
        PeerJson {
            name: &p.name,
            state: p.state.as_str(),
            failures: (&p.failures).into(),
            last_failure: p.last_failure.as_ref().map(Into::into),
            health: p.health.as_ref().map(Into::into),
        }
    }
}

struct UpstreamJson<'a>(&'a UpstreamSnap, Failures);

impl Serialize for UpstreamJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let u = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("dynamic", &u.dynamic)?;
        let peers: Vec<PeerJson> = u.peers.iter().map(Into::into).collect();
        m.serialize_entry("peers", &peers)?;
        m.serialize_entry("failures", &FailuresJson::from(&self.1))?;
        m.end()
    }
}

struct Upstreams<'a>(&'a [UpstreamSnap]);

impl Serialize for Upstreams<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for u in self.0 {
            m.serialize_entry(&u.name, &UpstreamJson(u, u.failures()))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'a str,
    nginx_version: &'a str,
    upstreams: Upstreams<'a>,
}

/// The status document (JSON).
pub fn json(s: &Snapshot) -> String {
    let doc = StatusJson {
        version: s.version,
        nginx_version: &s.nginx_version,
        upstreams: Upstreams(&s.upstreams),
    };
    // Serializing plain data into a String cannot fail.
    serde_json::to_string(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::{Cause, Phase};

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    fn snap() -> Snapshot {
        let mut f = Failures::default();
        f.by_cause[Cause::ConnectRefused.index()] = 3;
        f.by_cause[Cause::Upstream502.index()] = 2;
        let mut own = Failures::default();
        own.by_cause[Cause::NoLiveUpstreams.index()] = 1;
        Snapshot {
            version: "0.1.0",
            nginx_version: "1.28.3".into(),
            pid: 1,
            generation: 1,
            load_time_ms: 0,
            time_ms: 0,
            recent_failures: Vec::new(),
            upstreams: vec![UpstreamSnap {
                name: "back\"end</script>".into(),
                dynamic: false,
                zone: None,
                keepalive: None,
                own,
                own_window_1m: Default::default(),
                own_window_5m: Default::default(),
                peers: vec![PeerSnap {
                    name: "127.0.0.1:8081".into(),
                    server: "127.0.0.1:8081".into(),
                    backup: false,
                    weight: 1,
                    max_fails: 1,
                    fail_timeout: 10,
                    max_conns: None,
                    state: crate::snapshot::PeerState::Up,
                    requests: 0,
                    responses: Default::default(),
                    window_1m: Default::default(),
                    window_5m: Default::default(),
                    health: None,
                    top_cause_5m: None,
                    failures: f,
                    last_failure: Some(LastFailure {
                        cause: Cause::ConnectRefused,
                        phase: Phase::Connect,
                        errno: Some(111),
                        time_ms: 0,
                        status: 502,
                    }),
                }],
            }],
        }
    }

    #[test]
    fn status_json() {
        let v: serde_json::Value = serde_json::from_str(&json(&snap())).unwrap();
        let u = &v["upstreams"]["back\"end</script>"];
        let p = &u["peers"][0];
        assert_eq!(v["nginx_version"], "1.28.3");
        assert_eq!(p["name"], "127.0.0.1:8081");
        // The backend's own 502s are counted apart from nginx's failures.
        assert_eq!(p["failures"]["total"], 3);
        assert_eq!(p["failures"]["by_cause"]["connect_refused"], 3);
        assert_eq!(p["failures"]["by_cause"]["upstream_502"], 2);
        assert!(p["failures"]["by_cause"].get("read_timeout").is_none());
        assert_eq!(p["last_failure"]["errno"], 111);
        assert_eq!(p["last_failure"]["phase"], "connect");
        assert_eq!(p["last_failure"]["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(u["failures"]["total"], 4);
        assert_eq!(u["failures"]["by_cause"]["no_live_upstreams"], 1);
    }

    #[test]
    fn health_object() {
        let mut s = snap();
        s.upstreams[0].peers[0].state = crate::snapshot::PeerState::Unhealthy;
        s.upstreams[0].peers[0].health = Some(Health {
            kind: "http".into(),
            state: crate::snapshot::PeerState::Unhealthy,
            checks: 7,
            fails: 3,
            unhealthy: 1,
            rise_count: 0,
            fall_count: 3,
            last_check_ms: Some(1000),
            last_passed: Some(false),
            last_status: None,
            last_error: Some("connect_refused".into()),
            downtime_ms: 450,
            since_ms: Some(0),
        });
        let v: serde_json::Value = serde_json::from_str(&json(&s)).unwrap();
        let p = &v["upstreams"]["back\"end</script>"]["peers"][0];
        assert_eq!(p["state"], "unhealthy");
        let h = &p["health"];
        assert_eq!(h["type"], "http");
        assert_eq!(h["state"], "unhealthy");
        assert_eq!(
            (h["checks"].as_u64(), h["fails"].as_u64()),
            (Some(7), Some(3))
        );
        assert_eq!(h["unhealthy"], 1);
        assert_eq!(
            (h["rise_count"].as_u64(), h["fall_count"].as_u64()),
            (Some(0), Some(3))
        );
        assert_eq!(h["last_check"], "1970-01-01T00:00:01.000Z");
        assert_eq!(h["last_passed"], false);
        assert!(h["last_status"].is_null());
        assert_eq!(h["last_error"], "connect_refused");
        assert_eq!(h["downtime_ms"], 450);
        assert_eq!(h["since"], "1970-01-01T00:00:00.000Z");
        // unchecked peers have no health object
        let v: serde_json::Value = serde_json::from_str(&json(&snap())).unwrap();
        assert!(v["upstreams"]["back\"end</script>"]["peers"][0]
            .get("health")
            .is_none());
    }

    #[test]
    fn no_failure_is_null() {
        let mut s = snap();
        s.upstreams[0].peers[0].last_failure = None;
        let v: serde_json::Value = serde_json::from_str(&json(&s)).unwrap();
        assert!(v["upstreams"]["back\"end</script>"]["peers"][0]["last_failure"].is_null());
    }
}
