//! Configuration: the directive table, the main and location conf structures.

use core::ffi::{c_char, c_void};
use core::mem::offset_of;
use core::ptr;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::*;
use ngx::http::{HttpModuleLocationConf, Merge, MergeConfigError, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_string};

use crate::check::directives as check;
use crate::fallback;
use crate::query::Format;
use crate::upstreams::Wrapped;

/// Default size of the shared zone when `triage_zone` is absent. Fixed (not derived from the
/// configuration) so that the zone, and the counters in it, survive reloads.
pub const DEFAULT_ZONE_SIZE: usize = 4 * 1024 * 1024;
pub const DEFAULT_RECENT: usize = 64;
/// `triage_zone ... idle=` by default: ten minutes.
pub const DEFAULT_IDLE_MS: u64 = 600_000;
const MIN_ZONE_SIZE: usize = 64 * 1024;
/// Names are found by their 32-bit offset in the zone (`state::Slot::names`).
const MAX_ZONE_SIZE: usize = 4 << 30;

/// http{}-level configuration.
pub struct MainConf {
    /// `triage_zone` size; 0 until set.
    pub zone_size: usize,
    /// `triage_zone ... recent=N`: size of the recent failures ring.
    pub recent: usize,
    /// `triage_zone ... idle=`: how long an entry no configuration names must have been idle
    /// to be reused in a full zone (ms; 0: `off`, never).
    pub idle_ms: u64,
    pub zone: *mut ngx_shm_zone_t,
    /// Upstreams whose `peer.init` we wrapped, sorted by the address of their srv conf.
    pub wrapped: Vec<Wrapped>,
    /// A `triage_status` location exists: count every try (requests, responses, times), not
    /// only failures.
    pub stats: bool,
    /// `triage_lint on | off` (unset means on).
    pub lint: ngx_flag_t,
    /// What the lint gathers while http{} is parsed (emptied once it has run).
    pub lint_facts: crate::lint::glue::Collector,
    /// The index of nginx's `$request_id` (see `variables::register`).
    pub request_id: ngx_int_t,
    /// `triage_fallback`: used anywhere.
    pub fallback: fallback::Main,
    /// Active health checks (`check` & co. in upstream blocks).
    pub checks: crate::check::directives::Checks,
}

impl Default for MainConf {
    fn default() -> Self {
        MainConf {
            zone_size: 0,
            recent: DEFAULT_RECENT,
            idle_ms: DEFAULT_IDLE_MS,
            request_id: NGX_ERROR as ngx_int_t,
            zone: ptr::null_mut(),
            wrapped: Vec::new(),
            stats: false,
            lint: NGX_CONF_UNSET as ngx_flag_t,
            lint_facts: Default::default(),
            fallback: fallback::Main::default(),
            checks: Default::default(),
        }
    }
}

/// Location-level configuration.
#[derive(Debug)]
pub struct LocConf {
    /// `triage on | off`.
    pub enable: ngx_flag_t,
    /// This location answers `triage_status`.
    pub status: bool,
    /// `triage_status [json | prometheus | html]`: the format when the request does not ask.
    pub status_format: Format,
    /// The location's own content handler (proxy_pass & co.), run by `run_time::content`.
    pub content: ngx_http_handler_pt,
    /// `triage_fallback*`.
    pub fallback: fallback::Conf,
    /// What this worker has seen the content handler's upstream be (see `run_time::content`).
    pub seen: core::cell::Cell<crate::run_time::Seen>,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            enable: NGX_CONF_UNSET as ngx_flag_t,
            status: false,
            status_format: Format::Json,
            content: None,
            fallback: fallback::Conf::default(),
            seen: Default::default(),
        }
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.enable == NGX_CONF_UNSET as ngx_flag_t {
            self.enable = if prev.enable == NGX_CONF_UNSET as ngx_flag_t {
                1
            } else {
                prev.enable
            };
        }
        // An `if` block (or `limit_except`) without a content handler of its own runs its
        // location's, which is `run_time::content` once wrapped: it reads this configuration.
        // (`wrap_content` replaces it where the block has a handler.)
        if self.content.is_none() {
            self.content = prev.content;
        }
        // ... and the status handler likewise reads its format here
        if !self.status {
            self.status_format = prev.status_format;
        }
        self.fallback.merge(&prev.fallback);
        Ok(())
    }
}

const HTTP_ANY: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// Every directive of the module, in one table.
pub static mut COMMANDS: [ngx_command_t; 22] = [
    ngx_command_t {
        name: ngx_string!("triage"),
        type_: (HTTP_ANY | NGX_CONF_FLAG) as ngx_uint_t,
        set: Some(ngx_conf_set_flag_slot),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: offset_of!(LocConf, enable),
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12) as ngx_uint_t,
        set: Some(set_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_status"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_lint"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_FLAG) as ngx_uint_t,
        set: Some(ngx_conf_set_flag_slot),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: offset_of!(MainConf, lint),
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_lint_ignore"),
        type_: (HTTP_ANY | NGX_HTTP_UPS_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(crate::lint::glue::set_ignore),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_fallback"),
        type_: (HTTP_ANY | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(fallback::set_fallback),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_fallback_status"),
        type_: (HTTP_ANY | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(fallback::set_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_fallback_retry_after"),
        type_: (HTTP_ANY | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(ngx_conf_set_sec_slot),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: offset_of!(LocConf, fallback.retry_after),
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("triage_fallback_details"),
        type_: (HTTP_ANY | NGX_CONF_FLAG) as ngx_uint_t,
        set: Some(ngx_conf_set_flag_slot),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: offset_of!(LocConf, fallback.details),
        post: ptr::null_mut(),
    },
    // Active health checks (nginx_upstream_check_module's directives): check/directives.rs
    ngx_command_t {
        name: ngx_string!("check"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_ANY) as ngx_uint_t,
        set: Some(check::set_check),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_http_send"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(check::set_http_send),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_fastcgi_param"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(check::set_fastcgi_param),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_http_expect_alive"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(check::set_expect_alive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_http_expect_status"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(check::set_expect_status),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_http_expect_body"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(check::set_expect_body),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_keepalive_requests"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(check::set_keepalive_requests),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_ssl_name"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(check::set_ssl_name),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_ssl_verify"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(check::set_ssl_verify),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_ssl_trusted_certificate"),
        type_: (NGX_HTTP_UPS_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(check::set_ssl_trusted),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_shm_size"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(check::set_shm_size),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("check_status"),
        // in a server{} too, as UCM has it: the server's own requests (a server of its own
        // for the page, or what no location matches)
        type_: (NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(check::set_status),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

/// The directive's arguments (after its name).
pub unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: cf->args is an ngx_array_t of ngx_str_t filled by the parser.
    let a = &*(*cf).args;
    core::slice::from_raw_parts((a.elts as *const ngx_str_t).add(1), a.nelts - 1)
}

/// `triage_zone SIZE [recent=N] [idle=TIME|off];`
extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with our main conf and a valid cf during parsing.
    let mcf = unsafe { &mut *(conf as *mut MainConf) };
    if mcf.zone_size != 0 {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: as above.
    let a = unsafe { args(cf) };
    let mut size_arg = a[0];
    // SAFETY: ngx_parse_size reads the string only.
    let size = unsafe { ngx_parse_size(&mut size_arg) };
    if size == NGX_ERROR as isize
        || (size as usize) < MIN_ZONE_SIZE
        || (size as usize) > MAX_ZONE_SIZE
    {
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            // nginx reads sizes in k and m only
            "invalid zone size \"{}\" (at least {}k, at most {}m)",
            a[0],
            MIN_ZONE_SIZE / 1024,
            MAX_ZONE_SIZE >> 20
        );
        return NGX_CONF_ERROR;
    }
    for opt in &a[1..] {
        let o = opt.as_bytes();
        let ok = if let Some(v) = o.strip_prefix(b"recent=") {
            let n = core::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| (1..=100_000).contains(n));
            n.map(|n| mcf.recent = n).is_some()
        } else if let Some(v) = o.strip_prefix(b"idle=") {
            // SAFETY: ngx_parse_time reads the string only.
            let t = unsafe { parse_time(v) };
            t.map(|ms| mcf.idle_ms = ms).is_some()
        } else {
            false
        };
        if !ok {
            ngx_conf_log_error!(
                NGX_LOG_EMERG,
                cf,
                "invalid parameter \"{}\" (expected recent=1..100000 or idle=time|off, time at least 1s)",
                opt
            );
            return NGX_CONF_ERROR;
        }
    }
    // The recent failures list is made with the zone: past a third of it, it takes the
    // peers' room (a 64k zone with recent=97 counted no peer), or does not fit at all (and
    // is silently missing).
    let per = crate::state::RECENT_ENTRY_BYTES;
    if mcf.recent * per > size as usize / 3 {
        let need_k = (mcf.recent * per * 3).div_ceil(1024);
        let need = if need_k > 1024 {
            format!("{}m", need_k.div_ceil(1024))
        } else {
            format!("{need_k}k")
        };
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "recent={} does not fit in a zone of {}: an entry takes {} bytes and the list at most a third of the zone (here recent={}; recent={} needs {})",
            mcf.recent,
            a[0],
            per,
            size as usize / 3 / per,
            mcf.recent,
            need
        );
        return NGX_CONF_ERROR;
    }
    mcf.zone_size = size as usize;
    NGX_CONF_OK
}

/// `off`, or an nginx time of at least a second (`90s`, `10m`, `1h`), in ms.
///
/// # Safety
/// Calls nginx's time parser (it reads the bytes only).
unsafe fn parse_time(v: &[u8]) -> Option<u64> {
    if v == b"off" {
        return Some(0);
    }
    let mut s = ngx_str_t {
        len: v.len(),
        data: v.as_ptr() as *mut u8,
    };
    let ms = ngx_parse_time(&mut s, 0);
    (ms != NGX_ERROR as ngx_int_t && ms >= 1000).then_some(ms as u64)
}

/// `triage_status [json | prometheus | html];`
extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with our location conf and a valid cf.
    let lcf = unsafe { &mut *(conf as *mut LocConf) };
    if lcf.status {
        return c"is duplicate".as_ptr() as *mut c_char;
    }
    // SAFETY: as above.
    if let Some(arg) = unsafe { args(cf) }.first() {
        match Format::parse(arg.as_bytes()) {
            Some(f) => lcf.status_format = f,
            None => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "invalid value \"{}\" in \"triage_status\" directive, it must be \"json\", \"prometheus\" or \"html\"",
                    arg
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    lcf.status = true;
    // SAFETY: the core location conf exists in any location context.
    let clcf = unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) }.expect("core loc conf");
    clcf.handler = Some(crate::status::handler);
    NGX_CONF_OK
}
