//! The lock-free lookup shared by the module's two zones ("triage" counters in `state`,
//! "triage_check" health records in `check::shm`): an open-addressing index of pointers to
//! records that are published once, fully written, and never freed, keyed by an FNV-1a hash
//! of names. Inserting (under the zone's mutex) stays with each zone. A zone that reuses a
//! record for other names (`state`, when full) first replaces its entry with [`tombstone`]:
//! lookups probe past it, and an insert takes the first one on its way.
//!
//! Pure: no FFI, covered by `cargo test`.

use core::sync::atomic::{AtomicPtr, Ordering};

/// FNV-1a over `bytes`.
pub fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The entry of a record taken out of the index (never dereferenced, never null).
pub fn tombstone<T>() -> *mut T {
    core::ptr::dangling_mut()
}

/// A live record's pointer: neither empty nor a [`tombstone`].
pub fn live<T>(p: *mut T) -> bool {
    !p.is_null() && p != tombstone()
}

/// Find the record with hash `h` for which `is` holds, probing linearly from `h`; `index.len()`
/// must be a power of two. Err: the free entry where it would go (the first tombstone on the
/// way, else the empty entry that ended the search), or `usize::MAX` when the index is full.
///
/// # Safety
/// Every non-null pointer in `index` points to a fully written record that lives as long as
/// the index.
pub unsafe fn find<T>(
    index: &[AtomicPtr<T>],
    h: u64,
    is: impl Fn(&T) -> bool,
) -> Result<&T, usize> {
    let mask = index.len() - 1;
    let mut i = h as usize & mask;
    let mut free = None;
    for _ in 0..index.len() {
        let p = index[i].load(Ordering::Acquire);
        if p.is_null() {
            return Err(free.unwrap_or(i));
        }
        if p == tombstone() {
            free.get_or_insert(i);
        } else {
            // SAFETY: the caller's promise: published records are complete and never freed.
            let r = &*p;
            if is(r) {
                return Ok(r);
            }
        }
        i = (i + 1) & mask;
    }
    Err(free.unwrap_or(usize::MAX))
}

/// A reuse takes an entry out (a tombstone) and puts the record back on its new names' way,
/// at the first free entry, which is often an empty one: empty entries only get fewer, until
/// a lookup that misses scans the whole index. Rebuild it (see [`rebuild`]) once there are
/// fewer `empty` entries than `tombstones`: a miss then stops about as soon as it would in
/// an index with no tombstone, and a rebuild (a scan, as each reuse makes anyway) comes at
/// most once every (free entries / 2) reuses.
pub fn needs_rebuild(empty: usize, tombstones: usize) -> bool {
    empty < tombstones
}

/// Put every live record of `index` back at the first empty entry from its hash (`hash_of`),
/// with no tombstone left. Under the zone's mutex. A lock-free reader meanwhile may miss a
/// record (and then takes the mutex), or meet one twice in a scan.
///
/// # Safety
/// As [`find`]; the caller holds the mutex under which records are inserted and reused.
pub unsafe fn rebuild<T>(index: &[AtomicPtr<T>], hash_of: impl Fn(&T) -> u64) {
    let records: Vec<*mut T> = index
        .iter()
        .map(|e| e.load(Ordering::Acquire))
        .filter(|&p| live(p))
        .collect();
    for e in index {
        e.store(core::ptr::null_mut(), Ordering::Release);
    }
    let mask = index.len() - 1;
    for p in records {
        // SAFETY: the caller's promise: live records are complete and never freed.
        let mut i = hash_of(&*p) as usize & mask;
        while !index[i].load(Ordering::Relaxed).is_null() {
            i = (i + 1) & mask;
        }
        index[i].store(p, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn probes_past_collisions_to_a_free_entry() {
        let mut recs: Vec<Box<(u64, u32)>> = vec![Box::new((1, 10)), Box::new((1, 11))];
        let index: Vec<AtomicPtr<(u64, u32)>> = (0..4).map(|_| AtomicPtr::default()).collect();
        // both hash to 1: the second goes to the next entry
        index[1].store(&mut *recs[0], Ordering::Release);
        index[2].store(&mut *recs[1], Ordering::Release);
        // SAFETY: the boxes outlive the lookups.
        unsafe {
            assert_eq!(find(&index, 1, |r| r.1 == 11).map(|r| r.1), Ok(11));
            assert_eq!(find(&index, 1, |r| r.1 == 12).err(), Some(3));
            // wraps around the end
            assert_eq!(find(&index, 3, |r| r.1 == 12).err(), Some(3));
            index[3].store(&mut *recs[0], Ordering::Release);
            index[0].store(&mut *recs[1], Ordering::Release);
            assert_eq!(find(&index, 1, |r| r.1 == 12).err(), Some(usize::MAX));
        }
    }

    #[test]
    fn probes_past_tombstones_and_inserts_at_the_first() {
        let mut recs: Vec<Box<(u64, u32)>> = vec![Box::new((1, 10)), Box::new((1, 11))];
        let index: Vec<AtomicPtr<(u64, u32)>> = (0..8).map(|_| AtomicPtr::default()).collect();
        index[1].store(&mut *recs[0], Ordering::Release);
        index[2].store(&mut *recs[1], Ordering::Release);
        // the first record taken out: the second is still found behind it
        index[1].store(tombstone(), Ordering::Release);
        assert!(!live(index[1].load(Ordering::Relaxed)) && live(index[2].load(Ordering::Relaxed)));
        // SAFETY: the boxes outlive the lookups; the tombstone is never dereferenced.
        unsafe {
            assert_eq!(find(&index, 1, |r| r.1 == 11).map(|r| r.1), Ok(11));
            assert_eq!(find(&index, 1, |r| r.1 == 10).err(), Some(1));
            assert_eq!(find(&index, 1, |r| r.1 == 12).err(), Some(1));
            // a full index with a tombstone: the tombstone is the free entry
            for (i, e) in index.iter().enumerate() {
                if i != 1 {
                    e.store(&mut *recs[0], Ordering::Release);
                }
            }
            assert_eq!(find(&index, 5, |r| r.1 == 12).err(), Some(1));
        }
    }

    /// Reuses as a zone makes them: out as a tombstone, back at the first free entry on the
    /// new hash's way. Without rebuilds, the empty entries run out; with them, lookups of
    /// every record go on finding it, and a miss stops at an empty entry.
    #[test]
    fn rebuilds_keep_empty_entries() {
        const LEN: usize = 256;
        let index: Vec<AtomicPtr<(u64, u32)>> = (0..LEN).map(|_| AtomicPtr::default()).collect();
        let mut rng = crate::check::testing::Rng(7);
        // 3/4 full, as the zones fill it
        let recs: Vec<*mut (u64, u32)> = (0..LEN as u32 / 4 * 3)
            .map(|n| Box::into_raw(Box::new((rng.next_u64(), n))))
            .collect();
        let empties = |index: &[AtomicPtr<(u64, u32)>]| {
            index
                .iter()
                .filter(|e| e.load(Ordering::Relaxed).is_null())
                .count()
        };
        // SAFETY: the records live until the end of the test; tombstones are never read.
        unsafe {
            for &p in &recs {
                let at = find(&index, (*p).0, |_| false).unwrap_err();
                index[at].store(p, Ordering::Relaxed);
            }
            for rebuilding in [false, true] {
                let mut fewest = LEN;
                for k in 0..20 * LEN {
                    let p = recs[k % recs.len()];
                    let i = index
                        .iter()
                        .position(|e| e.load(Ordering::Relaxed) == p)
                        .unwrap();
                    index[i].store(tombstone(), Ordering::Relaxed);
                    (*p).0 = rng.next_u64();
                    let at = find(&index, (*p).0, |_| false).unwrap_err();
                    index[at].store(p, Ordering::Relaxed);
                    let empty = empties(&index);
                    if rebuilding && needs_rebuild(empty, LEN - recs.len() - empty) {
                        rebuild(&index, |r| r.0);
                    }
                    fewest = fewest.min(empties(&index));
                }
                if rebuilding {
                    // half the free entries at least (one fewer just before a rebuild)
                    assert!(
                        fewest >= (LEN - recs.len()) / 2 - 1,
                        "{fewest} empty entries"
                    );
                } else {
                    assert_eq!(fewest, 0, "without rebuilds the empty entries run out");
                }
                for &p in &recs {
                    let found = find(&index, (*p).0, |r| core::ptr::eq(r, p));
                    assert!(found.is_ok_and(|r| core::ptr::eq(r, p)));
                }
            }
            for p in recs {
                drop(Box::from_raw(p));
            }
        }
    }
}
