//! Gather the status snapshot: the configuration (upstreams, peers as the balancer holds them)
//! joined with the shared counters, plus the upstreams only the counters know (resolved at run
//! time). The handler in `status` renders it.

use core::sync::atomic::Ordering;
use std::collections::{HashMap, HashSet};

use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::snapshot::{Failures, PeerSnap, PeerState, Responses, Snapshot, UpstreamSnap, Window};
use crate::state::{self, Shared, Slot};
use crate::{check, upstreams};

fn failures(slot: Option<&Slot>) -> Failures {
    Failures {
        by_cause: slot.map(|s| s.by_cause()).unwrap_or_default(),
    }
}

/// Bytes into a String without a copy when they are UTF-8 (they nearly always are).
fn owned(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| lossy(e.as_bytes()))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A peer's counters from its slot (zeros without one).
fn counted(name: String, server: String, slot: Option<&Slot>, now: u64) -> PeerSnap {
    let (window_1m, window_5m) = slot.map(|s| s.windows(now)).unwrap_or_default();
    PeerSnap {
        requests: slot.map_or(0, |s| s.requests.load(Ordering::Relaxed)),
        responses: Responses {
            by_class: slot.map(|s| s.responses()).unwrap_or_default(),
        },
        failures: failures(slot),
        last_failure: slot.and_then(|s| s.last_failure()),
        window_1m,
        window_5m,
        top_cause_5m: slot.and_then(|s| s.top_cause(now)),
        ..PeerSnap::new(name, server)
    }
}

/// Configured upstreams in configuration order, then those resolved at run time.
///
/// # Safety
/// `r` must be a live request of the http{} block whose configuration is shown.
pub unsafe fn snapshot(r: *mut ngx_http_request_t) -> Snapshot {
    let sh: Option<&Shared> = state::get();
    let now = state::now_ms();
    let slot = |up: &[u8], peer: &[u8]| sh.and_then(|s| s.slot(up, peer, false));
    let mut ups = Vec::new();
    if let Some(umcf) = NgxHttpUpstreamModule::main_conf(&*r) {
        for &uscf in upstreams::all(umcf) {
            let name = upstreams::display_name(uscf);
            let peers = upstreams::peers(uscf)
                .into_iter()
                .map(|p| {
                    let s = slot(&name, &p.name);
                    // active checks: state and health from the checks (they set `down`)
                    let checked =
                        check::status::peer(r, uscf, &p.server, &p.name, p.unavailable, now);
                    PeerSnap {
                        backup: p.backup,
                        weight: p.weight,
                        max_fails: p.max_fails,
                        fail_timeout: p.fail_timeout,
                        max_conns: (p.max_conns > 0).then_some(p.max_conns),
                        state: if let Some((s, _)) = &checked {
                            *s
                        } else if p.down {
                            PeerState::Down
                        } else if p.unavailable {
                            PeerState::Unavailable
                        } else {
                            PeerState::Up
                        },
                        health: checked.map(|(_, h)| h),
                        ..counted(owned(p.name), owned(p.server), s, now)
                    }
                })
                .collect();
            let own = slot(&name, b"");
            let (own_window_1m, own_window_5m) = own.map(|s| s.windows(now)).unwrap_or_default();
            ups.push(UpstreamSnap {
                name: lossy(&name),
                dynamic: false,
                zone: upstreams::zone_name(uscf).map(|z| lossy(&z)),
                keepalive: upstreams::keepalive(ngx_cycle, uscf),
                own: failures(own),
                own_window_1m,
                own_window_5m,
                peers,
            });
        }
    }
    if let Some(sh) = sh {
        // run-time upstreams by name: up to thousands of them (state::run_time_share)
        let mut run_time: HashMap<String, usize> = HashMap::new();
        // once each: a scan that meets the index being rebuilt may meet an entry twice
        let mut listed = HashSet::new();
        for s in sh
            .slots()
            .filter(|s| s.dynamic() && listed.insert(*s as *const Slot))
        {
            // both names from one read: an entry reused meanwhile never mixes them
            let (upstream, peer) = s.names();
            let name = lossy(upstream);
            let i = match run_time.get(&name) {
                Some(&i) => i,
                None => {
                    run_time.insert(name.clone(), ups.len());
                    ups.push(UpstreamSnap {
                        name,
                        dynamic: true,
                        zone: None,
                        keepalive: None,
                        peers: Vec::new(),
                        own: Failures::default(),
                        own_window_1m: Window::default(),
                        own_window_5m: Window::default(),
                    });
                    ups.len() - 1
                }
            };
            if peer.is_empty() {
                ups[i].own = failures(Some(s));
                (ups[i].own_window_1m, ups[i].own_window_5m) = s.windows(now);
            } else {
                ups[i]
                    .peers
                    .push(counted(lossy(peer), lossy(peer), Some(s), now));
            }
        }
    }
    let (generation, load_time_ms) = sh.map(|s| s.load_info()).unwrap_or((0, 0));
    Snapshot {
        version: env!("CARGO_PKG_VERSION"),
        nginx_version: lossy(NGINX_VERSION.to_bytes()),
        pid: ngx_pid as u32,
        generation,
        load_time_ms,
        time_ms: now,
        upstreams: ups,
        recent_failures: sh.map(|s| s.recent_failures()).unwrap_or_default(),
        zones: sh
            .map(Shared::usage)
            .into_iter()
            .chain(check::status::zone_usage(r))
            .collect(),
    }
}
