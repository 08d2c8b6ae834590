//! The statuses we wrote that the watch cache may not show yet.
//!
//! A reconcile triggered by our own Secret write often starts before the watch has brought
//! back the status that the same sync just wrote: from the cached object, the status would
//! look unwritten, so it would be written again (and a warning announced again). Each status
//! written is kept here until the cache shows it, or for [`KEEP`] at most, and stands in for
//! the cached one meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crd::{OnePasswordItem, OnePasswordItemStatus};

/// Far longer than a watch event takes; bounds what a status written by someone else right
/// after ours is hidden for.
pub(crate) const KEEP: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(crate) struct WrittenStatuses {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// By uid: a new object of the same name is another object.
    by_uid: HashMap<String, (Instant, OnePasswordItemStatus)>,
    /// When entries older than [`KEEP`] were last dropped.
    pruned: Option<Instant>,
}

impl WrittenStatuses {
    /// Records the status just written to the object with `uid`.
    pub(crate) fn record(&self, uid: Option<&str>, status: OnePasswordItemStatus, now: Instant) {
        let Some(uid) = uid else { return };
        let mut entries = self.entries.lock().expect("written statuses lock");
        // Entries of objects deleted before the watch showed our write are dropped here,
        // once per KEEP at most, so that a burst of writes does not scan them all each time.
        if entries.pruned.is_none_or(|at| now.duration_since(at) >= KEEP) {
            entries.by_uid.retain(|_, (at, _)| now.duration_since(*at) < KEEP);
            entries.pruned = Some(now);
        }
        entries.by_uid.insert(uid.to_owned(), (now, status));
    }

    /// The object as the controller should see it: with the status we last wrote when the
    /// cached object does not show it yet.
    pub(crate) fn freshen(&self, opi: Arc<OnePasswordItem>, now: Instant) -> Arc<OnePasswordItem> {
        let Some(uid) = opi.metadata.uid.as_deref() else {
            return opi;
        };
        let mut entries = self.entries.lock().expect("written statuses lock");
        let Some((at, written)) = entries.by_uid.get(uid) else {
            return opi;
        };
        if opi.status.as_ref() == Some(written) || now.duration_since(*at) >= KEEP {
            entries.by_uid.remove(uid);
            return opi;
        }
        let mut fresher = (*opi).clone();
        fresher.status = Some(written.clone());
        Arc::new(fresher)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().by_uid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::OnePasswordItemSpec;

    fn opi(uid: &str, version: Option<u64>) -> Arc<OnePasswordItem> {
        let mut opi = OnePasswordItem::new("db", OnePasswordItemSpec::item("vaults/v/items/i"));
        opi.metadata.uid = Some(uid.into());
        opi.status = version.map(|v| OnePasswordItemStatus {
            item_version: Some(v),
            ..OnePasswordItemStatus::default()
        });
        Arc::new(opi)
    }

    fn status(version: u64) -> OnePasswordItemStatus {
        OnePasswordItemStatus {
            item_version: Some(version),
            ..OnePasswordItemStatus::default()
        }
    }

    #[test]
    fn a_cache_behind_our_write_sees_the_written_status_until_it_catches_up() {
        let written = WrittenStatuses::default();
        let t0 = Instant::now();
        written.record(Some("uid-1"), status(2), t0);
        let seen = written.freshen(opi("uid-1", Some(1)), t0 + Duration::from_millis(5));
        assert_eq!(seen.status, Some(status(2)), "stale cache: our write stands in");
        let caught_up = written.freshen(opi("uid-1", Some(2)), t0 + Duration::from_millis(50));
        assert_eq!(caught_up.status, Some(status(2)));
        assert_eq!(written.len(), 0, "forgotten once the cache shows it");
        let later = written.freshen(opi("uid-1", Some(3)), t0 + Duration::from_millis(60));
        assert_eq!(later.status, Some(status(3)), "after that, the cache is the truth");
    }

    #[test]
    fn other_objects_and_old_writes_see_the_cache() {
        let written = WrittenStatuses::default();
        let t0 = Instant::now();
        written.record(Some("uid-1"), status(2), t0);
        let recreated = written.freshen(opi("uid-2", None), t0);
        assert_eq!(recreated.status, None, "same name, another uid");
        let late = written.freshen(opi("uid-1", Some(1)), t0 + KEEP);
        assert_eq!(late.status, Some(status(1)), "kept for KEEP at most");
        assert_eq!(written.len(), 0);
    }

    #[test]
    fn entries_of_deleted_objects_do_not_pile_up() {
        let written = WrittenStatuses::default();
        let t0 = Instant::now();
        for i in 0..1024 {
            written.record(Some(&format!("gone-{i}")), status(1), t0);
        }
        written.record(Some("new"), status(1), t0 + KEEP);
        assert_eq!(written.len(), 1);
    }
}
