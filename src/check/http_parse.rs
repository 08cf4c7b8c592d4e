//! An incremental parser for the response to an HTTP check: status line, header lines (read
//! to their end, so that garbage and endless headers are caught), and the body when a body
//! expectation needs it (Content-Length, chunked, or up to the close), each with a size cap.
//! To reuse the connection (`check_keepalive_requests`), it reads the message to its end and
//! says whether the connection may carry another request.
//! Pure: the prober feeds it the bytes it reads, in pieces of any size.

use crate::cause::Cause;

/// Longest status line + header block accepted.
pub const HEADER_MAX: usize = 16 * 1024;
/// Longest body kept for `check_http_expect_body` (the rest is not read).
pub const BODY_MAX: usize = 64 * 1024;
/// Body bytes (chunk lines and trailers included) read to reach a message's end, so that the
/// connection can be kept: past this, the check ends at its verdict and the connection is
/// closed. A health URL that streams would otherwise be read until the check's timeout.
pub const TO_END_MAX: u64 = 1024 * 1024;
/// Longest chunk-size line.
const CHUNK_LINE_MAX: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Feed more bytes (or `eof`).
    More,
    /// The response is complete enough to judge: its status (the body, if wanted, is in
    /// [`Parser::body`]).
    Done(u16),
    /// The response is broken.
    Fail(Cause),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    StatusLine,
    Headers,
    /// Content-Length bytes still to read.
    Length(u64),
    /// Until the connection closes.
    ToClose,
    ChunkSize,
    /// Bytes of the current chunk still to read.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    ChunkTrailer,
    Done,
}

pub struct Parser {
    want_body: bool,
    /// The request was HEAD: no body follows.
    head: bool,
    /// Read the message to its end (to reuse the connection).
    to_end: bool,
    /// HTTP/1.x minor version.
    minor: u8,
    conn_close: bool,
    conn_keepalive: bool,
    /// The whole message was consumed.
    ended: bool,
    /// Bytes came after the end of the message.
    extra: bool,
    st: St,
    line: Vec<u8>,
    header_bytes: usize,
    /// Bytes read after the header (for [`TO_END_MAX`]).
    body_bytes: u64,
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    body: Vec<u8>,
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// "HTTP/1.1 200 OK" → (200, minor version 1).
fn status_line(l: &[u8]) -> Option<(u16, u8)> {
    let rest = l.strip_prefix(b"HTTP/")?;
    if rest.len() < 7
        || !rest[0].is_ascii_digit()
        || rest[1] != b'.'
        || !rest[2].is_ascii_digit()
        || rest[3] != b' '
    {
        return None;
    }
    status_code(&rest[4..]).map(|n| (n, rest[2] - b'0'))
}

/// "200 OK" or "200" → 200: three digits, then a space or nothing, 100 to 599 (an HTTP status
/// line's code, and a CGI `Status:` header's value).
pub fn status_code(s: &[u8]) -> Option<u16> {
    let code = s.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || s.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let n = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&n).then_some(n)
}

impl Parser {
    /// `want_body`: keep the body (for a body expectation); `head`: the request was HEAD;
    /// `to_end`: read the whole message, to reuse the connection.
    pub fn new(want_body: bool, head: bool, to_end: bool) -> Parser {
        Parser {
            want_body,
            head,
            to_end,
            minor: 0,
            conn_close: false,
            conn_keepalive: false,
            ended: false,
            extra: false,
            st: St::StatusLine,
            line: Vec::new(),
            header_bytes: 0,
            body_bytes: 0,
            status: 0,
            content_length: None,
            chunked: false,
            body: Vec::new(),
        }
    }

    /// The body read so far (at most [`BODY_MAX`] bytes).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The status, once the status line was read.
    pub fn status(&self) -> Option<u16> {
        (self.status != 0).then_some(self.status)
    }

    fn done(&mut self) -> Progress {
        self.st = St::Done;
        Progress::Done(self.status)
    }

    /// The message ended where it should: done, and the connection may be reused.
    fn end(&mut self) -> Progress {
        self.ended = true;
        self.done()
    }

    /// May the connection carry another request? (The whole message was read, nothing
    /// followed it, and neither side asked to close.)
    pub fn reusable(&self) -> bool {
        self.ended && !self.extra && !self.conn_close && (self.minor >= 1 || self.conn_keepalive)
    }

    /// Keep body bytes up to the cap; true when the cap is reached and nothing more is
    /// needed (when reading to the end, the rest is consumed without being kept).
    fn keep(&mut self, b: &[u8]) -> bool {
        let room = BODY_MAX - self.body.len();
        self.body.extend_from_slice(&b[..b.len().min(room)]);
        self.body.len() >= BODY_MAX && !self.to_end
    }

    /// Take one line (without CR LF) from `data` at `*i`; None: the line continues.
    fn take_line(
        &mut self,
        data: &[u8],
        i: &mut usize,
        cap: usize,
    ) -> Result<Option<Vec<u8>>, Cause> {
        let rest = &data[*i..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.line.extend_from_slice(&rest[..n]);
                *i += n + 1;
                if self.line.len() > cap {
                    return Err(Cause::HeaderTooBig);
                }
                let mut l = core::mem::take(&mut self.line);
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                Ok(Some(l))
            }
            None => {
                self.line.extend_from_slice(rest);
                *i = data.len();
                if self.line.len() > cap {
                    return Err(Cause::HeaderTooBig);
                }
                Ok(None)
            }
        }
    }

    /// The next bytes of the response.
    pub fn feed(&mut self, data: &[u8]) -> Progress {
        let mut i = 0;
        while i < data.len() {
            let (at, in_body) = (i, !matches!(self.st, St::StatusLine | St::Headers));
            match self.st {
                St::Done => {
                    self.extra = true;
                    return Progress::Done(self.status);
                }
                St::StatusLine | St::Headers => {
                    let before = i;
                    // the room left after the lines already ended: the start of a line cut
                    // between two reads is in both header_bytes and self.line
                    let ended = self.header_bytes - self.line.len();
                    let cap = HEADER_MAX.saturating_sub(ended);
                    let line = match self.take_line(data, &mut i, cap) {
                        Ok(l) => l,
                        Err(c) => return Progress::Fail(c),
                    };
                    self.header_bytes += i - before;
                    if self.st == St::StatusLine {
                        // garbage is told at once, not after a whole line
                        let seen = if line.is_some() {
                            &[][..]
                        } else {
                            &self.line[..]
                        };
                        let n = seen.len().min(5);
                        if seen[..n] != b"HTTP/"[..n] {
                            return Progress::Fail(Cause::InvalidHeader);
                        }
                    }
                    let Some(line) = line else {
                        return Progress::More;
                    };
                    match self.header_line(&line) {
                        None | Some(Progress::More) => {}
                        Some(p) => {
                            self.extra |= matches!(p, Progress::Done(_)) && i < data.len();
                            return p;
                        }
                    }
                }
                St::Length(left) => {
                    let n = (data.len() - i).min(left.min(usize::MAX as u64) as usize);
                    let full = self.keep(&data[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    self.st = St::Length(left);
                    if left == 0 {
                        self.end();
                    } else if full {
                        return self.done();
                    }
                }
                St::ToClose => {
                    if self.keep(&data[i..]) {
                        return self.done();
                    }
                    i = data.len();
                }
                St::ChunkSize => {
                    let line = match self.take_line(data, &mut i, CHUNK_LINE_MAX) {
                        Ok(Some(l)) => l,
                        Ok(None) => return Progress::More,
                        Err(_) => return Progress::Fail(Cause::InvalidHeader),
                    };
                    let hex: Vec<u8> = line
                        .iter()
                        .copied()
                        .take_while(|&b| b != b';')
                        .filter(|b| !b.is_ascii_whitespace())
                        .collect();
                    let size = core::str::from_utf8(&hex)
                        .ok()
                        .filter(|h| !h.is_empty() && h.len() <= 15)
                        .and_then(|h| u64::from_str_radix(h, 16).ok());
                    match size {
                        None => return Progress::Fail(Cause::InvalidHeader),
                        Some(0) if self.to_end => self.st = St::ChunkTrailer,
                        Some(0) => return self.done(),
                        Some(n) => self.st = St::ChunkData(n),
                    }
                }
                St::ChunkData(left) => {
                    let n = (data.len() - i).min(left.min(usize::MAX as u64) as usize);
                    let full = self.keep(&data[i..i + n]);
                    i += n;
                    let left = left - n as u64;
                    if full {
                        return self.done();
                    }
                    self.st = if left == 0 {
                        St::ChunkEnd
                    } else {
                        St::ChunkData(left)
                    };
                }
                St::ChunkTrailer => match self.take_line(data, &mut i, CHUNK_LINE_MAX) {
                    Ok(Some(l)) if l.is_empty() => {
                        self.end();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Progress::More,
                    Err(_) => return Progress::Fail(Cause::InvalidHeader),
                },
                St::ChunkEnd => match self.take_line(data, &mut i, 2) {
                    Ok(Some(l)) if l.is_empty() => self.st = St::ChunkSize,
                    Ok(None) => return Progress::More,
                    _ => return Progress::Fail(Cause::InvalidHeader),
                },
            }
            if in_body {
                self.body_bytes += (i - at) as u64;
                if self.body_bytes > TO_END_MAX && self.st != St::Done {
                    // the verdict is known (status, and the body kept): give up the end
                    return self.done();
                }
            }
        }
        match self.st {
            St::Done => Progress::Done(self.status),
            _ => Progress::More,
        }
    }

    /// A complete status or header line; Some when it decides.
    fn header_line(&mut self, line: &[u8]) -> Option<Progress> {
        if self.st == St::StatusLine {
            return match status_line(line) {
                Some((s, minor)) => {
                    self.status = s;
                    self.minor = minor;
                    self.st = St::Headers;
                    None
                }
                None => Some(Progress::Fail(Cause::InvalidHeader)),
            };
        }
        if line.is_empty() {
            return Some(self.end_of_headers());
        }
        let c = match line.iter().position(|&b| b == b':') {
            Some(c) if c > 0 && line[..c].iter().all(|&b| is_token(b)) => c,
            _ => return Some(Progress::Fail(Cause::InvalidHeader)),
        };
        let (name, value) = (&line[..c], line[c + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = core::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match n {
                Some(n) => self.content_length = Some(n),
                None => return Some(Progress::Fail(Cause::InvalidHeader)),
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for v in value.split(|&b| b == b',').map(|v| v.trim_ascii()) {
                self.conn_close |= v.eq_ignore_ascii_case(b"close");
                self.conn_keepalive |= v.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = value
                .split(|&b| b == b',')
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
        None
    }

    fn end_of_headers(&mut self) -> Progress {
        let no_body = self.head
            || matches!(self.status, 100..=199 | 204 | 304)
            || self.content_length == Some(0);
        if no_body {
            return self.end();
        }
        if !self.want_body && !self.to_end {
            return self.done();
        }
        self.st = if self.chunked {
            St::ChunkSize
        } else if let Some(n) = self.content_length {
            St::Length(n)
        } else {
            St::ToClose
        };
        Progress::More
    }

    /// The connection closed.
    pub fn eof(&mut self) -> Progress {
        match self.st {
            St::Done | St::ToClose => self.done(),
            _ => Progress::Fail(Cause::PrematureClose),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{pieces, Rng};

    /// Feed `resp` in pieces of `step` bytes, then EOF if still undecided.
    fn parse(resp: &[u8], want_body: bool, step: usize) -> (Progress, Vec<u8>) {
        let mut p = Parser::new(want_body, false, false);
        for piece in resp.chunks(step.max(1)) {
            match p.feed(piece) {
                Progress::More => {}
                other => return (other, p.body().to_vec()),
            }
        }
        let r = p.eof();
        (r, p.body().to_vec())
    }

    fn all_steps(resp: &[u8], want_body: bool) -> (Progress, Vec<u8>) {
        let first = parse(resp, want_body, resp.len());
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(parse(resp, want_body, step), first, "step {step}");
        }
        first
    }

    #[test]
    fn status_only() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(all_steps(r, false), (Progress::Done(200), vec![]));
        let r = b"HTTP/1.0 503 Service Unavailable\r\n\r\n";
        assert_eq!(all_steps(r, false).0, Progress::Done(503));
        // bare LF line ends, no reason phrase
        assert_eq!(
            all_steps(b"HTTP/1.1 204\nServer: x\n\n", false).0,
            Progress::Done(204)
        );
    }

    #[test]
    fn body_by_length_chunked_and_close() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world and more";
        assert_eq!(
            all_steps(r, true),
            (Progress::Done(200), b"hello world".to_vec())
        );
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            all_steps(r, true),
            (Progress::Done(200), b"hello world".to_vec())
        );
        let r = b"HTTP/1.0 200 OK\r\n\r\nuntil the close";
        assert_eq!(
            all_steps(r, true),
            (Progress::Done(200), b"until the close".to_vec())
        );
    }

    #[test]
    fn no_body_when_none_can_follow() {
        let mut p = Parser::new(true, true, false);
        assert_eq!(
            p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
            Progress::Done(200)
        );
        let r = b"HTTP/1.1 304 Not Modified\r\n\r\n";
        assert_eq!(all_steps(r, true), (Progress::Done(304), vec![]));
    }

    #[test]
    fn garbage_is_invalid_at_once() {
        let mut p = Parser::new(false, false, false);
        assert_eq!(p.feed(b"SSH-2"), Progress::Fail(Cause::InvalidHeader));
        let mut p = Parser::new(false, false, false);
        assert_eq!(
            p.feed(b"\x15\x03\x01\x00\x02"),
            Progress::Fail(Cause::InvalidHeader)
        );
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/x.1 200 OK\r\n\r\n",
            b"HTTP/1.1 700 Weird\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        ] {
            assert_eq!(
                all_steps(bad, false).0,
                Progress::Fail(Cause::InvalidHeader),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(all_steps(r, true).0, Progress::Fail(Cause::InvalidHeader));
    }

    #[test]
    fn endless_headers_hit_the_cap() {
        let mut p = Parser::new(false, false, false);
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n"), Progress::More);
        let line = b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut out = Progress::More;
        for _ in 0..(HEADER_MAX / line.len() + 2) {
            out = p.feed(line);
            if out != Progress::More {
                break;
            }
        }
        assert_eq!(out, Progress::Fail(Cause::HeaderTooBig));
        // one endless line without a newline
        let mut p = Parser::new(false, false, false);
        p.feed(b"HTTP/1.1 200 OK\r\nX: ");
        let big = vec![b'a'; HEADER_MAX];
        assert_eq!(p.feed(&big), Progress::Fail(Cause::HeaderTooBig));
    }

    #[test]
    fn big_bodies_are_capped() {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        r.extend(vec![b'x'; 70_000]);
        let (p, body) = parse(&r, true, 4096);
        assert_eq!(p, Progress::Done(200));
        assert_eq!(body.len(), BODY_MAX);
    }

    #[test]
    fn early_close() {
        assert_eq!(
            all_steps(b"", false).0,
            Progress::Fail(Cause::PrematureClose)
        );
        assert_eq!(
            all_steps(b"HTTP/1.1 200 OK\r\nServer: x\r\n", false).0,
            Progress::Fail(Cause::PrematureClose)
        );
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        assert_eq!(all_steps(r, true).0, Progress::Fail(Cause::PrematureClose));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
        assert_eq!(all_steps(r, true).0, Progress::Fail(Cause::PrematureClose));
    }

    fn reuse(resp: &[u8], step: usize) -> (Progress, bool, Vec<u8>) {
        let mut p = Parser::new(true, false, true);
        for piece in resp.chunks(step.max(1)) {
            match p.feed(piece) {
                Progress::More => {}
                other => return (other, p.reusable(), p.body().to_vec()),
            }
        }
        (Progress::More, p.reusable(), p.body().to_vec())
    }

    #[test]
    fn reading_to_the_end_for_reuse() {
        for step in [1, 3, 1000] {
            let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            assert_eq!(
                reuse(r, step),
                (Progress::Done(200), true, b"ok".to_vec()),
                "{step}"
            );
            let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n";
            assert_eq!(
                reuse(r, step),
                (Progress::Done(200), true, b"ok".to_vec()),
                "{step}"
            );
            let r = b"HTTP/1.1 204 No Content\r\n\r\n";
            assert!(reuse(r, step).1, "{step}");
            // the server closes, or HTTP/1.0 without keep-alive
            let r = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
            assert!(!reuse(r, step).1, "{step}");
            let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
            assert!(!reuse(r, step).1, "{step}");
            let r = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
            assert!(reuse(r, step).1, "{step}");
        }
        // a body to the close cannot be followed by another response
        let mut p = Parser::new(false, false, true);
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n\r\nbody"), Progress::More);
        assert_eq!(p.eof(), Progress::Done(200));
        assert!(!p.reusable());
        // bytes after the message
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
        assert!(!reuse(r, 1000).1);
        let r = b"HTTP/1.1 204 No Content\r\n\r\nEXTRA";
        assert!(!reuse(r, 1000).1);
        // a body larger than the cap is read to its end, not kept
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n".to_vec();
        r.extend(vec![b'x'; 70_000]);
        let (p, ok, body) = reuse(&r, 4096);
        assert_eq!((p, ok, body.len()), (Progress::Done(200), true, BODY_MAX));
        // not reading to the end: never reusable
        let mut p = Parser::new(false, false, false);
        assert_eq!(
            p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"),
            Progress::Done(200)
        );
        assert!(!p.reusable());
    }

    #[test]
    fn a_long_line_cut_between_reads_counts_once() {
        // 12 KB of header in one line: within HEADER_MAX whole, and so wherever it is cut
        let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        r.extend(std::iter::repeat_n(b'a', 12 * 1024));
        r.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(all_steps(&r, false).0, Progress::Done(200));
        for cut in [20, 6 * 1024, 12 * 1024] {
            let mut p = Parser::new(false, false, false);
            assert_eq!(p.feed(&r[..cut]), Progress::More);
            assert_eq!(p.feed(&r[cut..]), Progress::Done(200), "cut at {cut}");
        }
        // past HEADER_MAX in all, whole or cut
        let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        r.extend(std::iter::repeat_n(b'a', HEADER_MAX));
        r.extend_from_slice(b"\r\n\r\n");
        assert_eq!(all_steps(&r, false).0, Progress::Fail(Cause::HeaderTooBig));
    }

    #[test]
    fn status_known_before_the_end() {
        let mut p = Parser::new(false, false, false);
        assert_eq!(p.feed(b"HTTP/1.1 500 Oops\r\nA: b\r\n"), Progress::More);
        assert_eq!(p.status(), Some(500));
    }

    /// A response from pieces a server may send, valid or not, then perhaps edited.
    fn generated(rng: &mut Rng) -> Vec<u8> {
        let mut r = rng
            .pick(&[
                b"HTTP/1.1 200 OK",
                b"HTTP/1.0 200 OK",
                b"HTTP/1.1 204 No Content",
                b"HTTP/1.1 304 Not Modified",
                b"HTTP/1.1 100 Continue",
                b"HTTP/1.1 502",
                b"HTTP/2 200",
                b"HTTP/1.1 99 Low",
                b"SSH-2.0-OpenSSH_9.6",
                b"",
            ])
            .to_vec();
        let eol = rng.pick(&[b"\r\n", b"\n", b"\r\n", b"\r\n"]);
        r.extend_from_slice(eol);
        let body: Vec<u8> = (0..rng.below(40)).map(|i| b'a' + (i % 26) as u8).collect();
        let chunked = rng.below(3) == 0;
        for _ in 0..rng.below(5) {
            let h: Vec<u8> = match rng.below(9) {
                0 => format!("Content-Length: {}", body.len()).into_bytes(),
                1 => format!("Content-Length: {}", rng.below(80)).into_bytes(),
                2 => b"Content-Length: x".to_vec(),
                3 => b"Transfer-Encoding: chunked".to_vec(),
                4 => b"Connection: close".to_vec(),
                5 => b"Connection: keep-alive".to_vec(),
                6 => b"Bad Header".to_vec(),
                7 => vec![b'X'; rng.below(300)],
                _ => b"Server: t".to_vec(),
            };
            r.extend_from_slice(&h);
            r.extend_from_slice(eol);
        }
        if chunked {
            r.extend_from_slice(b"Transfer-Encoding: chunked");
            r.extend_from_slice(eol);
        }
        r.extend_from_slice(eol);
        if chunked {
            for piece in body.chunks(1 + rng.below(16)) {
                r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                r.extend_from_slice(piece);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(rng.pick(&[b"0\r\n\r\n", b"0\r\nT: 1\r\n\r\n", b"0\r\n", b""]));
        } else {
            r.extend_from_slice(&body);
        }
        rng.edit(&mut r);
        r
    }

    /// What a parser says of `resp` fed in the given pieces, then EOF if still undecided:
    /// the progress and body, and whether the connection may be reused.
    fn verdict(resp: &[u8], cuts: &[usize], want_body: bool, to_end: bool) -> (String, bool) {
        let mut p = Parser::new(want_body, false, to_end);
        for piece in pieces(resp, cuts) {
            match p.feed(piece) {
                Progress::More => {}
                other => return (format!("{other:?} {:?}", p.body()), p.reusable()),
            }
        }
        let last = p.eof();
        (format!("{last:?} {:?}", p.body()), p.reusable())
    }

    /// The verdict and the body do not depend on how the bytes come in. Reuse may: bytes
    /// after the message that come in the same read make the connection unfit for reuse,
    /// while later ones find it kept (where `probe::on_idle` closes it when they come).
    #[test]
    fn any_cut_of_any_response_gives_the_same_verdict() {
        let mut rng = Rng(0x2026_1122);
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for case in 0..3000 {
            let resp = generated(&mut rng);
            for (want_body, to_end) in [(false, false), (true, false), (false, true), (true, true)]
            {
                let (whole, reusable) = verdict(&resp, &[], want_body, to_end);
                *seen
                    .entry(whole.split('(').next().unwrap_or("").to_string())
                    .or_default() += 1;
                for cuts in rng.cuts(resp.len()) {
                    let (v, r) = verdict(&resp, &cuts, want_body, to_end);
                    assert_eq!(
                        v,
                        whole,
                        "case {case}, cut at {cuts:?}: {:?}",
                        String::from_utf8_lossy(&resp)
                    );
                    assert!(
                        r || !reusable,
                        "case {case}, cut at {cuts:?}: kept whole, not in pieces: {:?}",
                        String::from_utf8_lossy(&resp)
                    );
                }
            }
        }
        // the generator makes responses of both kinds, not only broken ones
        assert!(seen["Done"] > 1000 && seen["Fail"] > 1000, "{seen:?}");
    }
}
