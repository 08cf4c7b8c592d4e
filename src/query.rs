//! What a status request asks for: the format (`?format=`, else the `Accept` header, else the
//! `triage_status` directive's), and the `?upstream=`, `?state=`, `?refresh=` arguments.
//!
//! Pure code (no FFI), covered by `cargo test`. Only these four arguments are read; everything
//! else in the request is ignored (and never reflected in a response).

use crate::snapshot::PeerState;

/// A status document format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Prometheus,
    Html,
}

impl Format {
    /// Tie order of the negotiation after the directive's own format.
    const ORDER: [Format; 3] = [Format::Json, Format::Html, Format::Prometheus];

    pub fn parse(s: &[u8]) -> Option<Format> {
        match s {
            b"json" => Some(Format::Json),
            b"prometheus" => Some(Format::Prometheus),
            b"html" => Some(Format::Html),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Prometheus => "prometheus",
            Format::Html => "html",
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The media types (lower case) an `Accept` header names this format by.
    fn media_types(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Format::Json => &[("application", "json")],
            Format::Prometheus => &[("text", "plain"), ("application", "openmetrics-text")],
            Format::Html => &[("text", "html")],
        }
    }
}

/// The format an `Accept` header value asks for, `default` being the directive's. The
/// format with the highest weight wins; ties go to `default`, then json, html, prometheus.
/// A header that accepts none of them (or none at all) gets `default`.
pub fn negotiate(accept: &str, default: Format) -> Format {
    let score = |f: Format| {
        f.media_types()
            .iter()
            .map(|&(kind, sub)| {
                crate::accept::quality(accept.as_bytes(), kind.as_bytes(), sub.as_bytes())
            })
            .max()
            .unwrap_or(0)
    };
    let mut best = (default, score(default));
    for f in Format::ORDER {
        let s = score(f);
        if s > best.1 {
            best = (f, s);
        }
    }
    if best.1 == 0 {
        default
    } else {
        best.0
    }
}

/// `?state=`: which peers are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// `up`: selectable peers.
    Up,
    /// `down`: configured `down`.
    Down,
    /// `unhealthy`: not selectable though not configured down: `unavailable` (max_fails
    /// tripped), `unhealthy` (failed active checks) and `checking` (no verdict yet) — the
    /// peers that `totals.unhealthy` counts.
    Unhealthy,
}

impl StateFilter {
    pub fn parse(s: &[u8]) -> Option<StateFilter> {
        match s {
            b"up" => Some(StateFilter::Up),
            b"down" => Some(StateFilter::Down),
            b"unhealthy" => Some(StateFilter::Unhealthy),
            _ => None,
        }
    }

    pub fn keeps(self, state: PeerState) -> bool {
        match self {
            StateFilter::Up => state == PeerState::Up,
            StateFilter::Down => state == PeerState::Down,
            StateFilter::Unhealthy => matches!(
                state,
                PeerState::Unavailable | PeerState::Unhealthy | PeerState::Checking
            ),
        }
    }
}

/// Default and bounds of `?refresh=` (seconds between two updates of the HTML page).
pub const DEFAULT_REFRESH: u32 = 5;
pub const MAX_REFRESH: u32 = 3600;

/// The arguments of a status request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub format: Option<Format>,
    pub upstream: Option<String>,
    pub state: Option<StateFilter>,
    /// Seconds; 0 turns the page's updates off.
    pub refresh: Option<u32>,
}

impl Query {
    pub fn refresh(&self) -> u32 {
        self.refresh.unwrap_or(DEFAULT_REFRESH)
    }
}

/// A bad argument: the message of a 400 response (it never repeats the value).
#[derive(Debug, PartialEq, Eq)]
pub struct BadArg(pub &'static str);

/// `%XX` and `+` decoding of a query string component; a `%` not followed by two hex digits
/// stays as it is.
pub fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let escaped = (b == b'%')
            .then(|| Some(hex(*s.get(i + 1)?)? * 16 + hex(*s.get(i + 2)?)?))
            .flatten();
        match (b, escaped) {
            (_, Some(v)) => {
                out.push(v as u8);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Parse the query string (`r->args`, without the `?`). Unknown arguments are ignored; an
/// argument given twice counts once (the first); an empty value is as if absent.
pub fn parse(args: &[u8]) -> Result<Query, BadArg> {
    let mut q = Query::default();
    let mut seen = [false; 4];
    for pair in args.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = percent_decode(k);
        let slot = match key.as_slice() {
            b"format" => 0,
            b"upstream" => 1,
            b"state" => 2,
            b"refresh" => 3,
            _ => continue,
        };
        let value = percent_decode(v);
        if seen[slot] || value.is_empty() {
            continue;
        }
        seen[slot] = true;
        match slot {
            0 => {
                q.format = Some(
                    Format::parse(&value)
                        .ok_or(BadArg("invalid format: expected json, prometheus or html"))?,
                )
            }
            1 => q.upstream = Some(String::from_utf8_lossy(&value).into_owned()),
            2 => {
                q.state = Some(
                    StateFilter::parse(&value)
                        .ok_or(BadArg("invalid state: expected up, down or unhealthy"))?,
                )
            }
            _ => {
                let n = core::str::from_utf8(&value)
                    .ok()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 4)
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&n| n <= MAX_REFRESH);
                q.refresh = Some(n.ok_or(BadArg(
                    "invalid refresh: expected seconds between updates, 0 to 3600",
                ))?);
            }
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Format::*;

    const BROWSER: &str =
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
    const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn accept_negotiation() {
        for d in [Json, Prometheus, Html] {
            assert_eq!(negotiate("", d), d, "no Accept: the directive's format");
            assert_eq!(negotiate("*/*", d), d, "curl: the directive's format");
            assert_eq!(
                negotiate("image/png", d),
                d,
                "nothing acceptable: the directive's"
            );
            assert_eq!(negotiate(BROWSER, d), Html);
            assert_eq!(negotiate(PROMETHEUS, d), Prometheus);
            assert_eq!(negotiate("text/plain", d), Prometheus);
            assert_eq!(negotiate("application/openmetrics-text", d), Prometheus);
            assert_eq!(negotiate("application/json", d), Json);
            assert_eq!(negotiate("TEXT/HTML", d), Html, "case-insensitive");
            assert_eq!(negotiate(" text/html ; q=1 ", d), Html, "spaces");
        }
        // q-values: the heaviest wins
        assert_eq!(
            negotiate("text/html;level=1;q=0.5, application/json;q=0.9", Html),
            Json
        );
        assert_eq!(
            negotiate("text/html;q=0.5, text/plain;q=0.501", Json),
            Prometheus
        );
        // the most specific range decides a type's weight, whatever the order
        assert_eq!(
            negotiate("text/*;q=0.3, text/html;q=0.7, */*;q=0.5", Json),
            Html
        );
        assert_eq!(
            negotiate("*/*;q=0.5, text/*;q=0.6", Json),
            Html,
            "ties: json, html"
        );
        // q=0 excludes, even when a wildcard would accept
        assert_eq!(negotiate("text/html;q=0, */*", Html), Json);
        assert_eq!(negotiate("text/html;q=0", Html), Html, "nothing acceptable");
        assert_eq!(negotiate("application/json;q=0, text/*;q=0.1", Json), Html);
        // ties go to the directive's format
        assert_eq!(negotiate("text/html, application/json", Html), Html);
        assert_eq!(negotiate("text/html, application/json", Json), Json);
        assert_eq!(negotiate("text/html, application/json", Prometheus), Json);
        // malformed ranges are left out, the rest counts
        assert_eq!(
            negotiate("text/html;q=abc, text/plain;q=0.2", Json),
            Prometheus
        );
        assert_eq!(
            negotiate("text/html;q=1.5, text/plain;q=0.2", Json),
            Prometheus
        );
        assert_eq!(negotiate("garbage, ,/, text/plain", Json), Prometheus);
        // "*" read as "*/*": json is heavier than the html the client named
        assert_eq!(negotiate("*;q=0.9, text/html;q=0.8", Html), Json);
        assert_eq!(negotiate("*, text/html;q=0.8", Html), Json);
        assert_eq!(negotiate("*, text/html;q=0.8", Prometheus), Prometheus);
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(b""), Ok(Query::default()));
        let q = parse(b"format=prometheus&upstream=app%20one&state=unhealthy&refresh=10").unwrap();
        assert_eq!(
            q,
            Query {
                format: Some(Prometheus),
                upstream: Some("app one".into()),
                state: Some(StateFilter::Unhealthy),
                refresh: Some(10),
            }
        );
        assert_eq!(parse(b"refresh=0").unwrap().refresh(), 0);
        assert_eq!(parse(b"").unwrap().refresh(), DEFAULT_REFRESH);
        // unknown arguments ignored, first of a repeated one wins, empty = absent
        let q = parse(b"x=<script>&format=html&format=json&upstream=&state").unwrap();
        assert_eq!(q.format, Some(Html));
        assert_eq!(q.upstream, None);
        assert_eq!(q.state, None);
        // encoded keys and values; names with quotes and angle brackets pass through decoded
        let q = parse(b"%75pstream=a%22%3Cb%3E+c%2B").unwrap();
        assert_eq!(q.upstream.as_deref(), Some("a\"<b> c+"));
        // bad values: a message that does not repeat them
        for bad in [
            &b"format=xml"[..],
            b"format=JSON",
            b"state=unavailable",
            b"refresh=-1",
            b"refresh=3601",
            b"refresh=1e3",
            b"refresh=99999999999999999999",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                !e.0.contains("xml") && !e.0.contains("unavailable"),
                "{}",
                e.0
            );
        }
        assert_eq!(parse(b"refresh=3600").unwrap().refresh, Some(3600));
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode(b"a%2Fb"), b"a/b");
        assert_eq!(percent_decode(b"%e2%82%ac"), "€".as_bytes());
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA");
        assert_eq!(percent_decode(b"a+b"), b"a b");
    }

    #[test]
    fn state_filter_matches_totals() {
        use PeerState as S;
        let f = StateFilter::Unhealthy;
        assert!(f.keeps(S::Unavailable) && f.keeps(S::Unhealthy) && f.keeps(S::Checking));
        assert!(!f.keeps(S::Up) && !f.keeps(S::Down));
        assert!(StateFilter::Up.keeps(S::Up) && !StateFilter::Up.keeps(S::Checking));
        assert!(StateFilter::Down.keeps(S::Down) && !StateFilter::Down.keeps(S::Unavailable));
        assert_eq!(StateFilter::parse(b"unavailable"), None);
    }
}
