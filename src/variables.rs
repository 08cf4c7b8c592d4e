//! The `$triage_*` variables: read the request record; empty when no failure decided the
//! response.

use core::fmt::Write;

use ngx::core::Status;
use ngx::ffi::*;
use ngx::ngx_string;

use crate::record::{self, Record, Try};

#[derive(Clone, Copy)]
#[repr(usize)]
enum Var {
    Cause,
    Causes,
    Errno,
    Phase,
    Peer,
    Hint,
}

const VARS: [(ngx_str_t, Var); 6] = [
    (ngx_string!("triage_cause"), Var::Cause),
    (ngx_string!("triage_causes"), Var::Causes),
    (ngx_string!("triage_errno"), Var::Errno),
    (ngx_string!("triage_phase"), Var::Phase),
    (ngx_string!("triage_peer"), Var::Peer),
    (ngx_string!("triage_hint"), Var::Hint),
];

/// Add the variables (preconfiguration), and index nginx's `$request_id`, which a failure's
/// record and the fallback pages carry: read by index, it costs no name lookup per request.
///
/// # Safety
/// `cf` must be the http{} configuration being parsed.
pub unsafe fn register(cf: *mut ngx_conf_t, request_id: &mut ngx_int_t) -> Status {
    let mut name = ngx_string!("request_id");
    *request_id = ngx_http_get_variable_index(cf, &mut name);
    if *request_id == NGX_ERROR as ngx_int_t {
        return Status::NGX_ERROR;
    }
    for (name, which) in VARS {
        let mut name = name;
        let v = ngx_http_add_variable(cf, &mut name, (NGX_HTTP_VAR_NOCACHEABLE) as ngx_uint_t);
        if v.is_null() {
            return Status::NGX_ERROR;
        }
        (*v).get_handler = Some(get);
        (*v).data = which as usize;
    }
    Status::NGX_OK
}

/// `$request_id` of `r`, by the index [`register`] took (generated once per request and cached:
/// the access log shows the same value).
///
/// # Safety
/// `r` must be a valid request of the http{} block that gave `index`.
pub unsafe fn request_id<'a>(r: *mut ngx_http_request_t, index: ngx_int_t) -> &'a [u8] {
    if index == NGX_ERROR as ngx_int_t {
        return &[];
    }
    let v = ngx_http_get_indexed_variable(r, index as ngx_uint_t);
    if v.is_null() || (*v).not_found() != 0 || (*v).valid() == 0 || (*v).data.is_null() {
        return &[];
    }
    core::slice::from_raw_parts((*v).data, (*v).len() as usize)
}

unsafe fn set(r: *mut ngx_http_request_t, v: *mut ngx_variable_value_t, bytes: &[u8], copy: bool) {
    if bytes.is_empty() {
        (*v).set_not_found(1);
        return;
    }
    let data = if copy {
        let p = ngx_pnalloc((*r).pool, bytes.len()) as *mut u8;
        if p.is_null() {
            (*v).set_not_found(1);
            return;
        }
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
        p
    } else {
        bytes.as_ptr() as *mut u8
    };
    (*v).data = data;
    (*v).set_len(bytes.len() as u32);
    (*v).set_valid(1);
    (*v).set_no_cacheable(1);
    (*v).set_not_found(0);
}

fn value(ctx: &Record, which: Var, t: &Try) -> Option<String> {
    Some(match which {
        Var::Cause => t.cause.as_str().to_owned(),
        Var::Causes => {
            let mut s = String::new();
            for (i, t) in ctx.tries().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(t.cause.as_str());
            }
            s
        }
        Var::Errno => {
            let mut s = String::new();
            let _ = write!(s, "{}", t.errno?);
            s
        }
        Var::Phase => t.phase.as_str().to_owned(),
        Var::Peer => String::from_utf8_lossy(t.peer.as_bytes()).into_owned(),
        Var::Hint => t.cause.hint_in(t.errno, t.detail, t.pass).to_owned(),
    })
}

unsafe extern "C" fn get(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    data: usize,
) -> ngx_int_t {
    let which = match data {
        0 => Var::Cause,
        1 => Var::Causes,
        2 => Var::Errno,
        3 => Var::Phase,
        4 => Var::Peer,
        _ => Var::Hint,
    };
    let found = record::get(r).and_then(|c| {
        let ctx = &*c;
        // $triage_causes lists every failed try, also when a later try succeeded.
        let t = match which {
            Var::Causes => ctx.last().filter(|_| ctx.total_tries > 0),
            _ => ctx.deciding(),
        }?;
        value(ctx, which, t)
    });
    match found {
        Some(s) => set(r, v, s.as_bytes(), true),
        None => set(r, v, b"", false),
    }
    NGX_OK as ngx_int_t
}
