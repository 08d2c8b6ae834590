//! Repairs of a Secret that something keeps changing. A hand edit is repaired at once, and
//! so are the next few; after [`FREE_REPAIRS`] repairs within [`WINDOW`] the operator is in a
//! fight with another writer (a second controller, a script), and each further repair waits
//! longer, up to [`MAX_DELAY`]. Their Events are aggregated: one at the start of a fight,
//! then at most one per [`WINDOW`] with the number of repairs it covers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Repairs closer together than this belong to one fight.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Repairs made at once before backing off.
pub(super) const FREE_REPAIRS: u32 = 3;
/// The longest wait between two repairs of one Secret.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Fight {
    repairs: u32,
    last: Instant,
    next_allowed: Instant,
    reported_at: Option<Instant>,
    unreported: u32,
}

/// What an Event about repairs should say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RepairReport {
    /// Repairs since the last Event, this one included.
    pub repairs: u32,
    /// Whether the next repair waits.
    pub backing_off: bool,
}

/// Per Secret (namespace, name), the repairs of its current fight.
#[derive(Debug, Default)]
pub(crate) struct RepairThrottle {
    fights: Mutex<HashMap<(String, String), Fight>>,
}

impl RepairThrottle {
    /// `None` when a repair may be made now; otherwise how long to wait for it.
    pub(crate) fn wait_before_repair(&self, namespace: &str, name: &str, now: Instant) -> Option<Duration> {
        let fights = self.fights.lock().expect("repairs lock");
        let fight = fights.get(&(namespace.to_owned(), name.to_owned()))?;
        (fight.next_allowed > now).then(|| fight.next_allowed - now)
    }

    /// Records a repair; `Some` when it deserves an Event, which then covers the repairs not
    /// reported yet.
    pub(crate) fn repaired(&self, namespace: &str, name: &str, now: Instant) -> Option<RepairReport> {
        let mut fights = self.fights.lock().expect("repairs lock");
        // Fights that are over are forgotten, so the map holds only Secrets under attack.
        fights.retain(|_, f| now.saturating_duration_since(f.last) < WINDOW);
        let fight = fights.entry((namespace.to_owned(), name.to_owned())).or_insert(Fight {
            repairs: 0,
            last: now,
            next_allowed: now,
            reported_at: None,
            unreported: 0,
        });
        fight.repairs += 1;
        fight.unreported += 1;
        fight.last = now;
        if fight.repairs > FREE_REPAIRS {
            let doublings = (fight.repairs - FREE_REPAIRS).min(16);
            fight.next_allowed = now + Duration::from_secs(1 << doublings).min(MAX_DELAY);
        }
        if fight
            .reported_at
            .is_some_and(|at| now.saturating_duration_since(at) < WINDOW)
        {
            return None;
        }
        fight.reported_at = Some(now);
        Some(RepairReport {
            repairs: std::mem::take(&mut fight.unreported),
            backing_off: fight.next_allowed > now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(repairs: u32, backing_off: bool) -> RepairReport {
        RepairReport { repairs, backing_off }
    }

    #[test]
    fn occasional_edits_are_repaired_at_once_and_reported_together_without_a_claim_of_backoff() {
        let throttle = RepairThrottle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.repaired("ns", "db", t0), Some(report(1, false)));
        assert_eq!(throttle.repaired("ns", "db", t0 + Duration::from_secs(50)), None);
        assert_eq!(
            throttle.repaired("ns", "db", t0 + Duration::from_secs(100)),
            Some(report(2, false))
        );
        assert_eq!(
            throttle.wait_before_repair("ns", "db", t0 + Duration::from_secs(100)),
            None
        );
    }

    #[test]
    fn a_single_edit_is_repaired_at_once_and_reported() {
        let throttle = RepairThrottle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.wait_before_repair("ns", "db", t0), None);
        assert_eq!(throttle.repaired("ns", "db", t0), Some(report(1, false)));
        assert_eq!(throttle.wait_before_repair("ns", "db", t0), None);
        // Another edit long after: a new fight, repaired and reported at once.
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(throttle.wait_before_repair("ns", "db", later), None);
        assert_eq!(throttle.repaired("ns", "db", later), Some(report(1, false)));
    }

    #[test]
    fn a_writer_that_fights_gets_slower_repairs_and_one_event_per_window() {
        let throttle = RepairThrottle::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut events = Vec::new();
        let mut repairs = 0;
        // Something edits the Secret every 100 ms for 30 s.
        while now < t0 + Duration::from_secs(30) {
            if throttle.wait_before_repair("ns", "db", now).is_none() {
                repairs += 1;
                events.extend(throttle.repaired("ns", "db", now));
            }
            now += Duration::from_millis(100);
        }
        // 3 at once (0, 0.1, 0.2 s), then 0.3 s, and after 2, 4 and 8 s more (2.3, 6.3, 14.3 s).
        assert_eq!(repairs, 7, "instead of 300");
        assert_eq!(events, [report(1, false)], "one Event so far");
        assert_eq!(
            throttle.wait_before_repair("ns", "db", now),
            Some(Duration::from_millis(300)),
            "the next one 16 s after the last, at 30.3 s"
        );
        // The next report, a window after the first, counts what happened since.
        let next_minute = t0 + WINDOW + Duration::from_secs(5);
        assert_eq!(throttle.repaired("ns", "db", next_minute), Some(report(7, true)));
        assert_eq!(
            throttle.wait_before_repair("ns", "db", next_minute),
            Some(Duration::from_secs(32))
        );
        for _ in 0..5 {
            throttle.repaired("ns", "db", next_minute);
        }
        assert_eq!(
            throttle.wait_before_repair("ns", "db", next_minute),
            Some(MAX_DELAY),
            "capped"
        );
        assert_eq!(throttle.wait_before_repair("ns", "other", next_minute), None);
    }
}
