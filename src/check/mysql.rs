//! The MySQL check (`type=mysql`, as in nginx_upstream_check_module): a MySQL or MariaDB
//! server speaks first, so the check sends nothing and reads the first packet. A handshake
//! (protocol 10, or 9 of servers before 3.21) passes; an error packet in its place is the
//! server refusing this client (too many connections, host blocked, host not allowed), and
//! fails with that reason, where UCM passes any first packet numbered 0. The check closes
//! without logging in. Pure: the prober feeds the bytes it reads, in pieces of any size.

use super::health::{MysqlError, Outcome, Reason};
use crate::cause::Cause;

/// The first byte of an error packet's payload.
const ERR: u8 = 0xff;

/// Reads the first packet: its 4-byte header (3-byte length, sequence number 0), then the
/// protocol version, or an error packet's 2-byte code.
#[derive(Default)]
pub struct Greeting {
    head: [u8; 7],
    got: usize,
}

impl Greeting {
    pub fn new() -> Greeting {
        Greeting::default()
    }

    /// Bytes read; Some once judged.
    pub fn feed(&mut self, d: &[u8]) -> Option<Outcome> {
        let take = d.len().min(self.head.len() - self.got);
        self.head[self.got..self.got + take].copy_from_slice(&d[..take]);
        self.got += take;
        self.judge()
    }

    /// The server closed the connection: a verdict, the packet cut or missing.
    pub fn eof(&mut self) -> Outcome {
        self.judge()
            .unwrap_or(Outcome::fail(Reason::Cause(Cause::PrematureClose), None))
    }

    fn judge(&self) -> Option<Outcome> {
        let h = &self.head[..self.got];
        let invalid = Some(Outcome::fail(Reason::Cause(Cause::InvalidHeader), None));
        if h.len() < 5 {
            return None;
        }
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
        if h[3] != 0 || len == 0 {
            // not the first packet of a MySQL connection (an SSH or SMTP banner, say)
            return invalid;
        }
        match h[4] {
            10 | 9 => Some(Outcome::pass(None)),
            ERR if len < 3 => invalid,
            ERR if h.len() < 7 => None,
            ERR => Some(Outcome::fail(
                Reason::Mysql(MysqlError::from_code(u16::from_le_bytes([h[5], h[6]]))),
                None,
            )),
            _ => invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MariaDB 10.11's handshake, as read on loopback (its first 24 bytes).
    const MARIADB: &[u8] = b"\x64\x00\x00\x00\x0a5.5.5-10.11.19-MariaDB-0+";
    /// MariaDB's answer to a connection past max_connections.
    const TOO_MANY: &[u8] = b"\x17\x00\x00\x00\xff\x10\x04Too many connections";

    fn judge(bytes: &[u8]) -> Outcome {
        let mut g = Greeting::new();
        g.feed(bytes).unwrap_or_else(|| g.eof())
    }

    #[test]
    fn a_handshake_passes() {
        assert_eq!(judge(MARIADB), Outcome::pass(None));
        // protocol 9 (servers before 3.21)
        assert_eq!(judge(b"\x30\x00\x00\x00\x093.20.32"), Outcome::pass(None));
    }

    #[test]
    fn error_packets_name_the_refusal() {
        assert_eq!(
            judge(TOO_MANY),
            Outcome::fail(Reason::Mysql(MysqlError::TooManyConnections), None)
        );
        let err = |code: u16| {
            let mut p = vec![0x20, 0, 0, 0, ERR];
            p.extend_from_slice(&code.to_le_bytes());
            p.extend_from_slice(b"Host '127.0.0.1' is ...");
            judge(&p)
        };
        assert_eq!(
            err(1129),
            Outcome::fail(Reason::Mysql(MysqlError::HostBlocked), None)
        );
        assert_eq!(
            err(1130),
            Outcome::fail(Reason::Mysql(MysqlError::HostNotAllowed), None)
        );
        assert_eq!(
            err(1045),
            Outcome::fail(Reason::Mysql(MysqlError::Other), None)
        );
    }

    #[test]
    fn read_in_pieces() {
        for bytes in [MARIADB, TOO_MANY] {
            let whole = judge(bytes);
            let mut g = Greeting::new();
            let mut got = None;
            for b in bytes {
                got = g.feed(core::slice::from_ref(b));
                if got.is_some() {
                    break;
                }
            }
            assert_eq!(got, Some(whole));
        }
        // undecided until the byte that decides
        let mut g = Greeting::new();
        assert_eq!(g.feed(&TOO_MANY[..6]), None);
    }

    #[test]
    fn other_servers_and_cut_packets() {
        let invalid = Outcome::fail(Reason::Cause(Cause::InvalidHeader), None);
        assert_eq!(judge(b"SSH-2.0-OpenSSH_9.2\r\n"), invalid);
        assert_eq!(judge(b"220 mail.test ESMTP\r\n"), invalid);
        assert_eq!(judge(b"HTTP/1.1 400 Bad Request\r\n"), invalid);
        // numbered 0, but neither a handshake nor an error
        assert_eq!(judge(b"\x05\x00\x00\x00\x41bcde"), invalid);
        // an empty packet; an error packet too short for its code
        assert_eq!(judge(b"\x00\x00\x00\x00\x0a"), invalid);
        assert_eq!(judge(b"\x01\x00\x00\x00\xff"), invalid);
        let cut = Outcome::fail(Reason::Cause(Cause::PrematureClose), None);
        assert_eq!(judge(b""), cut);
        assert_eq!(judge(&MARIADB[..4]), cut);
        assert_eq!(judge(&TOO_MANY[..6]), cut);
    }

    #[test]
    fn hostile_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut g = Greeting::new();
            let mut verdict = None;
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = (seed % 9) as usize;
                let piece: Vec<u8> = (0..n).map(|i| (seed >> (i * 7)) as u8).collect();
                verdict = g.feed(&piece);
                if verdict.is_some() {
                    break;
                }
            }
            let _ = verdict.unwrap_or_else(|| g.eof());
        }
    }
}
