//! The plain description of a parsed configuration that the lint rules read: upstream blocks,
//! locations that pass requests to a backend (with the settings in effect there, after nginx's
//! inheritance), the worker user. No FFI: the glue builds it, unit tests write it by hand.

use std::net::SocketAddr;

use crate::lint::code::Code;

/// Where a directive was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    pub file: String,
    pub line: usize,
    /// Parse order (findings are reported in configuration order).
    pub seq: usize,
}

/// A value and the directive that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub site: Site,
}

/// The module behind a `*_pass` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    Proxy,
    Fastcgi,
    Uwsgi,
    Scgi,
    Grpc,
}

impl PassKind {
    pub const ALL: [PassKind; 5] = [
        PassKind::Proxy,
        PassKind::Fastcgi,
        PassKind::Uwsgi,
        PassKind::Scgi,
        PassKind::Grpc,
    ];

    /// `proxy`, `fastcgi`…: the prefix of the module's directives.
    pub fn prefix(self) -> &'static str {
        match self {
            PassKind::Proxy => "proxy",
            PassKind::Fastcgi => "fastcgi",
            PassKind::Uwsgi => "uwsgi",
            PassKind::Scgi => "scgi",
            PassKind::Grpc => "grpc",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A `*_pass` directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    pub kind: PassKind,
    /// The argument as written.
    pub target: String,
    pub site: Site,
}

/// A location (or `if`/`limit_except` block) that passes requests to a backend, with the
/// settings in effect there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The location's name as nginx shows it (`/`, `@fallback`, `^/api` for regexes).
    pub name: String,
    pub pass: Pass,
    /// `proxy_http_version` in effect, if set anywhere on the way.
    pub http_version: Option<Setting<String>>,
    /// `proxy_set_header` list in effect (name, value), if any level set one.
    pub proxy_headers: Option<Vec<(String, String)>>,
    /// `<kind>_read_timeout` in effect for the pass's module, in milliseconds.
    pub read_timeout: Option<Setting<u64>>,
    /// Codes silenced here (this level's `triage_lint_ignore` and the enclosing levels').
    pub ignore: Vec<Code>,
}

/// An `upstream {}` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub site: Site,
    /// The `keepalive` directive, if any.
    pub keepalive: Option<Site>,
    pub servers: Vec<Server>,
    /// The active health check (`check`), filled from `check::directives` at the end of
    /// the http{} block.
    pub check: Option<Check>,
    /// Codes silenced by `triage_lint_ignore` in this block.
    pub ignore: Vec<Code>,
}

/// A `server` line of an upstream block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// The address as written.
    pub addr: String,
    pub backup: bool,
    pub down: bool,
    /// `max_fails=` as written (absent: nginx's default 1 applies).
    pub max_fails: Option<u64>,
    /// `fail_timeout=` in milliseconds, as written.
    pub fail_timeout: Option<u64>,
    pub site: Site,
}

/// An upstream's active health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// How long one check may take, in milliseconds.
    pub timeout_ms: u64,
    pub site: Site,
}

/// The user the worker processes run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub name: String,
    pub uid: u32,
    /// Primary group first, then supplementary groups.
    pub gids: Vec<u32>,
}

/// Everything the rules look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub upstreams: Vec<Upstream>,
    pub locations: Vec<Location>,
    /// The TCP addresses the http{} servers of this configuration listen on (`listen`, or
    /// nginx's default): nginx itself serves a backend there once it runs.
    pub listens: Vec<SocketAddr>,
    /// The unix sockets they listen on (`listen unix:PATH`): nginx creates them as it starts.
    pub unix_listens: Vec<String>,
    /// Codes silenced at http{} level (apply to upstream findings too).
    pub http_ignore: Vec<Code>,
    /// `None` when the worker user could not be determined (socket-permission is skipped).
    pub worker: Option<Worker>,
}
