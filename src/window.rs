//! The sliding windows of a peer's counters (the last minute, the last five minutes) and the
//! most frequent failure cause of the last five minutes. Pure code (atomics, no FFI), covered
//! by `cargo test`; `state.rs` keeps one [`Windows`] in each shared-memory slot.
//!
//! Each window is two fixed buckets, this period's and the last one's, indexed by the
//! period's number (`epoch`, in minutes or five-minute spans since the Unix epoch) modulo 2.
//! A bucket still holding an older period is emptied when it is next written. A reading
//! takes all of the current bucket and the part of the previous one still inside the window,
//! the previous bucket's events taken as spread evenly. The windows are estimates: a count
//! racing with a bucket's emptying may be lost.
//!
//! Shared-memory layout: `#[repr(C)]` and all zeros when new (the zone is calloc'ed); a
//! change of layout needs a new `state::MAGIC`.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::cause::Cause;
use crate::snapshot::Window;

/// One minute of activity.
#[repr(C)]
struct Minute {
    epoch: AtomicU32,
    requests: AtomicU32,
    failures: AtomicU32,
    timed: AtomicU32,
    /// Sums of ms: 64 bits, as a minute can end a thousand hour-long WebSocket sessions.
    header_ms: AtomicU64,
    response_ms: AtomicU64,
}

/// Five minutes of activity, and the most frequent failure cause in them.
#[repr(C)]
struct FiveMinutes {
    epoch: AtomicU32,
    requests: AtomicU32,
    failures: AtomicU32,
    /// Boyer-Moore majority vote over the causes: cause << 24 | count (count 0: none).
    top: AtomicU32,
}

/// The last minute's and the last five minutes' buckets of one peer.
#[repr(C)]
pub struct Windows {
    minute: [Minute; 2],
    five: [FiveMinutes; 2],
}

trait Bucket {
    fn epoch(&self) -> &AtomicU32;
    fn clear(&self);
}

impl Bucket for Minute {
    fn epoch(&self) -> &AtomicU32 {
        &self.epoch
    }
    fn clear(&self) {
        for a in [&self.requests, &self.failures, &self.timed] {
            a.store(0, Ordering::Relaxed);
        }
        for a in [&self.header_ms, &self.response_ms] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

impl Bucket for FiveMinutes {
    fn epoch(&self) -> &AtomicU32 {
        &self.epoch
    }
    fn clear(&self) {
        for a in [&self.requests, &self.failures, &self.top] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// The bucket of `epoch`, emptied first if it still holds an older period.
fn bucket<B: Bucket>(b: &[B; 2], epoch: u32) -> &B {
    let x = &b[(epoch & 1) as usize];
    let e = x.epoch().load(Ordering::Relaxed);
    if e != epoch
        && x.epoch()
            .compare_exchange(e, epoch, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        x.clear();
    }
    x
}

/// The bucket of `epoch` if it holds that period (else it counts as empty).
fn holding<B: Bucket>(b: &[B; 2], epoch: u32) -> Option<&B> {
    let x = &b[(epoch & 1) as usize];
    (x.epoch().load(Ordering::Acquire) == epoch).then_some(x)
}

/// Sliding-window estimate from two fixed buckets: all of the current one and the part of the
/// previous one still inside the window.
fn slide((cur, prev): (u64, u64), into_period: f64) -> u64 {
    if prev == 0 {
        return cur;
    }
    cur + (prev as f64 * (1.0 - into_period)).round() as u64
}

/// A period's number and how far into it `now_ms` is (0 to 1).
fn period(now_ms: u64, len_ms: u64) -> (u32, f64) {
    (
        (now_ms / len_ms) as u32,
        (now_ms % len_ms) as f64 / len_ms as f64,
    )
}

const MINUTE_MS: u64 = 60_000;
const FIVE_MS: u64 = 300_000;

impl Windows {
    /// This minute's and these five minutes' buckets at `secs` (seconds since the epoch).
    fn buckets(&self, secs: u64) -> (&Minute, &FiveMinutes) {
        (
            bucket(&self.minute, (secs / 60) as u32),
            bucket(&self.five, (secs / 300) as u32),
        )
    }

    fn one_request(m: &Minute, f: &FiveMinutes) {
        m.requests.fetch_add(1, Ordering::Relaxed);
        f.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A try sent to the peer at `secs`, with its header and response times in ms if it had
    /// a response.
    pub fn request(&self, secs: u64, times: Option<(u64, u64)>) {
        let (m, f) = self.buckets(secs);
        Self::one_request(m, f);
        if let Some((header, response)) = times {
            m.timed.fetch_add(1, Ordering::Relaxed);
            m.header_ms.fetch_add(header, Ordering::Relaxed);
            m.response_ms.fetch_add(response, Ordering::Relaxed);
        }
    }

    /// A failed try at `secs` (`tried`: it was sent to the peer, one of its requests too),
    /// and a vote for its cause.
    pub fn failure(&self, cause: Cause, tried: bool, secs: u64) {
        let (m, f) = self.buckets(secs);
        if tried {
            Self::one_request(m, f);
        }
        m.failures.fetch_add(1, Ordering::Relaxed);
        f.failures.fetch_add(1, Ordering::Relaxed);
        let c = cause.index() as u32;
        let _ = f
            .top
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                let n = t & 0xff_ffff;
                Some(if n == 0 {
                    c << 24 | 1
                } else if t >> 24 == c {
                    t + u32::from(n < 0xff_ffff)
                } else {
                    t - 1
                })
            });
    }

    /// Back to new: every bucket empty and of no period (an entry reused for another peer).
    pub fn reset(&self) {
        for m in &self.minute {
            m.clear();
            m.epoch.store(0, Ordering::Relaxed);
        }
        for f in &self.five {
            f.clear();
            f.epoch.store(0, Ordering::Relaxed);
        }
    }

    /// The last minute and the last five minutes, at `now_ms`.
    pub fn read(&self, now_ms: u64) -> (Window, Window) {
        let (e1, f1) = period(now_ms, MINUTE_MS);
        let (e5, f5) = period(now_ms, FIVE_MS);
        // each bucket read once: its values if it holds the period asked for, else zeros
        let minute = |e: u32| {
            holding(&self.minute, e).map_or([0; 5], |b| {
                let [n, f, t] =
                    [&b.requests, &b.failures, &b.timed].map(|a| a.load(Ordering::Relaxed) as u64);
                let [h, r] = [&b.header_ms, &b.response_ms].map(|a| a.load(Ordering::Relaxed));
                [n, f, t, h, r]
            })
        };
        let five = |e: u32| {
            holding(&self.five, e).map_or([0; 2], |b| {
                [&b.requests, &b.failures].map(|a| a.load(Ordering::Relaxed) as u64)
            })
        };
        let (c1, p1) = (minute(e1), minute(e1.wrapping_sub(1)));
        let (c5, p5) = (five(e5), five(e5.wrapping_sub(1)));
        let one = Window {
            requests: slide((c1[0], p1[0]), f1),
            failures: slide((c1[1], p1[1]), f1),
            timed: slide((c1[2], p1[2]), f1),
            header_ms: slide((c1[3], p1[3]), f1),
            response_ms: slide((c1[4], p1[4]), f1),
        };
        let five = Window {
            requests: slide((c5[0], p5[0]), f5),
            failures: slide((c5[1], p5[1]), f5),
            ..Default::default()
        };
        (one, five)
    }

    /// The most frequent failure cause of the last five minutes (majority vote per bucket;
    /// the bucket with the stronger vote wins).
    pub fn top_cause(&self, now_ms: u64) -> Option<Cause> {
        let (e5, _) = period(now_ms, FIVE_MS);
        [e5, e5.wrapping_sub(1)]
            .into_iter()
            .filter_map(|e| holding(&self.five, e).map(|b| b.top.load(Ordering::Relaxed)))
            .filter(|t| t & 0xff_ffff != 0)
            .max_by_key(|t| t & 0xff_ffff)
            .and_then(|t| Cause::from_index((t >> 24) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new slot's windows: all zeros, as in the calloc'ed zone.
    fn zeroed() -> Windows {
        // SAFETY: Windows is atomics only, for which all zeros is a valid value.
        unsafe { core::mem::zeroed() }
    }

    // 2026-11-22 00:00:00 UTC: a multiple of five minutes, in seconds
    const T0: u64 = 1_795_305_600;

    #[test]
    fn counts_land_in_both_windows() {
        let w = zeroed();
        w.request(T0 + 10, Some((3, 7)));
        w.request(T0 + 20, None);
        w.failure(Cause::ConnectRefused, true, T0 + 30);
        w.failure(Cause::NoLiveUpstreams, false, T0 + 40);
        let (one, five) = w.read((T0 + 50) * 1000);
        assert_eq!(
            one,
            Window {
                requests: 3,
                failures: 2,
                timed: 1,
                header_ms: 3,
                response_ms: 7,
            }
        );
        assert_eq!((five.requests, five.failures, five.timed), (3, 2, 0));
    }

    #[test]
    fn the_previous_period_counts_for_the_part_still_inside() {
        let w = zeroed();
        for _ in 0..100 {
            w.request(T0 + 30, None); // minute 0
        }
        for _ in 0..10 {
            w.request(T0 + 60, None); // minute 1
        }
        // a quarter into minute 1: 10 + three quarters of 100
        assert_eq!(w.read((T0 + 75) * 1000).0.requests, 85);
        // its last second: 10 + 100/60 rounded
        assert_eq!(w.read((T0 + 119) * 1000).0.requests, 12);
        // minute 2: minute 0 is out of the window, minute 1 still partly in
        assert_eq!(w.read((T0 + 150) * 1000).0.requests, 5);
        // minute 3: nothing left
        assert_eq!(w.read((T0 + 180) * 1000).0.requests, 0);
        // the five-minute window holds them all until T0 + 300, then slides
        assert_eq!(w.read((T0 + 299) * 1000).1.requests, 110);
        assert_eq!(w.read((T0 + 450) * 1000).1.requests, 55);
        assert_eq!(w.read((T0 + 600) * 1000).1.requests, 0);
    }

    #[test]
    fn sums_of_long_responses_do_not_wrap() {
        // a minute that ends 1,200 hour-long WebSocket sessions: past 32 bits of ms
        let w = zeroed();
        for _ in 0..1200 {
            w.request(T0 + 10, Some((5, 3_600_000)));
        }
        let (one, _) = w.read((T0 + 59) * 1000);
        assert_eq!(
            (one.timed, one.header_ms, one.response_ms),
            (1200, 6000, 4_320_000_000)
        );
    }

    #[test]
    fn a_bucket_is_emptied_when_its_period_comes_again() {
        let w = zeroed();
        w.failure(Cause::ReadTimeout, true, T0); // minute 0: bucket 0
        w.request(T0 + 120, None); // minute 2: bucket 0 again, minute 0 gone
        let (one, _) = w.read((T0 + 121) * 1000);
        assert_eq!((one.requests, one.failures), (1, 0));
    }

    #[test]
    fn the_top_cause_is_the_majority_of_the_stronger_bucket() {
        let w = zeroed();
        assert_eq!(w.top_cause(T0 * 1000), None);
        for _ in 0..3 {
            w.failure(Cause::ConnectRefused, true, T0);
        }
        w.failure(Cause::ReadTimeout, true, T0);
        assert_eq!(w.top_cause(T0 * 1000), Some(Cause::ConnectRefused));
        // the next five minutes: one vote for another cause, weaker than the last bucket's 2
        w.failure(Cause::PrematureClose, true, T0 + 300);
        assert_eq!(w.top_cause((T0 + 300) * 1000), Some(Cause::ConnectRefused));
        for _ in 0..2 {
            w.failure(Cause::PrematureClose, true, T0 + 301);
        }
        assert_eq!(w.top_cause((T0 + 301) * 1000), Some(Cause::PrematureClose));
        // ten minutes on, neither bucket holds a period inside the window
        assert_eq!(w.top_cause((T0 + 900) * 1000), None);
    }

    #[test]
    fn a_reset_leaves_nothing() {
        let w = zeroed();
        w.request(T0, Some((1, 2)));
        w.failure(Cause::ReadTimeout, true, T0 + 300);
        w.reset();
        assert_eq!(
            w.read((T0 + 301) * 1000),
            (Window::default(), Window::default())
        );
        assert_eq!(w.top_cause((T0 + 301) * 1000), None);
        // and counts again from there
        w.request(T0 + 302, None);
        assert_eq!(w.read((T0 + 302) * 1000).0.requests, 1);
    }

    #[test]
    fn a_vote_that_ends_even_names_no_cause() {
        let w = zeroed();
        w.failure(Cause::ConnectRefused, true, T0);
        w.failure(Cause::ReadTimeout, true, T0);
        assert_eq!(w.top_cause(T0 * 1000), None);
    }
}
