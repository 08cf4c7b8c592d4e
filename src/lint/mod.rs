//! Configuration lint: warns at `nginx -t` (and start, reload) about configurations that parse
//! fine but give 502/504 later — keepalive that is silently unused, a unix socket that is missing
//! or not writable by the worker user, a loopback port nothing listens on, SELinux refusing
//! network connects, timeouts that are too short, upstreams with no server taking traffic.
//!
//! Data flows one way:
//! - `glue` (FFI, not in unit-test builds) notes the directives that matter, with their file and
//!   line, while nginx parses them, and turns them into a [`model::Config`] after parsing;
//! - [`facts`] interprets a directive's arguments and does nginx's inheritance (pure);
//! - [`rules`] are pure functions from the [`model::Config`] and a [`system::SystemView`]
//!   (the few `/proc`, `/sys` and file-system reads, behind a trait so tests can fake a root)
//!   to [`rules::Finding`]s, each with a stable [`code::Code`];
//! - `glue` logs every finding as one `[warn]` line. The lint never fails the configuration
//!   and adds nothing to the request path.

pub mod code;
pub mod facts;
pub mod model;
pub mod rules;
pub mod system;
pub mod target;
pub mod time;

#[cfg(not(test))]
pub(crate) mod glue;
