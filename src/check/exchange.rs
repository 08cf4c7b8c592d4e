//! The prober's protocol half, without sockets: what a check sends once connected (and, for
//! TLS kinds, once the handshake is done) and how it judges what comes back. The connection
//! driver in `check::probe` does the I/O and reports connect / data / close events here;
//! the verdict is an [`Outcome`]. Pure: a body expectation (PCRE, FFI) comes in as a closure.

use super::conf::{Expect, Kind};
use super::health::{Outcome, Reason};
use super::http_parse::{Parser, Progress};
use super::{ajp, fastcgi, mysql};
use crate::cause::{cause_from_errno, errno, Cause};

/// `check_http_expect_body`: does the body match?
pub type BodyMatch<'a> = &'a dyn Fn(&[u8]) -> bool;

/// How a response is judged.
pub struct Judge<'a> {
    pub expect: &'a Expect,
    pub body: Option<BodyMatch<'a>>,
}

impl Judge<'_> {
    fn verdict(&self, status: u16, body: &[u8]) -> Outcome {
        if !self.expect.passes(status) {
            return Outcome::fail(Reason::BadStatus, Some(status));
        }
        match self.body {
            Some(matches) if !matches(body) => Outcome::fail(Reason::BodyMismatch, Some(status)),
            _ => Outcome::pass(Some(status)),
        }
    }

    /// A parser's progress as a verdict (None: undecided), with the body and status it read.
    fn progress(&self, p: Progress, body: &[u8], status: Option<u16>) -> Option<Outcome> {
        match p {
            Progress::More => None,
            Progress::Done(s) => Some(self.verdict(s, body)),
            Progress::Fail(c) => Some(Outcome::fail(Reason::Cause(c), status)),
        }
    }
}

/// Where a probe is; decides the cause of a timeout or a socket error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connect,
    Handshake,
    Send,
    Read,
}

impl Phase {
    /// The probe's deadline passed in this phase.
    pub fn timeout(self) -> Cause {
        match self {
            Phase::Connect => Cause::ConnectTimeout,
            Phase::Handshake => Cause::TlsHandshakeFailed,
            Phase::Send => Cause::SendTimeout,
            Phase::Read => Cause::ReadTimeout,
        }
    }

    /// A socket call failed with `errno` (0: unknown) in this phase.
    pub fn error(self, errno: i32) -> Cause {
        if let Some(c) = cause_from_errno(errno) {
            return c;
        }
        match (self, errno) {
            (_, errno::EPIPE) => Cause::ConnectionReset,
            (Phase::Connect, errno::ETIMEDOUT) => Cause::ConnectTimeout,
            (_, errno::ETIMEDOUT) => Cause::ReadTimeout,
            (Phase::Handshake, _) => Cause::TlsHandshakeFailed,
            _ => Cause::Other,
        }
    }
}

pub enum Exchange {
    /// tcp, ssl_hello: being connected (handshake done) is the verdict.
    Connect,
    /// http, https: send the request, parse the response.
    Http(Box<Parser>),
    /// fastcgi: send the records, read the answer's records and CGI headers.
    FastCgi(Box<fastcgi::Reader>),
    /// mysql: send nothing, read the server's first packet.
    Mysql(mysql::Greeting),
    /// ajp: send CPing, read CPong.
    Ajp(ajp::Pong),
}

impl Exchange {
    /// `request` is what will be sent (a HEAD request expects no body); `keepalive`: read
    /// responses to their end so that the connection can carry the next check.
    pub fn new(kind: Kind, request: &[u8], want_body: bool, keepalive: bool) -> Exchange {
        match kind {
            Kind::Http | Kind::Https => {
                let head = request.len() >= 5 && request[..5].eq_ignore_ascii_case(b"HEAD ");
                Exchange::Http(Box::new(Parser::new(want_body, head, keepalive)))
            }
            Kind::FastCgi => Exchange::FastCgi(Box::new(fastcgi::Reader::new(want_body))),
            Kind::Mysql => Exchange::Mysql(mysql::Greeting::new()),
            Kind::Ajp => Exchange::Ajp(ajp::Pong::new()),
            Kind::Tcp | Kind::SslHello => Exchange::Connect,
        }
    }

    /// After a verdict: may the connection carry the next check?
    pub fn reusable(&self) -> bool {
        match self {
            Exchange::Http(p) => p.reusable(),
            _ => false,
        }
    }

    /// Connected: the verdict when no request follows.
    pub fn connected(&self) -> Option<Outcome> {
        match self {
            Exchange::Connect => Some(Outcome::pass(None)),
            _ => None,
        }
    }

    /// Bytes of the response; Some once judged.
    pub fn data(&mut self, d: &[u8], judge: &Judge) -> Option<Outcome> {
        let (progress, body, status) = match self {
            Exchange::Connect => return Some(Outcome::pass(None)),
            Exchange::Http(p) => (p.feed(d), p.body(), p.status()),
            Exchange::FastCgi(r) => (r.feed(d), r.body(), r.status()),
            Exchange::Mysql(g) => return g.feed(d),
            Exchange::Ajp(p) => return p.feed(d),
        };
        judge.progress(progress, body, status)
    }

    /// The peer closed the connection.
    pub fn eof(&mut self, judge: &Judge) -> Outcome {
        let (progress, body, status) = match self {
            Exchange::Connect => return Outcome::pass(None),
            Exchange::Http(p) => (p.eof(), p.body(), p.status()),
            Exchange::FastCgi(r) => (r.eof(), r.body(), r.status()),
            Exchange::Mysql(g) => return g.eof(),
            Exchange::Ajp(p) => return p.eof(),
        };
        judge
            .progress(progress, body, status)
            .unwrap_or(Outcome::fail(Reason::Cause(Cause::PrematureClose), status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_name_causes() {
        assert_eq!(Phase::Connect.timeout(), Cause::ConnectTimeout);
        assert_eq!(Phase::Read.timeout(), Cause::ReadTimeout);
        assert_eq!(Phase::Send.timeout(), Cause::SendTimeout);
        assert_eq!(Phase::Handshake.timeout(), Cause::TlsHandshakeFailed);
        assert_eq!(Phase::Connect.error(111), Cause::ConnectRefused);
        assert_eq!(Phase::Read.error(104), Cause::ConnectionReset);
        assert_eq!(Phase::Send.error(32), Cause::ConnectionReset);
        assert_eq!(Phase::Connect.error(113), Cause::HostUnreachable);
        assert_eq!(Phase::Connect.error(110), Cause::ConnectTimeout);
        assert_eq!(Phase::Handshake.error(0), Cause::TlsHandshakeFailed);
        assert_eq!(Phase::Read.error(0), Cause::Other);
    }

    fn judge_all(e: &mut Exchange, resp: &[u8], judge: &Judge) -> Outcome {
        e.data(resp, judge).unwrap_or_else(|| e.eof(judge))
    }

    #[test]
    fn tcp_passes_on_connect() {
        let e = Exchange::new(Kind::Tcp, b"", false, false);
        assert_eq!(e.connected(), Some(Outcome::pass(None)));
        assert!(Exchange::new(Kind::SslHello, b"", false, false)
            .connected()
            .is_some());
    }

    #[test]
    fn http_status_and_body() {
        let expect = Expect::default();
        let judge = Judge {
            expect: &expect,
            body: None,
        };
        let mut e = Exchange::new(Kind::Http, b"GET / HTTP/1.0\r\n\r\n", false, false);
        assert_eq!(e.connected(), None);
        let ok = judge_all(&mut e, b"HTTP/1.1 204 No Content\r\n\r\n", &judge);
        assert_eq!(ok, Outcome::pass(Some(204)));
        let mut e = Exchange::new(Kind::Https, b"GET / HTTP/1.0\r\n\r\n", false, false);
        let bad = judge_all(&mut e, b"HTTP/1.1 503 Busy\r\n\r\n", &judge);
        assert_eq!(bad, Outcome::fail(Reason::BadStatus, Some(503)));

        let m = |b: &[u8]| b.windows(2).any(|w| w == b"OK");
        let judge = Judge {
            expect: &expect,
            body: Some(&m),
        };
        let mut e = Exchange::new(Kind::Http, b"GET /h HTTP/1.0\r\n\r\n", true, false);
        let r = judge_all(&mut e, b"HTTP/1.0 200 OK\r\n\r\nall OK", &judge);
        assert_eq!(r, Outcome::pass(Some(200)));
        let mut e = Exchange::new(Kind::Http, b"GET /h HTTP/1.0\r\n\r\n", true, false);
        let r = judge_all(
            &mut e,
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nfail",
            &judge,
        );
        assert_eq!(r, Outcome::fail(Reason::BodyMismatch, Some(200)));
    }

    #[test]
    fn keepalive_reads_to_the_end() {
        let expect = Expect::default();
        let judge = Judge {
            expect: &expect,
            body: None,
        };
        let mut e = Exchange::new(
            Kind::Http,
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            false,
            true,
        );
        assert_eq!(
            e.data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", &judge),
            None
        );
        assert_eq!(e.data(b"ok", &judge), Some(Outcome::pass(Some(200))));
        assert!(e.reusable());
        assert!(!Exchange::new(Kind::Tcp, b"", false, true).reusable());
    }

    #[test]
    fn fastcgi_status_judged() {
        let expect = Expect::default(); // 2xx and 3xx
        let judge = Judge {
            expect: &expect,
            body: None,
        };
        let out = |stdout: &[u8]| {
            let mut a = vec![1, 6, 0, 1, 0, stdout.len() as u8, 0, 0];
            a.extend_from_slice(stdout);
            a
        };
        let mut e = Exchange::new(Kind::FastCgi, b"", false, false);
        assert_eq!(e.connected(), None);
        let ok = judge_all(
            &mut e,
            &out(b"Content-type: text/plain\r\n\r\npong"),
            &judge,
        );
        assert_eq!(ok, Outcome::pass(Some(200)));
        assert!(!e.reusable());
        let mut e = Exchange::new(Kind::FastCgi, b"", false, false);
        let bad = judge_all(&mut e, &out(b"Status: 404 Not Found\r\n\r\n"), &judge);
        assert_eq!(bad, Outcome::fail(Reason::BadStatus, Some(404)));
        // a closed connection before the headers ended
        let mut e = Exchange::new(Kind::FastCgi, b"", false, false);
        let cut = judge_all(&mut e, &out(b"Status: 200"), &judge);
        assert_eq!(
            cut,
            Outcome::fail(Reason::Cause(Cause::PrematureClose), None)
        );
    }

    #[test]
    fn mysql_and_ajp_wait_for_their_answer() {
        let expect = Expect::default();
        let judge = Judge {
            expect: &expect,
            body: None,
        };
        let mut e = Exchange::new(Kind::Mysql, b"", false, true);
        assert_eq!(e.connected(), None);
        assert_eq!(e.data(b"\x4a\x00\x00", &judge), None);
        assert_eq!(
            e.data(b"\x00\x0a8.0.36\x00", &judge),
            Some(Outcome::pass(None))
        );
        assert!(!e.reusable());
        let mut e = Exchange::new(Kind::Ajp, &ajp::CPING, false, false);
        assert_eq!(e.connected(), None);
        assert_eq!(e.data(b"AB\x00", &judge), None);
        assert_eq!(
            e.eof(&judge),
            Outcome::fail(Reason::Cause(Cause::PrematureClose), None)
        );
    }

    #[test]
    fn head_requests_expect_no_body() {
        let expect = Expect::default();
        let judge = Judge {
            expect: &expect,
            body: None,
        };
        let mut e = Exchange::new(Kind::Http, b"HEAD /health HTTP/1.0\r\n\r\n", true, false);
        let r = e.data(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", &judge);
        assert_eq!(r, Some(Outcome::pass(Some(200))));
    }

    #[test]
    fn broken_responses_name_the_cause() {
        let expect = Expect::default();
        let judge = Judge {
            expect: &expect,
            body: None,
        };
        let mut e = Exchange::new(Kind::Http, b"GET / HTTP/1.0\r\n\r\n", false, false);
        assert_eq!(
            judge_all(&mut e, b"garbage\r\n", &judge),
            Outcome::fail(Reason::Cause(Cause::InvalidHeader), None)
        );
        let mut e = Exchange::new(Kind::Http, b"GET / HTTP/1.0\r\n\r\n", false, false);
        assert_eq!(
            judge_all(&mut e, b"HTTP/1.1 200 OK\r\n", &judge),
            Outcome::fail(Reason::Cause(Cause::PrematureClose), Some(200))
        );
    }
}
