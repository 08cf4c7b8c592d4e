//! What an error.log line nginx writes during a try tells about its failure: the errno it
//! printed, and the few messages that say more than the errno (`logtap.rs` taps the lines).

use super::errno;

/// What an error.log line tells about the failure in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogLine {
    /// The errno nginx printed as "(NNN: text)".
    pub errno: Option<i32>,
    /// "worker_connections are not enough".
    pub out_of_connections: bool,
    /// "upstream sent ...": nginx refused what the backend sent ("invalid header",
    /// "unsupported FastCGI protocol version", "too large http2 frame"...).
    pub sent_invalid: bool,
    /// The errno is that of a file operation (`open() "/path" failed (13: ...)`,
    /// `pwrite() "/path" failed (28: ...)`): nginx names the file, quoted, right after the
    /// call; socket calls name none (`recv() failed`, `connect() to unix:/path failed`).
    pub file_error: bool,
    /// Why nginx refused the backend's certificate: OpenSSL's verify error ("upstream SSL
    /// certificate verify error: (10:certificate has expired)": X509_V_ERR_CERT_HAS_EXPIRED).
    pub cert_verify: Option<u16>,
    /// The TLS alert the backend sent ("SSL alert number 112"), if the line names one.
    pub tls_alert: Option<u16>,
    /// "no resolver defined to resolve NAME": a host name in a variable (`proxy_pass
    /// http://$host`), and no `resolver` in effect.
    pub no_resolver: bool,
}

/// Parse one error.log line as nginx writes it:
/// `2026/04/24 09:22:18 [error] 12487#0: *9234 connect() failed (111: Connection refused) while ...`.
/// The errno is the first "(digits: " after the level tag; the request line, which may hold
/// anything, comes later (", client: ..., request: ...") and nothing in it is taken.
///
/// This runs on every error.log line of a failing request, so each search looks for the
/// rarest byte of what it wants (`memchr`, vectorised in glibc) and a line is read about once.
pub fn parse_log_line(line: &[u8]) -> LogLine {
    let mut out = LogLine::default();
    let mut i = 0;
    while let Some(off) = memchr(b'(', &line[i..]) {
        let start = i + off + 1;
        let (mut n, mut digits) = (0i32, 0);
        while let Some(d) = line.get(start + digits).filter(|b| b.is_ascii_digit()) {
            if digits == 5 {
                break;
            }
            n = n * 10 + i32::from(d - b'0');
            digits += 1;
        }
        if digits > 0 && line[start + digits..].starts_with(b": ") {
            // Past the message (", client: ..." follows it), the line is not read: the
            // request line may hold anything.
            if memchr(b',', &line[..start]).is_some()
                && find(&line[..start], b", client: ", 0).is_some()
            {
                break;
            }
            // "could not be resolved (3: Host not found)" carries a resolver code (1 to 5), not
            // an errno; for a timeout nginx's code is ETIMEDOUT itself (110), kept.
            let resolver =
                matches!(n, 1..=5) && find(&line[..start], b"could not be resolved", 18).is_some();
            if !resolver {
                out.errno = Some(n);
                // only where a file's errno could pass for a socket's: not for those only
                // sockets give (refused, reset, timed out... the lines of every failure)
                out.file_error =
                    !SOCKET_ONLY_ERRNOS.contains(&n) && find(&line[..start], b"() \"", 3).is_some();
            }
            return out;
        }
        i = start;
    }
    // Logged without an errno, so looked for only when there is none.
    let msg = &line[..find(line, b", client: ", 0).unwrap_or(line.len())];
    out.out_of_connections = find(msg, b"worker_connections are not enough", 3).is_some();
    out.sent_invalid = find(msg, b"upstream sent ", 0).is_some();
    out.no_resolver = find(msg, b"no resolver defined to resolve ", 8).is_some();
    if let Some(at) = find(msg, b"certificate verify error: (", 26) {
        out.cert_verify = leading_number(&msg[at + 27..]);
    }
    if let Some(at) = find(msg, b"SSL alert number ", 13) {
        out.tls_alert = leading_number(&msg[at + 17..]);
    }
    out
}

/// The number of up to 3 digits that `s` starts with (an OpenSSL verify error, a TLS alert).
fn leading_number(s: &[u8]) -> Option<u16> {
    let n = s.iter().take(3).take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then(|| s[..n].iter().fold(0, |v, d| v * 10 + u16::from(d - b'0')))
}

/// errnos no file operation gives: a line with one of them is a socket's.
const SOCKET_ONLY_ERRNOS: [i32; 7] = [
    errno::ECONNREFUSED,
    errno::ECONNRESET,
    errno::ETIMEDOUT,
    errno::EPIPE,
    errno::EHOSTUNREACH,
    errno::ENETUNREACH,
    errno::EADDRNOTAVAIL,
];

/// First position of `b` in `hay`: the C library's `memchr`.
fn memchr(b: u8, hay: &[u8]) -> Option<usize> {
    // SAFETY: the pointer is valid for hay.len() bytes; memchr only reads them.
    let p = unsafe { libc::memchr(hay.as_ptr().cast(), i32::from(b), hay.len()) };
    (!p.is_null()).then(|| p as usize - hay.as_ptr() as usize)
}

/// First position of `needle` (not empty) in `hay`, found through `memchr` for its byte at
/// `key` (pick a byte that is rare in the text searched), then a compare.
fn find(hay: &[u8], needle: &[u8], key: usize) -> Option<usize> {
    let k = *needle.get(key)?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        i += memchr(k, &hay[i + key..=last_start + key])?;
        if hay[i..i + needle.len()] == *needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines() {
        let l = parse_log_line(b"2026/04/24 09:22:18 [error] 12487#0: *9234 connect() failed (111: Connection refused) while connecting to upstream, client: 198.51.100.23, server: x, request: \"POST /a(12: b) HTTP/1.1\"");
        assert_eq!(l.errno, Some(111));
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *1 connect() to unix:/run/php.sock failed (13: Permission denied) while connecting to upstream");
        assert_eq!(l.errno, Some(13));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1");
        assert_eq!(l.errno, Some(104));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, request: \"GET /(7: x)\"");
        assert_eq!(l.errno, None);
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 nx.test could not be resolved (3: Host not found), client: 127.0.0.1");
        assert_eq!(l.errno, None);
        // nginx refused what the backend sent; the request line is not read
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream sent unsupported FastCGI protocol version: 72 while reading response header from upstream, client: 127.0.0.1");
        assert!(l.sent_invalid && l.errno.is_none());
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, request: \"GET /upstream sent x\"");
        assert!(!l.sent_invalid);
        // a file's errno, not the connection's; a socket's call names no file
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *2 open() \"/var/cache/nginx/proxy_temp/0000000001\" failed (13: Permission denied) while reading upstream, client: 127.0.0.1");
        assert_eq!((l.errno, l.file_error), (Some(13), true));
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *2 pwrite() \"/t/1\" failed (28: No space left on device) while reading upstream, client: 127.0.0.1");
        assert_eq!((l.errno, l.file_error), (Some(28), true));
        for line in [
            &b"2026/04/24 [crit] 1#0: *1 connect() to unix:/run/php.sock failed (13: Permission denied) while connecting to upstream"[..],
            b"2026/04/24 [error] 1#0: *1 writev() failed (32: Broken pipe) while sending request to upstream, client: 1, request: \"GET /open() \\\"x\\\"\"",
        ] {
            assert!(!parse_log_line(line).file_error);
        }
        // an expired certificate, and another verify error
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream SSL certificate verify error: (10:certificate has expired) while SSL handshaking to upstream, client: 127.0.0.1");
        assert_eq!((l.cert_verify, l.errno), (Some(10), None));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream SSL certificate verify error: (18:self-signed certificate) while SSL handshaking to upstream, client: 127.0.0.1, request: \"GET /verify error: (10:x\"");
        assert_eq!(l.cert_verify, Some(18));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream SSL certificate verify error: (22:certificate chain too long) while SSL handshaking to upstream, client: 127.0.0.1");
        assert_eq!(l.cert_verify, Some(22));
        // only in the request line: not taken
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 upstream timed out while SSL handshaking to upstream, client: 127.0.0.1, request: \"GET /certificate verify error: (22:x\"");
        assert_eq!(l.cert_verify, None);
        // the backend's TLS alert
        let l = parse_log_line(b"2026/04/24 [crit] 1#0: *1 SSL_do_handshake() failed (SSL: error:0A000458:SSL routines::tlsv1 unrecognized name:SSL alert number 112) while SSL handshaking to upstream, client: 127.0.0.1");
        assert_eq!((l.tls_alert, l.errno), (Some(112), None));
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 SSL_do_handshake() failed (SSL: error:0A00010B:SSL routines::wrong version number) while SSL handshaking to upstream, client: 1, request: \"GET /SSL alert number 40\"");
        assert_eq!(l.tls_alert, None);
        // nginx's resolver reports a timeout as ETIMEDOUT
        let l = parse_log_line(b"2026/04/24 [error] 1#0: *1 app.test could not be resolved (110: Operation timed out), client: 127.0.0.1");
        assert_eq!(l.errno, Some(110));
        let l = parse_log_line(
            b"2026/04/24 [alert] 1#0: *1 8 worker_connections are not enough while connecting to upstream, client: 127.0.0.1",
        );
        assert!(l.out_of_connections);
        assert_eq!(l.errno, None);
        assert_eq!(parse_log_line(b""), LogLine::default());
        assert_eq!(parse_log_line(b"(((((((").errno, None);
        assert_eq!(parse_log_line(b"x (123456: y)").errno, None);
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abcabd", b"abd", 2), Some(3));
        assert_eq!(find(b"abcab", b"abd", 1), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"(", b"(", 0), Some(0));
        assert_eq!(find(b"x(", b"(", 0), Some(1));
        assert_eq!(find(b"aab", b"ab", 1), Some(1));
        assert_eq!(find(b"abab", b"ab", 1), Some(0));
        assert_eq!(find(b"ab", b"ab", 2), None);
        assert_eq!(find(b"", b"a", 0), None);
        // against a plain window scan, bytes around the match included
        for len in 0..24 {
            for at in 0..len {
                for fill in [0x00u8, 0x28, 0x80, 0xff] {
                    let mut hay = vec![fill; len];
                    hay[at] = b'(';
                    if at + 1 < len {
                        hay[at + 1] = b'x';
                    }
                    let expected = hay.windows(2).position(|w| w == b"(x");
                    for key in [0, 1] {
                        assert_eq!(
                            find(&hay, b"(x", key),
                            expected,
                            "len {len} at {at} fill {fill}"
                        );
                    }
                }
            }
        }
    }
}
