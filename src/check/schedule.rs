//! Scheduling arithmetic: when a peer can be claimed, when it is due next, how long a
//! worker's timer sleeps. Pure; the claim itself (a compare-and-swap of the due time in
//! shared memory, so that exactly one worker probes a peer per interval) is in
//! `check::worker`.

/// Can a peer be claimed at `now`? Its next check is due at `due`, and no probe of it runs
/// (`lease_until`: the deadline of the running probe, 0 if none; a worker that died while
/// probing holds the peer only until that deadline). A due time further ahead than one
/// whole period can only come from a clock that went back or from a reload that shortened
/// the interval: checked at once rather than waited for; so is a lease longer than a
/// `timeout`.
pub fn claimable(due: u64, lease_until: u64, now: u64, period: u64, timeout: u64) -> bool {
    let leased = lease_until > now && lease_until <= now + timeout + 1;
    !leased && (due <= now || due > now + period)
}

/// The longest time between two claims of a peer: interval plus jitter.
pub fn period(interval: u64, jitter: u64) -> u64 {
    interval + jitter
}

/// The next due time of a peer claimed at `now` whose due time was `due` (0: never checked).
/// Keeps the cadence (`due + interval`) unless more than one interval late, plus `jitter`
/// (a random number of ms, drawn by the caller from 0..=jitter).
pub fn next_due(due: u64, now: u64, interval: u64, jitter: u64) -> u64 {
    let cadence = if due == 0 || due + interval <= now || due > now + interval {
        now + interval
    } else {
        due + interval
    };
    cadence + jitter
}

/// The first due time of a peer never checked: spread over the first interval (at most a
/// second), so that a thousand peers do not open a thousand connections in the same ms.
/// `random` is any random number.
pub fn first_due(now: u64, interval: u64, random: u64) -> u64 {
    now + random % interval.clamp(1, 1000)
}

/// Timer granularity for the shortest interval configured: a twentieth of it, between 5
/// and 50 ms. A check runs at most this late; it bounds how often a worker wakes.
pub fn granularity(min_interval: u64) -> u64 {
    (min_interval / 20).clamp(5, 50)
}

/// How long a worker's timer sleeps until the earliest due time among its peers.
pub fn sleep_ms(earliest_due: Option<u64>, now: u64, granularity: u64) -> u64 {
    match earliest_due {
        Some(d) => d.saturating_sub(now).clamp(granularity, 1000),
        None => 1000,
    }
}

/// How long past its due time a record must have gone unclaimed before its room may be
/// given to another peer (a full zone): every worker that checks a peer claims it within a
/// timer granularity of its due time, so a record this late is checked by no worker (its
/// peer left the configuration, or DNS dropped its address).
pub const ORPHAN_AFTER_MS: u64 = 10_000;

/// May the record of a peer due at `due`, with a probe lease until `lease_until`, be taken
/// for another peer at `now`? Never while a probe runs or before [`ORPHAN_AFTER_MS`] past
/// its due time, and never a peer of the configuration being loaded (`protected`).
pub fn orphaned(due: u64, lease_until: u64, now: u64, protected: bool) -> bool {
    !protected && lease_until <= now && due.saturating_add(ORPHAN_AFTER_MS) < now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cadence_is_kept() {
        // claimed 7 ms late: the next one is still due + interval
        assert_eq!(next_due(10_000, 10_007, 1000, 0), 11_000);
        // a whole interval late (the checking worker died): start again from now
        assert_eq!(next_due(10_000, 11_500, 1000, 0), 12_500);
        // never checked
        assert_eq!(next_due(0, 5_000, 1000, 0), 6_000);
        // jitter is added
        assert_eq!(next_due(10_000, 10_000, 1000, 37), 11_037);
    }

    #[test]
    fn probes_never_overlap() {
        // due, but the last probe (timeout longer than the interval) still runs
        assert!(!claimable(10_200, 11_000, 10_200, 200, 1000));
        assert!(claimable(10_200, 11_000, 11_000, 200, 1000));
        assert!(claimable(10_200, 0, 10_200, 200, 1000));
        // a lease from a clock that went back is no lease
        assert!(claimable(10_200, 99_000, 10_200, 200, 1000));
    }

    #[test]
    fn one_claim_per_interval_over_time() {
        // a worker that wakes at granularity steps claims exactly once per interval
        let (interval, g) = (200, granularity(200));
        let mut due = first_due(0, interval, 12345);
        let mut claims = 0;
        let mut now = 0;
        while now < 10_000 {
            if claimable(due, 0, now, period(interval, 0), 100) {
                due = next_due(due, now, interval, 0);
                claims += 1;
            }
            now += sleep_ms(Some(due), now, g);
        }
        assert!(
            (49..=51).contains(&claims),
            "{claims} claims in 10 s at 200 ms"
        );
    }

    #[test]
    fn far_future_due_times_are_due() {
        assert!(claimable(100, 0, 100, 1000, 500));
        assert!(!claimable(101, 0, 100, 1000, 500));
        assert!(claimable(5_000, 0, 100, 1000, 500), "clock went back");
    }

    #[test]
    fn first_checks_are_spread() {
        assert_eq!(first_due(1000, 30_000, 2500), 1500);
        assert_eq!(first_due(1000, 200, 2500), 1100);
        assert!(first_due(0, 0, 7) < 1);
    }

    #[test]
    fn sleeping() {
        assert_eq!(granularity(200), 10);
        assert_eq!(granularity(30_000), 50);
        assert_eq!(granularity(20), 5);
        assert_eq!(sleep_ms(Some(1_500), 1_000, 10), 500);
        assert_eq!(sleep_ms(Some(1_003), 1_000, 10), 10);
        assert_eq!(sleep_ms(Some(900), 1_000, 10), 10);
        assert_eq!(sleep_ms(Some(99_000), 1_000, 10), 1000);
        assert_eq!(sleep_ms(None, 0, 10), 1000);
    }

    #[test]
    fn orphans_are_records_no_worker_claims() {
        let now = 100_000;
        // due 11 s ago, no probe: nobody checks it
        assert!(orphaned(now - 11_000, 0, now, false));
        // due 9 s ago: a busy worker may still claim it
        assert!(!orphaned(now - 9_000, 0, now, false));
        // due in the future (just claimed)
        assert!(!orphaned(now + 500, 0, now, false));
        // a probe still runs
        assert!(!orphaned(now - 11_000, now + 1, now, false));
        // a peer of the configuration being loaded
        assert!(!orphaned(now - 11_000, 0, now, true));
        // never due (0) and a clock near zero: no overflow, not taken
        assert!(!orphaned(0, 0, 5_000, false));
    }
}
