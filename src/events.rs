//! Kubernetes Events (`events.k8s.io/v1`) about the objects the operator manages.
//!
//! kube's `Recorder` keeps every Event it sent for six minutes, to turn repeats into a
//! series, and walks that whole cache under a lock on each publish. The operator sends Events
//! on transitions only, so repeats are rare, while at 10,000 resources that cache was the
//! largest part of the heap (23.6 MB of 88 MB, measured with heaptrack) and its walk grew
//! with every Event of the initial sync. This publisher sends each Event and keeps nothing.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tracing::warn;

pub(crate) use kube::runtime::events::{Event, EventType};

/// The API server refuses notes longer than this (bytes).
const MAX_NOTE: usize = 1024;

#[derive(Clone)]
pub(crate) struct EventPublisher {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl EventPublisher {
    /// `instance` names this replica (the pod name); the controller name stands in without it.
    pub(crate) fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
        }
    }

    /// Publishes a Normal or Warning Event about `regarding`. Events are best effort: one
    /// the apiserver refuses is logged, never an error of the caller.
    pub(crate) async fn notify(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        action: &str,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(err) = self.publish(&event, regarding).await {
            warn!(reason, error = %err, "cannot publish an Event");
        }
    }

    /// Creates the Event in the namespace of the object it is about.
    async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let built = build_event(event, regarding, &self.controller, &self.instance, Timestamp::now());
        api.create(&PostParams::default(), &built).await.map(drop)
    }
}

/// The Event object for `event` about `regarding`, named uniquely by the time.
pub(crate) fn build_event(
    event: &Event,
    regarding: &ObjectReference,
    controller: &str,
    instance: &str,
    now: Timestamp,
) -> K8sEvent {
    let about = regarding.name.as_deref().unwrap_or(controller);
    K8sEvent {
        metadata: ObjectMeta {
            name: Some(format!("{about}.{:x}", now.as_nanosecond())),
            namespace: Some(regarding.namespace.clone().unwrap_or_else(|| "default".into())),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        reason: Some(event.reason.clone()),
        action: Some(event.action.clone()),
        note: event.note.as_deref().map(truncate_note),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(controller.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        ..K8sEvent::default()
    }
}

/// The note as the API server accepts it (Events are where notes are cut).
fn truncate_note(note: &str) -> String {
    crate::truncate_utf8(note.to_owned(), MAX_NOTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> ObjectReference {
        ObjectReference {
            api_version: Some("onepassword.com/v1".into()),
            kind: Some("OnePasswordItem".into()),
            name: Some("db".into()),
            namespace: Some("team".into()),
            uid: Some("uid-1".into()),
            ..ObjectReference::default()
        }
    }

    fn event(type_: EventType, note: &str) -> Event {
        Event {
            type_,
            reason: "Created".into(),
            note: Some(note.into()),
            action: "Sync".into(),
            secondary: None,
        }
    }

    #[test]
    fn an_event_names_its_object_reporter_and_time() {
        let now: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let built = build_event(
            &event(EventType::Normal, "Created Secret db"),
            &reference(),
            "onepassword-operator",
            "pod-1",
            now,
        );
        assert_eq!(built.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(
            built.metadata.name,
            Some(format!("db.{:x}", now.as_nanosecond())),
            "unique per object and time"
        );
        assert_eq!(built.type_.as_deref(), Some("Normal"));
        assert_eq!(built.reason.as_deref(), Some("Created"));
        assert_eq!(built.action.as_deref(), Some("Sync"));
        assert_eq!(built.note.as_deref(), Some("Created Secret db"));
        assert_eq!(built.regarding, Some(reference()));
        assert_eq!(built.reporting_controller.as_deref(), Some("onepassword-operator"));
        assert_eq!(built.reporting_instance.as_deref(), Some("pod-1"));
        assert_eq!(built.event_time, Some(MicroTime(now)));
        assert!(built.series.is_none() && built.deprecated_count.is_none());
    }

    #[test]
    fn warnings_and_long_notes() {
        let long = "é".repeat(MAX_NOTE);
        let built = build_event(
            &event(EventType::Warning, &long),
            &reference(),
            "c",
            "c",
            Timestamp::now(),
        );
        assert_eq!(built.type_.as_deref(), Some("Warning"));
        let note = built.note.unwrap();
        assert!(note.len() <= MAX_NOTE && note.ends_with('…'), "{}", note.len());
        assert_eq!(truncate_note("short"), "short");
    }
}
