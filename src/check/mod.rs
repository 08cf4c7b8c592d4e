//! Active health checks on nginx timers, configured with nginx_upstream_check_module's
//! directives (`check`, `check_http_send`, ...), without patching nginx.
//!
//! How the parts fit (data flows one way):
//! - configuration: `directives` (setters, per-upstream settings, the shared zone and the
//!   `peer.init` wrapper declared at postconfiguration) over the pure parser [`conf`];
//! - health state: `shm` (zone "triage_check": one record per upstream + server + address,
//!   kept across reloads) holding [`health`] words (rise/fall arithmetic, pure);
//! - scheduling: `worker` (a timer in every worker claims due peers by compare-and-swap of
//!   their due time in shared memory: one probe per peer per interval for the whole
//!   instance) over the pure [`schedule`];
//! - probing: `probe` (connect, TLS through nginx's OpenSSL in `tls`, send, read, deadline)
//!   driving the pure [`exchange`], [`http_parse`], [`fastcgi`], [`mysql`] and [`ajp`];
//! - peers nginx adds at run time (`server ... resolve`): `dynamic` makes them targets of
//!   each worker as they come and drops them as they go;
//! - taking peers out of rotation: `balancer` sets `down` on the balancer's peers from the
//!   shared state (each worker's copy without `zone`, the shared copy with it);
//! - showing: `status` (the `check_status` handler in UCM's formats, rendered by the pure
//!   [`ucm`]; and the `health` of the triage status).
//!
//! The FFI parts are left out of unit-test builds.

pub mod ajp;
pub mod conf;
pub mod exchange;
pub mod fastcgi;
pub mod health;
pub mod http_parse;
pub mod mysql;
pub mod schedule;
pub mod ucm;

#[cfg(test)]
pub mod testing;

#[cfg(not(test))]
pub mod balancer;
#[cfg(not(test))]
pub mod directives;
#[cfg(not(test))]
pub mod dynamic;
#[cfg(not(test))]
mod probe;
#[cfg(not(test))]
pub mod shm;
#[cfg(not(test))]
pub mod status;
#[cfg(not(test))]
mod tls;
#[cfg(not(test))]
pub mod worker;
