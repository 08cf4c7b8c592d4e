//! The AJP check (`type=ajp`, as in nginx_upstream_check_module): Apache JServ Protocol 1.3's
//! CPing, which a servlet container (Tomcat's AJP connector) answers with a CPong without
//! running an application. Anything else on the port fails the check. Pure: the prober
//! feeds the bytes it reads, in pieces of any size.

use super::health::{Outcome, Reason};
use crate::cause::Cause;

/// What the check sends: a packet from the web server (0x1234), 1 byte long, CPing (10).
pub const CPING: [u8; 5] = [0x12, 0x34, 0x00, 0x01, 0x0a];
/// The answer: a packet from the container ("AB"), 1 byte long, CPong (9).
const CPONG: [u8; 5] = [b'A', b'B', 0x00, 0x01, 0x09];

/// Reads the answer to CPing, judged at the first byte that differs from a CPong.
#[derive(Default)]
pub struct Pong {
    got: usize,
}

impl Pong {
    pub fn new() -> Pong {
        Pong::default()
    }

    /// Bytes read; Some once judged.
    pub fn feed(&mut self, d: &[u8]) -> Option<Outcome> {
        for &b in d {
            if b != CPONG[self.got] {
                return Some(Outcome::fail(Reason::Cause(Cause::InvalidHeader), None));
            }
            self.got += 1;
            if self.got == CPONG.len() {
                return Some(Outcome::pass(None));
            }
        }
        None
    }

    /// The container closed the connection before a whole CPong.
    pub fn eof(&mut self) -> Outcome {
        Outcome::fail(Reason::Cause(Cause::PrematureClose), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(bytes: &[u8]) -> Outcome {
        let mut p = Pong::new();
        p.feed(bytes).unwrap_or_else(|| p.eof())
    }

    #[test]
    fn cpong_passes_in_any_pieces() {
        assert_eq!(judge(&CPONG), Outcome::pass(None));
        let mut p = Pong::new();
        assert_eq!(p.feed(&CPONG[..2]), None);
        assert_eq!(p.feed(&CPONG[2..4]), None);
        assert_eq!(p.feed(&CPONG[4..]), Some(Outcome::pass(None)));
    }

    #[test]
    fn anything_else_fails() {
        let invalid = Outcome::fail(Reason::Cause(Cause::InvalidHeader), None);
        // an HTTP server's answer to five bytes it cannot parse
        assert_eq!(judge(b"HTTP/1.1 400 Bad Request\r\n"), invalid);
        // an AJP packet, but not a CPong (a container's END_RESPONSE, type 5)
        assert_eq!(judge(b"AB\x00\x02\x05\x01"), invalid);
        // the CPing echoed back
        assert_eq!(judge(&CPING), invalid);
        let cut = Outcome::fail(Reason::Cause(Cause::PrematureClose), None);
        assert_eq!(judge(b""), cut);
        assert_eq!(judge(&CPONG[..4]), cut);
    }
}
