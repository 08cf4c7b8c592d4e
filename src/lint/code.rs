//! The lint's finding codes: stable short names shown in brackets in every warning and accepted
//! by `triage_lint_ignore`. They are an interface: never rename one.

/// One kind of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    KeepaliveHttp10,
    KeepaliveConnectionHeader,
    SocketMissing,
    SocketPermission,
    NothingListening,
    PlainToTlsPort,
    SelinuxNetworkConnect,
    TimeoutBelowCheck,
    MaxFailsWithCheck,
    AllBackup,
}

impl Code {
    /// Every code, in documentation order.
    pub const ALL: [Code; 10] = [
        Code::KeepaliveHttp10,
        Code::KeepaliveConnectionHeader,
        Code::SocketMissing,
        Code::SocketPermission,
        Code::NothingListening,
        Code::PlainToTlsPort,
        Code::SelinuxNetworkConnect,
        Code::TimeoutBelowCheck,
        Code::MaxFailsWithCheck,
        Code::AllBackup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::KeepaliveHttp10 => "keepalive-http10",
            Code::KeepaliveConnectionHeader => "keepalive-connection-header",
            Code::SocketMissing => "socket-missing",
            Code::SocketPermission => "socket-permission",
            Code::NothingListening => "nothing-listening",
            Code::PlainToTlsPort => "plain-to-tls-port",
            Code::SelinuxNetworkConnect => "selinux-network-connect",
            Code::TimeoutBelowCheck => "timeout-below-check",
            Code::MaxFailsWithCheck => "max-fails-with-check",
            Code::AllBackup => "all-backup",
        }
    }

    /// The code named exactly `s` (as written in `triage_lint_ignore`).
    pub fn parse(s: &[u8]) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str().as_bytes() == s)
    }

    /// All codes, comma-separated (for error messages).
    pub fn list() -> String {
        Code::ALL.map(Code::as_str).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for c in Code::ALL {
            assert_eq!(Code::parse(c.as_str().as_bytes()), Some(c));
        }
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }

    #[test]
    fn unknown_and_case_variants_are_rejected() {
        assert_eq!(Code::parse(b"keepalive"), None);
        assert_eq!(Code::parse(b"ALL-BACKUP"), None);
        assert_eq!(Code::parse(b""), None);
    }

    #[test]
    fn list_names_every_code() {
        let l = Code::list();
        assert!(l.starts_with("keepalive-http10, "));
        assert!(l.ends_with("all-backup"));
    }
}
