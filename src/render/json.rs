//! The JSON status document (`docs/status.schema.json` describes it), through serde_json.
//!
//! Upstreams are an object keyed by name, in snapshot order; maps are written in a fixed key
//! order. Times are RFC 3339 UTC strings, durations milliseconds, rates fractions (0..1).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{rfc3339, Selection};
use crate::snapshot::{
    Failures, Health, LastFailure, PeerSnap, RecentFailure, Responses, Snapshot, Totals,
    UpstreamSnap,
};

/// Non-zero counters by cause name.
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

struct FailuresJson<'a>(&'a Failures);

impl Serialize for FailuresJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("total", &self.0.total())?;
        m.serialize_entry("by_cause", &ByCause(self.0))?;
        m.end()
    }
}

struct ResponsesJson<'a>(&'a Responses);

impl Serialize for ResponsesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(6))?;
        for (class, n) in Responses::CLASSES.iter().zip(self.0.by_class) {
            m.serialize_entry(class, &n)?;
        }
        m.serialize_entry("total", &self.0.total())?;
        m.end()
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
    server: &'a str,
    backup: bool,
    weight: u64,
    max_fails: u64,
    fail_timeout: u64,
    max_conns: Option<u64>,
    state: &'static str,
    requests: u64,
    responses: ResponsesJson<'a>,
    failures: FailuresJson<'a>,
    last_failure: Option<LastFailureJson>,
    header_time: Option<u64>,
    response_time: Option<u64>,
    health: Option<HealthJson<'a>>,
    hint: Option<&'static str>,
}

impl<'a> From<&'a PeerSnap> for PeerJson<'a> {
    fn from(p: &'a PeerSnap) -> Self {
        PeerJson {
            name: &p.name,
            server: &p.server,
            backup: p.backup,
            weight: p.weight,
            max_fails: p.max_fails,
            fail_timeout: p.fail_timeout,
            max_conns: p.max_conns,
            state: p.state.as_str(),
            requests: p.requests,
            responses: ResponsesJson(&p.responses),
            failures: FailuresJson(&p.failures),
            last_failure: p.last_failure.as_ref().map(Into::into),
            header_time: p.window_1m.mean_header_ms(),
            response_time: p.window_1m.mean_response_ms(),
            health: p.health.as_ref().map(Into::into),
            hint: p.hint(),
        }
    }
}

#[derive(Serialize)]
struct TotalsJson {
    peers: u64,
    up: u64,
    down: u64,
    unhealthy: u64,
    requests: u64,
    failures: u64,
}

impl From<Totals> for TotalsJson {
    fn from(t: Totals) -> Self {
        TotalsJson {
            peers: t.peers,
            up: t.up,
            down: t.down,
            unhealthy: t.unhealthy,
            requests: t.requests,
            failures: t.failures,
        }
    }
}

/// The peers of an upstream that the selection lists.
struct Peers<'a>(&'a UpstreamSnap, Selection<'a>);

impl Serialize for Peers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.1.peers(self.0).map(PeerJson::from))
    }
}

struct UpstreamJson<'a>(&'a UpstreamSnap, Selection<'a>);

impl Serialize for UpstreamJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let u = self.0;
        let failures = u.failures();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("zone", &u.zone)?;
        m.serialize_entry("keepalive", &u.keepalive)?;
        m.serialize_entry("dynamic", &u.dynamic)?;
        m.serialize_entry("totals", &TotalsJson::from(u.totals()))?;
        m.serialize_entry("failure_rate_1m", &u.window_1m().failure_rate())?;
        m.serialize_entry("failure_rate_5m", &u.window_5m().failure_rate())?;
        m.serialize_entry("failures_by_cause", &ByCause(&failures))?;
        m.serialize_entry("failures", &FailuresJson(&failures))?;
        m.serialize_entry("peers", &Peers(u, self.1))?;
        m.end()
    }
}

struct Upstreams<'a>(&'a Snapshot, Selection<'a>);

impl Serialize for Upstreams<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for u in self.1.upstreams(self.0) {
            m.serialize_entry(&u.name, &UpstreamJson(u, self.1))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct RecentJson<'a> {
    time: String,
    upstream: &'a str,
    /// None before a peer was chosen (no_live_upstreams, host_not_found).
    peer: Option<&'a str>,
    cause: &'static str,
    errno: Option<i32>,
    phase: &'static str,
    status: u16,
    method: &'a str,
    path: &'a str,
    request_id: &'a str,
}

impl<'a> From<&'a RecentFailure> for RecentJson<'a> {
    fn from(f: &'a RecentFailure) -> Self {
        RecentJson {
            time: rfc3339(f.time_ms),
            upstream: &f.upstream,
            peer: (!f.peer.is_empty()).then_some(f.peer.as_str()),
            cause: f.cause.as_str(),
            errno: f.errno,
            phase: f.phase.as_str(),
            status: f.status,
            method: &f.method,
            path: &f.path,
            request_id: &f.request_id,
        }
    }
}

struct Recent<'a>(&'a Snapshot, Selection<'a>);

impl Serialize for Recent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.1.recent(self.0).map(RecentJson::from))
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'a str,
    nginx_version: &'a str,
    pid: u32,
    generation: u64,
    load_time: String,
    time: String,
    upstreams: Upstreams<'a>,
    recent_failures: Recent<'a>,
}

/// The status document.
pub fn json(s: &Snapshot, sel: Selection) -> Vec<u8> {
    let doc = StatusJson {
        version: s.version,
        nginx_version: &s.nginx_version,
        pid: s.pid,
        generation: s.generation,
        load_time: rfc3339(s.load_time_ms),
        time: rfc3339(s.time_ms),
        upstreams: Upstreams(s, sel),
        recent_failures: Recent(s, sel),
    };
    // about 400 bytes per peer
    let peers: usize = s.upstreams.iter().map(|u| u.peers.len()).sum();
    let mut out = Vec::with_capacity(1024 + peers * 400);
    // Serializing plain data into memory cannot fail.
    let _ = serde_json::to_writer(&mut out, &doc);
    out
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
}

/// An error document: `{"error": "..."}`, with the upstream asked for when it is unknown.
pub fn error(message: &str, upstream: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&ErrorJson {
        error: message,
        upstream,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::StateFilter;
    use crate::render::fixture::{self, EVIL};
    use serde_json::{json as j, Value};

    fn doc(sel: Selection) -> Value {
        serde_json::from_slice(&json(&fixture::snapshot(), sel)).unwrap()
    }

    #[test]
    fn top_level() {
        let v = doc(Selection::default());
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let mut want = [
            "version",
            "nginx_version",
            "pid",
            "generation",
            "load_time",
            "time",
            "upstreams",
            "recent_failures",
        ];
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["generation"], 2);
        assert_eq!(v["time"], "2026-11-18T11:06:41.000Z");
        assert_eq!(v["load_time"], "2026-11-18T10:50:00.000Z");
    }

    #[test]
    fn upstream() {
        let v = doc(Selection::default());
        let u = &v["upstreams"]["app"];
        assert_eq!(u["zone"], "app_zone");
        assert_eq!(u["keepalive"], 16);
        assert_eq!(u["dynamic"], false);
        assert_eq!(
            u["totals"],
            j!({"peers": 4, "up": 1, "down": 1, "unhealthy": 2, "requests": 12, "failures": 4})
        );
        // 1m: peer 2 of 8 + the upstream's own 1 of 0
        assert_eq!(u["failure_rate_1m"], 3.0 / 8.0);
        assert_eq!(u["failure_rate_5m"], 3.0 / 12.0);
        let by_cause = j!({"connect_refused": 3, "no_live_upstreams": 1, "upstream_502": 2});
        assert_eq!(u["failures_by_cause"], by_cause);
        assert_eq!(u["failures"], j!({"total": 4, "by_cause": by_cause}));
        let evil = &v["upstreams"][EVIL];
        assert_eq!(evil["zone"], Value::Null);
        assert_eq!(evil["keepalive"], Value::Null);
        assert_eq!(evil["dynamic"], true);
        assert_eq!(evil["failure_rate_1m"], Value::Null, "no requests: no rate");
        assert_eq!(evil["failures_by_cause"], j!({}));
        assert_eq!(evil["peers"][0]["name"], EVIL);
    }

    #[test]
    fn peer() {
        let v = doc(Selection::default());
        let p = &v["upstreams"]["app"]["peers"][0];
        assert_eq!(
            *p,
            j!({
                "name": "127.0.0.1:8081", "server": "localhost:8081", "backup": false,
                "weight": 3, "max_fails": 1, "fail_timeout": 10, "max_conns": 100,
                "state": "up", "requests": 12,
                "responses": {"1xx": 0, "2xx": 7, "3xx": 1, "4xx": 1, "5xx": 2, "total": 11},
                "failures": {"total": 3, "by_cause": {"connect_refused": 3, "upstream_502": 2}},
                "last_failure": {"cause": "connect_refused", "errno": 111, "phase": "connect",
                                 "time": "2026-11-18T11:06:40.123Z", "status": 502},
                "header_time": 2, "response_time": 10, "health": null,
                "hint": crate::cause::Cause::ConnectRefused.hint()
            })
        );
        let idle = &v["upstreams"]["app"]["peers"][1];
        assert_eq!(idle["state"], "unavailable");
        for k in [
            "max_conns",
            "last_failure",
            "header_time",
            "response_time",
            "health",
            "hint",
        ] {
            assert_eq!(idle[k], Value::Null, "{k}");
        }
        assert_eq!(idle["failures"], j!({"total": 0, "by_cause": {}}));
        let h = &v["upstreams"]["app"]["peers"][3];
        assert_eq!(h["backup"], true);
        assert_eq!(h["state"], "unhealthy");
        assert_eq!(h["health"]["type"], "http");
        assert_eq!(h["health"]["last_error"], "status 500");
        assert_eq!(h["health"]["downtime_ms"], 2500);
        assert_eq!(h["health"]["since"], "2026-11-18T11:06:37.500Z");
    }

    #[test]
    fn zones_stay_out_of_the_json() {
        // the issue's top-level keys are a contract; the zones are in the metrics only
        assert_eq!(doc(Selection::default()).get("zones"), None);
    }

    #[test]
    fn recent_failures() {
        let v = doc(Selection::default());
        let r = &v["recent_failures"];
        assert_eq!(r[0]["peer"], Value::Null, "no peer chosen");
        assert_eq!(r[0]["cause"], "no_live_upstreams");
        assert_eq!(r[0]["phase"], "select");
        assert_eq!(r[0]["errno"], Value::Null);
        assert_eq!(r[0]["request_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(r[1]["peer"], EVIL);
        assert_eq!(r[1]["path"], "/x\"<y>");
        assert_eq!(r[1]["errno"], 111);
        assert_eq!(r[1]["method"], "GET");
    }

    #[test]
    fn selection() {
        let v = doc(Selection {
            upstream: Some("app"),
            state: Some(StateFilter::Down),
        });
        let ups = v["upstreams"].as_object().unwrap();
        assert_eq!(ups.len(), 1);
        let peers = ups["app"]["peers"].as_array().unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0]["name"], "127.0.0.1:8083");
        // aggregates stay those of the whole upstream
        assert_eq!(ups["app"]["totals"]["peers"], 4);
        assert_eq!(ups["app"]["failures"]["total"], 4);
        assert_eq!(v["recent_failures"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn escaping() {
        let raw = json(&fixture::snapshot(), Selection::default());
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains(r#""evil\"<b>&'\\\n</script>""#), "{text}");
        assert!(!text.contains('\n'), "a raw newline in a name is escaped");
    }

    /// `docs/status.schema.json` names the same causes, phases and states as the code, and
    /// requires exactly the keys the renderer writes (t/status_json.t validates real documents
    /// against it with a real validator).
    #[test]
    fn schema_matches() {
        use crate::cause::{Cause, Phase};
        use crate::snapshot::PeerState;
        let schema: Value = serde_json::from_str(include_str!("../../docs/status.schema.json"))
            .expect("the schema is JSON");
        let defs = &schema["$defs"];
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let causes: Vec<_> = Cause::ALL.iter().map(|c| c.as_str().to_string()).collect();
        let phases: Vec<_> = Phase::ALL.iter().map(|c| c.as_str().to_string()).collect();
        let states: Vec<_> = PeerState::ALL
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        assert_eq!(names(&defs["cause"]["enum"]), causes);
        assert_eq!(names(&defs["phase"]["enum"]), phases);
        assert_eq!(names(&defs["state"]["enum"]), states);
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let required = |v: &Value| -> Vec<String> {
            let mut k = names(&v["required"]);
            k.sort();
            assert_eq!(v["additionalProperties"], false);
            k
        };
        let v = doc(Selection::default());
        let u = &v["upstreams"]["app"];
        assert_eq!(keys(&v), required(&schema));
        assert_eq!(keys(u), required(&defs["upstream"]));
        assert_eq!(keys(&u["totals"]), required(&defs["totals"]));
        assert_eq!(keys(&u["peers"][0]), required(&defs["peer"]));
        assert_eq!(
            keys(&u["peers"][0]["responses"]),
            required(&defs["responses"])
        );
        let lf = &u["peers"][0]["last_failure"];
        assert_eq!(keys(lf), required(&defs["last_failure"]));
        assert_eq!(keys(&u["peers"][3]["health"]), required(&defs["health"]));
        let rf = &v["recent_failures"][0];
        assert_eq!(keys(rf), required(&defs["recent_failure"]));
    }

    #[test]
    fn errors() {
        let v: Value = serde_json::from_slice(&error("unknown upstream", Some(EVIL))).unwrap();
        assert_eq!(v, j!({"error": "unknown upstream", "upstream": EVIL}));
        let v: Value = serde_json::from_slice(&error("bad", None)).unwrap();
        assert_eq!(v, j!({"error": "bad"}));
    }
}
