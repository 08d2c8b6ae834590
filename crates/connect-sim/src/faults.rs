//! Faults injected at runtime through the admin API: per-operation latency and error
//! statuses (optionally for a limited number of requests), and a full outage.

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// Longest injected latency: enough for any timeout test, short enough that a rule cannot
/// hold a connection forever.
pub const MAX_LATENCY_MS: u64 = 120_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultRule {
    /// Operation name (`get_item`, `list_items`, …) or `*` for every operation.
    pub operation: String,
    /// Added delay before the request is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Answer with this status instead of handling the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` seconds sent with the status (useful with 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Requests the rule still applies to; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Faults {
    /// Every API route (heartbeat and health included) answers 503.
    #[serde(default)]
    pub outage: bool,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// What to do with one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub delay_ms: u64,
    pub error: Option<ApiError>,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for rule in &self.rules {
            if rule.operation != "*" && !super::routes::OPERATIONS.contains(&rule.operation.as_str()) {
                return Err(format!(
                    "unknown operation {:?}; expected * or one of {}",
                    rule.operation,
                    super::routes::OPERATIONS.join(", ")
                ));
            }
            if let Some(status) = rule.status
                && !(400..=599).contains(&status)
            {
                return Err(format!("fault status must be 400..=599, got {status}"));
            }
            if let Some(latency) = rule.latency_ms
                && latency > MAX_LATENCY_MS
            {
                return Err(format!("latencyMs must be at most {MAX_LATENCY_MS}, got {latency}"));
            }
        }
        Ok(())
    }

    /// Decides the fate of one request to `operation`, consuming limited rules.
    pub fn judge(&mut self, operation: &str) -> Verdict {
        if self.outage {
            return Verdict {
                delay_ms: 0,
                error: Some(ApiError::new(503, "simulated outage: Connect is unavailable")),
            };
        }
        let mut verdict = Verdict::default();
        for rule in &mut self.rules {
            if (rule.operation != "*" && rule.operation != operation) || rule.remaining == Some(0) {
                continue;
            }
            if let Some(remaining) = &mut rule.remaining {
                *remaining -= 1;
            }
            verdict.delay_ms += rule.latency_ms.unwrap_or(0);
            if let Some(status) = rule.status {
                let message = rule
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("simulated fault on {operation}"));
                verdict.error = Some(ApiError {
                    status,
                    message,
                    retry_after_secs: rule.retry_after_secs,
                });
                break;
            }
        }
        self.rules.retain(|r| r.remaining != Some(0));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_rules_expire_and_latency_adds_up() {
        let mut faults = Faults {
            outage: false,
            rules: vec![
                FaultRule {
                    operation: "*".into(),
                    latency_ms: Some(5),
                    ..FaultRule::default()
                },
                FaultRule {
                    operation: "get_item".into(),
                    status: Some(500),
                    remaining: Some(2),
                    ..FaultRule::default()
                },
            ],
        };
        assert_eq!(faults.judge("get_item").error.unwrap().status, 500);
        assert_eq!(
            faults.judge("list_items"),
            Verdict {
                delay_ms: 5,
                error: None
            }
        );
        assert_eq!(faults.judge("get_item").delay_ms, 5);
        let third = faults.judge("get_item");
        assert!(third.error.is_none(), "the rule was used up");
        assert_eq!(faults.rules.len(), 1);
    }

    #[test]
    fn outage_and_validation() {
        let mut faults = Faults {
            outage: true,
            rules: vec![],
        };
        assert_eq!(faults.judge("heartbeat").error.unwrap().status, 503);
        let bad = Faults {
            outage: false,
            rules: vec![FaultRule {
                operation: "get_itm".into(),
                ..FaultRule::default()
            }],
        };
        assert!(bad.validate().unwrap_err().contains("get_itm"));
        let bad = Faults {
            outage: false,
            rules: vec![FaultRule {
                operation: "*".into(),
                status: Some(200),
                ..FaultRule::default()
            }],
        };
        assert!(bad.validate().is_err());
        let forever = Faults {
            outage: false,
            rules: vec![FaultRule {
                operation: "*".into(),
                latency_ms: Some(u64::MAX),
                ..FaultRule::default()
            }],
        };
        assert!(
            forever
                .validate()
                .unwrap_err()
                .contains("latencyMs must be at most 120000")
        );
    }
}
