//! The `triage_status` handler: snapshot the shared counters, render, send.

use core::ptr;

use ngx::ffi::*;

use crate::{collect, render};

unsafe fn add_header(r: *mut ngx_http_request_t, key: &'static [u8], value: &'static [u8]) -> bool {
    let h = ngx_list_push(&mut (*r).headers_out.headers) as *mut ngx_table_elt_t;
    if h.is_null() {
        return false;
    }
    (*h).hash = 1;
    (*h).key = ngx_str_t {
        len: key.len(),
        data: key.as_ptr() as *mut u8,
    };
    (*h).value = ngx_str_t {
        len: value.len(),
        data: value.as_ptr() as *mut u8,
    };
    (*h).next = ptr::null_mut();
    true
}

/// Send `body` as a complete response.
///
/// # Safety
/// `r` must be a live request in its content phase.
pub unsafe fn send(
    r: *mut ngx_http_request_t,
    status: usize,
    content_type: &'static [u8],
    body: &[u8],
) -> ngx_int_t {
    let rc = ngx_http_discard_request_body(r);
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    (*r).headers_out.status = status;
    (*r).headers_out.content_length_n = body.len() as off_t;
    (*r).headers_out.content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr() as *mut u8,
    };
    (*r).headers_out.content_type_len = content_type.len();
    if !add_header(r, b"Cache-Control", b"no-store") {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let rc = ngx_http_send_header(r);
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*r).header_only() != 0 {
        return rc;
    }
    let b = ngx_pcalloc((*r).pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    if b.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    if !body.is_empty() {
        let p = ngx_pnalloc((*r).pool, body.len()) as *mut u8;
        if p.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        ptr::copy_nonoverlapping(body.as_ptr(), p, body.len());
        (*b).pos = p;
        (*b).last = p.add(body.len());
        (*b).set_memory(1);
    }
    (*b).set_last_buf(if (*r).main == r { 1 } else { 0 });
    (*b).set_last_in_chain(1);
    let mut out = ngx_chain_t {
        buf: b,
        next: ptr::null_mut(),
    };
    ngx_http_output_filter(r, &mut out)
}

pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let snap = collect::snapshot(r);
    let body = render::json(&snap);
    send(
        r,
        NGX_HTTP_OK as usize,
        b"application/json",
        body.as_bytes(),
    )
}
