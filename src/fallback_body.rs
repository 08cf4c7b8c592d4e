//! What `triage_fallback` says and how: the directive's arguments, the JSON and HTML pages,
//! the `Retry-After` value. Pure code (no FFI), covered by `cargo test`; `fallback.rs` is
//! the nginx glue.
//!
//! The pages are prepared once, at configuration time: [`template`] renders each page
//! (JSON through serde_json, HTML) with markers in place of the per-request values and cuts
//! it into literal chunks and holes. A request only copies the chunks and writes its values
//! (status, cause, request id, retry delay, and the details when enabled) into the holes,
//! JSON values through serde_json, HTML text escaped.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::OnceLock;

use serde::ser::{Serialize, Serializer};

use crate::cause::{Cause, Detail, Pass, Phase};

/// `Retry-After` for `no_live_upstreams` when no failed peer tells when it is retried.
pub const DEFAULT_RETRY_AFTER: u64 = 5;

/// `triage_fallback` mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    Json,
    Html,
    /// JSON or HTML after the client's `Accept`.
    Auto,
    /// A static body, from this path (as written).
    File(Vec<u8>),
}

/// The arguments of `triage_fallback`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub mode: Mode,
    /// `type=MIME` (file= only).
    pub content_type: Option<Vec<u8>>,
    /// `upstream_errors=on`: also replace the backend's own 502.
    pub upstream_errors: bool,
}

/// Parse `off | json | html | auto | file=PATH [type=MIME] [upstream_errors=on|off]`.
/// The error is the message for `nginx -t` (nginx adds the file and line).
pub fn parse_spec(args: &[&[u8]]) -> Result<Spec, String> {
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let Some((&first, rest)) = args.split_first() else {
        return Err("invalid number of arguments".into());
    };
    let mode = match first {
        b"off" => Mode::Off,
        b"json" => Mode::Json,
        b"html" => Mode::Html,
        b"auto" => Mode::Auto,
        _ => match first.strip_prefix(b"file=") {
            Some([]) => return Err("empty path in \"file=\"".into()),
            Some(path) => Mode::File(path.to_vec()),
            None => {
                return Err(format!(
                    "invalid value \"{}\", it must be \"off\", \"json\", \"html\", \"auto\" or \"file=PATH\"",
                    show(first)
                ))
            }
        },
    };
    let mut spec = Spec {
        mode,
        content_type: None,
        upstream_errors: false,
    };
    let mut seen_upstream_errors = false;
    for &a in rest {
        if spec.mode == Mode::Off {
            return Err(format!("invalid parameter \"{}\" after \"off\"", show(a)));
        }
        if let Some(t) = a.strip_prefix(b"type=") {
            if !matches!(spec.mode, Mode::File(_)) {
                return Err(format!(
                    "invalid parameter \"{}\": \"type=\" goes with \"file=PATH\" only",
                    show(a)
                ));
            }
            if spec.content_type.is_some() {
                return Err("duplicate \"type=\"".into());
            }
            if t.is_empty() || !t.contains(&b'/') || t.iter().any(|c| c.is_ascii_control()) {
                return Err(format!("invalid MIME type in \"{}\"", show(a)));
            }
            spec.content_type = Some(t.to_vec());
        } else if let Some(v) = a.strip_prefix(b"upstream_errors=") {
            if seen_upstream_errors {
                return Err("duplicate \"upstream_errors=\"".into());
            }
            seen_upstream_errors = true;
            spec.upstream_errors = match v {
                b"on" => true,
                b"off" => false,
                _ => {
                    return Err(format!(
                        "invalid parameter \"{}\", it must be \"upstream_errors=on\" or \"upstream_errors=off\"",
                        show(a)
                    ))
                }
            };
        } else {
            return Err(format!("invalid parameter \"{}\"", show(a)));
        }
    }
    Ok(spec)
}

/// `triage_fallback_status CODE`: a status with a body (200..599 but 204 and 304).
pub fn parse_status(arg: &[u8]) -> Result<u16, String> {
    let code = core::str::from_utf8(arg)
        .ok()
        .filter(|s| s.len() == 3 && s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|c| (200..=599).contains(c) && *c != 204 && *c != 304);
    code.ok_or_else(|| {
        format!(
            "invalid status \"{}\", it must be a code from 200 to 599 with a body (not 204 or 304)",
            String::from_utf8_lossy(arg)
        )
    })
}

/// Whether a Content-Type needs `; charset=utf-8`: a text type that names no charset.
pub fn wants_charset(content_type: &[u8]) -> bool {
    content_type.len() > 5
        && content_type[..5].eq_ignore_ascii_case(b"text/")
        && !content_type
            .windows(8)
            .any(|w| w.eq_ignore_ascii_case(b"charset="))
}

/// The extension of a file name as nginx's `types` know it (after the last dot of the last
/// path component), if any.
pub fn extension(path: &[u8]) -> Option<&[u8]> {
    let name = path.rsplit(|&c| c == b'/').next().unwrap_or(path);
    let dot = name.iter().rposition(|&c| c == b'.')?;
    let ext = &name[dot + 1..];
    (!ext.is_empty()).then_some(ext)
}

/// One peer of an upstream, as the round-robin balancer sees it (times in seconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerHealth {
    pub down: bool,
    pub max_fails: u64,
    pub fails: u64,
    pub fail_timeout: i64,
    pub checked: i64,
}

/// Seconds until the first of `peers` that `max_fails` took out is tried again (nginx skips
/// a failed peer while `now - checked <= fail_timeout`); [`DEFAULT_RETRY_AFTER`] if none is
/// out that way (all `down`, or busy with `max_conns`).
pub fn retry_after(peers: impl IntoIterator<Item = PeerHealth>, now: i64) -> u64 {
    peers
        .into_iter()
        .filter(|p| !p.down && p.max_fails != 0 && p.fails >= p.max_fails)
        .map(|p| (p.checked + p.fail_timeout + 1 - now).max(1) as u64)
        .min()
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// Page format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
}

/// The per-request facts a page shows.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    /// The status sent (`triage_fallback_status`, or the gateway status).
    pub status: u16,
    /// What nginx hit: 502 or 504.
    pub gateway_status: u16,
    pub cause: Cause,
    /// `$request_id`.
    pub request_id: &'a [u8],
    /// The `Retry-After` value sent, if any.
    pub retry_after: Option<u64>,
    /// The peer tried (empty: none, e.g. `no_live_upstreams`). Details only.
    pub peer: &'a [u8],
    pub errno: Option<i32>,
    pub phase: Option<Phase>,
    /// The upstream module (`fastcgi_pass`...): the directives the hint names. Details only.
    pub pass: Pass,
    /// What else says why the try failed (the hint). Details only.
    pub detail: Detail,
}

/// The JSON `error` for a gateway status.
pub fn error_name(gateway_status: u16) -> &'static str {
    match gateway_status {
        504 => "gateway_timeout",
        _ => "bad_gateway",
    }
}

fn reason(gateway_status: u16) -> &'static str {
    match gateway_status {
        504 => "504 Gateway Timeout",
        _ => "502 Bad Gateway",
    }
}

/// A per-request value of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Hole {
    Status,
    Error,
    Cause,
    RequestId,
    RetryAfter,
    Peer,
    Errno,
    Phase,
    Hint,
}

const HOLES: [Hole; 9] = [
    Hole::Status,
    Hole::Error,
    Hole::Cause,
    Hole::RequestId,
    Hole::RetryAfter,
    Hole::Peer,
    Hole::Errno,
    Hole::Phase,
    Hole::Hint,
];

/// Marks a hole in a page rendered at configuration time (control characters: no value
/// renders them raw).
const MARK: char = '\u{1}';

/// A JSON value: a hole's marker, or a request's value.
enum Val<'a> {
    Marker(Hole),
    Num(i64),
    Count(u64),
    Str(Cow<'a, str>),
    Null,
}

impl Serialize for Val<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Marker(h) => s.serialize_str(&format!("{MARK}{}{MARK}", *h as u8)),
            Val::Num(n) => s.serialize_i64(*n),
            Val::Count(n) => s.serialize_u64(*n),
            Val::Str(v) => s.serialize_str(v),
            Val::Null => s.serialize_unit(),
        }
    }
}

fn lossy(b: &[u8]) -> Cow<'_, str> {
    // from_utf8 first: its ASCII fast path is much cheaper than the lossy decoder's
    match core::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

fn json_value<'a>(h: Hole, p: &Page<'a>) -> Val<'a> {
    match h {
        Hole::Status => Val::Num(p.status.into()),
        Hole::Error => Val::Str(error_name(p.gateway_status).into()),
        Hole::Cause => Val::Str(p.cause.as_str().into()),
        Hole::RequestId => Val::Str(lossy(p.request_id)),
        Hole::RetryAfter => p.retry_after.map_or(Val::Null, Val::Count),
        Hole::Peer if p.peer.is_empty() => Val::Null,
        Hole::Peer => Val::Str(lossy(p.peer)),
        Hole::Errno => p.errno.map_or(Val::Null, |n| Val::Num(n.into())),
        Hole::Phase => p.phase.map_or(Val::Null, |ph| Val::Str(ph.as_str().into())),
        Hole::Hint => Val::Str(p.cause.hint_in(p.errno, p.detail, p.pass).into()),
    }
}

/// The JSON document. Field order is the key order.
#[derive(serde::Serialize)]
struct JsonDoc<'a> {
    status: Val<'a>,
    error: Val<'a>,
    cause: Val<'a>,
    request_id: Val<'a>,
    retry_after: Val<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<Val<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno: Option<Val<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<Val<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<Val<'a>>,
}

fn render_json<'a>(details: bool, v: impl Fn(Hole) -> Val<'a>) -> Vec<u8> {
    let d = |h| details.then(|| v(h));
    let doc = JsonDoc {
        status: v(Hole::Status),
        error: v(Hole::Error),
        cause: v(Hole::Cause),
        request_id: v(Hole::RequestId),
        retry_after: v(Hole::RetryAfter),
        peer: d(Hole::Peer),
        errno: d(Hole::Errno),
        phase: d(Hole::Phase),
        hint: d(Hole::Hint),
    };
    let mut out = serde_json::to_vec(&doc).expect("serializing to memory cannot fail");
    out.push(b'\n');
    out
}

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A hole's text in the HTML page, escaped.
fn html_value(h: Hole, p: &Page<'_>, out: &mut String) {
    let text: Cow<'_, str> = match h {
        Hole::Status => p.status.to_string().into(),
        Hole::Error => reason(p.gateway_status).into(),
        Hole::Cause => p.cause.as_str().into(),
        Hole::RequestId => lossy(p.request_id),
        Hole::RetryAfter => match p.retry_after {
            Some(1) => "Please try again in a second.".into(),
            Some(n) => format!("Please try again in {n} seconds.").into(),
            None => "Please try again in a moment.".into(),
        },
        Hole::Peer if p.peer.is_empty() => "-".into(),
        Hole::Peer => lossy(p.peer),
        Hole::Errno => p.errno.map_or("-".into(), |n| n.to_string().into()),
        Hole::Phase => p.phase.map_or("-", |ph| ph.as_str()).into(),
        Hole::Hint => p.cause.hint_in(p.errno, p.detail, p.pass).into(),
    };
    html_escape(&text, out);
}

fn render_html(details: bool, v: impl Fn(Hole) -> String) -> Vec<u8> {
    let mut page = format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <title>Service temporarily unavailable</title>\n\
         <style>\
         body{{font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",sans-serif;color:#222;\
         background:#fafafa;margin:0;padding:4em 1em}}\
         main{{max-width:34em;margin:0 auto}}\
         h1{{font-size:1.6em;font-weight:600;margin:0 0 .5em}}\
         code{{font:.95em ui-monospace,monospace;background:#eee;padding:.1em .3em;border-radius:3px}}\
         small{{color:#777}}\
         dl{{display:grid;grid-template-columns:auto 1fr;gap:.2em 1em;font-size:.9em}}\
         dt{{color:#777}}dd{{margin:0}}\
         </style>\n\
         </head>\n\
         <body>\n\
         <main>\n\
         <h1>Service temporarily unavailable</h1>\n\
         <p>We could not reach the application behind this site. {retry}</p>\n\
         <p><small>If the problem persists, please quote this reference: \
         <code>{rid}</code></small></p>\n",
        retry = v(Hole::RetryAfter),
        rid = v(Hole::RequestId),
    );
    if details {
        page.push_str(&format!(
            "<dl>\n<dt>status</dt><dd>{error}</dd>\n<dt>cause</dt><dd>{cause}</dd>\n\
             <dt>peer</dt><dd>{peer}</dd>\n<dt>errno</dt><dd>{errno}</dd>\n\
             <dt>phase</dt><dd>{phase}</dd>\n<dt>hint</dt><dd>{hint}</dd>\n</dl>\n",
            error = v(Hole::Error),
            cause = v(Hole::Cause),
            peer = v(Hole::Peer),
            errno = v(Hole::Errno),
            phase = v(Hole::Phase),
            hint = v(Hole::Hint),
        ));
    }
    page.push_str("</main>\n</body>\n</html>\n");
    page.into_bytes()
}

#[derive(Debug)]
enum Chunk {
    Lit(Vec<u8>),
    Hole(Hole),
}

/// A page cut into literal chunks and holes.
#[derive(Debug)]
pub struct Template {
    format: Format,
    details: bool,
    chunks: Vec<Chunk>,
    known: Known,
    /// What the page takes at most, apart from its request id and peer (see [`Self::max_len`]).
    fixed_max: usize,
}

/// The encoded texts of the holes whose values come from a small set (causes, hints, phases,
/// gateway statuses), rendered once with the template.
#[derive(Debug)]
struct Known {
    cause: Vec<Vec<u8>>,
    /// By upstream module, then by cause.
    hint: Vec<Vec<Vec<u8>>>,
    phase: Vec<Vec<u8>>,
    error_502: Vec<u8>,
    error_504: Vec<u8>,
    /// The longest hint once encoded, the sharper ones included (`Cause::hint_in`).
    hint_max: usize,
}

impl Known {
    fn new(format: Format) -> Known {
        let base = Page {
            status: 502,
            gateway_status: 502,
            cause: Cause::Other,
            request_id: b"",
            retry_after: None,
            peer: b"",
            errno: None,
            phase: None,
            pass: Pass::Any,
            detail: Detail::None,
        };
        let text = |h, p: &Page<'_>| {
            let mut out = Vec::new();
            encode(format, h, p, &mut out).expect("writing to memory cannot fail");
            out
        };
        let with_cause = |c| Page { cause: c, ..base };
        let hint: Vec<Vec<Vec<u8>>> = Pass::ALL
            .iter()
            .map(|&pass| {
                Cause::ALL
                    .iter()
                    .map(|&c| {
                        text(
                            Hole::Hint,
                            &Page {
                                pass,
                                ..with_cause(c)
                            },
                        )
                    })
                    .collect()
            })
            .collect();
        // every other hint an errno or a detail gives, through any module (most are the same
        // few texts: each is encoded once)
        let mut seen = std::collections::HashSet::new();
        let sharp: Vec<usize> = Cause::ALL
            .iter()
            .flat_map(|&c| {
                let by_errno = Cause::SHARP_ERRNOS.map(|e| Page {
                    errno: Some(e),
                    ..with_cause(c)
                });
                let by_detail = Detail::ALL.into_iter().flat_map(move |detail| {
                    Pass::ALL.map(|pass| Page {
                        detail,
                        pass,
                        ..with_cause(c)
                    })
                });
                by_errno.into_iter().chain(by_detail)
            })
            .filter(|p| {
                !p.cause.hint_is_own(p.errno, p.detail, p.pass)
                    && seen.insert(p.cause.hint_in(p.errno, p.detail, p.pass).as_ptr())
            })
            .map(|p| text(Hole::Hint, &p).len())
            .collect();
        let hint_max = hint
            .iter()
            .flatten()
            .map(Vec::len)
            .chain(sharp)
            .max()
            .unwrap_or(0);
        Known {
            cause: Cause::ALL
                .iter()
                .map(|&c| text(Hole::Cause, &with_cause(c)))
                .collect(),
            hint,
            phase: Phase::ALL
                .iter()
                .map(|&ph| {
                    let p = Page {
                        phase: Some(ph),
                        ..base
                    };
                    text(Hole::Phase, &p)
                })
                .collect(),
            hint_max,
            error_502: text(Hole::Error, &base),
            error_504: text(
                Hole::Error,
                &Page {
                    gateway_status: 504,
                    ..base
                },
            ),
        }
    }
}

/// Write a hole's value for `p`: JSON through serde_json, HTML text escaped.
fn encode(format: Format, h: Hole, p: &Page<'_>, out: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Json => serde_json::to_writer(out, &json_value(h, p)).map_err(io::Error::from),
        Format::Html => {
            let mut text = String::new();
            html_value(h, p, &mut text);
            out.write_all(text.as_bytes())
        }
    }
}

impl Template {
    fn new(format: Format, details: bool) -> Template {
        // Render with markers, then find them: in JSON a marker is a string, escaped by
        // serde_json ("\u0001N\u0001" with its quotes); in HTML it is raw.
        let (page, open, close): (Vec<u8>, &[u8], &[u8]) = match format {
            Format::Json => (
                render_json(details, Val::Marker),
                b"\"\\u0001",
                b"\\u0001\"",
            ),
            Format::Html => (
                render_html(details, |h| format!("{MARK}{}{MARK}", h as u8)),
                b"\x01",
                b"\x01",
            ),
        };
        let mut chunks = Vec::new();
        let mut rest = &page[..];
        while let Some(start) = find(rest, open) {
            let after = &rest[start + open.len()..];
            let end = find(after, close).expect("a marker is closed");
            let index: usize = core::str::from_utf8(&after[..end])
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("a marker holds a hole number");
            chunks.push(Chunk::Lit(rest[..start].to_vec()));
            chunks.push(Chunk::Hole(HOLES[index]));
            rest = &after[end + close.len()..];
        }
        chunks.push(Chunk::Lit(rest.to_vec()));
        chunks.retain(|c| !matches!(c, Chunk::Lit(l) if l.is_empty()));
        let known = Known::new(format);
        let longest = |v: &[Vec<u8>]| v.iter().map(Vec::len).max().unwrap_or(0);
        let fixed_max = chunks
            .iter()
            .map(|c| match c {
                Chunk::Lit(l) => l.len(),
                Chunk::Hole(Hole::Cause) => longest(&known.cause),
                Chunk::Hole(Hole::Hint) => known.hint_max,
                Chunk::Hole(Hole::Phase) => longest(&known.phase).max(NUMBER_MAX),
                Chunk::Hole(Hole::Error) => known.error_502.len().max(known.error_504.len()),
                // numbers, `null`, "-", the HTML retry sentence, the quotes of a string
                _ => NUMBER_MAX,
            })
            .sum();
        Template {
            format,
            details,
            chunks,
            known,
            fixed_max,
        }
    }

    /// An upper bound of what [`Self::fill`] writes for `p`: a byte of the request id or the
    /// peer takes at most 6 once escaped (JSON `\u00XX`, HTML `&quot;`).
    pub fn max_len(&self, p: &Page<'_>) -> usize {
        self.fixed_max + 6 * (p.request_id.len() + p.peer.len())
    }

    /// Write the page for `p` to `out` (fails only when `out` does).
    pub fn fill(&self, p: &Page<'_>, out: &mut impl Write) -> io::Result<()> {
        self.fill_to(p, &mut Counting { out, n: 0 }).map(|_| ())
    }

    /// [`Self::fill`], saying where the request id went when it was written as is.
    fn fill_to<W: Write>(&self, p: &Page<'_>, out: &mut Counting<W>) -> io::Result<Option<usize>> {
        let k = &self.known;
        let mut rid_at = None;
        for c in &self.chunks {
            match *c {
                Chunk::Lit(ref l) => out.write_all(l)?,
                // numbers need no encoding in either format
                Chunk::Hole(Hole::Status) => write_number(out, p.status.into())?,
                Chunk::Hole(Hole::RetryAfter) if self.format == Format::Json => {
                    match p.retry_after {
                        Some(n) => write_number(out, n)?,
                        None => out.write_all(b"null")?,
                    }
                }
                Chunk::Hole(Hole::Cause) => out.write_all(&k.cause[p.cause.index()])?,
                Chunk::Hole(Hole::Hint) if p.cause.hint_is_own(p.errno, p.detail, p.pass) => {
                    out.write_all(&k.hint[p.pass as usize][p.cause.index()])?
                }
                Chunk::Hole(Hole::Phase) if p.phase.is_some() => {
                    out.write_all(&k.phase[p.phase.map_or(0, |ph| ph as usize)])?
                }
                Chunk::Hole(Hole::Error) if p.gateway_status == 504 => {
                    out.write_all(&k.error_504)?
                }
                Chunk::Hole(Hole::Error) => out.write_all(&k.error_502)?,
                // nginx's $request_id is 32 hex digits: nothing in it needs escaping in JSON
                // or HTML, so it is written as is (anything else goes through the encoders)
                Chunk::Hole(Hole::RequestId) if plain(p.request_id) => {
                    if self.format == Format::Json {
                        out.write_all(b"\"")?;
                        rid_at = Some(out.n);
                        out.write_all(p.request_id)?;
                        out.write_all(b"\"")?;
                    } else {
                        rid_at = Some(out.n);
                        out.write_all(p.request_id)?;
                    }
                }
                Chunk::Hole(h) => encode(self.format, h, p, out)?,
            }
        }
        Ok(rid_at)
    }
}

/// A writer that counts what went through it.
struct Counting<'a, W> {
    out: &'a mut W,
    n: usize,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.out.write(b)?;
        self.n += n;
        Ok(n)
    }

    #[inline]
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.n += b.len();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The last page filled, kept so that the next page for the same failure is one copy with
/// another request id: in a failure storm, that is every page. What a page shows besides
/// its request id is its key.
#[derive(Default)]
pub struct PageCache {
    key: Option<Key>,
    page: Vec<u8>,
    /// Where the request id is in `page`, and its length.
    rid_at: usize,
    rid_len: usize,
}

#[derive(PartialEq)]
struct Key {
    template: usize,
    status: u16,
    gateway_status: u16,
    cause: Cause,
    retry_after: Option<u64>,
    /// Shown with details only (else empty / None).
    peer: Vec<u8>,
    errno: Option<i32>,
    phase: Option<Phase>,
    pass: Pass,
    detail: Detail,
}

impl PageCache {
    pub const fn new() -> Self {
        PageCache {
            key: None,
            page: Vec::new(),
            rid_at: 0,
            rid_len: 0,
        }
    }

    /// What `t.fill(p, out)` writes.
    pub fn fill(&mut self, t: &Template, p: &Page<'_>, out: &mut impl Write) -> io::Result<()> {
        let details = t.details;
        let hit = self.key.as_ref().is_some_and(|k| {
            k.template == t as *const Template as usize
                && k.status == p.status
                && k.gateway_status == p.gateway_status
                && k.cause == p.cause
                && k.retry_after == p.retry_after
                && (!details
                    || (k.peer == p.peer
                        && k.errno == p.errno
                        && k.phase == p.phase
                        && k.pass == p.pass
                        && k.detail == p.detail))
        }) && self.rid_len == p.request_id.len()
            && plain(p.request_id);
        if hit {
            // the previous page, its request id replaced in place
            self.page[self.rid_at..self.rid_at + self.rid_len].copy_from_slice(p.request_id);
            return out.write_all(&self.page);
        }
        self.key = None;
        self.page.clear();
        let at = t.fill_to(
            p,
            &mut Counting {
                out: &mut self.page,
                n: 0,
            },
        )?;
        out.write_all(&self.page)?;
        if let Some(at) = at {
            self.rid_at = at;
            self.rid_len = p.request_id.len();
            self.key = Some(Key {
                template: t as *const Template as usize,
                status: p.status,
                gateway_status: p.gateway_status,
                cause: p.cause,
                retry_after: p.retry_after,
                peer: if details { p.peer.to_vec() } else { Vec::new() },
                errno: if details { p.errno } else { None },
                phase: if details { p.phase } else { None },
                pass: if details { p.pass } else { Pass::Any },
                detail: if details { p.detail } else { Detail::None },
            });
        }
        Ok(())
    }
}

/// Nothing in `s` needs escaping in JSON or HTML: ASCII letters and digits only. Checked
/// without stopping early, which lets the compiler check many bytes at once.
fn plain(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
}

/// Memory a page is filled into (its size from [`Template::max_len`]): writes that do not
/// fit fail, nothing is grown.
pub struct PageBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> PageBuf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        PageBuf { buf, len: 0 }
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Write for PageBuf<'_> {
    #[inline]
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.write_all(b)?;
        Ok(b.len())
    }

    #[inline]
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        let end = self.len + b.len();
        match self.buf.get_mut(self.len..end) {
            Some(d) => {
                d.copy_from_slice(b);
                self.len = end;
                Ok(())
            }
            None => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The most a number hole takes, and the other short holes (HTML's retry sentence).
const NUMBER_MAX: usize = 64;

/// `n` in decimal, as serde_json and `to_string` write it.
fn write_number(out: &mut impl Write, n: u64) -> io::Result<()> {
    out.write_all(crate::render::decimal(n, &mut [0; 20]).as_bytes())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The prepared page for a format and `triage_fallback_details`. Built on first use, which
/// `fallback` makes happen at configuration time.
pub fn template(format: Format, details: bool) -> &'static Template {
    static TEMPLATES: OnceLock<[Template; 4]> = OnceLock::new();
    let t = TEMPLATES.get_or_init(|| {
        [
            Template::new(Format::Json, false),
            Template::new(Format::Json, true),
            Template::new(Format::Html, false),
            Template::new(Format::Html, true),
        ]
    });
    &t[(format == Format::Html) as usize * 2 + details as usize]
}

/// The page for `p`, rendered directly (what a template must give).
pub fn render(format: Format, details: bool, p: &Page<'_>) -> Vec<u8> {
    match format {
        Format::Json => render_json(details, |h| json_value(h, p)),
        Format::Html => render_html(details, |h| {
            let mut s = String::new();
            html_value(h, p, &mut s);
            s
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const RID: &[u8] = b"6d5a3e7f0c1b2a39485766554433221f";

    fn page() -> Page<'static> {
        Page {
            status: 502,
            gateway_status: 502,
            cause: Cause::ConnectRefused,
            request_id: RID,
            retry_after: None,
            peer: b"127.0.0.1:8001",
            errno: Some(111),
            phase: Some(Phase::Connect),
            pass: Pass::Proxy,
            detail: Detail::None,
        }
    }

    /// The page for `p`, filled the way `fallback.rs` does: into memory of `max_len` bytes.
    fn filled(format: Format, details: bool, p: &Page<'_>) -> Vec<u8> {
        let t = template(format, details);
        let mut mem = vec![0u8; t.max_len(p)];
        let mut out = PageBuf::new(&mut mem);
        t.fill(p, &mut out)
            .expect("max_len is an upper bound of the page");
        let n = out.len();
        mem.truncate(n);
        mem
    }

    fn json(details: bool, p: &Page<'_>) -> Value {
        serde_json::from_slice(&filled(Format::Json, details, p)).expect("valid JSON")
    }

    #[test]
    fn json_contract() {
        let v = json(false, &page());
        assert_eq!(
            v,
            serde_json::json!({"status": 502, "error": "bad_gateway", "cause": "connect_refused",
                "request_id": "6d5a3e7f0c1b2a39485766554433221f", "retry_after": null})
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 5);
        let raw = String::from_utf8(filled(Format::Json, false, &page())).unwrap();
        assert!(raw.starts_with("{\"status\":502,\"error\":\"bad_gateway\",\"cause\":"));
        assert!(raw.ends_with("}\n"));
    }

    #[test]
    fn json_gateway_timeout_status_override_and_retry() {
        let p = Page {
            status: 503,
            gateway_status: 504,
            cause: Cause::ReadTimeout,
            retry_after: Some(30),
            ..page()
        };
        let v = json(false, &p);
        assert_eq!(v["status"], 503);
        assert_eq!(v["error"], "gateway_timeout");
        assert_eq!(v["cause"], "read_timeout");
        assert_eq!(v["retry_after"], 30);
    }

    #[test]
    fn json_details() {
        let v = json(true, &page());
        assert_eq!(v["peer"], "127.0.0.1:8001");
        assert_eq!(v["errno"], 111);
        assert_eq!(v["phase"], "connect");
        assert_eq!(
            v["hint"],
            Cause::ConnectRefused.hint_in(None, Detail::None, Pass::Proxy)
        );
        let p = Page {
            cause: Cause::NoLiveUpstreams,
            peer: b"",
            errno: None,
            phase: Some(Phase::Select),
            retry_after: Some(5),
            ..page()
        };
        let v = json(true, &p);
        assert_eq!(v["peer"], Value::Null);
        assert_eq!(v["errno"], Value::Null);
        assert_eq!(v["phase"], "select");
    }

    #[test]
    fn no_address_without_details() {
        for f in [Format::Json, Format::Html] {
            let body = String::from_utf8(filled(f, false, &page())).unwrap();
            assert!(!body.contains("127.0.0.1"), "{f:?}: {body}");
            assert!(!body.contains("8001"), "{f:?}");
            let body = String::from_utf8(filled(f, true, &page())).unwrap();
            assert!(body.contains("127.0.0.1:8001"), "{f:?} with details");
        }
    }

    #[test]
    fn values_are_escaped() {
        let p = Page {
            request_id: b"<script>\"x\"&'</script>\\\n",
            peer: b"unix:/run/a\"b<c>.sock",
            ..page()
        };
        let v = json(true, &p);
        assert_eq!(v["request_id"], "<script>\"x\"&'</script>\\\n");
        assert_eq!(v["peer"], "unix:/run/a\"b<c>.sock");
        let html = String::from_utf8(filled(Format::Html, true, &p)).unwrap();
        assert!(html.contains("&lt;script&gt;&quot;x&quot;&amp;&#39;&lt;/script&gt;"));
        assert!(html.contains("unix:/run/a&quot;b&lt;c&gt;.sock"));
        assert!(!html.contains("<script>"));
        // invalid UTF-8 does not break the JSON
        let p = Page {
            peer: b"\xff\xfe",
            ..page()
        };
        assert_eq!(json(true, &p)["peer"], "\u{fffd}\u{fffd}");
    }

    #[test]
    fn hint_follows_the_errno() {
        let p = Page {
            cause: Cause::Other,
            errno: Some(libc::EAGAIN),
            ..page()
        };
        let hint = Cause::Other.hint_for(Some(libc::EAGAIN));
        assert_eq!(json(true, &p)["hint"], hint);
        let html = String::from_utf8(filled(Format::Html, true, &p)).unwrap();
        assert!(html.contains("listen queue is full"));
        let p = Page {
            errno: Some(5),
            ..p
        };
        assert_eq!(json(true, &p)["hint"], Cause::Other.hint());
    }

    #[test]
    fn hint_names_the_directives_of_the_upstream_module() {
        let p = Page {
            cause: Cause::ReadTimeout,
            pass: Pass::Fastcgi,
            ..page()
        };
        let hint = json(true, &p)["hint"].as_str().unwrap().to_owned();
        assert!(hint.ends_with("raise fastcgi_read_timeout"), "{hint}");
        let html = String::from_utf8(filled(Format::Html, true, &p)).unwrap();
        assert!(html.contains("raise fastcgi_read_timeout"));
        let p = Page {
            pass: Pass::Proxy,
            ..p
        };
        assert!(json(true, &p)["hint"]
            .as_str()
            .unwrap()
            .ends_with("raise proxy_read_timeout"));
    }

    #[test]
    fn max_len_bounds_the_worst_values() {
        // every byte that escapes longest, the longest numbers and known texts; and no
        // request id or peer at all, where the bound has no slack from them
        let worst: Vec<u8> = (0u8..=255).chain(*b"\"'<>&").collect();
        let values: [&[u8]; 2] = [&worst, b""];
        for f in [Format::Json, Format::Html] {
            for details in [false, true] {
                for (&cause, pass) in Cause::ALL.iter().flat_map(|c| Pass::ALL.map(|p| (c, p))) {
                    let rows = [
                        (None, Some(i32::MIN), 0, Detail::None),
                        (Some(1), Some(libc::EAGAIN), 0, Detail::None),
                        (Some(u64::MAX), Some(i32::MIN), 1, Detail::None),
                        (Some(u64::MAX), Some(libc::EAGAIN), 1, Detail::None),
                        (Some(u64::MAX), Some(110), 1, Detail::None),
                    ]
                    .into_iter()
                    .chain(Detail::ALL.map(|d| (Some(u64::MAX), Some(i32::MIN), 1, d)));
                    for (retry_after, errno, v, detail) in rows {
                        let p = Page {
                            detail,
                            status: 599,
                            cause,
                            request_id: values[v],
                            peer: values[v],
                            retry_after,
                            errno,
                            phase: Some(Phase::ReadBody),
                            pass,
                            ..page()
                        };
                        let mut out = Vec::new();
                        template(f, details).fill(&p, &mut out).unwrap();
                        assert!(
                            out.len() <= template(f, details).max_len(&p),
                            "{f:?} {cause}"
                        );
                        assert_eq!(filled(f, details, &p), render(f, details, &p));
                    }
                }
            }
        }
    }

    #[test]
    fn cached_pages_are_the_pages() {
        // a run of pages where each field changes now and then: every page from the cache is
        // the page filled afresh
        let rids: [&[u8]; 4] = [RID, b"00000000000000000000000000000001", b"a<b", b"short"];
        let peers: [&[u8]; 2] = [b"127.0.0.1:8001", b"127.0.0.1:8002"];
        let mut cache = PageCache::default();
        for i in 0..400usize {
            let p = Page {
                status: [502, 503][i / 7 % 2],
                gateway_status: [502, 504][i / 11 % 2],
                cause: Cause::ALL[i / 5 % Cause::ALL.len()],
                request_id: rids[i % 3 + (i / 50 % 2)],
                retry_after: [None, Some(5)][i / 13 % 2],
                peer: peers[i / 3 % 2],
                errno: [Some(111), None][i / 17 % 2],
                phase: [Some(Phase::Connect), None][i / 19 % 2],
                pass: Pass::ALL[i / 23 % Pass::ALL.len()],
                detail: Detail::ALL[i / 29 % Detail::ALL.len()],
            };
            for f in [Format::Json, Format::Html] {
                for details in [false, true] {
                    let t = template(f, details);
                    let mut got = Vec::new();
                    cache.fill(t, &p, &mut got).unwrap();
                    assert_eq!(
                        got,
                        filled(f, details, &p),
                        "page {i} {f:?} details={details}"
                    );
                }
            }
        }
        // and a run of identical failures is served from the cache
        let p = page();
        let t = template(Format::Json, false);
        cache.fill(t, &p, &mut Vec::new()).unwrap();
        assert!(cache.key.is_some());
        let other = Page {
            request_id: b"ffffffffffffffffffffffffffffffff",
            ..p
        };
        let mut got = Vec::new();
        cache.fill(t, &other, &mut got).unwrap();
        assert_eq!(got, filled(Format::Json, false, &other));
    }

    #[test]
    fn templates_match_direct_rendering() {
        let causes = [
            Cause::ConnectRefused,
            Cause::ReadTimeout,
            Cause::Upstream502,
        ];
        for f in [Format::Json, Format::Html] {
            for details in [false, true] {
                for (i, &cause) in causes.iter().enumerate() {
                    let p = Page {
                        status: [502, 503, 200][i],
                        gateway_status: cause.status(),
                        cause,
                        retry_after: [None, Some(1), Some(42)][i],
                        errno: [Some(111), None, Some(-1)][i],
                        phase: [Some(Phase::Connect), None, Some(Phase::ReadHeader)][i],
                        peer: [&b"10.0.0.1:80"[..], b"", b"a&b"][i],
                        ..page()
                    };
                    assert_eq!(
                        filled(f, details, &p),
                        render(f, details, &p),
                        "{f:?} details={details} {cause}"
                    );
                }
            }
        }
    }

    #[test]
    fn known_values_match_direct_rendering() {
        for f in [Format::Json, Format::Html] {
            for &cause in &Cause::ALL {
                for phase in [None, Some(Phase::Resolve), Some(Phase::ReadBody)] {
                    for gateway_status in [502, 504] {
                        let p = Page {
                            cause,
                            phase,
                            gateway_status,
                            ..page()
                        };
                        assert_eq!(filled(f, true, &p), render(f, true, &p), "{f:?} {cause}");
                    }
                }
            }
        }
    }

    #[test]
    fn html_page() {
        let p = Page {
            retry_after: Some(7),
            ..page()
        };
        let html = String::from_utf8(filled(Format::Html, false, &p)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("Service temporarily unavailable"));
        assert!(html.contains("<code>6d5a3e7f0c1b2a39485766554433221f</code>"));
        assert!(html.contains("Please try again in 7 seconds."));
        assert!(!html.contains("connect_refused"), "the cause is a detail");
        // self-contained: no external assets
        assert!(!html.contains("src="));
        assert!(!html.contains("href="));
        assert!(!html.contains("\u{1}"));
        let html = String::from_utf8(filled(Format::Html, true, &page())).unwrap();
        assert!(html.contains("<dd>connect_refused</dd>"));
        assert!(html.contains("<dd>502 Bad Gateway</dd>"));
        assert!(html.contains("<dd>111</dd>"));
        assert!(html.contains("Please try again in a moment."));
    }

    #[test]
    fn spec_parsing() {
        let p = |s: &str| {
            let args: Vec<&[u8]> = s.split(' ').map(str::as_bytes).collect();
            parse_spec(&args)
        };
        let spec = |mode, content_type: Option<&str>, upstream_errors| Spec {
            mode,
            content_type: content_type.map(|t| t.as_bytes().to_vec()),
            upstream_errors,
        };
        assert_eq!(p("off"), Ok(spec(Mode::Off, None, false)));
        assert_eq!(p("json"), Ok(spec(Mode::Json, None, false)));
        assert_eq!(p("html"), Ok(spec(Mode::Html, None, false)));
        assert_eq!(
            p("auto upstream_errors=on"),
            Ok(spec(Mode::Auto, None, true))
        );
        assert_eq!(
            p("file=/etc/x.json type=application/problem+json upstream_errors=off"),
            Ok(spec(
                Mode::File(b"/etc/x.json".to_vec()),
                Some("application/problem+json"),
                false
            ))
        );
        assert!(p("xml").unwrap_err().contains("invalid value \"xml\""));
        assert!(p("file=").unwrap_err().contains("empty path"));
        assert!(p("json type=text/plain").unwrap_err().contains("file=PATH"));
        assert!(p("file=a type=").unwrap_err().contains("invalid MIME"));
        assert!(p("file=a type=plain").unwrap_err().contains("invalid MIME"));
        assert!(p("file=a type=a/b type=c/d")
            .unwrap_err()
            .contains("duplicate"));
        assert!(p("json upstream_errors=yes")
            .unwrap_err()
            .contains("upstream_errors=on"));
        assert!(p("json upstream_errors=on upstream_errors=on")
            .unwrap_err()
            .contains("duplicate"));
        assert!(p("off upstream_errors=on")
            .unwrap_err()
            .contains("after \"off\""));
        assert!(p("json foo")
            .unwrap_err()
            .contains("invalid parameter \"foo\""));
        assert!(parse_spec(&[]).is_err());
    }

    #[test]
    fn status_parsing() {
        assert_eq!(parse_status(b"503"), Ok(503));
        assert_eq!(parse_status(b"200"), Ok(200));
        assert_eq!(parse_status(b"599"), Ok(599));
        for bad in [
            &b"204"[..],
            b"304",
            b"199",
            b"600",
            b"50",
            b"5030",
            b"abc",
            b"+50",
            b"",
        ] {
            assert!(parse_status(bad).is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn charset_and_extension() {
        assert!(wants_charset(b"text/html"));
        assert!(wants_charset(b"TEXT/plain"));
        assert!(!wants_charset(b"text/html; charset=iso-8859-1"));
        assert!(!wants_charset(b"application/json"));
        assert!(!wants_charset(b"text/"));
        assert_eq!(extension(b"/etc/nginx/fallback.json"), Some(&b"json"[..]));
        assert_eq!(extension(b"fallback.tar.gz"), Some(&b"gz"[..]));
        assert_eq!(extension(b"/etc/v1.d/fallback"), None);
        assert_eq!(extension(b"fallback."), None);
        assert_eq!(extension(b".html"), Some(&b"html"[..]));
    }

    #[test]
    fn retry_after_values() {
        let failed = |fails, checked, fail_timeout| PeerHealth {
            down: false,
            max_fails: 1,
            fails,
            fail_timeout,
            checked,
        };
        // nothing out through max_fails: the default
        assert_eq!(retry_after([], 100), DEFAULT_RETRY_AFTER);
        assert_eq!(
            retry_after(
                [PeerHealth {
                    down: true,
                    ..failed(1, 100, 10)
                }],
                100
            ),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(retry_after([failed(0, 100, 10)], 100), DEFAULT_RETRY_AFTER);
        assert_eq!(
            retry_after(
                [PeerHealth {
                    max_fails: 0,
                    ..failed(3, 100, 10)
                }],
                100
            ),
            DEFAULT_RETRY_AFTER
        );
        // failed at 100 with fail_timeout 10: skipped up to 110, tried at 111
        assert_eq!(retry_after([failed(1, 100, 10)], 100), 11);
        assert_eq!(retry_after([failed(1, 100, 10)], 104), 7);
        assert_eq!(retry_after([failed(1, 100, 10)], 200), 1);
        // the smallest wins
        assert_eq!(retry_after([failed(1, 100, 30), failed(2, 95, 10)], 100), 6);
    }
}
