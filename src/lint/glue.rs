//! FFI glue of the configuration lint: note the directives that matter while nginx parses
//! http{}, follow nginx's merge, then build the [`Config`] and log the findings.
//!
//! # Where directives were written
//! nginx keeps no file and line for most parsed directives, and the settings we need live in
//! other modules' private structures (`ngx_http_proxy_loc_conf_t` is not in the bindings). So
//! the directives of [`facts::WATCHED`] are noted *as they are parsed*: at preconfiguration of
//! http{} (every module, dynamic ones included, is loaded by then: `load_module` is a main
//! context directive) the `set` handler of each of those entries of the other modules' command
//! tables is replaced by [`note`], which delegates to the original and, when it succeeded,
//! records the arguments with `cf->conf_file`'s name and line. Only the entries are changed,
//! never the handler functions (`ngx_conf_set_msec_slot` serves many other directives).
//!
//! The command tables are static per process and outlive a configuration cycle, but our code
//! does not: a reload without our `load_module` unloads this library. So the original handlers
//! are put back at postconfiguration of the same http{} block (before anything else can parse)
//! and, as a safety net for a parse that fails half-way, by a cleanup of the cycle's pool. A
//! table entry is only touched while it holds our wrapper, so a module that wrapped the same
//! entry after us keeps its chain. The watched modules are nginx's own (never dynamic), so the
//! entries we remember live in the nginx binary and stay mapped.
//!
//! Settings are keyed by the address of our own location configuration of the level they were
//! written at (http, server, location, `if`, `limit_except`); nginx's merge calls
//! [`merged`] for every level in parent-before-child order, which is where inheritance happens.

use core::ffi::{c_char, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::ffi::*;
use ngx::http::{
    HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule,
    NgxHttpUpstreamModule,
};
use ngx::ngx_conf_log_error;

use crate::conf::{LocConf, MainConf};
use crate::lint::code::Code;
use crate::lint::facts::{self, Level};
use crate::lint::model::{Config, Location, Site, Upstream, Worker};
use crate::lint::rules;
use crate::lint::system::Root;
use crate::module::Module;

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

// The one address of the wrapper that is installed and compared. Rust may give a function a
// copy per codegen unit, so `note as SetFn` taken in two places can differ; a static cannot.
static NOTE: SetFn = note;

/// What the lint gathers while http{} is parsed and merged (lives in our main conf).
#[derive(Default)]
pub struct Collector {
    /// Settings per level, keyed by the address of our [`LocConf`] of that level: as written
    /// until the level is merged, as in effect after.
    levels: HashMap<usize, Level>,
    upstreams: Vec<Upstream>,
    /// Merged levels that pass requests to a backend, in merge order.
    locations: Vec<Location>,
    /// Directives noted so far (parse order of findings).
    seq: usize,
}

/// The collector of the http{} block being parsed; null outside preconfiguration ..
/// postconfiguration.
static ACTIVE: AtomicPtr<Collector> = AtomicPtr::new(ptr::null_mut());

/// The handlers [`note`] replaced: (address of the command table entry, original `set`).
static ORIGINALS: Mutex<Vec<(usize, SetFn)>> = Mutex::new(Vec::new());

fn originals() -> std::sync::MutexGuard<'static, Vec<(usize, SetFn)>> {
    ORIGINALS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Preconfiguration of http{}: wrap the watched directives and start collecting.
///
/// # Safety
/// `cf` must be the configuration context of the http{} block about to be parsed.
pub unsafe fn begin(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> ngx_int_t {
    let collector: *mut Collector = &mut mcf.lint_facts;
    // SAFETY: the cycle pool outlives the configuration; a failed allocation leaves nginx
    // untouched (no wrapping, no lint).
    let cln = ngx_pool_cleanup_add((*cf).pool, 0);
    if cln.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    (*cln).handler = Some(cleanup);
    (*cln).data = collector as *mut c_void;

    let cycle = (*cf).cycle;
    // SAFETY: the cycle's module list is complete and fixed while http{} is parsed.
    let modules = core::slice::from_raw_parts((*cycle).modules, (*cycle).modules_n);
    let mut orig = originals();
    for &m in modules {
        if (*m).name.is_null() || (*m).commands.is_null() {
            continue;
        }
        let module = CStr::from_ptr((*m).name).to_bytes();
        let mut cmd = (*m).commands;
        // SAFETY: command tables end with an entry whose name is empty (ngx_null_command).
        while (*cmd).name.len != 0 {
            let name = (*cmd).name.as_bytes();
            let watched = facts::WATCHED
                .iter()
                .any(|(mn, dn)| mn.as_bytes() == module && dn.as_bytes() == name);
            if let (true, Some(set)) = (watched, (*cmd).set) {
                if !ptr::fn_addr_eq(set, NOTE) {
                    orig.retain(|&(c, _)| c != cmd as usize);
                    orig.push((cmd as usize, set));
                    (*cmd).set = Some(NOTE);
                }
            }
            cmd = cmd.add(1);
        }
    }
    ACTIVE.store(collector, Ordering::Release);
    NGX_OK as ngx_int_t
}

/// Put the original handlers back where our wrapper still sits.
fn restore() {
    originals().retain(|&(cmd, set)| {
        let cmd = cmd as *mut ngx_command_t;
        // SAFETY: the entries are in command tables of modules loaded in this process; the
        // configuration is parsed on the single master thread.
        unsafe {
            if (*cmd).set.is_some_and(|f| ptr::fn_addr_eq(f, NOTE)) {
                (*cmd).set = Some(set);
                return false;
            }
        }
        true
    });
}

/// Stop collecting for `collector` and restore the handlers.
fn end(collector: *mut Collector) {
    restore();
    let _ = ACTIVE.compare_exchange(
        collector,
        ptr::null_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
}

unsafe extern "C" fn cleanup(data: *mut c_void) {
    end(data as *mut Collector);
}

/// The wrapper installed as `set` of the watched directives.
unsafe extern "C" fn note(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let orig = originals()
        .iter()
        .find(|&&(c, _)| c == cmd as usize)
        .map(|&(_, f)| f);
    let Some(orig) = orig else {
        return c"lost its handler (nginx-triage lint)".as_ptr() as *mut c_char;
    };
    let collector = ACTIVE.load(Ordering::Acquire);
    if collector.is_null() {
        return orig(cf, cmd, conf);
    }
    let name = String::from_utf8_lossy((*cmd).name.as_bytes()).into_owned();
    let args = args(cf);
    // SAFETY: ACTIVE points to the collector of the http{} block being parsed.
    let site = site(cf, &mut *collector);

    if name == "upstream" {
        // a block: its `server` and `keepalive` lines are noted while it is parsed
        (*collector).upstreams.push(Upstream {
            name: args.first().cloned().unwrap_or_default(),
            site,
            ..Default::default()
        });
        return orig(cf, cmd, conf);
    }

    let rv = orig(cf, cmd, conf);
    if rv != NGX_CONF_OK {
        return rv;
    }
    let c = &mut *collector;
    if facts::in_upstream(&name) {
        if let Some(u) = current_upstream(cf, c) {
            facts::note_upstream(u, &name, &args, site);
        }
    } else if let Some(key) = level_key(cf) {
        c.levels.entry(key).or_default().note(&name, &args, site);
    }
    rv
}

/// Give each upstream its active health check (`check`, parsed by `check::directives`):
/// the rules compare `proxy_read_timeout` and `max_fails` against it.
fn attach_checks(upstreams: &mut [Upstream], checks: &crate::check::directives::Checks) {
    for uc in &checks.list {
        let Some(check) = &uc.check else { continue };
        let name = String::from_utf8_lossy(&uc.name);
        let Some(u) = upstreams.iter_mut().find(|u| u.name == name) else {
            continue;
        };
        // `at` is "file:line" of the block's first check directive
        let (file, line) = uc.at.rsplit_once(':').unwrap_or((uc.at.as_str(), "0"));
        u.check = Some(crate::lint::model::Check {
            timeout_ms: check.timeout_ms,
            site: Site {
                file: file.to_string(),
                line: line.parse().unwrap_or(0),
                seq: u.site.seq,
            },
        });
    }
}

/// The directive's arguments (after its name).
unsafe fn args(cf: *mut ngx_conf_t) -> Vec<String> {
    // SAFETY: cf->args is an ngx_array_t of ngx_str_t filled by the parser, name first.
    let a = &*(*cf).args;
    let all = core::slice::from_raw_parts(a.elts as *const ngx_str_t, a.nelts);
    all.iter()
        .skip(1)
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
        .collect()
}

/// File and line of the directive being parsed.
unsafe fn site(cf: *mut ngx_conf_t, c: &mut Collector) -> Site {
    c.seq += 1;
    let f = (*cf).conf_file;
    if f.is_null() {
        return Site {
            seq: c.seq,
            ..Default::default()
        };
    }
    Site {
        file: String::from_utf8_lossy((*f).file.name.as_bytes()).into_owned(),
        line: (*f).line,
        seq: c.seq,
    }
}

/// Our location conf of the level being parsed or merged: the key of its settings.
unsafe fn level_key(cf: *mut ngx_conf_t) -> Option<usize> {
    Module::location_conf(&*cf).map(|l| l as *const LocConf as usize)
}

/// The upstream{} block being parsed (found by the name nginx gave its srv conf).
unsafe fn current_upstream(cf: *mut ngx_conf_t, c: &mut Collector) -> Option<&mut Upstream> {
    let uscf = NgxHttpUpstreamModule::server_conf(&*cf)?;
    let host = String::from_utf8_lossy(uscf.host.as_bytes()).into_owned();
    c.upstreams
        .iter_mut()
        .rev()
        .find(|u| u.name.eq_ignore_ascii_case(&host))
}

/// `triage_lint_ignore CODE ...;` (http, server, location, upstream).
pub extern "C" fn set_ignore(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls this with a valid cf while parsing.
    let names = unsafe { args(cf) };
    let mut codes = Vec::new();
    for n in &names {
        match Code::parse(n.as_bytes()) {
            Some(c) => codes.push(c),
            None => {
                ngx_conf_log_error!(
                    NGX_LOG_EMERG,
                    cf,
                    "unknown lint code \"{}\" in \"triage_lint_ignore\" (known: {})",
                    n,
                    Code::list()
                );
                return NGX_CONF_ERROR;
            }
        }
    }
    let collector = ACTIVE.load(Ordering::Acquire);
    if collector.is_null() {
        return NGX_CONF_OK;
    }
    // SAFETY: ACTIVE points to the collector of the http{} block being parsed; cf->ctx is an
    // http configuration context (upstream{} or a level).
    unsafe {
        let c = &mut *collector;
        if (*cf).cmd_type == NGX_HTTP_UPS_CONF as ngx_uint_t {
            if let Some(u) = current_upstream(cf, c) {
                for code in codes {
                    if !u.ignore.contains(&code) {
                        u.ignore.push(code);
                    }
                }
            }
        } else if let Some(key) = level_key(cf) {
            c.levels.entry(key).or_default().ignore(&codes);
        }
    }
    NGX_CONF_OK
}

/// Merge of one level into its parent's: inherit, and keep the level if it passes requests.
///
/// # Safety
/// `cf` must be the merge context of `conf` (cf->ctx's location confs are those of `conf`'s
/// level) and `prev` its parent's location conf.
pub unsafe fn merged(cf: *mut ngx_conf_t, prev: *const LocConf, conf: *const LocConf) {
    let collector = ACTIVE.load(Ordering::Acquire);
    if collector.is_null() {
        return;
    }
    let c = &mut *collector;
    let parent = c.levels.get(&(prev as usize)).cloned().unwrap_or_default();
    let (name, noname) = match NgxHttpCoreModule::location_conf(&*cf) {
        Some(clcf) => (
            String::from_utf8_lossy(clcf.name.as_bytes()).into_owned(),
            clcf.noname() != 0,
        ),
        None => (String::new(), false),
    };
    let level = c.levels.entry(conf as usize).or_default();
    level.inherit(&parent, noname);
    if let Some(loc) = level.location(&name) {
        c.locations.push(loc);
    }
}

/// Postconfiguration of http{}: restore the handlers, then (with `triage_lint on`) run the
/// rules and log one `[warn]` per finding. Never fails the configuration.
///
/// # Safety
/// `cf` must be the http{} configuration context at postconfiguration.
pub unsafe fn finish(cf: *mut ngx_conf_t, mcf: &mut MainConf) {
    end(&mut mcf.lint_facts);
    let c = core::mem::take(&mut mcf.lint_facts);
    if mcf.lint == 0 {
        return;
    }
    let http_ignore = level_key(cf)
        .and_then(|k| c.levels.get(&k))
        .map(|l| l.ignore.clone())
        .unwrap_or_default();
    let mut upstreams = c.upstreams;
    attach_checks(&mut upstreams, &mcf.checks);
    let cfg = Config {
        upstreams,
        locations: c.locations,
        listens: listens(cf),
        unix_listens: unix_listens(cf),
        http_ignore,
        worker: worker(cf),
    };
    let findings = std::panic::catch_unwind(|| rules::run(&cfg, &Root::system()));
    for f in findings.unwrap_or_default() {
        // SAFETY: cf->log is the log of the configuration being read (stderr at nginx -t).
        ngx::log::log_error(
            NGX_LOG_WARN as ngx_uint_t,
            (*cf).log,
            0,
            f.render().as_bytes(),
        );
    }
}

/// The http{} servers' `listen` addresses, as nginx has gathered them by postconfiguration.
unsafe fn listen_addrs(cf: *mut ngx_conf_t) -> Vec<*const sockaddr> {
    let Some(cmcf) = NgxHttpCoreModule::main_conf(&*cf) else {
        return Vec::new();
    };
    let ports = cmcf.ports;
    if ports.is_null() {
        return Vec::new();
    }
    // SAFETY: cmcf->ports is an array of ngx_http_conf_port_t, each with an array of
    // ngx_http_conf_addr_t, alive until the configuration is done.
    let ports =
        core::slice::from_raw_parts((*ports).elts as *const ngx_http_conf_port_t, (*ports).nelts);
    ports
        .iter()
        .flat_map(|p| {
            core::slice::from_raw_parts(p.addrs.elts as *const ngx_http_conf_addr_t, p.addrs.nelts)
        })
        .map(|a| a.opt.sockaddr as *const sockaddr)
        .collect()
}

/// The paths of the unix sockets the http{} servers listen on (`listen unix:PATH`).
unsafe fn unix_listens(cf: *mut ngx_conf_t) -> Vec<String> {
    listen_addrs(cf)
        .into_iter()
        .filter(|&sa| !sa.is_null() && i32::from((*sa).sa_family) == libc::AF_UNIX)
        .map(|sa| {
            // SAFETY: the family says what the address is; nginx NUL-terminates the path.
            let un = &*(sa as *const libc::sockaddr_un);
            let path = core::ffi::CStr::from_ptr(un.sun_path.as_ptr());
            path.to_string_lossy().into_owned()
        })
        .collect()
}

/// The TCP addresses the http{} servers listen on, as nginx has gathered them by
/// postconfiguration (every server merged, a server without `listen` given nginx's default).
/// A `quic` listen counts too: the rule then stays silent rather than wrong.
unsafe fn listens(cf: *mut ngx_conf_t) -> Vec<SocketAddr> {
    listen_addrs(cf)
        .into_iter()
        .filter_map(|sa| socket_addr(sa))
        .collect()
}

/// An AF_INET / AF_INET6 socket address as Rust's (others: None).
unsafe fn socket_addr(sa: *const sockaddr) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    match i32::from((*sa).sa_family) {
        libc::AF_INET => {
            // SAFETY: the family says what the address is.
            let s = &*(sa as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(s.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above.
            let s = &*(sa as *const libc::sockaddr_in6);
            let ip = Ipv6Addr::from(s.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(s.sin6_port)))
        }
        _ => None,
    }
}

/// The user the workers will run as: the master's own credentials when it is not root (nginx
/// then ignores `user`), else the `user` directive's (if it came before http{}), else nginx's
/// default `nobody`; with the groups `initgroups()` gives it.
unsafe fn worker(cf: *mut ngx_conf_t) -> Option<Worker> {
    if libc::geteuid() != 0 {
        let uid = libc::geteuid();
        let n = libc::getgroups(0, ptr::null_mut());
        let mut gids = vec![libc::getegid()];
        if n > 0 {
            let mut g = vec![0 as libc::gid_t; n as usize];
            let n = libc::getgroups(n, g.as_mut_ptr());
            gids.extend(g.into_iter().take(n.max(0) as usize));
        }
        let pw = libc::getpwuid(uid);
        let name = if pw.is_null() {
            uid.to_string()
        } else {
            CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
        };
        return Some(Worker { name, uid, gids });
    }
    // SAFETY: the core module's conf exists in every cycle being configured.
    let ccf = *(*(*cf).cycle).conf_ctx.add(ngx_core_module.index) as *const ngx_core_conf_t;
    // `user` starts as NGX_CONF_UNSET_UINT cast to uid_t (all ones) until the directive is read
    let (name, uid, gid) = if !ccf.is_null() && (*ccf).user != ngx_uid_t::MAX {
        let name = if (*ccf).username.is_null() {
            (*ccf).user.to_string()
        } else {
            CStr::from_ptr((*ccf).username)
                .to_string_lossy()
                .into_owned()
        };
        (name, (*ccf).user, (*ccf).group)
    } else {
        let pw = libc::getpwnam(NGX_USER.as_ptr());
        let gr = libc::getgrnam(NGX_GROUP.as_ptr());
        if pw.is_null() || gr.is_null() {
            return None;
        }
        (
            NGX_USER.to_string_lossy().into_owned(),
            (*pw).pw_uid,
            (*gr).gr_gid,
        )
    };
    Some(Worker {
        uid,
        gids: groups(&name, gid),
        name,
    })
}

/// `gid` and the supplementary groups of user `name` (what `initgroups()` sets).
fn groups(name: &str, gid: libc::gid_t) -> Vec<u32> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 32;
    loop {
        let mut g = vec![0 as libc::gid_t; n as usize];
        let mut got = n;
        // SAFETY: g holds `got` entries; getgrouplist writes at most that many and updates it.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, g.as_mut_ptr(), &mut got) };
        if rc >= 0 {
            g.truncate(got.max(0) as usize);
            return g;
        }
        if got <= n || n > 65536 {
            return vec![gid];
        }
        n = got;
    }
}
