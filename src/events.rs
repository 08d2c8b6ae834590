//! Kubernetes Events (`events.k8s.io/v1`) about the objects the operator manages.
//!
//! kube's `Recorder` keeps every Event it sent for six minutes, to turn repeats into a
//! series, and walks that whole cache under a lock on each publish. The operator sends Events
//! on transitions only, so repeats are rare, while at 10,000 resources that cache was the
//! largest part of the heap (23.6 MB of 88 MB, measured with heaptrack) and its walk grew
//! with every Event of the initial sync. This publisher sends each Event and keeps nothing.
//!
//! The Events of reconciles go through an [`EventLane`]: while reconciles are running they
//! wait (up to [`MAX_DELAY`]), so that in a burst the apiserver spends itself on the Secrets
//! and statuses users wait for; each keeps the time it happened.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, PostParams};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::crd::OnePasswordItem;
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
        self.publish_at(event, regarding, Timestamp::now()).await
    }

    async fn publish_at(&self, event: &Event, regarding: &ObjectReference, at: Timestamp) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let built = build_event(event, regarding, &self.controller, &self.instance, at);
        api.create(&PostParams::default(), &built).await.map(drop)
    }
}

/// How long an Event of a reconcile waits at most for the reconciles running to end.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);

/// Events waiting at most; beyond that a reconcile waits for room (nothing is dropped).
const CAPACITY: usize = 10_000;

/// An Event of a reconcile about a OnePasswordItem, as it happened. Thousands can wait in a
/// burst, so each keeps its texts in one allocation (about 250 bytes in all, a quarter of an
/// `ObjectReference` and an `Event`).
struct Queued {
    /// Namespace, name, uid, reason and note, one after the other.
    text: Box<str>,
    /// Where each of the first four ends in `text`.
    ends: [u32; 4],
    warning: bool,
    at: Timestamp,
    queued: Instant,
}

impl Queued {
    fn new(namespace: &str, name: &str, uid: &str, reason: &str, note: &str) -> Self {
        let mut text = String::with_capacity(namespace.len() + name.len() + uid.len() + reason.len() + note.len());
        let mut ends = [0; 4];
        for (end, part) in ends.iter_mut().zip([namespace, name, uid, reason]) {
            text.push_str(part);
            *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        text.push_str(note);
        Self {
            text: text.into_boxed_str(),
            ends,
            warning: false,
            at: Timestamp::UNIX_EPOCH,
            queued: Instant::now(),
        }
    }

    /// Namespace, name, uid, reason and note.
    fn parts(&self) -> [&str; 5] {
        let [a, b, c, d] = self.ends.map(|end| end as usize);
        let text = &*self.text;
        [&text[..a], &text[a..b], &text[b..c], &text[c..d], &text[d..]]
    }
}

/// The Events of reconciles, sent one at a time by [`EventLane::run`], in the order they
/// happened, each when no reconcile is running or once it has waited [`MAX_DELAY`].
pub(crate) struct EventLane {
    publisher: EventPublisher,
    sender: mpsc::Sender<Queued>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Queued>>,
    running: Running,
    clock: EventClock,
}

impl EventLane {
    pub(crate) fn new(publisher: EventPublisher) -> Self {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        Self {
            publisher,
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
            running: Running::default(),
            clock: EventClock::default(),
        }
    }

    /// Reconciles running: counted while the guard lives.
    pub(crate) fn running(&self) -> &Running {
        &self.running
    }

    /// Queues an Event about the OnePasswordItem, stamped now.
    pub(crate) async fn notify(&self, item: &OnePasswordItem, warning: bool, reason: &str, note: &str) {
        let mut queued = Queued::new(
            item.metadata.namespace.as_deref().unwrap_or_default(),
            item.metadata.name.as_deref().unwrap_or_default(),
            item.metadata.uid.as_deref().unwrap_or_default(),
            reason,
            note,
        );
        (queued.warning, queued.at) = (warning, self.clock.next());
        // Closed only if the lane is gone, at the end of the process.
        let _ = self.sender.send(queued).await;
    }

    /// Sends the queued Events, for as long as the operator runs.
    pub(crate) async fn run(&self) {
        let mut receiver = self.receiver.lock().await;
        while let Some(queued) = receiver.recv().await {
            self.running.wait_turn(queued.queued + MAX_DELAY).await;
            self.send(queued).await;
        }
    }

    /// At shutdown: sends what is still queued, for `within` at most.
    pub(crate) async fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut receiver = self.receiver.lock().await;
        while Instant::now() < deadline
            && let Ok(queued) = receiver.try_recv()
        {
            let _ = tokio::time::timeout_at(deadline, self.send(queued)).await;
        }
    }

    async fn send(&self, queued: Queued) {
        let [namespace, name, uid, reason, note] = queued.parts();
        let regarding = ObjectReference {
            api_version: Some(OnePasswordItem::api_version(&()).into_owned()),
            kind: Some(OnePasswordItem::kind(&()).into_owned()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: (!uid.is_empty()).then(|| uid.to_owned()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: if queued.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "Sync".into(),
            secondary: None,
        };
        if let Err(err) = self.publisher.publish_at(&event, &regarding, queued.at).await {
            warn!(reason, error = %err, "cannot publish an Event");
        }
    }
}

/// How many reconciles are running, and a signal when the last one ends.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<RunningCount>);

#[derive(Default)]
pub(crate) struct RunningCount {
    count: AtomicUsize,
    none_left: Notify,
}

impl Running {
    /// Counts one reconcile until the guard is dropped.
    pub(crate) fn enter(&self) -> RunningGuard {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        RunningGuard(self.0.clone())
    }

    fn any(&self) -> bool {
        self.0.count.load(Ordering::Relaxed) > 0
    }

    /// Returns once no reconcile is running, or at `deadline`.
    async fn wait_turn(&self, deadline: Instant) {
        loop {
            // Registered before the count is read, so an end in between still wakes us.
            let none_left = self.0.none_left.notified();
            tokio::pin!(none_left);
            none_left.as_mut().enable();
            if !self.any() {
                return;
            }
            tokio::select! {
                () = none_left => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

pub(crate) struct RunningGuard(Arc<RunningCount>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// Event times, each later than the one before, so that Events sent later still sort in the
/// order they happened (event times have microseconds, names nanoseconds).
#[derive(Default)]
struct EventClock(Mutex<Option<Timestamp>>);

impl EventClock {
    fn next(&self) -> Timestamp {
        let mut last = self.0.lock().expect("event clock lock");
        let now = Timestamp::now();
        let next = match *last {
            Some(previous) => now.max(previous + SignedDuration::from_micros(1)),
            None => now,
        };
        *last = Some(next);
        next
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

    /// The OnePasswordItem `reference()` names.
    fn item() -> OnePasswordItem {
        let mut item = OnePasswordItem::new("db", crate::crd::OnePasswordItemSpec::item("vaults/v/items/i"));
        item.metadata.namespace = Some("team".into());
        item.metadata.uid = Some("uid-1".into());
        item
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
    fn a_queued_event_keeps_its_texts_in_one_small_allocation() {
        let queued = Queued::new("team", "db", "uid-1", "Created", "Created Secret db");
        assert_eq!(queued.parts(), ["team", "db", "uid-1", "Created", "Created Secret db"]);
        assert!(std::mem::size_of::<Queued>() <= 72, "{}", std::mem::size_of::<Queued>());
        let empty = Queued::new("", "db", "", "Created", "");
        assert_eq!(empty.parts(), ["", "db", "", "Created", ""]);
    }

    #[test]
    fn event_times_only_go_forward_by_at_least_a_microsecond() {
        let clock = EventClock::default();
        let times: Vec<Timestamp> = (0..1000).map(|_| clock.next()).collect();
        for pair in times.windows(2) {
            assert!(
                pair[1].duration_since(pair[0]) >= SignedDuration::from_micros(1),
                "{pair:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_waits_for_running_reconciles_at_most_its_delay() {
        let running = Running::default();
        let started = Instant::now();
        running.wait_turn(started + MAX_DELAY).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "nothing running: at once");

        let guard = running.enter();
        let started = Instant::now();
        running.wait_turn(started + MAX_DELAY).await;
        assert_eq!(started.elapsed(), MAX_DELAY, "a burst that lasts: after the delay");

        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(guard);
        });
        let started = Instant::now();
        running.wait_turn(started + MAX_DELAY).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(300),
            "the burst over: at that moment"
        );
    }

    /// An apiserver that records the Events created through it.
    async fn recording_apiserver() -> (kube::Client, Arc<Mutex<Vec<K8sEvent>>>) {
        let seen: Arc<Mutex<Vec<K8sEvent>>> = Arc::default();
        let record = {
            let seen = seen.clone();
            move |axum::Json(event): axum::Json<K8sEvent>| async move {
                seen.lock().unwrap().push(event.clone());
                (http::StatusCode::CREATED, axum::Json(event))
            }
        };
        let app = axum::Router::new().route(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events",
            axum::routing::post(record),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        (client, seen)
    }

    fn reasons(seen: &Mutex<Vec<K8sEvent>>) -> Vec<String> {
        seen.lock().unwrap().iter().filter_map(|e| e.reason.clone()).collect()
    }

    #[tokio::test]
    async fn events_wait_for_running_reconciles_and_keep_their_order() {
        let (client, seen) = recording_apiserver().await;
        let lane = Arc::new(EventLane::new(EventPublisher::new(client, "c", None)));
        tokio::spawn({
            let lane = lane.clone();
            async move { lane.run().await }
        });
        let reconcile = lane.running().enter();
        for reason in ["Created", "Updated", "Recovered"] {
            lane.notify(&item(), false, reason, &format!("{reason} Secret db"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(reasons(&seen).is_empty(), "sent while a reconcile runs");
        drop(reconcile);
        let deadline = Instant::now() + Duration::from_secs(5);
        while reasons(&seen).len() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(reasons(&seen), ["Created", "Updated", "Recovered"]);
        let first = seen.lock().unwrap()[0].clone();
        assert_eq!(first.regarding, Some(reference()), "about the item");
        assert_eq!(first.note.as_deref(), Some("Created Secret db"));
        assert_eq!(first.type_.as_deref(), Some("Normal"));
        let times: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_time.clone().unwrap().0)
            .collect();
        assert!(times.windows(2).all(|t| t[0] < t[1]), "{times:?}");
    }

    #[tokio::test]
    async fn events_still_waiting_are_sent_at_shutdown() {
        let (client, seen) = recording_apiserver().await;
        let lane = EventLane::new(EventPublisher::new(client, "c", None));
        let _reconcile = lane.running().enter();
        for reason in ["Created", "Updated"] {
            lane.notify(&item(), true, reason, "").await;
        }
        lane.flush(Duration::from_secs(5)).await;
        assert_eq!(reasons(&seen), ["Created", "Updated"]);
        assert_eq!(seen.lock().unwrap()[1].type_.as_deref(), Some("Warning"));
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
