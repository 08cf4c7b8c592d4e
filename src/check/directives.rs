//! The health-check directives (UCM's, in `upstream {}`; `check_status` in a location): their
//! setters, the per-upstream settings they fill, and what postconfiguration makes of them
//! (the peers to check, TLS contexts, the shared zone, the `peer.init` wrapper). The
//! directive table itself is in `conf.rs`.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::collections::HashMap;

use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_log_error};

use super::conf::{self as pure, Check, ConfError, Expect, Format};
use super::shm::Record;
use crate::conf::MainConf;
use crate::upstreams;

/// Every upstream with health-check directives, and the settings of the http{} block.
pub struct Checks {
    /// Sorted by `uscf` once the configuration is parsed.
    pub list: Vec<UpstreamCheck>,
    /// `check_shm_size` (0: not set).
    pub shm_size: usize,
    pub zone: *mut ngx_shm_zone_t,
    /// The zone's header (`shm::Header`), once the zone is initialised.
    pub header: *const c_void,
    /// The shortest `interval` (sets the timers' granularity).
    pub min_interval: u64,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            list: Vec::new(),
            shm_size: 0,
            zone: ptr::null_mut(),
            header: ptr::null(),
            min_interval: u64::MAX,
        }
    }
}

/// One configured peer to check.
pub struct CheckedPeer {
    /// The `server` as written.
    pub server: Vec<u8>,
    /// The address (`127.0.0.1:8081`).
    pub name: Vec<u8>,
    /// The address probed (`port=` applied).
    pub sockaddr: Vec<u8>,
    pub backup: bool,
    /// Configured `down`: never taken back into rotation by a check.
    pub configured_down: bool,
    /// Its health record in shared memory (set when the zone is initialised).
    pub rec: *const Record,
}

impl CheckedPeer {
    /// What a check needs of the balancer's peer `q` (a copy: the balancer may free a peer
    /// added at run time): its names, and the address probed, with `port=` of `c` applied.
    /// Its record is set later.
    ///
    /// # Safety
    /// `q` must be a peer of a live balancer list (its sockaddr valid for socklen bytes).
    pub unsafe fn of(
        q: &ngx_http_upstream_rr_peer_t,
        c: &Check,
        backup: bool,
        configured_down: bool,
    ) -> CheckedPeer {
        let mut sockaddr =
            core::slice::from_raw_parts(q.sockaddr as *const u8, q.socklen as usize).to_vec();
        if c.port != 0 {
            set_port(&mut sockaddr, c.port);
        }
        CheckedPeer {
            server: q.server.as_bytes().to_vec(),
            name: q.name.as_bytes().to_vec(),
            sockaddr,
            backup,
            configured_down,
            rec: ptr::null(),
        }
    }
}

/// The checks of one upstream block.
pub struct UpstreamCheck {
    pub uscf: *mut ngx_http_upstream_srv_conf_t,
    pub name: Vec<u8>,
    /// Where the first check directive of the block is ("file:line"), for warnings.
    pub at: String,
    /// `check` (None: only other check_* directives were given).
    pub check: Option<Check>,
    /// `check_http_send`, or the default request once configured; for fastcgi, the
    /// encoded records; for ajp, CPing; for mysql, nothing.
    pub request: Vec<u8>,
    /// `check_fastcgi_param NAME VALUE`, in order.
    fastcgi_params: Vec<(Vec<u8>, Vec<u8>)>,
    send_set: bool,
    pub expect: Expect,
    alive_set: bool,
    /// `check_http_expect_body`, compiled.
    pub body: *mut ngx_regex_t,
    pub keepalive_requests: Option<u32>,
    /// SNI and the name verified (NUL-terminated for OpenSSL); upstream name if not set.
    pub ssl_name: Option<Vec<u8>>,
    pub ssl_verify: Option<bool>,
    pub ssl_trusted: Option<Vec<u8>>,
    /// TLS context for https / ssl_hello checks.
    pub ssl: *mut c_void,
    pub peers: Vec<CheckedPeer>,
    /// (server, name) → index in `peers`.
    pub index: HashMap<(Vec<u8>, Vec<u8>), usize>,
    /// The `peer.init` this module's wrapper calls.
    pub orig_init: ngx_http_upstream_init_peer_pt,
}

impl UpstreamCheck {
    fn new(uscf: *mut ngx_http_upstream_srv_conf_t, at: String) -> UpstreamCheck {
        UpstreamCheck {
            uscf,
            // SAFETY: a valid upstream srv conf (the block being parsed).
            name: unsafe { upstreams::display_name(uscf) },
            at,
            check: None,
            request: Vec::new(),
            fastcgi_params: Vec::new(),
            send_set: false,
            expect: Expect::default(),
            alive_set: false,
            body: ptr::null_mut(),
            keepalive_requests: None,
            ssl_name: None,
            ssl_verify: None,
            ssl_trusted: None,
            ssl: ptr::null_mut(),
            peers: Vec::new(),
            index: HashMap::new(),
            orig_init: None,
        }
    }

    /// The configured `check` (only entries that have one are kept after postconfiguration).
    pub fn conf(&self) -> &Check {
        self.check
            .as_ref()
            .expect("entries without check are dropped")
    }

    /// The name TLS checks send (SNI) and verify.
    pub fn tls_name(&self) -> &[u8] {
        match &self.ssl_name {
            Some(n) => &n[..n.len() - 1],
            None => &self.name,
        }
    }
}

impl Checks {
    /// The settings of an upstream block (binary search: sorted after postconfiguration).
    pub fn find(&self, uscf: *const ngx_http_upstream_srv_conf_t) -> Option<&UpstreamCheck> {
        self.position(uscf).map(|i| &self.list[i])
    }

    /// The position in `list` of the checks of `uscf`.
    pub fn position(&self, uscf: *const ngx_http_upstream_srv_conf_t) -> Option<usize> {
        self.list
            .binary_search_by_key(&(uscf as usize), |c| c.uscf as usize)
            .ok()
    }
}

/// The directive's arguments (after its name).
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> Vec<&'a [u8]> {
    // SAFETY: cf->args is an ngx_array_t of ngx_str_t filled by the parser.
    let a = &*(*cf).args;
    core::slice::from_raw_parts(a.elts as *const ngx_str_t, a.nelts)[1..]
        .iter()
        .map(|s| s.as_bytes())
        .collect()
}

/// "file:line" of the directive being parsed.
unsafe fn position(cf: *mut ngx_conf_t) -> String {
    let f = (*cf).conf_file;
    if f.is_null() {
        return String::new();
    }
    format!(
        "{}:{}",
        String::from_utf8_lossy((*f).file.name.as_bytes()),
        (*f).line
    )
}

/// The entry of the upstream block being parsed (created on first use).
unsafe fn entry<'a>(cf: *mut ngx_conf_t, conf: *mut c_void) -> &'a mut UpstreamCheck {
    // SAFETY: NGX_HTTP_MAIN_CONF_OFFSET: conf is our main conf; in upstream{} cf->ctx is
    // the block's http conf ctx, whose srv_conf holds the upstream module's srv conf.
    let mcf = &mut *(conf as *mut MainConf);
    let ctx = (*cf).ctx as *mut ngx_http_conf_ctx_t;
    let uscf = *(*ctx).srv_conf.add(ngx_http_upstream_module.ctx_index)
        as *mut ngx_http_upstream_srv_conf_t;
    let list = &mut mcf.checks.list;
    match list.iter().position(|c| c.uscf == uscf) {
        Some(i) => &mut list[i],
        None => {
            let at = position(cf);
            list.push(UpstreamCheck::new(uscf, at));
            list.last_mut().expect("just pushed")
        }
    }
}

fn fail(cf: *mut ngx_conf_t, e: ConfError) -> *mut c_char {
    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", e);
    NGX_CONF_ERROR
}

fn duplicate() -> *mut c_char {
    c"is duplicate".as_ptr() as *mut c_char
}

/// `check interval=.. rise=.. fall=.. timeout=.. default_down=.. type=.. port=.. jitter=.. fail_open=..`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_check(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls setters with a valid cf and our main conf (MAIN_CONF_OFFSET).
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if e.check.is_some() {
        return duplicate();
    }
    match pure::parse_check(&a) {
        Ok(c) => {
            #[cfg(not(ngx_feature = "ssl"))]
            if c.kind.is_tls() {
                return fail(
                    cf,
                    ConfError(format!(
                        "check type \"{}\" requires nginx built with SSL",
                        c.kind.as_str()
                    )),
                );
            }
            e.check = Some(c);
            NGX_CONF_OK
        }
        Err(err) => fail(cf, err),
    }
}

/// `check_http_send "GET /health HTTP/1.0\r\n\r\n"`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_http_send(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    // given twice, the last one is sent, as in UCM
    if a[0].is_empty() {
        return fail(cf, ConfError("empty check_http_send request".into()));
    }
    e.request = a[0].to_vec();
    e.send_set = true;
    NGX_CONF_OK
}

/// `check_fastcgi_param NAME VALUE`: a parameter of the FastCGI check's request
/// (repeatable; without any, UCM's REQUEST_METHOD, REQUEST_URI and SCRIPT_FILENAME).
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_fastcgi_param(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if a[0].is_empty() {
        return fail(cf, ConfError("empty check_fastcgi_param name".into()));
    }
    e.fastcgi_params.push((a[0].to_vec(), a[1].to_vec()));
    NGX_CONF_OK
}

/// `check_http_expect_alive http_2xx http_3xx`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_expect_alive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    match pure::parse_expect_alive(&a) {
        Ok(bits) => {
            // given twice, the classes add up, as in UCM
            e.expect.classes |= bits;
            e.alive_set = true;
            NGX_CONF_OK
        }
        Err(err) => fail(cf, err),
    }
}

/// `check_http_expect_status 200-299 301`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_expect_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if !e.expect.ranges.is_empty() {
        return duplicate();
    }
    match pure::parse_expect_status(&a) {
        Ok(r) => {
            e.expect.ranges = r;
            NGX_CONF_OK
        }
        Err(err) => fail(cf, err),
    }
}

/// `check_http_expect_body ~ "regex"` (`~*`: caseless), compiled with nginx's PCRE.
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_expect_body(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if !e.body.is_null() {
        return duplicate();
    }
    let (pattern, caseless) = match pure::parse_expect_body(&a) {
        Ok(p) => p,
        Err(err) => return fail(cf, err),
    };
    match compile(cf, pattern, caseless) {
        Ok(re) => {
            e.body = re;
            NGX_CONF_OK
        }
        Err(err) => fail(cf, err),
    }
}

/// `bytes` copied into `pool` with a NUL after them, which the length leaves out: nginx reads
/// some names as C strings (a file name it opens, a PCRE1 pattern), as it may since its own
/// configuration arguments are all NUL-terminated.
///
/// # Safety
/// `pool` must be a valid pool.
pub(super) unsafe fn c_string(pool: *mut ngx_pool_t, bytes: &[u8]) -> Option<ngx_str_t> {
    let p = ngx_pnalloc(pool, bytes.len() + 1) as *mut u8;
    if p.is_null() {
        return None;
    }
    ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
    *p.add(bytes.len()) = 0;
    Some(ngx_str_t {
        len: bytes.len(),
        data: p,
    })
}

#[cfg(ngx_feature = "pcre")]
fn compile(
    cf: *mut ngx_conf_t,
    pattern: &[u8],
    caseless: bool,
) -> Result<*mut ngx_regex_t, ConfError> {
    let mut errstr = [0u8; NGX_MAX_CONF_ERRSTR as usize];
    // SAFETY: a zeroed ngx_regex_compile_t is its documented initial state.
    let mut rc: ngx_regex_compile_t = unsafe { core::mem::zeroed() };
    // SAFETY: cf is valid during parsing; the pattern is copied into its pool.
    unsafe {
        let Some(p) = c_string((*cf).pool, pattern) else {
            return Err(ConfError("out of memory".into()));
        };
        rc.pattern = p;
        rc.pool = (*cf).pool;
    }
    rc.options = if caseless {
        NGX_REGEX_CASELESS as ngx_uint_t
    } else {
        0
    };
    rc.err = ngx_str_t {
        len: errstr.len(),
        data: errstr.as_mut_ptr(),
    };
    // SAFETY: rc is fully initialised above.
    if unsafe { ngx_regex_compile(&mut rc) } != NGX_OK as ngx_int_t {
        return Err(ConfError(format!(
            "invalid check_http_expect_body regex: {}",
            String::from_utf8_lossy(rc.err.as_bytes())
        )));
    }
    Ok(rc.regex)
}

#[cfg(not(ngx_feature = "pcre"))]
fn compile(_cf: *mut ngx_conf_t, _p: &[u8], _c: bool) -> Result<*mut ngx_regex_t, ConfError> {
    Err(ConfError(
        "check_http_expect_body requires nginx built with PCRE".into(),
    ))
}

/// Does `body` match the upstream's `check_http_expect_body`?
///
/// # Safety
/// `re` must be a regex compiled by `set_expect_body` (of the running configuration).
pub unsafe fn body_matches(re: *mut ngx_regex_t, body: &[u8]) -> bool {
    #[cfg(ngx_feature = "pcre")]
    {
        let mut s = ngx_str_t {
            len: body.len(),
            data: body.as_ptr() as *mut u8,
        };
        // SAFETY: re was compiled at configuration time; s points to live bytes.
        unsafe { ngx_regex_exec(re, &mut s, ptr::null_mut(), 0) >= 0 }
    }
    #[cfg(not(ngx_feature = "pcre"))]
    {
        let _ = (re, body);
        false
    }
}

/// `check_keepalive_requests N`: an http or https check's connection carries up to N checks
/// (other types open a new connection for each check).
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_keepalive_requests(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if e.keepalive_requests.is_some() {
        return duplicate();
    }
    match core::str::from_utf8(a[0])
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n > 0 => {
            e.keepalive_requests = Some(n);
            NGX_CONF_OK
        }
        _ => fail(
            cf,
            ConfError(format!(
                "invalid value \"{}\"",
                String::from_utf8_lossy(a[0])
            )),
        ),
    }
}

/// `check_ssl_name NAME`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_ssl_name(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if e.ssl_name.is_some() {
        return duplicate();
    }
    if a[0].is_empty() || a[0].contains(&0) {
        return fail(cf, ConfError("invalid check_ssl_name".into()));
    }
    let mut n = a[0].to_vec();
    n.push(0);
    e.ssl_name = Some(n);
    NGX_CONF_OK
}

/// `check_ssl_verify on|off`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_ssl_verify(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if e.ssl_verify.is_some() {
        return duplicate();
    }
    e.ssl_verify = match a[0] {
        b"on" => Some(true),
        b"off" => Some(false),
        v => {
            return fail(
                cf,
                ConfError(format!(
                    "invalid value \"{}\" in \"check_ssl_verify\" directive, it must be \"on\" or \"off\"",
                    String::from_utf8_lossy(v)
                )),
            )
        }
    };
    NGX_CONF_OK
}

/// `check_ssl_trusted_certificate FILE`
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_ssl_trusted(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as in set_check.
    let (e, a) = unsafe { (entry(cf, conf), args(cf)) };
    if e.ssl_trusted.is_some() {
        return duplicate();
    }
    e.ssl_trusted = Some(a[0].to_vec());
    NGX_CONF_OK
}

/// `check_shm_size SIZE` (http{}): the zone is at least this big.
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_shm_size(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with our main conf and a valid cf.
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    if mcf.checks.shm_size != 0 {
        return duplicate();
    }
    // SAFETY: as above.
    let mut v = unsafe { *(*(*cf).args).elts.cast::<ngx_str_t>().add(1) };
    // SAFETY: ngx_parse_size reads the string only.
    let n = unsafe { ngx_parse_size(&mut v) };
    if n == NGX_ERROR as isize || n <= 0 {
        return fail(cf, ConfError(format!("invalid value \"{}\"", v)));
    }
    mcf.checks.shm_size = n as usize;
    NGX_CONF_OK
}

/// `check_status [html|csv|json]`: the location answers with the checks' status in UCM's
/// formats (the format can also be chosen with `?format=`).
///
/// # Safety
/// Called by nginx while parsing, with the directive\'s cf and our main conf.
pub unsafe extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with a valid cf in a location.
    let a = unsafe { args(cf) };
    let format = match a.first() {
        None => Format::Html,
        Some(v) => match Format::parse(v) {
            Some(f) => f,
            None => {
                return fail(
                    cf,
                    ConfError(format!(
                        "invalid check format \"{}\" (expected html, csv or json)",
                        String::from_utf8_lossy(v)
                    )),
                )
            }
        },
    };
    // SAFETY: the core location conf exists in any location context.
    let clcf = unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) }.expect("core loc conf");
    clcf.handler = Some(super::status::handler(format));
    NGX_CONF_OK
}

/// Postconfiguration: finish every upstream's settings, list its peers, create the TLS
/// contexts and the shared zone, and wrap `peer.init` of the checked upstreams.
///
/// # Safety
/// `cf` must be the http{} configuration being finished, after the upstreams' init.
pub unsafe fn postconfiguration(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Status {
    let checks = &mut mcf.checks;
    let mut kept = Vec::new();
    for mut e in checks.list.drain(..) {
        let Some(c) = e.check.clone() else {
            ngx_log_error!(
                NGX_LOG_WARN,
                (*cf).log,
                "check_* directives without \"check\" in upstream \"{}\" are ignored in {}",
                String::from_utf8_lossy(&e.name),
                e.at
            );
            continue;
        };
        let given = pure::Given {
            send: e.send_set,
            expect: e.alive_set || !e.expect.ranges.is_empty() || !e.body.is_null(),
            tls: e.ssl_name.is_some() || e.ssl_verify.is_some() || e.ssl_trusted.is_some(),
            fastcgi: !e.fastcgi_params.is_empty(),
            keepalive: e.keepalive_requests.is_some_and(|n| n > 1),
        };
        if let Some(w) = pure::mismatch(c.kind, given) {
            ngx_log_error!(
                NGX_LOG_WARN,
                (*cf).log,
                "{} in upstream \"{}\" in {}",
                w,
                String::from_utf8_lossy(&e.name),
                e.at
            );
        }
        // What the check sends once connected (a check_http_send given to another type was
        // warned about above, and is not sent).
        match c.kind {
            pure::Kind::Http | pure::Kind::Https if !e.send_set => {
                e.request = pure::default_request(&e.name)
            }
            pure::Kind::Http | pure::Kind::Https => {}
            pure::Kind::FastCgi if e.fastcgi_params.is_empty() => {
                e.request = super::fastcgi::request(&super::fastcgi::DEFAULT_PARAMS)
            }
            pure::Kind::FastCgi => e.request = super::fastcgi::request(&e.fastcgi_params),
            pure::Kind::Ajp => e.request = super::ajp::CPING.to_vec(),
            // the server speaks first; tcp and ssl_hello pass once connected
            pure::Kind::Mysql | pure::Kind::Tcp | pure::Kind::SslHello => e.request = Vec::new(),
        }
        if e.ssl_trusted.is_some() && e.ssl_verify != Some(true) && c.kind.is_tls() {
            // the file is not even read: an operator expecting verification gets none
            ngx_log_error!(
                NGX_LOG_WARN,
                (*cf).log,
                "check_ssl_trusted_certificate has no effect without \"check_ssl_verify on\" in upstream \"{}\" in {}",
                String::from_utf8_lossy(&e.name),
                e.at
            );
        }
        if e.ssl_verify == Some(true) && e.ssl_trusted.is_none() {
            ngx_log_error!(
                NGX_LOG_EMERG,
                (*cf).log,
                "no check_ssl_trusted_certificate for check_ssl_verify in upstream \"{}\" in {}",
                String::from_utf8_lossy(&e.name),
                e.at
            );
            return Status::NGX_ERROR;
        }
        if c.kind.is_tls() {
            match super::tls::context(cf, &e) {
                Some(ssl) => e.ssl = ssl,
                None => return Status::NGX_ERROR,
            }
        }
        if !collect_peers(&mut e, &c) {
            ngx_log_error!(
                NGX_LOG_EMERG,
                (*cf).log,
                "check: upstream \"{}\" does not use a round-robin based balancer in {}",
                String::from_utf8_lossy(&e.name),
                e.at
            );
            return Status::NGX_ERROR;
        }
        checks.min_interval = checks.min_interval.min(c.interval_ms);
        kept.push(e);
    }
    kept.sort_by_key(|e| e.uscf as usize);
    checks.list = kept;
    if checks.list.is_empty() {
        return Status::NGX_OK;
    }
    if super::shm::add_zone(cf, checks) != Status::NGX_OK {
        return Status::NGX_ERROR;
    }
    for e in checks.list.iter_mut() {
        e.orig_init = (*e.uscf).peer.init;
        (*e.uscf).peer.init = Some(super::balancer::INIT_PEER);
    }
    Status::NGX_OK
}

/// The peers of the upstream as the round-robin balancer holds them (primary, then
/// backup); false if the balancer keeps none.
unsafe fn collect_peers(e: &mut UpstreamCheck, c: &Check) -> bool {
    let first = (*e.uscf).peer.data as *const ngx_http_upstream_rr_peers_t;
    if first.is_null() {
        return false;
    }
    let mut peers = first;
    let mut backup = false;
    while !peers.is_null() {
        let mut p = (*peers).peer as *const ngx_http_upstream_rr_peer_t;
        while !p.is_null() {
            let q = &*p;
            let cp = CheckedPeer::of(q, c, backup, q.down != 0);
            e.index
                .entry((cp.server.clone(), cp.name.clone()))
                .or_insert(e.peers.len());
            e.peers.push(cp);
            p = q.next;
        }
        peers = (*peers).next;
        backup = true;
    }
    true
}

/// Set the port of an AF_INET / AF_INET6 socket address (others are left alone).
fn set_port(sa: &mut [u8], port: u16) {
    if sa.len() < 4 {
        return;
    }
    let family = u16::from_ne_bytes([sa[0], sa[1]]) as i32;
    if family == libc::AF_INET || family == libc::AF_INET6 {
        // sin_port and sin6_port both follow the 2-byte family, in network order.
        sa[2..4].copy_from_slice(&port.to_be_bytes());
    }
}
