//! The FastCGI check (`type=fastcgi`, as in nginx_upstream_check_module): the request a
//! check sends (a responder's BEGIN_REQUEST, the `check_fastcgi_param` pairs, an empty stdin)
//! and an incremental reader of the answer: its records, the CGI header block carried in
//! their stdout, the status it gives (`Status:`; without one 302 with `Location`, else 200,
//! as nginx's fastcgi module reads it), and the body when a body expectation needs it.
//! Pure: the prober feeds the bytes it reads, in pieces of any size.

use super::http_parse::{status_code, Progress, BODY_MAX, HEADER_MAX};
use crate::cause::Cause;

/// UCM's parameters when an upstream gives no `check_fastcgi_param`.
pub const DEFAULT_PARAMS: [(&[u8], &[u8]); 3] = [
    (b"REQUEST_METHOD", b"GET"),
    (b"REQUEST_URI", b"/"),
    (b"SCRIPT_FILENAME", b"index.php"),
];

const VERSION: u8 = 1;
const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const RESPONDER: u8 = 1;
/// The one request of a check's connection.
const REQUEST_ID: u16 = 1;
/// Largest content of one record.
const RECORD_MAX: usize = 0xffff;

fn record(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    let [id_hi, id_lo] = REQUEST_ID.to_be_bytes();
    let [len_hi, len_lo] = (content.len() as u16).to_be_bytes();
    out.extend_from_slice(&[VERSION, kind, id_hi, id_lo, len_hi, len_lo, 0, 0]);
    out.extend_from_slice(content);
}

/// A name or value length as FastCGI encodes it: one byte below 128, else four with the
/// high bit set.
fn length(out: &mut Vec<u8>, n: usize) {
    if n < 128 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&(n as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// The bytes a check sends: BEGIN_REQUEST (responder, the connection closed after the
/// answer), the parameters (in records of at most 64 KiB - 1), an empty PARAMS and an
/// empty STDIN. The caller keeps each name and value below 2 GiB (they come from the
/// configuration).
pub fn request<N: AsRef<[u8]>, V: AsRef<[u8]>>(params: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    record(&mut out, BEGIN_REQUEST, &[0, RESPONDER, 0, 0, 0, 0, 0, 0]);
    let mut pairs = Vec::new();
    for (n, v) in params {
        let (n, v) = (n.as_ref(), v.as_ref());
        length(&mut pairs, n.len());
        length(&mut pairs, v.len());
        pairs.extend_from_slice(n);
        pairs.extend_from_slice(v);
    }
    for piece in pairs.chunks(RECORD_MAX) {
        record(&mut out, PARAMS, piece);
    }
    record(&mut out, PARAMS, &[]);
    record(&mut out, STDIN, &[]);
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Bytes of a record header.
    Header,
    /// Content bytes of the current record still to read.
    Content(usize),
    /// Padding bytes still to skip.
    Padding(usize),
    Done,
}

/// Reads a FastCGI answer.
pub struct Reader {
    want_body: bool,
    st: St,
    head: [u8; 8],
    have: usize,
    kind: u8,
    padding: usize,
    /// The CGI header block is complete.
    headers_done: bool,
    line: Vec<u8>,
    header_bytes: usize,
    status: Option<u16>,
    location: bool,
    body: Vec<u8>,
}

impl Reader {
    /// `want_body`: read and keep the body (for a body expectation) up to END_REQUEST.
    pub fn new(want_body: bool) -> Reader {
        Reader {
            want_body,
            st: St::Header,
            head: [0; 8],
            have: 0,
            kind: 0,
            padding: 0,
            headers_done: false,
            line: Vec::new(),
            header_bytes: 0,
            status: None,
            location: false,
            body: Vec::new(),
        }
    }

    /// The body read so far (at most [`BODY_MAX`] bytes).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The status, once the CGI headers were read.
    pub fn status(&self) -> Option<u16> {
        self.headers_done.then(|| self.answer())
    }

    fn answer(&self) -> u16 {
        self.status.unwrap_or(if self.location { 302 } else { 200 })
    }

    fn done(&mut self) -> Progress {
        self.st = St::Done;
        Progress::Done(self.answer())
    }

    /// The next bytes of the answer.
    pub fn feed(&mut self, data: &[u8]) -> Progress {
        let mut i = 0;
        while i < data.len() {
            match self.st {
                St::Done => return Progress::Done(self.answer()),
                St::Header => {
                    let n = (8 - self.have).min(data.len() - i);
                    self.head[self.have..self.have + n].copy_from_slice(&data[i..i + n]);
                    self.have += n;
                    i += n;
                    if self.have < 8 {
                        break;
                    }
                    self.have = 0;
                    let h = self.head;
                    // nginx: "upstream sent unsupported FastCGI protocol version" and
                    // "upstream sent invalid FastCGI record type"
                    if h[0] != VERSION || !matches!(h[1], END_REQUEST | STDOUT | STDERR) {
                        return Progress::Fail(Cause::InvalidHeader);
                    }
                    self.kind = h[1];
                    self.padding = h[6] as usize;
                    let len = u16::from_be_bytes([h[4], h[5]]) as usize;
                    if self.kind == END_REQUEST {
                        return self.end();
                    }
                    self.st = St::Content(len);
                    if len == 0 {
                        self.st = St::Padding(self.padding);
                    }
                }
                St::Content(left) => {
                    let n = left.min(data.len() - i);
                    let piece = &data[i..i + n];
                    i += n;
                    self.st = if n == left {
                        St::Padding(self.padding)
                    } else {
                        St::Content(left - n)
                    };
                    if self.kind == STDOUT {
                        if let Some(p) = self.stdout(piece) {
                            return p;
                        }
                    }
                }
                St::Padding(left) => {
                    let n = left.min(data.len() - i);
                    i += n;
                    self.st = if n == left {
                        St::Header
                    } else {
                        St::Padding(left - n)
                    };
                }
            }
            if self.st == St::Padding(0) {
                self.st = St::Header;
            }
        }
        Progress::More
    }

    /// Bytes of stdout: CGI header lines, then the body. Some once judged.
    fn stdout(&mut self, mut d: &[u8]) -> Option<Progress> {
        while !self.headers_done && !d.is_empty() {
            let nl = d.iter().position(|&b| b == b'\n');
            let take = nl.map_or(d.len(), |n| n + 1);
            self.header_bytes += take;
            if self.header_bytes > HEADER_MAX {
                return Some(Progress::Fail(Cause::HeaderTooBig));
            }
            self.line.extend_from_slice(&d[..take]);
            d = &d[take..];
            if nl.is_none() {
                break;
            }
            let mut l = core::mem::take(&mut self.line);
            l.pop();
            if l.last() == Some(&b'\r') {
                l.pop();
            }
            if l.is_empty() {
                self.headers_done = true;
                if !self.want_body {
                    return Some(self.done());
                }
            } else if let Err(c) = self.header(&l) {
                return Some(Progress::Fail(c));
            }
        }
        if self.headers_done && !d.is_empty() {
            let room = BODY_MAX - self.body.len();
            self.body.extend_from_slice(&d[..d.len().min(room)]);
            if self.body.len() >= BODY_MAX {
                return Some(self.done());
            }
        }
        None
    }

    /// One CGI header line: `Status:` and `Location:` matter.
    fn header(&mut self, l: &[u8]) -> Result<(), Cause> {
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or(Cause::InvalidHeader)?;
        let (name, value) = (&l[..colon], l[colon + 1..].trim_ascii());
        if name.is_empty() {
            return Err(Cause::InvalidHeader);
        }
        if name.eq_ignore_ascii_case(b"status") {
            // "Status: 404 Not Found" (nginx: "upstream sent invalid status")
            self.status = Some(status_code(value).ok_or(Cause::InvalidHeader)?);
        } else if name.eq_ignore_ascii_case(b"location") {
            self.location = true;
        }
        Ok(())
    }

    /// END_REQUEST: judged if the headers were complete.
    fn end(&mut self) -> Progress {
        if self.headers_done {
            self.done()
        } else {
            // nginx: "upstream prematurely closed FastCGI stdout"
            Progress::Fail(Cause::PrematureClose)
        }
    }

    /// The connection closed.
    pub fn eof(&mut self) -> Progress {
        match self.st {
            St::Done => Progress::Done(self.answer()),
            _ => self.end(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::{pieces, Rng};

    /// An answer as php-fpm writes it: stdout records (split at `split`), END_REQUEST.
    fn answer(stdout: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in stdout.chunks(split.max(1)) {
            out.extend_from_slice(&[1, STDOUT, 0, 1]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            // padding to 8 bytes, as php-fpm does
            let pad = (8 - piece.len() % 8) % 8;
            out.extend_from_slice(&[pad as u8, 0]);
            out.extend_from_slice(piece);
            out.extend(core::iter::repeat_n(0, pad));
        }
        out.extend_from_slice(&[1, STDOUT, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&[1, END_REQUEST, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out
    }

    /// Feed `bytes` in pieces of `step`, then EOF if still undecided.
    fn read(bytes: &[u8], want_body: bool, step: usize) -> (Progress, Vec<u8>) {
        let mut r = Reader::new(want_body);
        for piece in bytes.chunks(step.max(1)) {
            match r.feed(piece) {
                Progress::More => {}
                other => return (other, r.body().to_vec()),
            }
        }
        (r.eof(), r.body().to_vec())
    }

    fn all_steps(bytes: &[u8], want_body: bool) -> (Progress, Vec<u8>) {
        let first = read(bytes, want_body, bytes.len());
        for step in [1, 2, 3, 7, 9, 64] {
            assert_eq!(read(bytes, want_body, step), first, "step {step}");
        }
        first
    }

    #[test]
    fn request_records() {
        let r = request(&[("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/ping")]);
        // BEGIN_REQUEST: responder, no keep-conn
        assert_eq!(&r[..16], &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let pairs = b"\x0e\x03REQUEST_METHODGET\x0b\x05SCRIPT_NAME/ping";
        assert_eq!(&r[16..24], &[1, 4, 0, 1, 0, pairs.len() as u8, 0, 0]);
        assert_eq!(&r[24..24 + pairs.len()], pairs);
        // empty PARAMS, empty STDIN
        assert_eq!(
            &r[24 + pairs.len()..],
            &[1, 4, 0, 1, 0, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn long_values_and_records() {
        let v = vec![b'x'; 70_000];
        let r = request(&[(b"A".as_slice(), v.as_slice())]);
        // name length 1, value length 70000 in 4 bytes with the high bit set
        assert_eq!(&r[24..29], &[1, 0x80, 0x01, 0x11, 0x70]);
        // pairs = 1 + 4 + 1 + 70000 bytes: a full record, then the rest
        assert_eq!(&r[16..24], &[1, 4, 0, 1, 0xff, 0xff, 0, 0]);
        let second = 16 + 8 + 0xffff;
        let rest = 70_006 - 0xffff;
        assert_eq!(
            &r[second..second + 8],
            &[1, 4, 0, 1, (rest >> 8) as u8, rest as u8, 0, 0]
        );
        assert_eq!(r.len(), second + 8 + rest + 16);
    }

    #[test]
    fn status_from_cgi_headers() {
        let a = answer(b"Content-type: text/plain\r\n\r\npong", 100);
        assert_eq!(all_steps(&a, false).0, Progress::Done(200));
        let a = answer(
            b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n",
            5,
        );
        assert_eq!(all_steps(&a, false).0, Progress::Done(404));
        // "Status:" without a reason, any case, bare LF
        let a = answer(b"status:503\n\n", 100);
        assert_eq!(all_steps(&a, false).0, Progress::Done(503));
        // no Status, a Location: nginx answers 302
        let a = answer(b"Location: http://app.test/login\r\n\r\n", 100);
        assert_eq!(all_steps(&a, false).0, Progress::Done(302));
    }

    #[test]
    fn body_kept_to_end_request() {
        let a = answer(b"Content-type: text/plain\r\n\r\nhello world", 4);
        assert_eq!(
            all_steps(&a, true),
            (Progress::Done(200), b"hello world".to_vec())
        );
        // the body is capped; judged once the cap is reached
        let mut big = b"\r\n".to_vec();
        big.extend(core::iter::repeat_n(b'y', BODY_MAX + 10));
        let (p, body) = all_steps(&answer(&big, 60_000), true);
        assert_eq!((p, body.len()), (Progress::Done(200), BODY_MAX));
    }

    #[test]
    fn stderr_and_padding_are_skipped() {
        let mut a = vec![1, STDERR, 0, 1, 0, 5, 3, 0];
        a.extend_from_slice(b"warn!\0\0\0");
        a.extend(answer(b"Status: 500\r\n\r\n", 100));
        assert_eq!(all_steps(&a, false).0, Progress::Done(500));
    }

    #[test]
    fn broken_answers() {
        // an HTTP server on the port: version byte 'H'
        let r = all_steps(b"HTTP/1.1 200 OK\r\n\r\n", false).0;
        assert_eq!(r, Progress::Fail(Cause::InvalidHeader));
        // a record type a responder does not send
        assert_eq!(
            all_steps(&[1, 11, 0, 1, 0, 0, 0, 0], false).0,
            Progress::Fail(Cause::InvalidHeader)
        );
        // END_REQUEST before the headers ended
        let mut a = vec![1, STDOUT, 0, 1, 0, 4, 0, 0];
        a.extend_from_slice(b"X: y");
        a.extend_from_slice(&[1, END_REQUEST, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            all_steps(&a, false).0,
            Progress::Fail(Cause::PrematureClose)
        );
        // closed without a byte, or mid-record
        assert_eq!(
            all_steps(b"", false).0,
            Progress::Fail(Cause::PrematureClose)
        );
        assert_eq!(
            all_steps(&[1, STDOUT, 0], false).0,
            Progress::Fail(Cause::PrematureClose)
        );
        // a header line without a colon, a bad status
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"Status: abc\r\n\r\n",
            b"Status: 2000\r\n\r\n",
        ] {
            assert_eq!(
                all_steps(&answer(bad, 100), false).0,
                Progress::Fail(Cause::InvalidHeader),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // endless headers
        let endless = vec![b'a'; HEADER_MAX + 1];
        assert_eq!(
            all_steps(&answer(&endless, 60_000), false).0,
            Progress::Fail(Cause::HeaderTooBig)
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // a small LCG: random bytes, and valid answers with random byte edits, in random pieces
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) as usize
        };
        let valid = answer(b"Status: 200 OK\r\nX: y\r\n\r\nbody", 7);
        for round in 0..2000 {
            let mut bytes = if round % 2 == 0 {
                (0..next() % 300).map(|_| next() as u8).collect()
            } else {
                valid.clone()
            };
            for _ in 0..next() % 4 {
                if !bytes.is_empty() {
                    let at = next() % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            let mut r = Reader::new(round % 3 == 0);
            let mut rest = &bytes[..];
            let mut decided = false;
            while !rest.is_empty() && !decided {
                let n = 1 + next() % rest.len();
                decided = r.feed(&rest[..n]) != Progress::More;
                rest = &rest[n..];
            }
            if !decided {
                let _ = r.eof();
            }
            assert!(r.body().len() <= BODY_MAX);
        }
    }

    /// An answer from the pieces php-fpm and other FastCGI servers send, valid or not, then
    /// perhaps edited: CGI headers and a body in STDOUT records of any size with any padding,
    /// STDERR records in between, the end of STDOUT and END_REQUEST or not.
    fn generated(rng: &mut Rng) -> Vec<u8> {
        let mut stdout = Vec::new();
        let eol = rng.pick(&[b"\r\n", b"\n"]);
        for _ in 0..rng.below(4) {
            stdout.extend_from_slice(rng.pick(&[
                b"Status: 503 Service Unavailable",
                b"Status: 200",
                b"Status: x",
                b"Content-type: text/html",
                b"Location: /elsewhere",
                b"X-Powered-By: PHP/8.2",
                b"Broken header",
            ]));
            stdout.extend_from_slice(eol);
        }
        if rng.below(4) != 0 {
            stdout.extend_from_slice(eol);
        }
        stdout.extend((0..rng.below(40)).map(|i| b'a' + (i % 26) as u8));
        let mut out = Vec::new();
        let record = |out: &mut Vec<u8>, kind: u8, data: &[u8], pad: usize| {
            out.extend_from_slice(&[1, kind, 0, 1]);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(&[pad as u8, 0]);
            out.extend_from_slice(data);
            out.extend(core::iter::repeat_n(0, pad));
        };
        let mut rest = &stdout[..];
        while !rest.is_empty() {
            if rng.below(5) == 0 {
                let pad = rng.below(8);
                record(&mut out, STDERR, b"PHP Warning: x", pad);
            }
            let n = (1 + rng.below(16)).min(rest.len());
            let pad = rng.below(8);
            record(&mut out, STDOUT, &rest[..n], pad);
            rest = &rest[n..];
        }
        match rng.below(4) {
            0 => {}
            1 => record(&mut out, STDOUT, b"", 0),
            _ => {
                record(&mut out, STDOUT, b"", 0);
                record(&mut out, END_REQUEST, &[0; 8], 0);
            }
        }
        rng.edit(&mut out);
        out
    }

    /// What a reader says of `bytes` fed in the given pieces, then EOF if still undecided.
    fn verdict(bytes: &[u8], cuts: &[usize], want_body: bool) -> (Progress, Vec<u8>) {
        let mut r = Reader::new(want_body);
        for piece in pieces(bytes, cuts) {
            match r.feed(piece) {
                Progress::More => {}
                other => return (other, r.body().to_vec()),
            }
        }
        (r.eof(), r.body().to_vec())
    }

    #[test]
    fn any_cut_of_any_answer_gives_the_same_verdict() {
        let mut rng = Rng(0x2026_1122);
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for case in 0..3000 {
            let answer = generated(&mut rng);
            for want_body in [false, true] {
                let whole = verdict(&answer, &[], want_body);
                *seen
                    .entry(
                        format!("{:?}", whole.0)
                            .split('(')
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    )
                    .or_default() += 1;
                for cuts in rng.cuts(answer.len()) {
                    assert_eq!(
                        verdict(&answer, &cuts, want_body),
                        whole,
                        "case {case}, cut at {cuts:?}: {answer:?}"
                    );
                }
            }
        }
        // the generator makes answers of both kinds, not only broken ones
        assert!(seen["Done"] > 1000 && seen["Fail"] > 1000, "{seen:?}");
    }
}
