//! Prometheus metrics, text exposition format 0.0.4: every family has its HELP and TYPE lines,
//! then its samples; label values are escaped (backslash, double quote, newline).
//!
//! Families (labels in braces):
//! - `nginx_triage_info{version,nginx_version}` 1
//! - `nginx_triage_config_generation`, `nginx_triage_config_load_timestamp_seconds`
//! - `nginx_triage_peer_up{upstream,peer}` 1 if the peer is selectable, else 0
//! - `nginx_triage_peer_state{upstream,peer,state}` 1, one series per peer, its current state
//! - `nginx_triage_upstream_requests_total{upstream,peer}`
//! - `nginx_triage_peer_responses_total{upstream,peer,code_class}` (1xx … 5xx)
//! - `nginx_triage_upstream_failures_total{upstream,peer,cause}`: non-zero counters only;
//!   `peer=""` for failures before a peer was chosen (no_live_upstreams, host_not_found)
//! - `nginx_triage_peer_header_time_seconds{upstream,peer}`,
//!   `nginx_triage_peer_response_time_seconds{upstream,peer}`: mean over the last minute,
//!   peers with timed responses only
//! - `nginx_triage_zone_size_bytes{zone}`, `nginx_triage_zone_entries{zone}`,
//!   `nginx_triage_zone_reused_total{zone}`, `nginx_triage_zone_full{zone}`: the module's
//!   shared zones (`triage`, and `triage_check` with health checks)

use core::fmt::Write;

use super::Selection;
use crate::snapshot::{PeerSnap, PeerState, Snapshot, UpstreamSnap, ZoneSnap};

/// A label value with `\`, `"` and newline escaped, per the text format.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // HELP texts are constants without backslashes or newlines: nothing to escape.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A decimal number, without going through `core::fmt` (a sample line is written ~100,000
/// times for 10,000 peers).
fn push_u64(out: &mut String, v: u64) {
    out.push_str(super::decimal(v, &mut [0; 20]));
}

/// Milliseconds as seconds with three decimals.
fn push_seconds(out: &mut String, ms: u64) {
    push_u64(out, ms / 1000);
    out.push('.');
    let frac = ms % 1000;
    for d in [frac / 100, frac / 10 % 10, frac % 10] {
        out.push((b'0' + d as u8) as char);
    }
}

/// A sample value.
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Millis(u64),
}

/// `name{labels<extra…>} value` and a newline; `extra` are further `,label="value"` pieces.
fn sample(out: &mut String, name: &str, labels: &str, extra: &[&str], value: Value) {
    out.push_str(name);
    if !labels.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(labels);
        for e in extra {
            out.push_str(e);
        }
        out.push('}');
    }
    out.push(' ');
    match value {
        Value::Count(n) => push_u64(out, n),
        Value::Millis(ms) => push_seconds(out, ms),
    }
    out.push('\n');
}

/// A listed peer and its `upstream="…",peer="…"` labels, escaped once.
struct Row<'a> {
    peer: &'a PeerSnap,
    labels: String,
}

fn labels(upstream: &str, peer: &str) -> String {
    let mut l = String::with_capacity(upstream.len() + peer.len() + 20);
    l.push_str("upstream=\"");
    escape_into(&mut l, upstream);
    l.push_str("\",peer=\"");
    escape_into(&mut l, peer);
    l.push('"');
    l
}

const CLASSES: [&str; 5] = [
    ",code_class=\"1xx\"",
    ",code_class=\"2xx\"",
    ",code_class=\"3xx\"",
    ",code_class=\"4xx\"",
    ",code_class=\"5xx\"",
];

/// The zones' families: size, entries, reuses, and whether one was ever full.
fn zones(o: &mut String, s: &Snapshot) {
    use Value::Count;
    let labels: Vec<String> = s
        .zones
        .iter()
        .map(|z| {
            let mut l = String::from("zone=\"");
            escape_into(&mut l, z.name);
            l.push('"');
            l
        })
        .collect();
    /// Name, type, help, value.
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ZoneSnap) -> u64,
    );
    let families: [Family; 4] = [
        (
            "nginx_triage_zone_size_bytes",
            "gauge",
            "Size of the module's shared zone.",
            |z| z.size,
        ),
        (
            "nginx_triage_zone_entries",
            "gauge",
            "Entries in use: counters of upstreams and peers (triage), health records (triage_check).",
            |z| z.entries,
        ),
        (
            "nginx_triage_zone_reused_total",
            "counter",
            "Entries given to new peers because the zone was full (peers no configuration names any more, idle long enough).",
            |z| z.reused,
        ),
        (
            "nginx_triage_zone_full",
            "gauge",
            "1 once a new peer found no room since the zone was made (not counted, or not checked): raise its size.",
            |z| u64::from(z.full),
        ),
    ];
    for (name, kind, help, value) in families {
        family(o, name, kind, help);
        for (z, l) in s.zones.iter().zip(&labels) {
            sample(o, name, l, &[], Count(value(z)));
        }
    }
}

/// The metrics of the selected part of the snapshot.
pub fn prometheus(s: &Snapshot, sel: Selection) -> Vec<u8> {
    use Value::{Count, Millis};
    let ups: Vec<&UpstreamSnap> = sel.upstreams(s).collect();
    // rows in upstream order; `listed[i]`: how many belong to ups[i]
    let mut rows: Vec<Row> = Vec::new();
    let mut listed = Vec::with_capacity(ups.len());
    for u in &ups {
        let before = rows.len();
        // an address listed twice in the upstream: one series (see counted_peers)
        let mut seen = std::collections::HashSet::new();
        rows.extend(
            sel.peers(u)
                .filter(|p| seen.insert(p.name.as_str()))
                .map(|p| Row {
                    peer: p,
                    labels: labels(&u.name, &p.name),
                }),
        );
        listed.push(rows.len() - before);
    }
    // 9 samples per peer: its labels 9 times, plus about 400 bytes of names and values
    let label_bytes: usize = rows.iter().map(|r| r.labels.len()).sum();
    let mut out = String::with_capacity(4096 + label_bytes * 9 + rows.len() * 400);
    let o = &mut out;

    family(
        o,
        "nginx_triage_info",
        "gauge",
        "nginx-triage module and nginx versions.",
    );
    let mut info = String::from("version=\"");
    escape_into(&mut info, s.version);
    info.push_str("\",nginx_version=\"");
    escape_into(&mut info, &s.nginx_version);
    info.push('"');
    sample(o, "nginx_triage_info", &info, &[], Count(1));
    family(
        o,
        "nginx_triage_config_generation",
        "gauge",
        "Configuration loads seen by the triage zone (start = 1, +1 per reload).",
    );
    sample(
        o,
        "nginx_triage_config_generation",
        "",
        &[],
        Count(s.generation),
    );
    family(
        o,
        "nginx_triage_config_load_timestamp_seconds",
        "gauge",
        "Time of the last configuration load, seconds since the Unix epoch.",
    );
    let load = Millis(s.load_time_ms);
    sample(
        o,
        "nginx_triage_config_load_timestamp_seconds",
        "",
        &[],
        load,
    );
    zones(o, s);

    family(
        o,
        "nginx_triage_peer_up",
        "gauge",
        "1 if nginx may select the peer, 0 if it is down, unavailable (max_fails), unhealthy or checking.",
    );
    for r in &rows {
        let up = Count(u64::from(r.peer.state == PeerState::Up));
        sample(o, "nginx_triage_peer_up", &r.labels, &[], up);
    }
    family(
        o,
        "nginx_triage_peer_state",
        "gauge",
        "The state of the peer (up, down, unavailable, unhealthy, checking): 1 for the current one.",
    );
    for r in &rows {
        let state = [",state=\"", r.peer.state.as_str(), "\""];
        sample(o, "nginx_triage_peer_state", &r.labels, &state, Count(1));
    }
    family(
        o,
        "nginx_triage_upstream_requests_total",
        "counter",
        "Tries sent to the peer (each proxy_next_upstream try counts).",
    );
    for r in &rows {
        let n = Count(r.peer.requests);
        sample(o, "nginx_triage_upstream_requests_total", &r.labels, &[], n);
    }
    family(
        o,
        "nginx_triage_peer_responses_total",
        "counter",
        "Responses the peer sent, by status class.",
    );
    for r in &rows {
        for (class, n) in CLASSES.iter().zip(r.peer.responses.by_class) {
            sample(
                o,
                "nginx_triage_peer_responses_total",
                &r.labels,
                &[class],
                Count(n),
            );
        }
    }
    family(
        o,
        "nginx_triage_upstream_failures_total",
        "counter",
        "Upstream failures by cause (upstream_502: the backend's own 502). peer is empty before a peer was chosen.",
    );
    let mut next = 0;
    for (u, &n) in ups.iter().zip(&listed) {
        let own = labels(&u.name, "");
        for (c, n) in u.own.nonzero() {
            let cause = [",cause=\"", c.as_str(), "\""];
            sample(
                o,
                "nginx_triage_upstream_failures_total",
                &own,
                &cause,
                Count(n),
            );
        }
        for r in &rows[next..next + n] {
            for (c, n) in r.peer.failures.nonzero() {
                let cause = [",cause=\"", c.as_str(), "\""];
                sample(
                    o,
                    "nginx_triage_upstream_failures_total",
                    &r.labels,
                    &cause,
                    Count(n),
                );
            }
        }
        next += n;
    }
    family(
        o,
        "nginx_triage_peer_header_time_seconds",
        "gauge",
        "Mean time to the response header over the last minute.",
    );
    for r in &rows {
        if let Some(ms) = r.peer.window_1m.mean_header_ms() {
            sample(
                o,
                "nginx_triage_peer_header_time_seconds",
                &r.labels,
                &[],
                Millis(ms),
            );
        }
    }
    family(
        o,
        "nginx_triage_peer_response_time_seconds",
        "gauge",
        "Mean time to the whole response over the last minute.",
    );
    for r in &rows {
        if let Some(ms) = r.peer.window_1m.mean_response_ms() {
            sample(
                o,
                "nginx_triage_peer_response_time_seconds",
                &r.labels,
                &[],
                Millis(ms),
            );
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::StateFilter;
    use crate::render::fixture::{self, EVIL};

    fn text(sel: Selection) -> String {
        String::from_utf8(prometheus(&fixture::snapshot(), sel)).unwrap()
    }

    fn samples<'a>(t: &'a str, name: &str) -> Vec<&'a str> {
        t.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .collect()
    }

    #[test]
    fn families_have_help_and_type_before_samples() {
        let t = text(Selection::default());
        let mut declared = Vec::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge"].contains(&kind));
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
                declared.push(name.to_string());
            } else if let Some(rest) = l.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.iter().any(|d| d == name), "HELP first: {name}");
            } else {
                let name = l.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{l}");
                assert!(name.starts_with("nginx_triage_"));
            }
        }
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn values() {
        let t = text(Selection::default());
        let app = r#"upstream="app",peer="127.0.0.1:8081""#;
        for line in [
            "nginx_triage_info{version=\"0.1.0\",nginx_version=\"1.28.3\"} 1".to_string(),
            "nginx_triage_config_generation 2".into(),
            "nginx_triage_config_load_timestamp_seconds 1794999000.000".into(),
            format!("nginx_triage_peer_up{{{app}}} 1"),
            "nginx_triage_peer_up{upstream=\"app\",peer=\"127.0.0.1:8082\"} 0".into(),
            format!("nginx_triage_peer_state{{{app},state=\"up\"}} 1"),
            "nginx_triage_peer_state{upstream=\"app\",peer=\"127.0.0.1:8083\",state=\"down\"} 1"
                .into(),
            format!("nginx_triage_upstream_requests_total{{{app}}} 12"),
            format!("nginx_triage_peer_responses_total{{{app},code_class=\"2xx\"}} 7"),
            format!("nginx_triage_peer_responses_total{{{app},code_class=\"1xx\"}} 0"),
            format!("nginx_triage_upstream_failures_total{{{app},cause=\"connect_refused\"}} 3"),
            format!("nginx_triage_upstream_failures_total{{{app},cause=\"upstream_502\"}} 2"),
            "nginx_triage_upstream_failures_total{upstream=\"app\",peer=\"\",cause=\"no_live_upstreams\"} 1".into(),
            format!("nginx_triage_peer_header_time_seconds{{{app}}} 0.002"),
            format!("nginx_triage_peer_response_time_seconds{{{app}}} 0.010"),
            "nginx_triage_zone_size_bytes{zone=\"triage\"} 4194304".into(),
            "nginx_triage_zone_entries{zone=\"triage\"} 12".into(),
            "nginx_triage_zone_reused_total{zone=\"triage\"} 3".into(),
            "nginx_triage_zone_full{zone=\"triage\"} 0".into(),
            "nginx_triage_zone_entries{zone=\"triage_check\"} 2".into(),
            "nginx_triage_zone_full{zone=\"triage_check\"} 1".into(),
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line}\n{t}");
        }
        assert_eq!(samples(&t, "nginx_triage_peer_up").len(), 5);
        assert_eq!(samples(&t, "nginx_triage_peer_responses_total").len(), 25);
        assert_eq!(
            samples(&t, "nginx_triage_peer_header_time_seconds").len(),
            1
        );
        // zero failure counters are left out
        assert!(!t.contains("cause=\"read_timeout\""));
    }

    #[test]
    fn an_address_listed_twice_is_one_series() {
        let mut s = fixture::snapshot();
        let again = s.upstreams[0].peers[0].clone();
        s.upstreams[0].peers.push(again);
        let t = String::from_utf8(prometheus(&s, Selection::default())).unwrap();
        let mut lines: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        let n = lines.len();
        lines.sort_unstable();
        lines.dedup_by(|a, b| a.split(' ').next() == b.split(' ').next());
        assert_eq!(lines.len(), n, "a series twice");
        assert_eq!(t, text(Selection::default()));
    }

    #[test]
    fn escaping() {
        let t = text(Selection::default());
        let e = r#"evil\"<b>&'\\\n</script>"#;
        let want = format!("nginx_triage_peer_up{{upstream=\"{e}\",peer=\"{e}\"}} 0");
        assert!(t.lines().any(|l| l == want), "{t}");
        assert!(!t.contains(EVIL), "the raw name never appears");
    }

    #[test]
    fn selection() {
        let t = text(Selection {
            upstream: Some("app"),
            state: Some(StateFilter::Unhealthy),
        });
        let up = samples(&t, "nginx_triage_peer_up");
        assert_eq!(up.len(), 2, "{up:?}");
        assert!(up[0].contains("127.0.0.1:8082") && up[1].contains("127.0.0.1:8084"));
        assert!(!t.contains("evil"));
        // the upstream's own failures are listed with the upstream
        assert!(t.contains("peer=\"\",cause=\"no_live_upstreams\"} 1"));
        assert!(!t.contains("connect_refused"), "peer 8081 is not listed");
    }
}
