//! Restarts of workloads whose Secret data changed.
//!
//! Deployments, StatefulSets and DaemonSets that use the Secret in their pod template (env
//! `secretKeyRef`, `envFrom`, secret volumes, projected volumes) or name it with the
//! `item-name` annotation are restarted by stamping `operator.1password.io/last-restarted` on
//! the pod template, as 1Password's Go operator does. Whether to restart follows the Go
//! precedence: the Secret's `auto-restart` annotation, then the workload's, then the
//! Namespace's, then the global `AUTO_RESTART`. Never on first creation (only an item update
//! triggers this), and debounced: a burst of changes within [`DEBOUNCE`] makes one restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, PodTemplateSpec};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tracing::{info, warn};

use crate::annotations::{AUTO_RESTART, ITEM_NAME, LAST_RESTARTED};
use crate::events::EventPublisher;
use crate::names::sanitize_secret_name;
use crate::workload_kind::WorkloadKind;

/// Changes closer together than this cause one restart.
pub const DEBOUNCE: Duration = Duration::from_secs(2);

/// What restart decisions need to know of a workload: the annotations of the object and its
/// pod template.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Consumer<'a> {
    pub(crate) annotations: &'a BTreeMap<String, String>,
    pub(crate) template: Option<&'a PodTemplateSpec>,
}

impl<'a> Consumer<'a> {
    fn of<K: WorkloadKind>(workload: &'a K) -> Self {
        Self {
            annotations: workload.annotations(),
            template: workload.template(),
        }
    }
}

/// Whether the pod template (or the `item-name` annotation, on the workload or its pod
/// template, sanitized as the Secret's name is) uses the Secret.
pub(crate) fn uses_secret(workload: Consumer<'_>, secret: &str) -> bool {
    let template_annotations = workload
        .template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref());
    let named = [Some(workload.annotations), template_annotations]
        .into_iter()
        .flatten()
        .filter_map(|a| a.get(ITEM_NAME))
        .any(|n| sanitize_secret_name(n.trim()) == secret);
    if named {
        return true;
    }
    let Some(spec) = workload.template.and_then(|t| t.spec.as_ref()) else {
        return false;
    };
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for container in containers {
        let env_ref = container.env.iter().flatten().any(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == secret)
        });
        let env_from = container
            .env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == secret));
        if env_ref || env_from {
            return true;
        }
    }
    spec.volumes.iter().flatten().any(|v| {
        v.secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some(secret))
            || v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
            })
    })
}

fn flag(annotations: Option<&BTreeMap<String, String>>) -> Option<bool> {
    match annotations?.get(AUTO_RESTART)?.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The Go precedence: Secret (its annotation's [`flag`]) > workload > Namespace > global
/// default.
pub(crate) fn should_restart(
    secret: Option<bool>,
    workload: Option<&BTreeMap<String, String>>,
    namespace: Option<&BTreeMap<String, String>>,
    default: bool,
) -> bool {
    secret
        .or_else(|| flag(workload))
        .or_else(|| flag(namespace))
        .unwrap_or(default)
}

/// A Secret whose data changed, within its namespace's burst. Thousands wait in a mass
/// rotation, so each keeps only what the restart needs: of the Secret's annotations, its own
/// `auto-restart` choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangedSecret {
    pub name: String,
    /// The Secret's `auto-restart` annotation, when it says yes or no.
    pub restart: Option<bool>,
    pub item_version: u64,
}

impl ChangedSecret {
    pub(crate) fn new(name: String, annotations: Option<&BTreeMap<String, String>>, item_version: u64) -> Self {
        Self {
            name,
            restart: flag(annotations),
            item_version,
        }
    }
}

/// The Secrets of one namespace changed in a burst (the last change of each), and when the
/// burst may end.
struct Burst {
    secrets: BTreeMap<String, ChangedSecret>,
    ends: Instant,
}

/// Collects changed Secrets and restarts their workloads once the burst is over.
pub(crate) struct Restarter {
    client: kube::Client,
    events: EventPublisher,
    default: bool,
    /// Namespace → its burst of changes.
    pending: Mutex<BTreeMap<String, Burst>>,
}

impl Restarter {
    pub(crate) fn new(client: kube::Client, events: EventPublisher, default: bool) -> Arc<Self> {
        Arc::new(Self {
            client,
            events,
            default,
            pending: Mutex::default(),
        })
    }

    /// Notes a changed Secret of `namespace`; the restart happens after [`DEBOUNCE`] without
    /// new changes there.
    pub(crate) fn secret_changed(&self, namespace: &str, changed: ChangedSecret) {
        let mut pending = self.pending.lock().expect("restart queue lock");
        let ends = Instant::now() + DEBOUNCE;
        let burst = pending.entry(namespace.to_owned()).or_insert_with(|| Burst {
            secrets: BTreeMap::new(),
            ends,
        });
        burst.ends = ends;
        burst.secrets.insert(changed.name.clone(), changed);
    }

    /// Restarts what is due, every few hundred milliseconds, until the process ends.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            ticker.tick().await;
            let due: Vec<(String, Vec<ChangedSecret>)> = {
                let mut pending = self.pending.lock().expect("restart queue lock");
                let now = Instant::now();
                let ready: Vec<String> = pending
                    .iter()
                    .filter(|(_, burst)| burst.ends <= now)
                    .map(|(ns, _)| ns.clone())
                    .collect();
                ready
                    .into_iter()
                    .filter_map(|ns| {
                        let burst = pending.remove(&ns)?;
                        Some((ns, burst.secrets.into_values().collect()))
                    })
                    .collect()
            };
            for (namespace, secrets) in due {
                if let Err(err) = self.restart_consumers(&namespace, &secrets).await {
                    warn!(%namespace, error = %crate::error_chain(&err), "cannot restart workloads");
                }
            }
        }
    }

    /// Restarts each workload of the namespace that uses one of the Secrets, once.
    async fn restart_consumers(&self, namespace: &str, secrets: &[ChangedSecret]) -> Result<(), kube::Error> {
        let ns_annotations = Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await?
            .and_then(|n| n.metadata.annotations);
        let ns_annotations = ns_annotations.as_ref();
        self.restart_kind::<Deployment>(namespace, secrets, ns_annotations)
            .await?;
        self.restart_kind::<StatefulSet>(namespace, secrets, ns_annotations)
            .await?;
        self.restart_kind::<DaemonSet>(namespace, secrets, ns_annotations).await
    }

    /// Restarts the workloads of one kind that use one of the Secrets and want restarts.
    async fn restart_kind<K: WorkloadKind>(
        &self,
        namespace: &str,
        secrets: &[ChangedSecret],
        ns_annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<(), kube::Error> {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        for workload in api.list(&ListParams::default()).await? {
            let consumer = Consumer::of(&workload);
            let reasons: Vec<&ChangedSecret> = secrets
                .iter()
                .filter(|s| uses_secret(consumer, &s.name))
                .filter(|s| should_restart(s.restart, Some(consumer.annotations), ns_annotations, self.default))
                .collect();
            if reasons.is_empty() {
                continue;
            }
            let now = jiff::Timestamp::now().to_string();
            let patch = json!({ "spec": { "template": { "metadata": { "annotations": { LAST_RESTARTED: now } } } } });
            let name = workload.name_any();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            let names: Vec<String> = reasons
                .iter()
                .map(|s| format!("{} (item version {})", s.name, s.item_version))
                .collect();
            let note = format!("Restarted to pick up the new data of Secret {}", names.join(", "));
            info!(%namespace, kind = %K::kind(&()), %name, "restarted workload");
            self.events
                .notify(&workload.object_ref(&()), false, "Restart", "Restarted", note)
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, EnvVar, EnvVarSource, PodSpec, ProjectedVolumeSource, SecretEnvSource,
        SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
    };

    /// A workload's annotations and pod template.
    struct Workload {
        annotations: BTreeMap<String, String>,
        template: PodTemplateSpec,
    }

    impl Workload {
        fn consumer(&self) -> Consumer<'_> {
            Consumer {
                annotations: &self.annotations,
                template: Some(&self.template),
            }
        }
    }

    fn workload(spec: PodSpec) -> Workload {
        Workload {
            annotations: BTreeMap::new(),
            template: PodTemplateSpec {
                spec: Some(spec),
                ..PodTemplateSpec::default()
            },
        }
    }

    fn container(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Container {
        Container {
            name: "c".into(),
            env: Some(env),
            env_from: Some(env_from),
            ..Container::default()
        }
    }

    #[test]
    fn every_way_of_using_a_secret_counts() {
        let env = EnvVar {
            name: "PW".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "db".into(),
                    key: "password".into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        };
        let by_env = workload(PodSpec {
            containers: vec![container(vec![env], vec![])],
            ..PodSpec::default()
        });
        let env_from = EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "db".into(),
                optional: None,
            }),
            ..EnvFromSource::default()
        };
        let by_env_from = workload(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                ..Container::default()
            }],
            init_containers: Some(vec![container(vec![], vec![env_from])]),
            ..PodSpec::default()
        });
        let by_volume = workload(PodSpec {
            volumes: Some(vec![Volume {
                name: "v".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("db".into()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        });
        let by_projection = workload(PodSpec {
            volumes: Some(vec![Volume {
                name: "p".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        secret: Some(SecretProjection {
                            name: "db".into(),
                            ..SecretProjection::default()
                        }),
                        ..VolumeProjection::default()
                    }]),
                    ..ProjectedVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        });
        let mut by_annotation = workload(PodSpec::default());
        by_annotation.annotations.insert(ITEM_NAME.into(), "DB".into());
        for (how, w) in [
            ("env", &by_env),
            ("envFrom", &by_env_from),
            ("volume", &by_volume),
            ("projected", &by_projection),
            ("item-name", &by_annotation),
        ] {
            assert!(uses_secret(w.consumer(), "db"), "{how}");
            assert!(!uses_secret(w.consumer(), "other"), "{how}");
        }
        assert!(!uses_secret(workload(PodSpec::default()).consumer(), "db"));
    }

    fn annotated(value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(AUTO_RESTART.to_string(), value.to_string())])
    }

    /// Secret, workload and Namespace annotations, the default, and the expected decision.
    type Case<'a> = (
        Option<&'a BTreeMap<String, String>>,
        Option<&'a BTreeMap<String, String>>,
        Option<&'a BTreeMap<String, String>>,
        bool,
        bool,
    );

    #[tokio::test]
    async fn a_burst_keeps_the_last_change_of_each_secret_and_only_its_restart_choice() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let restarter = Restarter::new(client.clone(), EventPublisher::new(client, "test", None), false);
        for version in 1..=3 {
            let changed = ChangedSecret::new("db".into(), Some(&annotated("true")), version);
            restarter.secret_changed("ns", changed);
        }
        restarter.secret_changed("ns", ChangedSecret::new("cache".into(), None, 7));
        let pending = restarter.pending.lock().unwrap();
        let changed: Vec<_> = pending["ns"]
            .secrets
            .values()
            .map(|s| (s.name.as_str(), s.restart, s.item_version))
            .collect();
        assert_eq!(changed, [("cache", None, 7), ("db", Some(true), 3)]);
    }

    #[test]
    fn precedence_is_secret_then_workload_then_namespace_then_default() {
        let (t, f) = (annotated("true"), annotated("false"));
        let cases: &[Case] = &[
            (None, None, None, false, false),
            (None, None, None, true, true),
            (None, None, Some(&t), false, true),
            (None, None, Some(&f), true, false),
            (None, Some(&t), Some(&f), false, true),
            (None, Some(&f), Some(&t), true, false),
            (Some(&t), Some(&f), Some(&f), false, true),
            (Some(&f), Some(&t), Some(&t), true, false),
        ];
        for (i, (secret, workload, namespace, default, expected)) in cases.iter().enumerate() {
            assert_eq!(
                should_restart(flag(*secret), *workload, *namespace, *default),
                *expected,
                "case {i}"
            );
        }
        let junk = annotated("maybe");
        assert!(
            should_restart(flag(Some(&junk)), Some(&t), None, false),
            "an unreadable value falls through"
        );
        assert!(should_restart(flag(Some(&annotated(" TRUE "))), None, None, false));
    }
}
