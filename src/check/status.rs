//! Showing the checks: the `check_status` handler (UCM's page, rendered by `check::ucm`)
//! and the per-peer `health` of the triage status (gathered by `collect`).

use ngx::ffi::*;
use ngx::http::HttpModule;

use super::conf::Format;
use super::directives::{CheckedPeer, UpstreamCheck};
use super::health::peer_states;
use super::ucm::{self, Row};
use crate::conf::MainConf;
use crate::module::Module;
use crate::snapshot::{Health, PeerState, ZoneSnap};

type Handler = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;

/// The content handler of `check_status FORMAT`.
pub fn handler(f: Format) -> Handler {
    match f {
        Format::Html => html,
        Format::Csv => csv,
        Format::Json => json,
    }
}

unsafe extern "C" fn html(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, Format::Html)
}

unsafe extern "C" fn csv(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, Format::Csv)
}

unsafe extern "C" fn json(r: *mut ngx_http_request_t) -> ngx_int_t {
    serve(r, Format::Json)
}

unsafe fn main_conf<'a>(r: *mut ngx_http_request_t) -> &'a MainConf {
    // SAFETY: our main conf exists in every http{} request context.
    &*(*(*r).main_conf.add(Module::module().ctx_index) as *const MainConf)
}

unsafe fn serve(r: *mut ngx_http_request_t, default: Format) -> ngx_int_t {
    if (*r).method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as ngx_uint_t == 0 {
        return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
    }
    let q = ucm::parse_query((*r).args.as_bytes());
    let format = q.format.unwrap_or(default);
    let mut rows = Vec::new();
    // peers nginx added or removed at run time since this worker last looked
    super::worker::rescan();
    let w = super::worker::get();
    for uc in &main_conf(r).checks.list {
        let c = uc.conf();
        let dynamic = (!w.is_null())
            .then(|| (*w).dynamic.of(uc).map(|d| &d.peer))
            .into_iter()
            .flatten();
        for p in uc.peers.iter().chain(dynamic).filter(|p| !p.rec.is_null()) {
            let s = (*p.rec).state();
            rows.push(Row {
                upstream: String::from_utf8_lossy(&uc.name).into_owned(),
                name: String::from_utf8_lossy(&p.name).into_owned(),
                up: s.up,
                rise: s.rise_count,
                fall: s.fall_count,
                kind: c.kind.as_str(),
                port: c.port,
            });
        }
    }
    let generation = main_conf(r).checks.header().map_or(0, |h| {
        h.generation.load(core::sync::atomic::Ordering::Relaxed)
    });
    let body = ucm::render(format, &rows, generation, q.status);
    crate::status::send(
        r,
        NGX_HTTP_OK as usize,
        format.content_type(),
        &[],
        body.into_bytes(),
    )
}

/// How full the checks' zone is (None without health checks).
///
/// # Safety
/// `r` must be a live request.
pub unsafe fn zone_usage(r: *mut ngx_http_request_t) -> Option<ZoneSnap> {
    let checks = &main_conf(r).checks;
    if checks.list.is_empty() {
        return None;
    }
    checks.header().map(|h| h.usage())
}

/// The checks' view of a peer of `uscf`: its `health` and the state it gives the peer
/// (None: the upstream or peer is not checked). `unavailable`: max_fails tripped.
///
/// # Safety
/// `r` must be a live request of the configuration `uscf` belongs to.
pub unsafe fn peer(
    r: *mut ngx_http_request_t,
    uscf: *const ngx_http_upstream_srv_conf_t,
    server: &[u8],
    name: &[u8],
    unavailable: bool,
    now: u64,
) -> Option<(PeerState, Health)> {
    let checks = &main_conf(r).checks;
    let at = checks.position(uscf)?;
    let uc: &UpstreamCheck = &checks.list[at];
    let cp: &CheckedPeer = match uc.index.get(&(server.to_vec(), name.to_vec())) {
        Some(&i) => &uc.peers[i],
        None => {
            // a peer nginx added at run time (`server ... resolve`)
            super::worker::rescan_upstream(at);
            let w = super::worker::get();
            if w.is_null() {
                return None;
            }
            &(*w).dynamic.find(uc, server, name)?.peer
        }
    };
    if cp.rec.is_null() {
        return None;
    }
    let rec = &*cp.rec;
    let s = rec.state();
    let last = rec.last();
    let last_check = rec
        .last_check_ms
        .load(core::sync::atomic::Ordering::Relaxed);
    let (health_state, peer_state) = peer_states(s, cp.configured_down, unavailable);
    let load = |a: &core::sync::atomic::AtomicU64| a.load(core::sync::atomic::Ordering::Relaxed);
    Some((
        peer_state,
        Health {
            kind: uc.conf().kind.as_str().into(),
            state: health_state,
            checks: load(&rec.checks),
            fails: load(&rec.fails),
            unhealthy: load(&rec.unhealthy),
            rise_count: s.rise_count,
            fall_count: s.fall_count,
            last_check_ms: (last_check != 0).then_some(last_check),
            last_passed: last.map(|l| l.passed),
            last_status: last.and_then(|l| l.status),
            last_error: last
                .filter(|l| !l.passed)
                .and_then(|l| l.reason)
                .map(|r| r.as_str().into()),
            downtime_ms: rec.downtime_ms(now),
            since_ms: Some(load(&rec.since_ms)).filter(|&t| t != 0),
        },
    ))
}
