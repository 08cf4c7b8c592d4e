//! The sequence rules of the recent-failures ring in shared memory (`state`), written by
//! every worker without a lock.
//!
//! Write number `n` (from one shared counter) goes to entry `n % capacity`. An entry's
//! sequence word says what it holds: 0 nothing yet, `2n + 1` write `n` in progress, `2n + 2`
//! write `n` complete. A writer claims its entry with one compare-and-swap, and only from a
//! complete older write: when another writer is still on the entry (the ring went round
//! during that write) or a newer write already has it, the failure is left out of the ring
//! (its counters are still counted). A reader takes entry `n` only while its word is
//! `2n + 2` before and after reading it.
//!
//! Before, writers took the zone's mutex, which is also the slab allocator's: during a storm
//! of failures every worker queued on it. Pure: no FFI, covered by `cargo test`.

use core::sync::atomic::{fence, AtomicU64, Ordering};

/// The word of write `n` in progress.
fn writing(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_add(1)
}

/// The word of write `n` complete.
fn written(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_add(2)
}

/// Claim the entry whose word is `seq` for write `n`; false: leave this write out.
pub fn claim(seq: &AtomicU64, n: u64) -> bool {
    let cur = seq.load(Ordering::Relaxed);
    if cur & 1 == 1 || cur >= writing(n) {
        return false;
    }
    let ok = seq
        .compare_exchange(cur, writing(n), Ordering::Acquire, Ordering::Relaxed)
        .is_ok();
    // the entry's fields are written after the claim is visible
    fence(Ordering::Release);
    ok
}

/// Write `n` is complete: its fields are visible with the word.
pub fn publish(seq: &AtomicU64, n: u64) {
    seq.store(written(n), Ordering::Release);
}

/// Read write `n` from the entry whose word is `seq` with `read`; None when the entry does
/// not hold it (never written, overwritten, or being written).
pub fn read<T>(seq: &AtomicU64, n: u64, read: impl FnOnce() -> T) -> Option<T> {
    if seq.load(Ordering::Acquire) != written(n) {
        return None;
    }
    let v = read();
    // the fields were read before the word is read again
    fence(Ordering::Acquire);
    (seq.load(Ordering::Relaxed) == written(n)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn an_entry_holds_the_write_that_completed_last() {
        let seq = AtomicU64::new(0);
        assert_eq!(read(&seq, 0, || ()), None, "never written");
        assert!(claim(&seq, 0));
        assert_eq!(read(&seq, 0, || ()), None, "being written");
        publish(&seq, 0);
        assert_eq!(read(&seq, 0, || 7), Some(7));
        // the ring went round (capacity 4): write 4 replaces write 0
        assert!(claim(&seq, 4));
        publish(&seq, 4);
        assert_eq!(read(&seq, 0, || ()), None);
        assert_eq!(read(&seq, 4, || ()), Some(()));
    }

    #[test]
    fn an_older_write_never_replaces_a_newer_one() {
        let seq = AtomicU64::new(0);
        assert!(claim(&seq, 8));
        publish(&seq, 8);
        assert!(!claim(&seq, 4), "older");
        assert!(!claim(&seq, 8), "the same write twice");
        assert_eq!(read(&seq, 8, || ()), Some(()));
    }

    #[test]
    fn a_write_in_progress_is_left_alone() {
        let seq = AtomicU64::new(0);
        assert!(claim(&seq, 4));
        assert!(!claim(&seq, 8), "another writer is on the entry");
        publish(&seq, 4);
        assert!(claim(&seq, 8), "free again once complete");
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_dropped() {
        let seq = AtomicU64::new(0);
        assert!(claim(&seq, 1));
        publish(&seq, 1);
        let got = read(&seq, 1, || {
            // a writer takes the entry while it is read
            assert!(claim(&seq, 5));
        });
        assert_eq!(got, None);
    }

    /// Writers on several threads fill a small ring with (n, n * 3) pairs; readers never see
    /// a pair torn between two writes.
    #[test]
    fn concurrent_writers_and_readers_see_whole_entries() {
        const CAP: usize = 4;
        struct Entry {
            seq: AtomicU64,
            a: AtomicU64,
            b: AtomicU64,
        }
        let ring: Arc<Vec<Entry>> = Arc::new(
            (0..CAP)
                .map(|_| Entry {
                    seq: AtomicU64::new(0),
                    a: AtomicU64::new(0),
                    b: AtomicU64::new(0),
                })
                .collect(),
        );
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let write = |ring: &[Entry], n: u64| {
            let e = &ring[(n % CAP as u64) as usize];
            if !claim(&e.seq, n) {
                return false;
            }
            e.a.store(n, Ordering::Relaxed);
            e.b.store(n * 3, Ordering::Relaxed);
            publish(&e.seq, n);
            true
        };
        let read_all = |ring: &[Entry], last: u64| {
            let mut seen = 0;
            for k in 1..=CAP as u64 {
                let Some(n) = last.checked_sub(k) else { break };
                let e = &ring[(n % CAP as u64) as usize];
                if let Some((a, b)) = read(&e.seq, n, || {
                    (e.a.load(Ordering::Relaxed), e.b.load(Ordering::Relaxed))
                }) {
                    assert_eq!((a, b), (n, n * 3), "entry {n} torn");
                    seen += 1;
                }
            }
            seen
        };
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let (ring, next, done) = (ring.clone(), next.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut kept = 0u64;
                    for _ in 0..20_000 {
                        kept += u64::from(write(&ring, next.fetch_add(1, Ordering::Relaxed)));
                    }
                    done.fetch_add(1, Ordering::Release);
                    kept
                })
            })
            .collect();
        // read while they write (bounded: the writers end after their 20,000 writes)
        while done.load(Ordering::Acquire) < 3 {
            read_all(&ring, next.load(Ordering::Acquire));
        }
        let kept: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(kept > 0, "no write kept");
        // alone now: the next write is kept, and read back whole
        let n = next.fetch_add(1, Ordering::Relaxed);
        assert!(write(&ring, n), "write {n} after the others");
        assert!(read_all(&ring, n + 1) >= 1);
    }
}
