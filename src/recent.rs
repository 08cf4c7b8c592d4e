//! The recent-failures list (`triage_zone ... recent=N`): a ring of fixed-size entries in the
//! shared zone, written by every worker without a lock by the sequence rules of [`ring`], read
//! by the status newest first. Pure code (no FFI), covered by `cargo test`; `state.rs` holds
//! the entries and the write counter in its zone.
//!
//! An entry keeps what an operator needs to find the request again: its time, upstream, peer,
//! cause, errno, phase and status, and the request's method, path and id, each cut to a fixed
//! size (a longer name loses its end).
//!
//! Shared-memory layout: `#[repr(C)]` and all zeros when new (the zone is calloc'ed); a
//! change of layout needs a new `state::MAGIC`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::cause::{Cause, Phase};
use crate::ring;
use crate::snapshot::RecentFailure;

/// One entry: its sequence word (see [`ring`]) and what it says.
#[repr(C)]
pub struct Entry {
    seq: AtomicU64,
    d: UnsafeCell<Data>,
}

// SAFETY: the data is written only by the writer that claimed the entry's sequence word, and
// a reader keeps its copy only when the word says no write overlapped it (see `ring`).
unsafe impl Sync for Entry {}

/// What one entry takes in the zone.
pub const ENTRY_BYTES: usize = core::mem::size_of::<Entry>();

/// What an entry says, copied out whole by a reader.
#[derive(Clone, Copy)]
#[repr(C)]
struct Data {
    time_ms: u64,
    cause: u8,
    phase: u8,
    status: u16,
    errno: i32,
    lens: [u8; 5],
    upstream: [u8; 64],
    peer: [u8; 64],
    method: [u8; 16],
    path: [u8; 128],
    request_id: [u8; 32],
}

/// A failure to remember.
pub struct Failure<'a> {
    pub time_ms: u64,
    pub cause: Cause,
    pub phase: Phase,
    pub errno: Option<i32>,
    pub status: u16,
    pub upstream: &'a [u8],
    pub peer: &'a [u8],
    pub method: &'a [u8],
    /// Without the query string.
    pub path: &'a [u8],
    pub request_id: &'a [u8],
}

/// Copy what fits of `src` into `dst`; its length.
fn put(dst: &mut [u8], src: &[u8]) -> u8 {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src[..n]);
    n as u8
}

/// Add a failure to the ring `entries`, overwriting the oldest; `next` counts the writes.
/// A write that cannot claim its entry (see [`ring::claim`]) is left out.
pub fn remember(entries: &[Entry], next: &AtomicU64, f: &Failure) {
    if entries.is_empty() {
        return;
    }
    let n = next.fetch_add(1, Ordering::Relaxed);
    let e = &entries[(n % entries.len() as u64) as usize];
    if !ring::claim(&e.seq, n) {
        return;
    }
    // SAFETY: the claim makes this writer the entry's only one until it publishes; readers
    // keep a copy only when the sequence word says it is complete.
    let d = unsafe { &mut *e.d.get() };
    d.time_ms = f.time_ms;
    d.cause = f.cause.index() as u8;
    d.phase = f.phase as u8;
    d.status = f.status;
    d.errno = f.errno.unwrap_or(-1);
    d.lens = [
        put(&mut d.upstream, f.upstream),
        put(&mut d.peer, f.peer),
        put(&mut d.method, f.method),
        put(&mut d.path, f.path),
        put(&mut d.request_id, f.request_id),
    ];
    ring::publish(&e.seq, n);
}

/// The ring, newest first (entries being written or overwritten are skipped). In ring order,
/// entries of two workers can stand a millisecond the wrong way round (each worker stamps its
/// entry from its own cached clock, then claims a place): sorted by time, ring order kept
/// among equal times.
pub fn list(entries: &[Entry], next: &AtomicU64) -> Vec<RecentFailure> {
    if entries.is_empty() {
        return Vec::new();
    }
    let next = next.load(Ordering::Acquire);
    let n = (next as usize).min(entries.len());
    let lossy = |b: &[u8], len: u8| String::from_utf8_lossy(&b[..len as usize]).into_owned();
    let mut out = (1..=n as u64)
        .filter_map(|k| {
            let at = next - k;
            let e = &entries[(at % entries.len() as u64) as usize];
            // SAFETY: a plain copy of the entry's bytes; kept only if no write overlapped.
            let d = ring::read(&e.seq, at, || unsafe { e.d.get().read_volatile() })?;
            Some(RecentFailure {
                time_ms: d.time_ms,
                upstream: lossy(&d.upstream, d.lens[0]),
                peer: lossy(&d.peer, d.lens[1]),
                cause: Cause::from_index(d.cause as usize)?,
                errno: (d.errno >= 0).then_some(d.errno),
                phase: Phase::from_index(d.phase as usize)?,
                status: d.status,
                method: lossy(&d.method, d.lens[2]),
                path: lossy(&d.path, d.lens[3]),
                request_id: lossy(&d.request_id, d.lens[4]),
            })
        })
        .collect::<Vec<_>>();
    out.sort_by_key(|f| core::cmp::Reverse(f.time_ms));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_size_is_what_the_readme_says() {
        // README, triage_zone recent=: "An entry takes 336 bytes"
        assert_eq!(ENTRY_BYTES, 336);
    }

    /// `n` new entries: all zeros, as in the calloc'ed zone.
    fn zeroed(n: usize) -> Vec<Entry> {
        // SAFETY: an entry is integers only, for which all zeros is a valid value.
        (0..n).map(|_| unsafe { core::mem::zeroed() }).collect()
    }

    fn failure(time_ms: u64, path: &[u8]) -> Failure<'_> {
        Failure {
            time_ms,
            cause: Cause::ConnectRefused,
            phase: Phase::Connect,
            errno: Some(111),
            status: 502,
            upstream: b"app",
            peer: b"127.0.0.1:8081",
            method: b"GET",
            path,
            request_id: b"0123456789abcdef0123456789abcdef",
        }
    }

    fn paths(l: &[RecentFailure]) -> Vec<&str> {
        l.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn the_newest_failures_first_as_many_as_fit() {
        let (ring, next) = (zeroed(3), AtomicU64::new(0));
        assert!(list(&ring, &next).is_empty());
        for (i, p) in ["/1", "/2", "/3", "/4", "/5"].iter().enumerate() {
            remember(&ring, &next, &failure(1000 + i as u64, p.as_bytes()));
        }
        let l = list(&ring, &next);
        assert_eq!(paths(&l), ["/5", "/4", "/3"]);
        assert_eq!(
            l[0],
            RecentFailure {
                time_ms: 1004,
                upstream: "app".into(),
                peer: "127.0.0.1:8081".into(),
                cause: Cause::ConnectRefused,
                errno: Some(111),
                phase: Phase::Connect,
                status: 502,
                method: "GET".into(),
                path: "/5".into(),
                request_id: "0123456789abcdef0123456789abcdef".into(),
            }
        );
    }

    #[test]
    fn long_names_lose_their_end() {
        let (ring, next) = (zeroed(1), AtomicU64::new(0));
        let long = [b'x'; 300];
        remember(
            &ring,
            &next,
            &Failure {
                upstream: &long,
                peer: &long,
                method: &long,
                request_id: &long,
                ..failure(1, &long)
            },
        );
        let f = &list(&ring, &next)[0];
        let lens = [&f.upstream, &f.peer, &f.method, &f.path, &f.request_id].map(|s| s.len());
        assert_eq!(lens, [64, 64, 16, 128, 32]);
    }

    #[test]
    fn no_errno_and_errno_zero_stay_apart() {
        let (ring, next) = (zeroed(2), AtomicU64::new(0));
        let (none, zero) = (failure(1, b"/none"), failure(2, b"/zero"));
        remember(
            &ring,
            &next,
            &Failure {
                errno: None,
                ..none
            },
        );
        remember(
            &ring,
            &next,
            &Failure {
                errno: Some(0),
                ..zero
            },
        );
        let l = list(&ring, &next);
        assert_eq!((l[0].errno, l[1].errno), (Some(0), None));
    }

    #[test]
    fn sorted_by_time_ring_order_among_equal_times() {
        let (ring, next) = (zeroed(4), AtomicU64::new(0));
        // two workers: the second stamped its entry a millisecond earlier, claimed it later
        for (t, p) in [(10, "/a"), (12, "/b"), (11, "/c"), (12, "/d")] {
            remember(&ring, &next, &failure(t, p.as_bytes()));
        }
        assert_eq!(paths(&list(&ring, &next)), ["/d", "/b", "/c", "/a"]);
    }

    #[test]
    fn an_entry_being_written_is_skipped() {
        let (ring, next) = (zeroed(2), AtomicU64::new(0));
        remember(&ring, &next, &failure(1, b"/done"));
        // a writer that took write 1 and has not published it yet
        let n = next.fetch_add(1, Ordering::Relaxed);
        assert!(ring::claim(&ring[1].seq, n));
        assert_eq!(paths(&list(&ring, &next)), ["/done"]);
        ring::publish(&ring[1].seq, n);
        assert_eq!(list(&ring, &next).len(), 2);
    }

    #[test]
    fn an_empty_ring_remembers_nothing() {
        let next = AtomicU64::new(0);
        remember(&[], &next, &failure(1, b"/"));
        assert!(list(&[], &next).is_empty());
        assert_eq!(next.load(Ordering::Relaxed), 0);
    }
}
