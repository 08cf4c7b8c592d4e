//! Declaring the module's two shared zones ("triage": the counters, in `state`;
//! "triage_check": the health checks, in `check::shm`), with an error that says whose the
//! name is when the configuration already declares a zone of that name for something else.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;
use ngx::http::HttpModule;
use ngx::ngx_conf_log_error;

use crate::module::Module;

/// `ngx_shared_memory_add` for one of the module's zones; null on error (logged).
/// `holds` says what the zone holds, for the error.
///
/// # Safety
/// `cf` must be the http{} configuration being finished.
pub unsafe fn add(
    cf: *mut ngx_conf_t,
    name: &'static [u8],
    size: usize,
    holds: &str,
) -> *mut ngx_shm_zone_t {
    let tag = Module::module() as *const ngx_module_t as *mut c_void;
    if taken(cf, name, tag) {
        // nginx's own message would be: the shared memory zone "triage" is already declared
        // for a different use (at the end of http{}, with nothing of ours in it)
        ngx_conf_log_error!(
            NGX_LOG_EMERG,
            cf,
            "the shared memory zone \"{}\" holds nginx-triage's {}, and the configuration declares another zone of that name (limit_req_zone, limit_conn_zone, an upstream's zone...): rename that zone",
            String::from_utf8_lossy(name),
            holds
        );
        return ptr::null_mut();
    }
    let mut n = ngx_str_t {
        len: name.len(),
        data: name.as_ptr() as *mut u8,
    };
    ngx_shared_memory_add(cf, &mut n, size, tag)
}

/// A zone named `name` with another tag is declared in the cycle being loaded.
unsafe fn taken(cf: *mut ngx_conf_t, name: &[u8], tag: *mut c_void) -> bool {
    zones((*cf).cycle).any(|z| z.shm.name.as_bytes() == name && !ptr::eq(z.tag, tag))
}

/// The shared zones declared in `cycle`.
///
/// # Safety
/// `cycle` must be a valid cycle, whose zone list outlives the iterator.
pub unsafe fn zones<'a>(cycle: *const ngx_cycle_t) -> impl Iterator<Item = &'a ngx_shm_zone_t> {
    let mut part = ptr::addr_of!((*cycle).shared_memory.part);
    core::iter::from_fn(move || {
        // SAFETY: the list's parts are valid (the caller's promise), each with nelts zones.
        unsafe {
            while !part.is_null() {
                let p = &*part;
                part = p.next;
                if !p.elts.is_null() && p.nelts > 0 {
                    return Some(core::slice::from_raw_parts(
                        p.elts as *const ngx_shm_zone_t,
                        p.nelts,
                    ));
                }
            }
            None
        }
    })
    .flatten()
}
