//! nginx time values as written in the configuration (`5s`, `500ms`, `1m30s`, `60`), in
//! milliseconds — the same reading as nginx's `ngx_parse_time`.

/// Milliseconds of a time value. `is_sec` is how nginx reads it: `false` for `*_timeout`
/// directives (msec slots) and `true` for `fail_timeout=` (seconds); either way a bare number
/// means seconds. `None` if the value is not a valid nginx time.
pub fn parse_ms(s: &str, is_sec: bool) -> Option<u64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut valid = false;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u64 = s[start..i].parse().ok()?;
        let scale: u64 = match b.get(i) {
            None | Some(b' ') => 1000,
            Some(b'm') if b.get(i + 1) == Some(&b's') => {
                if is_sec {
                    return None;
                }
                i += 1;
                1
            }
            Some(b's') => 1000,
            Some(b'm') => 60_000,
            Some(b'h') => 3_600_000,
            Some(b'd') => 86_400_000,
            Some(b'w') => 7 * 86_400_000,
            Some(b'M') => 30 * 86_400_000,
            Some(b'y') => 365 * 86_400_000,
            Some(_) => return None,
        };
        if i < b.len() && b[i] != b' ' {
            i += 1;
        }
        total = total.checked_add(n.checked_mul(scale)?)?;
        valid = true;
    }
    valid.then_some(total)
}

/// A millisecond count the way an operator would write it: `3s`, `500ms`, `2m`.
pub fn show_ms(ms: u64) -> String {
    if ms % 60_000 == 0 && ms != 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_ms("5s", false), Some(5000));
        assert_eq!(parse_ms("500ms", false), Some(500));
        assert_eq!(parse_ms("2m", false), Some(120_000));
        assert_eq!(parse_ms("1h", false), Some(3_600_000));
        assert_eq!(parse_ms("1d", false), Some(86_400_000));
        assert_eq!(parse_ms("1m30s", false), Some(90_000));
        assert_eq!(parse_ms("1m 30s", false), Some(90_000));
        assert_eq!(parse_ms("1s500ms", false), Some(1500));
    }

    #[test]
    fn bare_number_is_seconds() {
        assert_eq!(parse_ms("60", false), Some(60_000));
        assert_eq!(parse_ms("10", true), Some(10_000));
        assert_eq!(parse_ms("0", false), Some(0));
    }

    #[test]
    fn invalid() {
        assert_eq!(parse_ms("", false), None);
        assert_eq!(parse_ms("abc", false), None);
        assert_eq!(parse_ms("5x", false), None);
        assert_eq!(parse_ms("500ms", true), None);
        assert_eq!(parse_ms("99999999999999999999", false), None);
    }

    #[test]
    fn shown_like_an_operator_writes_it() {
        assert_eq!(show_ms(3000), "3s");
        assert_eq!(show_ms(500), "500ms");
        assert_eq!(show_ms(120_000), "2m");
        assert_eq!(show_ms(90_000), "90s");
        assert_eq!(show_ms(0), "0s");
    }
}
