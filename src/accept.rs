//! `Accept` negotiation: the quality a client gives a media type (the status formats of
//! `triage_status`, in `query`), and whether it prefers JSON to HTML (`triage_fallback auto`).
//!
//! Pure code (no FFI), covered by `cargo test`. RFC 9110 §12.5.1: each media type gets the
//! quality of the most specific range that matches it (`application/json` before
//! `application/*` before `*/*`); `q=0` means "not acceptable". JSON wins when its quality
//! is higher; on equal quality, the more specific match wins (`application/json, */*` is a
//! JSON client: axios, fetch wrappers), then the range listed first. Anything else, a
//! missing header included, gets HTML: browsers send `text/html` or nothing useful.

/// A media range's match against one media type: how specific it is (4 the exact type, 3 the
/// exact type with media type parameters, 2 `type/*`, 1 `*/*`), its quality in thousandths,
/// its position in the header. The types asked for have no parameters: a range such as
/// `text/html;level=1` is more specific than the type, and matches it only for want of the
/// plain `text/html` (clients send `application/json; charset=utf-8` for JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub specificity: u8,
    pub q: u16,
    pub position: usize,
}

/// The quality (thousandths) `accept` gives `kind/sub`: that of the most specific range
/// matching it, 0 if none does.
pub fn quality(accept: &[u8], kind: &[u8], sub: &[u8]) -> u16 {
    best_match(accept, kind, sub).map_or(0, |m| m.q)
}

/// The best (most specific, then first) range of `accept` matching `kind/sub`.
pub fn best_match(accept: &[u8], kind: &[u8], sub: &[u8]) -> Option<Match> {
    let mut best: Option<Match> = None;
    for (position, element) in elements(accept).enumerate() {
        let mut params = element.split(|&c| c == b';');
        let range = trim(params.next().unwrap_or_default());
        let (t, s) = if range == b"*" {
            (&b"*"[..], &b"*"[..]) // a bare "*", as some clients send
        } else {
            let Some(slash) = range.iter().position(|&c| c == b'/') else {
                continue;
            };
            (trim(&range[..slash]), trim(&range[slash + 1..]))
        };
        let mut specificity = if t == b"*" && s == b"*" {
            1
        } else if t.eq_ignore_ascii_case(kind) && s == b"*" {
            2
        } else if t.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) {
            4
        } else {
            continue;
        };
        let mut q = Some(1000);
        for p in params {
            let p = trim(p);
            if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                q = qvalue(trim(&p[2..]));
                break; // what follows q= are accept-extensions, not media type parameters
            }
            if !p.is_empty() && specificity == 4 {
                specificity = 3; // the exact type, with parameters
            }
        }
        let Some(q) = q else { continue }; // a malformed q: ignore the range
        let m = Match {
            specificity,
            q,
            position,
        };
        if best.is_none_or(|b| m.specificity > b.specificity) {
            best = Some(m);
        }
    }
    best
}

/// The elements of an `Accept` value: split at the commas outside quoted strings (a
/// parameter's value may be quoted, commas and escaped quotes included).
fn elements(accept: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    let mut ends = Vec::new();
    for (i, &c) in accept.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match c {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if c == b'"' {
            quoted = true;
        } else if c == b',' {
            ends.push((start, i));
            start = i + 1;
        }
    }
    ends.push((start, accept.len()));
    ends.into_iter().map(move |(a, b)| &accept[a..b])
}

/// RFC 9110 qvalue: `0[.ddd]` or `1[.000]`, in thousandths.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&c| c == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Whether a client sending this `Accept` value (several headers joined by `,`) prefers
/// `application/json` to `text/html`.
pub fn prefers_json(accept: &[u8]) -> bool {
    let Some(json) = best_match(accept, b"application", b"json").filter(|m| m.q > 0) else {
        return false;
    };
    let Some(html) = best_match(accept, b"text", b"html").filter(|m| m.q > 0) else {
        return true;
    };
    (json.q, json.specificity, usize::MAX - json.position)
        > (html.q, html.specificity, usize::MAX - html.position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(a: &str) -> bool {
        prefers_json(a.as_bytes())
    }

    #[test]
    fn no_header_or_anything_goes_is_html() {
        assert!(!json(""));
        assert!(!json("*/*"));
        assert!(!json("  "));
        assert!(!json("garbage"));
    }

    #[test]
    fn plain_preferences() {
        assert!(json("application/json"));
        assert!(json("APPLICATION/JSON"));
        assert!(!json("text/html"));
        assert!(!json("text/plain"));
        assert!(json("application/*"));
    }

    #[test]
    fn browsers_get_html() {
        // Firefox, Chrome, curl
        assert!(!json(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!json("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"));
    }

    #[test]
    fn api_clients_get_json() {
        // axios' default, jQuery's for dataType json
        assert!(json("application/json, text/plain, */*"));
        assert!(json("application/json, text/javascript, */*; q=0.01"));
    }

    #[test]
    fn q_values_are_honoured() {
        assert!(json("text/html;q=0.5, application/json"));
        assert!(!json("text/html, application/json;q=0.9"));
        assert!(json("text/html;q=0.4,application/json;q=0.5"));
        assert!(!json("application/json;q=0"));
        assert!(!json("application/json;q=0, */*"));
        assert!(json("text/html;q=0, */*"));
        assert!(json("application/json; q=1.000"));
        assert!(!json("application/json;Q=0.000, text/html"));
    }

    #[test]
    fn the_most_specific_range_decides() {
        // */* would allow JSON, the exact range refuses it
        assert!(!json("*/*, application/json;q=0"));
        // application/* at 0.9 is overridden by the exact range at 0.1
        assert!(!json(
            "application/*;q=0.9, application/json;q=0.1, text/html;q=0.5"
        ));
        // both through */*: a tie, HTML
        assert!(!json("*/*;q=0.5"));
        // equal quality: exact JSON beats text/* for HTML
        assert!(json("text/*, application/json"));
    }

    #[test]
    fn ties_go_to_the_range_listed_first() {
        assert!(json("application/json, text/html"));
        assert!(!json("text/html, application/json"));
    }

    #[test]
    fn malformed_q_ignores_the_range() {
        assert!(!json("application/json;q=2"));
        assert!(!json("application/json;q=abc"));
        assert!(!json("application/json;q=0.0001"));
        assert!(!json("application/json;q=1.5"));
        assert!(json("application/json;q=x, application/json;q=0.3"));
    }

    #[test]
    fn parameters_and_extensions() {
        assert!(json("application/json;charset=utf-8"));
        // a range with parameters yields to the plain type (RFC 9110's text/html;level=1)
        assert!(!json(
            "application/json;q=0.5, text/html;level=1;q=0.1, text/html"
        ));
        assert!(json(
            "text/html;level=1, application/json;q=0.5, text/html;q=0.1"
        ));
        // a comma inside a quoted parameter does not end the range
        assert!(json(r#"text/html;foo="a,b";q=0.1, application/json;q=0.5"#));
        assert!(json(
            r#"text/html;foo="a\",b";q=0.1, application/json;q=0.5"#
        ));
        assert!(json("application/json;q=0.8;level=1, text/html;q=0.7"));
        assert!(json(" application/json ; q=0.9 , text/html ; q=0.8 "));
    }

    #[test]
    fn qvalues() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"0.123"), Some(123));
        assert_eq!(qvalue(b"1"), Some(1000));
        assert_eq!(qvalue(b"1."), Some(1000));
        assert_eq!(qvalue(b"1.0"), Some(1000));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b""), None);
        assert_eq!(qvalue(b".5"), None);
        assert_eq!(qvalue(b"0.1234"), None);
        assert_eq!(qvalue(b"0.001"), Some(1));
        assert_eq!(qvalue(b"0."), Some(0));
        assert_eq!(qvalue(b"2"), None);
        assert_eq!(qvalue(b"-0"), None);
    }
}
