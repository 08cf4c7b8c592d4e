//! nginx-triage: classify, count and explain every nginx-generated 502/504.
//!
//! This file holds the module table and the configuration-time hooks only; each concern has its own
//! file:
//! - pure core (no FFI, `cargo test`): [`cause`] (taxonomy, classification, hints), [`snapshot`]
//!   (what the status shows), [`query`] (what a status request asks for: format negotiation,
//!   arguments), [`render`] (JSON, Prometheus and HTML renderers), [`lint`] (configuration lint
//!   rules; its `lint::glue` is FFI and left out of unit-test builds), [`fallback_body`] (the
//!   `triage_fallback` pages and arguments), [`accept`] (`Accept` negotiation), [`shm_index`] (the
//!   lookup in both shared zones), [`listeners`] (who listens on a refused port on the other IP
//!   family: sock_diag's request and reply, a worker's cache), [`ring`] (the lock-free
//!   recent-failures ring's sequence rules), [`recent`] (the ring's entries), [`window`] (a
//!   peer's sliding windows and top cause), and the pure parts of [`check`] (active health
//!   checks; its FFI parts are gated inside);
//! - FFI glue: `conf` (directives), `peer` (peer.init/get/free and finalize wrappers), `run_time`
//!   (upstreams made at run time, hooked from the content handler), `facts` (what nginx's
//!   structures say about a failed try), `watch` (what the wrappers keep while an upstream runs),
//!   `record` (a request's failed tries), `logtap` (errno from the error log), `state` (shared
//!   memory), `shm_zone` (declaring the two zones), `variables` (`$triage_*`), `status` (the
//!   `triage_status` handler), `upstreams` (walking nginx's upstream configuration), `fallback`
//!   (the `triage_fallback` filters).
//!
//! The FFI glue is left out of unit-test builds: `cargo test` cannot link nginx symbols.

pub mod accept;
pub mod cause;
pub mod check;
pub mod fallback_body;
pub mod lint;
pub mod listeners;
pub mod query;
pub mod recent;
pub mod render;
pub mod ring;
pub mod shm_index;
pub mod snapshot;
pub mod window;

#[cfg(not(test))]
mod collect;
#[cfg(not(test))]
mod conf;
#[cfg(not(test))]
mod facts;
#[cfg(not(test))]
mod fallback;
#[cfg(not(test))]
mod logtap;
#[cfg(not(test))]
mod peer;
#[cfg(not(test))]
mod record;
#[cfg(not(test))]
mod run_time;
#[cfg(not(test))]
mod shm_zone;
#[cfg(not(test))]
mod state;
#[cfg(not(test))]
mod status;
#[cfg(not(test))]
mod upstreams;
#[cfg(not(test))]
mod variables;
#[cfg(not(test))]
mod watch;

#[cfg(not(test))]
pub use module::ngx_http_triage_module;

#[cfg(not(test))]
mod module {
    use core::ffi::{c_char, c_void};
    use core::ptr::{self, addr_of, addr_of_mut};

    use ngx::core::{Status, NGX_CONF_ERROR};
    use ngx::ffi::*;
    use ngx::http::HttpModuleConfExt;
    use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Merge};

    use crate::conf::{self, LocConf, MainConf};
    use crate::{check, fallback, lint, peer, run_time, state, variables};

    pub struct Module;

    impl HttpModule for Module {
        fn module() -> &'static ngx_module_t {
            // SAFETY: the module table is a static that nginx only mutates while loading the
            // configuration, on the single master thread.
            unsafe { &*addr_of!(ngx_http_triage_module) }
        }

        unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            // SAFETY: nginx passes a valid configuration context; our main conf exists.
            let mcf = &mut *Module::main_conf_mut(&*cf).expect("main conf");
            let rc: ngx_int_t = variables::register(cf, &mut mcf.request_id).into();
            if rc != NGX_OK as ngx_int_t {
                return rc;
            }
            lint::glue::begin(cf, mcf)
        }

        unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            // SAFETY: nginx passes a valid configuration context; our main conf exists.
            let mcf = &mut *Module::main_conf_mut(&*cf).expect("main conf");
            lint::glue::finish(cf, mcf);
            crate::listeners::note_container();
            if state::add_zone(cf, mcf) != Status::NGX_OK {
                return Status::NGX_ERROR.into();
            }
            if peer::wrap_upstreams(cf, mcf) != Status::NGX_OK {
                return Status::NGX_ERROR.into();
            }
            if check::directives::postconfiguration(cf, mcf) != Status::NGX_OK {
                return Status::NGX_ERROR.into();
            }
            fallback::install(cf, &mut mcf.fallback);
            Status::NGX_OK.into()
        }

        unsafe extern "C" fn merge_loc_conf(
            cf: *mut ngx_conf_t,
            prev: *mut c_void,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: nginx passes two of our location confs and the context of `conf`.
            lint::glue::merged(cf, prev as *const LocConf, conf as *const LocConf);
            let prev = &*(prev as *const LocConf);
            let conf = &mut *(conf as *mut LocConf);
            if conf.merge(prev).is_err() {
                return NGX_CONF_ERROR;
            }
            fallback::prepare(cf, conf);
            run_time::wrap_content(cf, conf);
            if conf.status {
                // Someone can see them: count requests, responses and times per peer.
                if let Some(mcf) = Module::main_conf_mut(&*cf) {
                    (*mcf).stats = true;
                }
            }
            ptr::null_mut()
        }
    }

    unsafe impl HttpModuleMainConf for Module {
        type MainConf = MainConf;
    }

    unsafe impl HttpModuleLocationConf for Module {
        type LocationConf = LocConf;
    }

    impl Module {
        pub unsafe fn main_conf_mut(cf: &ngx_conf_t) -> Option<*mut MainConf> {
            cf.http_main_conf_unchecked::<MainConf>(Self::module())
                .map(|p| p.as_ptr())
        }
    }

    /// init_module, in the master once nginx has committed to a configuration (at start and
    /// at each reload that succeeds; the workers start after it): what the shared zones keep
    /// of the configuration is written here, never at zone init (see `state::SHARED`).
    unsafe extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
        let rc = state::init_module(cycle);
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        // SAFETY: the cycle nginx is initialising; our main conf, if any, is its http{}'s.
        if let Some(mcf) = <Module as HttpModuleMainConf>::main_conf_mut(&*cycle) {
            check::shm::register(&mut mcf.checks);
            fallback::install_late(&mcf.fallback);
        }
        NGX_OK as ngx_int_t
    }

    static NGX_HTTP_TRIAGE_MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
        preconfiguration: Some(Module::preconfiguration),
        postconfiguration: Some(Module::postconfiguration),
        create_main_conf: Some(Module::create_main_conf),
        init_main_conf: Some(Module::init_main_conf),
        create_srv_conf: None,
        merge_srv_conf: None,
        create_loc_conf: Some(Module::create_loc_conf),
        merge_loc_conf: Some(Module::merge_loc_conf),
    };

    #[no_mangle]
    #[used]
    pub static mut ngx_http_triage_module: ngx_module_t = ngx_module_t {
        ctx: addr_of!(NGX_HTTP_TRIAGE_MODULE_CTX) as *mut c_void,
        commands: addr_of_mut!(conf::COMMANDS) as *mut ngx_command_t,
        type_: NGX_HTTP_MODULE as ngx_uint_t,
        init_module: Some(init_module),
        init_process: Some(check::worker::init_process),
        exit_process: Some(check::worker::exit_process),
        ..ngx_module_t::default()
    };

    #[cfg(feature = "export-modules")]
    ngx::ngx_modules!(ngx_http_triage_module);
}
