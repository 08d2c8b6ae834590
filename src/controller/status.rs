//! Pure status logic: the next status of a OnePasswordItem from the outcome of a sync, and
//! the Events a transition deserves. A steady state gives an identical status, so that
//! nothing is written and no reconcile loop starts.
//!
//! Two conditions, so that a Connect outage does not look like a broken application:
//! - `Ready`: the Secret exists and holds the item's data as last fetched. False only for
//!   problems with this resource (item not found, conflict, invalid path, rejected Secret),
//!   or while the Secret was never written. Argo CD's health check reads only this one.
//! - `Synced`: whether the last attempt to read the item from Connect succeeded.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::build::{Collision, Source};
use super::error::Error;
use super::outcome::{Synced, Write};
use super::repairs::RepairReport;
use crate::crd::{
    ITEM_PATH_AMBIGUOUS, ItemCondition, KEY_COLLISION, KEYS_SKIPPED, OnePasswordItemStatus, READY, SYNCED,
};

const MAX_MESSAGE: usize = 1024;

fn truncate(message: String) -> String {
    crate::truncate_utf8(message, MAX_MESSAGE)
}

/// Sets a condition; `lastTransitionTime` moves only when `status` changes.
fn set_condition(
    conditions: &mut Vec<ItemCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let message = truncate(message);
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(condition) => {
            if condition.status != status || condition.last_transition_time.is_none() {
                condition.last_transition_time = Some(now.clone());
            }
            condition.status = status.into();
            condition.reason = Some(reason.into());
            condition.message = Some(message);
            condition.observed_generation = generation;
        }
        None => conditions.push(ItemCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(now.clone()),
            observed_generation: generation,
        }),
    }
}

/// A condition of a status that may not exist yet.
fn condition<'a>(status: Option<&'a OnePasswordItemStatus>, type_: &str) -> Option<&'a ItemCondition> {
    status?.condition(type_)
}

fn remove_condition(conditions: &mut Vec<ItemCondition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// At most five entries, then how many more.
fn listing(entries: Vec<String>) -> String {
    let more = entries.len().saturating_sub(5);
    let shown = entries.into_iter().take(5).collect::<Vec<_>>().join("; ");
    if more > 0 {
        format!("{shown}; and {more} more")
    } else {
        shown
    }
}

pub(crate) fn collision_message(collisions: &[Collision]) -> String {
    format!(
        "{} key(s) have more than one source and hold only one of them: {}",
        collisions.len(),
        listing(collisions.iter().map(ToString::to_string).collect())
    )
}

pub(crate) fn skipped_message(skipped: &[Source]) -> String {
    format!(
        "{} name(s) cannot become a Secret key, so their values are not in the Secret (1Password's Go operator would reject the whole Secret): {}",
        skipped.len(),
        listing(skipped.iter().map(ToString::to_string).collect())
    )
}

/// Whether `type_` is False with this reason.
fn failing_with(status: Option<&OnePasswordItemStatus>, type_: &str, reason: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some(reason))
}

/// A condition that is present only while something is worth saying.
fn set_or_remove(
    conditions: &mut Vec<ItemCondition>,
    type_: &str,
    reason: &str,
    message: Option<String>,
    generation: Option<i64>,
    now: &Time,
) {
    match message {
        Some(message) => set_condition(conditions, type_, "True", reason, message, generation, now),
        None => remove_condition(conditions, type_),
    }
}

/// The status after a sync attempt.
pub(crate) fn next_status(
    current: Option<&OnePasswordItemStatus>,
    generation: Option<i64>,
    outcome: &Result<Synced, Error>,
    now: &Time,
) -> OnePasswordItemStatus {
    let mut next = current.cloned().unwrap_or_default();
    next.observed_generation = generation;
    let conditions = &mut next.conditions;
    match outcome {
        Ok(synced) => {
            let (ready, reason, message) = match synced.write {
                Write::Frozen => (
                    "True",
                    "Frozen",
                    format!(
                        "{} has the tag {}: Secret {} keeps {}; remove the tag to resume syncing",
                        if synced.items.is_empty() { "the item" } else { "an item" },
                        crate::annotations::IGNORE_SECRET_TAG,
                        synced.secret_name,
                        synced.versions()
                    ),
                ),
                // Kept the same while the fight lasts, so that it costs no status writes.
                Write::RepairDelayed(_) => (
                    "False",
                    "RepairBackoff",
                    format!(
                        "something keeps changing Secret {} outside the operator; repairs to {} now wait up to {} s each",
                        synced.secret_name,
                        synced.versions(),
                        super::repairs::MAX_DELAY.as_secs()
                    ),
                ),
                _ => (
                    "True",
                    "Synced",
                    format!("Secret {} holds {}", synced.secret_name, synced.versions()),
                ),
            };
            set_condition(conditions, READY, ready, reason, message, generation, now);
            match &synced.connect_failure {
                Some(failure) => set_condition(
                    conditions,
                    SYNCED,
                    "False",
                    failure.reason,
                    format!(
                        "{}; Secret {} keeps {}",
                        failure.message,
                        synced.secret_name,
                        synced.versions()
                    ),
                    generation,
                    now,
                ),
                None => set_condition(
                    conditions,
                    SYNCED,
                    "True",
                    "Confirmed",
                    format!("Connect confirmed {}", synced.versions()),
                    generation,
                    now,
                ),
            }
            let collisions = (!synced.collisions.is_empty()).then(|| collision_message(&synced.collisions));
            set_or_remove(conditions, KEY_COLLISION, "DuplicateKeys", collisions, generation, now);
            let skipped = (!synced.skipped.is_empty()).then(|| skipped_message(&synced.skipped));
            set_or_remove(conditions, KEYS_SKIPPED, "InvalidKeys", skipped, generation, now);
            if let Some(others) = &synced.ambiguous_with {
                let message = (!others.is_empty()).then(|| {
                    format!(
                        "{} other item(s) have the same title ({}); the oldest was chosen, as in 1Password's Go operator, and the choice is kept in status",
                        others.len(),
                        others.join(", ")
                    )
                });
                set_or_remove(
                    conditions,
                    ITEM_PATH_AMBIGUOUS,
                    "DuplicateTitles",
                    message,
                    generation,
                    now,
                );
            }
            next.resolved_item_path = Some(synced.item_path.clone());
            next.vault_id = Some(synced.vault_id.clone());
            next.item_id = Some(synced.item_id.clone());
            next.item_version = Some(synced.item_version);
            next.items = synced.items.clone();
            if synced.write.wrote() || next.last_synced_at.is_none() {
                next.last_synced_at = Some(now.clone());
            }
        }
        Err(error) => {
            let (reason, message) = (error.reason(), error.message());
            // The item was read but makes no Secret: keep its ids, so that the poller
            // tries again when it changes. The Secret still holds what it held, unless the
            // path now names another item.
            let resolved = error.resolved();
            if let Some(primary) = resolved.first() {
                let key = &primary.key;
                if next.vault_id.as_deref() != Some(key.vault_id.as_str())
                    || next.item_id.as_deref() != Some(key.item_id.as_str())
                {
                    next.item_version = None;
                }
                next.resolved_item_path = Some(primary.path.clone());
                next.vault_id = Some(key.vault_id.clone());
                next.item_id = Some(key.item_id.clone());
            }
            if !resolved.is_empty() {
                next.items = resolved
                    .iter()
                    .filter_map(|r| {
                        // The version held stays only while the entry names the same item.
                        let held = next
                            .items
                            .iter()
                            .find(|s| Some(&s.name) == r.name.as_ref())
                            .filter(|s| {
                                s.vault_id.as_deref() == Some(r.key.vault_id.as_str())
                                    && s.item_id.as_deref() == Some(r.key.item_id.as_str())
                            })
                            .and_then(|s| s.item_version);
                        r.item_status(held)
                    })
                    .collect();
            }
            if error.is_connect_failure() || error.is_not_found() {
                set_condition(conditions, SYNCED, "False", reason, message.clone(), generation, now);
            }
            // A Connect failure leaves the Secret as it was: if it held this spec's item
            // before, it still does, and Ready stays True.
            let secret_still_holds_it = error.is_connect_failure()
                && condition(current, READY).is_some_and(|c| c.status == "True" && c.observed_generation == generation);
            if !secret_still_holds_it {
                // The Secret keeps its data, so the fields describing it stay as they were.
                set_condition(conditions, READY, "False", reason, message, generation, now);
            }
        }
    }
    next
}

/// An Event to publish about the OnePasswordItem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventSpec {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

fn normal(reason: &str, note: String) -> EventSpec {
    EventSpec {
        warning: false,
        reason: reason.into(),
        note,
    }
}

fn warning(reason: &str, note: String) -> EventSpec {
    EventSpec {
        warning: true,
        reason: reason.into(),
        note,
    }
}

/// Events for what changed between two statuses: writes, transitions and new warnings;
/// nothing for a steady state, so a failing item does not flood the namespace.
pub(crate) fn events(
    previous: Option<&OnePasswordItemStatus>,
    next: &OnePasswordItemStatus,
    outcome: &Result<Synced, Error>,
) -> Vec<EventSpec> {
    let mut out = Vec::new();
    let before = condition(previous, READY);
    let after = condition(Some(next), READY);
    // A failure is announced once, when Ready or Synced first turns False with its reason.
    let new_failure = |reason: &str| !failing_with(previous, READY, reason) && !failing_with(previous, SYNCED, reason);
    match outcome {
        Ok(synced) => {
            if let Some(failure) = &synced.connect_failure
                && new_failure(failure.reason)
            {
                let message = condition(Some(next), SYNCED).and_then(|c| c.message.clone());
                out.push(warning(failure.reason, message.unwrap_or_default()));
            }
            let what = format!("Secret {} to {}", synced.secret_name, synced.versions());
            let was_failing = before.is_some_and(|c| c.status != "True")
                || condition(previous, SYNCED).is_some_and(|c| c.status == "False");
            match synced.write {
                Write::Created => out.push(normal("Created", format!("Created {what}"))),
                Write::Updated => out.push(normal("Updated", format!("Updated {what}"))),
                Write::Repaired => match synced.repair_event {
                    Some(RepairReport {
                        repairs: 1,
                        backing_off: false,
                    }) => out.push(normal(
                        "Repaired",
                        format!("Restored {what} after a change made outside the operator"),
                    )),
                    Some(report) => {
                        let backoff = if report.backing_off {
                            format!(
                                ", so further repairs wait (up to {} s each)",
                                super::repairs::MAX_DELAY.as_secs()
                            )
                        } else {
                            String::new()
                        };
                        out.push(warning(
                            "Repaired",
                            format!(
                                "Restored {what} {} times since the last report: something keeps changing this Secret{backoff}",
                                report.repairs
                            ),
                        ));
                    }
                    None => {}
                },
                Write::Recreated => out.push(normal(
                    "Recreated",
                    format!("Recreated {what} because its type changed"),
                )),
                Write::Frozen if before.and_then(|c| c.reason.as_deref()) != Some("Frozen") => {
                    out.push(normal(
                        "Frozen",
                        after.and_then(|c| c.message.clone()).unwrap_or_default(),
                    ));
                }
                Write::Unchanged if synced.connect_failure.is_none() && was_failing => {
                    out.push(normal(
                        "Recovered",
                        format!("{} again", after.and_then(|c| c.message.clone()).unwrap_or_default()),
                    ));
                }
                _ => {}
            }
        }
        Err(error) => {
            if new_failure(error.reason()) {
                out.push(warning(error.reason(), error.message()));
            }
        }
    }
    for (type_, reason) in [
        (KEY_COLLISION, "KeyCollision"),
        (KEYS_SKIPPED, "KeysSkipped"),
        (ITEM_PATH_AMBIGUOUS, "AmbiguousItemPath"),
    ] {
        let was = condition(previous, type_).and_then(|c| c.message.as_deref());
        if let Some(now) = condition(Some(next), type_).and_then(|c| c.message.as_deref())
            && was != Some(now)
        {
            out.push(warning(reason, now.to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::ConnectError;
    use crate::controller::build::Source;
    use crate::controller::outcome::ConnectFailure;

    fn at(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    fn synced(write: Write, version: u64) -> Synced {
        Synced {
            connect_failure: None,
            item_path: "vaults/v/items/i".into(),
            vault_id: "vid".into(),
            item_id: "iid".into(),
            item_version: version,
            items: vec![],
            secret_name: "db".into(),
            write,
            collisions: vec![],
            skipped: vec![],
            ambiguous_with: Some(vec![]),
            repair_event: Some(RepairReport {
                repairs: 1,
                backing_off: false,
            }),
        }
    }

    fn state<'a>(status: &'a OnePasswordItemStatus, type_: &str) -> (&'a str, &'a str) {
        let c = condition(Some(status), type_).unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.as_str(), c.reason.as_deref().unwrap_or_default())
    }

    fn down() -> Result<Synced, Error> {
        Err(Error::from(ConnectError::from_status(
            "get_item",
            503,
            "unavailable".into(),
            None,
        )))
    }

    #[test]
    fn first_sync_sets_ready_ids_and_time() {
        let status = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        let ready = condition(Some(&status), READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("Synced"))
        );
        assert_eq!(ready.message.as_deref(), Some("Secret db holds item version 3"));
        assert_eq!(ready.observed_generation, Some(1));
        assert_eq!(status.item_version, Some(3));
        assert_eq!(status.vault_id.as_deref(), Some("vid"));
        assert_eq!(status.resolved_item_path.as_deref(), Some("vaults/v/items/i"));
        assert_eq!(status.last_synced_at, Some(at(0)));
    }

    #[test]
    fn a_steady_state_gives_an_identical_status_and_no_events() {
        let first = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        let outcome = Ok(synced(Write::Unchanged, 3));
        let second = next_status(Some(&first), Some(1), &outcome, &at(60));
        assert_eq!(first, second);
        assert!(events(Some(&first), &second, &outcome).is_empty());
    }

    #[test]
    fn a_connect_outage_keeps_ready_true_turns_synced_false_and_transitions_once() {
        let ok = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        assert_eq!(state(&ok, SYNCED), ("True", "Confirmed"));
        let failed = next_status(Some(&ok), Some(1), &down(), &at(10));
        assert_eq!(
            state(&failed, READY),
            ("True", "Synced"),
            "the Secret still holds the item: Argo CD must not call the app Degraded"
        );
        assert_eq!(state(&failed, SYNCED), ("False", "ConnectUnavailable"));
        let synced_condition = condition(Some(&failed), SYNCED).unwrap();
        assert_eq!(synced_condition.last_transition_time, Some(at(10)));
        assert_eq!(
            condition(Some(&failed), READY).unwrap().last_transition_time,
            Some(at(0))
        );
        assert_eq!(failed.item_version, Some(3), "the Secret still holds version 3");
        assert_eq!(failed.last_synced_at, Some(at(0)));
        let first_events = events(Some(&ok), &failed, &down());
        assert_eq!(first_events.len(), 1);
        assert!(first_events[0].warning && first_events[0].reason == "ConnectUnavailable");

        let again = next_status(Some(&failed), Some(1), &down(), &at(20));
        assert_eq!(
            condition(Some(&again), SYNCED).unwrap().last_transition_time,
            Some(at(10))
        );
        assert!(
            events(Some(&failed), &again, &down()).is_empty(),
            "no event storm while failing"
        );

        let recovered_outcome = Ok(synced(Write::Unchanged, 3));
        let recovered = next_status(Some(&again), Some(1), &recovered_outcome, &at(30));
        assert_eq!(state(&recovered, SYNCED), ("True", "Confirmed"));
        assert_eq!(
            condition(Some(&recovered), SYNCED).unwrap().last_transition_time,
            Some(at(30))
        );
        let recovered_events = events(Some(&again), &recovered, &recovered_outcome);
        assert_eq!(recovered_events[0].reason, "Recovered");
    }

    #[test]
    fn a_connect_outage_before_the_first_sync_or_after_a_spec_change_is_not_ready() {
        let never = next_status(None, Some(1), &down(), &at(0));
        assert_eq!(state(&never, READY), ("False", "ConnectUnavailable"));
        assert_eq!(state(&never, SYNCED), ("False", "ConnectUnavailable"));
        assert_eq!(events(None, &never, &down()).len(), 1, "one Event for both conditions");

        let ok = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        let new_spec = next_status(Some(&ok), Some(2), &down(), &at(10));
        assert_eq!(
            state(&new_spec, READY),
            ("False", "ConnectUnavailable"),
            "the Secret holds the item of the old spec"
        );
    }

    #[test]
    fn problems_of_the_resource_turn_ready_false() {
        let ok = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        let missing: Result<Synced, Error> = Err(Error::ItemNotFound {
            vault: "v".into(),
            item: "i".into(),
            source: ConnectError::from_status("get_item", 404, "item not found".into(), None),
        });
        let gone = next_status(Some(&ok), Some(1), &missing, &at(10));
        assert_eq!(state(&gone, READY), ("False", "ItemNotFound"));
        assert_eq!(state(&gone, SYNCED), ("False", "ItemNotFound"));
        let conflict: Result<Synced, Error> = Err(Error::SecretConflict { name: "db".into() });
        let taken = next_status(Some(&ok), Some(1), &conflict, &at(10));
        assert_eq!(state(&taken, READY), ("False", "SecretConflict"));
        assert_eq!(
            state(&taken, SYNCED),
            ("True", "Confirmed"),
            "Connect is not the problem"
        );
    }

    #[test]
    fn writes_move_last_synced_at_and_emit_events() {
        let first = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        for (write, reason) in [
            (Write::Updated, "Updated"),
            (Write::Repaired, "Repaired"),
            (Write::Recreated, "Recreated"),
        ] {
            let outcome = Ok(synced(write, 4));
            let next = next_status(Some(&first), Some(1), &outcome, &at(5));
            assert_eq!(next.last_synced_at, Some(at(5)));
            let evs = events(Some(&first), &next, &outcome);
            assert_eq!((evs[0].reason.as_str(), evs[0].warning), (reason, false));
            assert!(evs[0].note.contains("item version 4"), "{}", evs[0].note);
        }
    }

    #[test]
    fn collisions_and_ambiguity_are_conditions_with_one_event_each() {
        let mut outcome = synced(Write::Created, 1);
        outcome.collisions = vec![Collision {
            key: "host".into(),
            winner: Source::Field { label: "host".into() },
            losers: vec![Source::Url { label: "host".into() }],
        }];
        outcome.ambiguous_with = Some(vec!["other1".into()]);
        let outcome = Ok(outcome);
        let status = next_status(None, Some(1), &outcome, &at(0));
        let collision = condition(Some(&status), KEY_COLLISION).unwrap();
        assert_eq!(
            collision.message.as_deref().unwrap(),
            r#"1 key(s) have more than one source and hold only one of them: key "host" holds field "host" (ignored: URL "host")"#
        );
        assert!(
            condition(Some(&status), ITEM_PATH_AMBIGUOUS)
                .unwrap()
                .message
                .as_deref()
                .unwrap()
                .contains("other1")
        );
        let reasons: Vec<String> = events(None, &status, &outcome).into_iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["Created", "KeyCollision", "AmbiguousItemPath"]);

        // A reused resolution keeps the ambiguity condition; a clean fresh one removes both.
        let mut reused = synced(Write::Unchanged, 1);
        reused.ambiguous_with = None;
        let kept = next_status(Some(&status), Some(1), &Ok(reused), &at(1));
        assert!(condition(Some(&kept), ITEM_PATH_AMBIGUOUS).is_some());
        assert!(condition(Some(&kept), KEY_COLLISION).is_none());
        let clean = next_status(Some(&kept), Some(1), &Ok(synced(Write::Unchanged, 1)), &at(2));
        assert!(condition(Some(&clean), ITEM_PATH_AMBIGUOUS).is_none());
    }

    #[test]
    fn an_unreachable_vault_turns_synced_false_and_keeps_ready_and_the_sync_facts() {
        let ok = next_status(None, Some(1), &Ok(synced(Write::Created, 3)), &at(0));
        let mut unconfirmed = synced(Write::Unchanged, 3);
        unconfirmed.connect_failure = Some(ConnectFailure {
            reason: "ConnectUnavailable",
            message: "Connect server error 503".into(),
        });
        let outcome = Ok(unconfirmed);
        let next = next_status(Some(&ok), Some(1), &outcome, &at(10));
        assert_eq!(state(&next, READY), ("True", "Synced"));
        assert_eq!(state(&next, SYNCED), ("False", "ConnectUnavailable"));
        assert_eq!(
            condition(Some(&next), SYNCED).unwrap().message.as_deref(),
            Some("Connect server error 503; Secret db keeps item version 3")
        );
        assert_eq!(next.item_version, Some(3));
        let evs = events(Some(&ok), &next, &outcome);
        assert_eq!(
            (evs.len(), evs[0].reason.as_str(), evs[0].warning),
            (1, "ConnectUnavailable", true)
        );
        let again = next_status(Some(&next), Some(1), &outcome, &at(20));
        assert!(events(Some(&next), &again, &outcome).is_empty());
    }

    #[test]
    fn skipped_keys_are_a_condition_and_one_warning_naming_labels_only() {
        let mut outcome = synced(Write::Created, 1);
        outcome.skipped = vec![
            Source::Field { label: "..".into() },
            Source::Field {
                label: "日本語".into()
            },
        ];
        let outcome = Ok(outcome);
        let status = next_status(None, Some(1), &outcome, &at(0));
        assert_eq!(
            state(&status, READY),
            ("True", "Synced"),
            "the rest of the Secret is useful"
        );
        assert_eq!(state(&status, KEYS_SKIPPED), ("True", "InvalidKeys"));
        let message = condition(Some(&status), KEYS_SKIPPED).unwrap().message.clone().unwrap();
        assert!(
            message.starts_with("2 name(s) cannot become a Secret key")
                && message.contains(r#"field "..""#)
                && message.contains(r#"field "日本語""#),
            "{message}"
        );
        let warnings: Vec<EventSpec> = events(None, &status, &outcome)
            .into_iter()
            .filter(|e| e.warning)
            .collect();
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            (warnings[0].reason.as_str(), &warnings[0].note),
            ("KeysSkipped", &message)
        );
        let mut steady = synced(Write::Unchanged, 1);
        steady.skipped = outcome.as_ref().unwrap().skipped.clone();
        let steady = Ok(steady);
        let again = next_status(Some(&status), Some(1), &steady, &at(1));
        assert!(events(Some(&status), &again, &steady).is_empty(), "said once");
        let clean = next_status(Some(&again), Some(1), &Ok(synced(Write::Unchanged, 1)), &at(2));
        assert!(condition(Some(&clean), KEYS_SKIPPED).is_none());
    }

    #[test]
    fn frozen_items_say_why() {
        let outcome = Ok(synced(Write::Frozen, 2));
        let status = next_status(None, Some(1), &outcome, &at(0));
        let ready = condition(Some(&status), READY).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("Frozen"));
        assert!(
            ready
                .message
                .as_deref()
                .unwrap()
                .contains("operator.1password.io:ignore-secret")
        );
        assert_eq!(events(None, &status, &outcome)[0].reason, "Frozen");
    }

    #[test]
    fn go_operator_status_is_taken_over() {
        let go = OnePasswordItemStatus {
            conditions: vec![ItemCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..ItemCondition::default()
            }],
            ..OnePasswordItemStatus::default()
        };
        let status = next_status(Some(&go), Some(1), &Ok(synced(Write::Unchanged, 1)), &at(0));
        let ready = condition(Some(&status), READY).unwrap();
        assert_eq!(ready.reason.as_deref(), Some("Synced"));
        assert_eq!(
            ready.last_transition_time,
            Some(at(0)),
            "a missing transition time is filled in"
        );
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, SYNCED]);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(1000));
        assert!(cut.len() <= MAX_MESSAGE + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
