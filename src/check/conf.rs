//! Active health-check configuration, parsed from the directives of
//! nginx_upstream_check_module (UCM) and our extensions. Pure: the directive setters in
//! `check::directives` hand the arguments over as bytes and report the errors returned here
//! with nginx's file and line.

use core::fmt;

/// `type=` of the `check` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TCP connect.
    Tcp,
    /// An HTTP request, its response judged by status (and body).
    Http,
    /// The same over TLS (nginx's OpenSSL), with SNI and optional verification.
    Https,
    /// A TLS handshake only.
    SslHello,
    /// A FastCGI request (`check_fastcgi_param`), its answer judged by the status in its
    /// CGI headers (and body): php-fpm's `ping.path`, for instance.
    FastCgi,
    /// A MySQL server's first packet: its handshake passes, an error packet fails.
    Mysql,
    /// AJP's CPing, answered by a CPong (Tomcat's AJP connector).
    Ajp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::SslHello => "ssl_hello",
            Kind::FastCgi => "fastcgi",
            Kind::Mysql => "mysql",
            Kind::Ajp => "ajp",
        }
    }

    /// The kinds that send an HTTP request.
    pub fn is_http(self) -> bool {
        matches!(self, Kind::Http | Kind::Https)
    }

    /// The kinds whose answer is judged by status and body (`check_http_expect_*`).
    pub fn has_status(self) -> bool {
        self.is_http() || self == Kind::FastCgi
    }

    /// The kinds that speak TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Kind::Https | Kind::SslHello)
    }
}

/// Everything the `check` directive sets, with UCM's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub kind: Kind,
    pub interval_ms: u64,
    pub rise: u32,
    pub fall: u32,
    pub timeout_ms: u64,
    /// Peers start unhealthy until `rise` checks pass.
    pub default_down: bool,
    /// Port to check instead of the peer's (0: the peer's).
    pub port: u16,
    /// Up to this many ms added at random to each interval.
    pub jitter_ms: u64,
    /// When every peer (backups included) is unhealthy, send traffic to all of them.
    pub fail_open: bool,
}

impl Default for Check {
    fn default() -> Self {
        Check {
            kind: Kind::Tcp,
            interval_ms: 30_000,
            rise: 2,
            fall: 5,
            timeout_ms: 1000,
            default_down: true,
            port: 0,
            jitter_ms: 0,
            fail_open: false,
        }
    }
}

/// A configuration error, worded for `nginx -t` (the caller adds "in FILE:LINE").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfError(pub String);

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn invalid(arg: &[u8], why: &str) -> ConfError {
    ConfError(format!("invalid parameter \"{}\": {why}", lossy(arg)))
}

/// A time in milliseconds: a bare number is milliseconds (UCM), or a number with one of
/// nginx's units `ms`, `s`, `m`, `h` (`3s`, `500ms`, `1m`).
pub fn parse_ms(v: &[u8]) -> Option<u64> {
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 12 {
        return None;
    }
    let n: u64 = core::str::from_utf8(&v[..digits]).ok()?.parse().ok()?;
    let scale = match &v[digits..] {
        b"" | b"ms" => 1,
        b"s" => 1000,
        b"m" => 60_000,
        b"h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn parse_count(v: &[u8]) -> Option<u32> {
    if v.is_empty() || v.len() > 9 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(v).ok()?.parse().ok()
}

/// Longest interval or timeout accepted (a day): larger values are typos.
const MAX_MS: u64 = 86_400_000;

/// The arguments of `check` (after the directive name).
pub fn parse_check(args: &[&[u8]]) -> Result<Check, ConfError> {
    let mut c = Check::default();
    for &arg in args {
        let Some(eq) = arg.iter().position(|&b| b == b'=') else {
            return Err(invalid(arg, "expected name=value"));
        };
        let (name, v) = (&arg[..eq], &arg[eq + 1..]);
        let ms = |what: &str| {
            parse_ms(v)
                .filter(|&n| n > 0 && n <= MAX_MS)
                .ok_or_else(|| {
                    invalid(
                        arg,
                        &format!("{what} must be a time such as 3000, 3s or 500ms (1ms to 24h)"),
                    )
                })
        };
        match name {
            b"type" => {
                c.kind = match v {
                    b"tcp" => Kind::Tcp,
                    b"http" => Kind::Http,
                    b"https" => Kind::Https,
                    b"ssl_hello" => Kind::SslHello,
                    b"fastcgi" => Kind::FastCgi,
                    b"mysql" => Kind::Mysql,
                    b"ajp" => Kind::Ajp,
                    other => {
                        return Err(ConfError(format!(
                            "unknown check type \"{}\" (supported: tcp, http, https, ssl_hello, fastcgi, mysql, ajp)",
                            lossy(other)
                        )));
                    }
                }
            }
            b"interval" => c.interval_ms = ms("interval")?,
            b"timeout" => c.timeout_ms = ms("timeout")?,
            b"jitter" => {
                c.jitter_ms = parse_ms(v)
                    .filter(|&n| n <= MAX_MS)
                    .ok_or_else(|| invalid(arg, "jitter must be a time such as 100 or 100ms"))?
            }
            b"rise" | b"fall" => {
                let n = parse_count(v)
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| invalid(arg, "must be a number from 1"))?;
                if name == b"rise" {
                    c.rise = n
                } else {
                    c.fall = n
                }
            }
            b"port" => {
                c.port = parse_count(v)
                    .filter(|n| (1..=65535).contains(n))
                    .ok_or_else(|| invalid(arg, "port must be 1..65535"))?
                    as u16
            }
            b"default_down" => {
                // any case, as UCM compares it
                c.default_down = match v.to_ascii_lowercase().as_slice() {
                    b"true" => true,
                    b"false" => false,
                    _ => return Err(invalid(arg, "it must be \"true\" or \"false\"")),
                }
            }
            b"fail_open" => {
                c.fail_open = match v {
                    b"on" => true,
                    b"off" => false,
                    _ => return Err(invalid(arg, "it must be \"on\" or \"off\"")),
                }
            }
            _ => return Err(invalid(arg, "unknown parameter")),
        }
    }
    Ok(c)
}

/// Which HTTP statuses make a check pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// `check_http_expect_alive`: bit n-1 for class n (http_1xx .. http_5xx).
    pub classes: u8,
    /// `check_http_expect_status`: inclusive ranges.
    pub ranges: Vec<(u16, u16)>,
}

impl Expect {
    /// UCM's default for `type=http`: `http_2xx http_3xx`.
    pub const DEFAULT_CLASSES: u8 = 0b110;

    /// A status passes if it is in an expected class or range. With neither directive,
    /// 2xx and 3xx pass.
    pub fn passes(&self, status: u16) -> bool {
        let classes = if self.classes == 0 && self.ranges.is_empty() {
            Self::DEFAULT_CLASSES
        } else {
            self.classes
        };
        let class = status / 100;
        ((1..=5).contains(&class) && classes & (1 << (class - 1)) != 0)
            || self
                .ranges
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// `check_http_expect_alive http_2xx http_3xx ...`
pub fn parse_expect_alive(args: &[&[u8]]) -> Result<u8, ConfError> {
    let mut bits = 0u8;
    for &a in args {
        // any case, as UCM compares them
        let n = match a.to_ascii_lowercase().as_slice() {
            b"http_1xx" => 0,
            b"http_2xx" => 1,
            b"http_3xx" => 2,
            b"http_4xx" => 3,
            b"http_5xx" => 4,
            _ => {
                return Err(ConfError(format!(
                    "invalid value \"{}\" (expected http_1xx, http_2xx, http_3xx, http_4xx or http_5xx)",
                    lossy(a)
                )))
            }
        };
        bits |= 1 << n;
    }
    Ok(bits)
}

/// `check_http_expect_status 200-299 301 ...`
pub fn parse_expect_status(args: &[&[u8]]) -> Result<Vec<(u16, u16)>, ConfError> {
    let code = |v: &[u8]| {
        parse_count(v)
            .filter(|n| (100..=599).contains(n))
            .map(|n| n as u16)
    };
    args.iter()
        .map(|&a| {
            let r = match a.iter().position(|&b| b == b'-') {
                Some(i) => code(&a[..i]).zip(code(&a[i + 1..])),
                None => code(a).map(|c| (c, c)),
            };
            r.filter(|(lo, hi)| lo <= hi).ok_or_else(|| {
                ConfError(format!(
                    "invalid status \"{}\" (expected a code 100..599 or a range such as 200-299)",
                    lossy(a)
                ))
            })
        })
        .collect()
}

/// `check_http_expect_body ~ "regex"` (or `~*` for caseless): (pattern, caseless).
pub fn parse_expect_body<'a>(args: &[&'a [u8]]) -> Result<(&'a [u8], bool), ConfError> {
    match args {
        [b"~", re] if !re.is_empty() => Ok((re, false)),
        [b"~*", re] if !re.is_empty() => Ok((re, true)),
        _ => Err(ConfError(
            "invalid arguments (expected: check_http_expect_body ~ \"regex\", or ~* for caseless)"
                .into(),
        )),
    }
}

/// `check_status [html|csv|json]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Csv,
    Json,
}

impl Format {
    pub fn parse(v: &[u8]) -> Option<Format> {
        match v {
            b"html" => Some(Format::Html),
            b"csv" => Some(Format::Csv),
            b"json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static [u8] {
        match self {
            Format::Html => b"text/html",
            Format::Csv => b"text/plain",
            Format::Json => b"application/json",
        }
    }
}

/// The request an http/https check sends without `check_http_send`.
pub fn default_request(upstream: &[u8]) -> Vec<u8> {
    let mut r = b"GET / HTTP/1.0\r\nHost: ".to_vec();
    r.extend_from_slice(upstream);
    r.extend_from_slice(b"\r\n\r\n");
    r
}

/// Which type-specific settings an upstream's check directives gave.
#[derive(Clone, Copy, Debug, Default)]
pub struct Given {
    /// `check_http_send`.
    pub send: bool,
    /// `check_http_expect_alive`, `_status`, `_body`: judge a status (http, https, fastcgi).
    pub expect: bool,
    /// `check_ssl_*`.
    pub tls: bool,
    /// `check_fastcgi_param`.
    pub fastcgi: bool,
    /// `check_keepalive_requests` above 1: connections kept between checks (http, https).
    pub keepalive: bool,
}

/// Settings that only make sense with some check types: a warning for the operator.
pub fn mismatch(kind: Kind, given: Given) -> Option<String> {
    if (given.send && !kind.is_http()) || (given.expect && !kind.has_status()) {
        return Some(format!(
            "check_http_* directives have no effect with type={}",
            kind.as_str()
        ));
    }
    if given.tls && !kind.is_tls() {
        return Some(format!(
            "check_ssl_* directives have no effect with type={}",
            kind.as_str()
        ));
    }
    if given.fastcgi && kind != Kind::FastCgi {
        return Some(format!(
            "check_fastcgi_param has no effect with type={}",
            kind.as_str()
        ));
    }
    if given.keepalive && !kind.is_http() {
        return Some(format!(
            "check_keepalive_requests has no effect with type={} (each check opens a new connection)",
            kind.as_str()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str) -> Result<Check, ConfError> {
        let args: Vec<&[u8]> = s.split_whitespace().map(str::as_bytes).collect();
        parse_check(&args)
    }

    #[test]
    fn ucm_defaults() {
        let c = check("").unwrap();
        assert_eq!(
            (
                c.kind,
                c.interval_ms,
                c.rise,
                c.fall,
                c.timeout_ms,
                c.default_down
            ),
            (Kind::Tcp, 30_000, 2, 5, 1000, true)
        );
        assert_eq!((c.port, c.jitter_ms, c.fail_open), (0, 0, false));
    }

    #[test]
    fn seed_block() {
        let c = check("interval=3000 rise=2 fall=2 timeout=1000 type=http").unwrap();
        assert_eq!(
            (c.kind, c.interval_ms, c.rise, c.fall, c.timeout_ms),
            (Kind::Http, 3000, 2, 2, 1000)
        );
    }

    #[test]
    fn every_parameter() {
        let c = check(
            "interval=3s timeout=500ms rise=1 fall=3 default_down=false type=https port=8443 jitter=100 fail_open=on",
        )
        .unwrap();
        assert_eq!(c.interval_ms, 3000);
        assert_eq!(c.timeout_ms, 500);
        assert_eq!((c.rise, c.fall), (1, 3));
        assert!(!c.default_down);
        // UCM compares default_down's value in any case
        assert!(!check("default_down=FALSE").unwrap().default_down);
        assert!(check("default_down=True").unwrap().default_down);
        assert_eq!(c.kind, Kind::Https);
        assert_eq!(c.port, 8443);
        assert_eq!(c.jitter_ms, 100);
        assert!(c.fail_open);
        assert_eq!(check("type=ssl_hello").unwrap().kind, Kind::SslHello);
        assert_eq!(check("interval=1m").unwrap().interval_ms, 60_000);
    }

    #[test]
    fn times() {
        assert_eq!(parse_ms(b"3000"), Some(3000));
        assert_eq!(parse_ms(b"3s"), Some(3000));
        assert_eq!(parse_ms(b"250ms"), Some(250));
        assert_eq!(parse_ms(b"2h"), Some(7_200_000));
        for bad in ["", "s", "3x", "-1", "1.5s", "3 s", "99999999999999"] {
            assert_eq!(parse_ms(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn every_ucm_type_is_known() {
        for (t, k) in [
            ("tcp", Kind::Tcp),
            ("http", Kind::Http),
            ("https", Kind::Https),
            ("ssl_hello", Kind::SslHello),
            ("fastcgi", Kind::FastCgi),
            ("mysql", Kind::Mysql),
            ("ajp", Kind::Ajp),
        ] {
            assert_eq!(check(&format!("type={t}")).unwrap().kind, k);
            assert_eq!(k.as_str(), t);
        }
        let e = check("type=gopher").unwrap_err().0;
        assert!(e.contains("unknown check type \"gopher\""), "{e}");
        assert!(e.contains("mysql, ajp)"), "{e}");
    }

    #[test]
    fn bad_parameters() {
        for bad in [
            "interval=0",
            "interval=abc",
            "timeout=0",
            "rise=0",
            "fall=-1",
            "port=0",
            "port=70000",
            "default_down=yes",
            "fail_open=true",
            "jitter=x",
            "color=blue",
            "interval",
        ] {
            let e = check(bad).unwrap_err().0;
            assert!(e.starts_with("invalid parameter"), "{bad}: {e}");
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn expectations() {
        let alive = parse_expect_alive(&[b"http_2xx", b"http_3xx"]).unwrap();
        assert_eq!(alive, Expect::DEFAULT_CLASSES);
        // UCM compares the classes in any case
        assert_eq!(
            parse_expect_alive(&[b"HTTP_2XX", b"Http_3xx"]),
            Ok(Expect::DEFAULT_CLASSES)
        );
        assert!(parse_expect_alive(&[b"http_6xx"]).is_err());
        let ranges = parse_expect_status(&[b"200-299", b"301"]).unwrap();
        assert_eq!(ranges, vec![(200, 299), (301, 301)]);
        for bad in ["299-200", "99", "600", "2xx", "200-", "-200"] {
            assert!(parse_expect_status(&[bad.as_bytes()]).is_err(), "{bad}");
        }

        let default = Expect::default();
        assert!(default.passes(200) && default.passes(302));
        assert!(!default.passes(404) && !default.passes(500) && !default.passes(101));

        let only_status = Expect {
            classes: 0,
            ranges: ranges.clone(),
        };
        assert!(only_status.passes(204) && only_status.passes(301));
        assert!(
            !only_status.passes(302),
            "an explicit list replaces the default"
        );

        let both = Expect {
            classes: parse_expect_alive(&[b"http_4xx"]).unwrap(),
            ranges,
        };
        assert!(both.passes(404) && both.passes(250) && !both.passes(500));
    }

    #[test]
    fn body_expectation() {
        assert_eq!(
            parse_expect_body(&[b"~", b"OK"]).unwrap(),
            (&b"OK"[..], false)
        );
        assert_eq!(
            parse_expect_body(&[b"~*", b"ok"]).unwrap(),
            (&b"ok"[..], true)
        );
        assert!(parse_expect_body(&[b"OK"]).is_err());
        assert!(parse_expect_body(&[b"=", b"OK"]).is_err());
        assert!(parse_expect_body(&[b"~", b""]).is_err());
    }

    #[test]
    fn formats_and_defaults() {
        assert_eq!(Format::parse(b"csv"), Some(Format::Csv));
        assert_eq!(Format::parse(b"xml"), None);
        assert_eq!(Format::Json.content_type(), b"application/json");
        assert_eq!(
            default_request(b"backend"),
            b"GET / HTTP/1.0\r\nHost: backend\r\n\r\n".to_vec()
        );
        let g = |send, expect, tls, fastcgi| Given {
            send,
            expect,
            tls,
            fastcgi,
            keepalive: false,
        };
        assert!(mismatch(Kind::Tcp, g(true, false, false, false)).is_some());
        assert!(mismatch(Kind::Tcp, g(false, true, false, false)).is_some());
        assert!(mismatch(Kind::Http, g(false, false, true, false)).is_some());
        assert!(mismatch(Kind::Https, g(true, true, true, false)).is_none());
        // fastcgi: judged by status, but sends its own request
        assert!(mismatch(Kind::FastCgi, g(false, true, false, true)).is_none());
        let w = mismatch(Kind::FastCgi, g(true, false, false, true)).unwrap();
        assert_eq!(
            w,
            "check_http_* directives have no effect with type=fastcgi"
        );
        let w = mismatch(Kind::Http, g(false, false, false, true)).unwrap();
        assert_eq!(w, "check_fastcgi_param has no effect with type=http");
        let keepalive = Given {
            keepalive: true,
            ..g(false, false, false, false)
        };
        assert!(mismatch(Kind::Http, keepalive).is_none());
        assert!(mismatch(Kind::Https, keepalive).is_none());
        assert_eq!(
            mismatch(Kind::FastCgi, keepalive).unwrap(),
            "check_keepalive_requests has no effect with type=fastcgi (each check opens a new connection)"
        );
        // mysql and ajp: nothing to configure but the check itself
        for k in [Kind::Mysql, Kind::Ajp] {
            assert!(mismatch(k, g(false, false, false, false)).is_none());
            assert!(mismatch(k, g(false, true, false, false)).is_some());
            assert!(mismatch(k, g(false, false, true, false)).is_some());
        }
    }
}
