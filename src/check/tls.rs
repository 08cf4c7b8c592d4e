//! TLS for https and ssl_hello checks, with nginx's OpenSSL (`ngx_ssl_*`): one client
//! context per checked upstream (made at configuration time, verification against
//! `check_ssl_trusted_certificate` when `check_ssl_verify on`), SNI, the handshake, and
//! the certificate and host-name checks once it is done.

use core::ffi::c_void;
use core::ptr;

use ngx::ffi::*;

use super::directives::UpstreamCheck;

/// The name to send as SNI: not an IP address literal (RFC 6066).
fn sni(name: &[u8]) -> bool {
    !name.is_empty()
        && core::str::from_utf8(name)
            .map(|s| s.parse::<std::net::IpAddr>().is_err())
            .unwrap_or(false)
}

/// A client TLS context for the upstream's checks (freed with the configuration).
///
/// # Safety
/// `cf` must be the configuration being loaded.
#[cfg(ngx_feature = "ssl")]
pub unsafe fn context(cf: *mut ngx_conf_t, e: &UpstreamCheck) -> Option<*mut c_void> {
    let ssl = ngx_pcalloc((*cf).pool, core::mem::size_of::<ngx_ssl_t>()) as *mut ngx_ssl_t;
    if ssl.is_null() {
        return None;
    }
    (*ssl).log = (*cf).log;
    let protocols = (NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3) as ngx_uint_t;
    if ngx_ssl_create(ssl, protocols, core::ptr::null_mut()) != NGX_OK as ngx_int_t {
        return None;
    }
    let cln = ngx_pool_cleanup_add((*cf).pool, 0);
    if cln.is_null() {
        ngx_ssl_cleanup_ctx(ssl.cast());
        return None;
    }
    (*cln).handler = Some(ngx_ssl_cleanup_ctx);
    (*cln).data = ssl.cast();
    if e.ssl_verify == Some(true) {
        let file = e.ssl_trusted.as_deref().unwrap_or_default();
        let mut s = super::directives::c_string((*cf).pool, file)?;
        if ngx_ssl_trusted_certificate(cf, ssl, &mut s, 1) != NGX_OK as ngx_int_t {
            return None;
        }
    }
    Some(ssl.cast())
}

#[cfg(not(ngx_feature = "ssl"))]
pub unsafe fn context(_cf: *mut ngx_conf_t, _e: &UpstreamCheck) -> Option<*mut c_void> {
    None
}

/// Start the handshake on a connected `c`: Ok(true) if it completed at once, Ok(false) if
/// nginx will call `done` when it ends, Err if it could not start or failed at once.
///
/// # Safety
/// `c` must be a connected probe connection of `uc`.
#[cfg(ngx_feature = "ssl")]
pub unsafe fn handshake(
    c: *mut ngx_connection_t,
    uc: &UpstreamCheck,
    done: unsafe extern "C" fn(*mut ngx_connection_t),
) -> Result<bool, ()> {
    if (*c).pool.is_null() {
        // the worker's log: the pool may outlive this probe (a kept connection)
        (*c).pool = ngx_create_pool(128, ptr::addr_of_mut!((*super::worker::get()).log));
        if (*c).pool.is_null() {
            return Err(());
        }
    }
    if ngx_ssl_create_connection(uc.ssl.cast(), c, NGX_SSL_CLIENT as ngx_uint_t)
        != NGX_OK as ngx_int_t
    {
        return Err(());
    }
    let name = uc.tls_name();
    if sni(name) {
        let mut z = name.to_vec();
        z.push(0);
        // SSL_set_tlsext_host_name(): OpenSSL copies the name.
        SSL_ctrl(
            (*(*c).ssl).connection.cast(),
            SSL_CTRL_SET_TLSEXT_HOSTNAME as _,
            TLSEXT_NAMETYPE_host_name as _,
            z.as_mut_ptr().cast(),
        );
    }
    match ngx_ssl_handshake(c) {
        rc if rc == NGX_AGAIN as ngx_int_t => {
            (*(*c).ssl).handler = Some(done);
            Ok(false)
        }
        rc if rc == NGX_OK as ngx_int_t => Ok(true),
        _ => Err(()),
    }
}

#[cfg(not(ngx_feature = "ssl"))]
pub unsafe fn handshake(
    _c: *mut ngx_connection_t,
    _uc: &UpstreamCheck,
    _done: unsafe extern "C" fn(*mut ngx_connection_t),
) -> Result<bool, ()> {
    Err(())
}

/// The handshake completed, and with `check_ssl_verify on` the certificate chain is
/// trusted and names `check_ssl_name` (or the upstream name).
///
/// # Safety
/// `c` must be the probe connection `handshake` was called on.
#[cfg(ngx_feature = "ssl")]
pub unsafe fn verified(c: *mut ngx_connection_t, uc: &UpstreamCheck) -> bool {
    let ssl = (*c).ssl;
    if ssl.is_null() || (*ssl).handshaked() == 0 {
        return false;
    }
    if uc.ssl_verify != Some(true) {
        return true;
    }
    if SSL_get_verify_result((*ssl).connection.cast()) != X509_V_OK as core::ffi::c_long {
        return false;
    }
    let name = uc.tls_name();
    let mut s = ngx_str_t {
        len: name.len(),
        data: name.as_ptr() as *mut u8,
    };
    ngx_ssl_check_host(c, &mut s) == NGX_OK as ngx_int_t
}

#[cfg(not(ngx_feature = "ssl"))]
pub unsafe fn verified(_c: *mut ngx_connection_t, _uc: &UpstreamCheck) -> bool {
    false
}

/// Drop the TLS state of a probe connection about to be closed (no close_notify exchange).
///
/// # Safety
/// `c` must be a probe connection.
#[cfg(ngx_feature = "ssl")]
pub unsafe fn shutdown(c: *mut ngx_connection_t) {
    let ssl = (*c).ssl;
    if !ssl.is_null() {
        (*ssl).set_no_wait_shutdown(1);
        (*ssl).set_no_send_shutdown(1);
        let _ = ngx_ssl_shutdown(c);
    }
}

#[cfg(not(ngx_feature = "ssl"))]
pub unsafe fn shutdown(_c: *mut ngx_connection_t) {}
