//! A typed client for the simulator's admin API (`/__sim`): faults and request counts.
//! Tests and benchmarks use it to inject failures and to count what the operator costs.

use url::Url;

use super::StatsSnapshot;
use super::faults::{FaultRule, Faults};

#[derive(Clone)]
pub struct SimAdmin {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl std::fmt::Debug for SimAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAdmin")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .finish()
    }
}

impl SimAdmin {
    pub fn new(base: Url, token: impl Into<String>) -> Self {
        onepassword_connect::client::install_crypto_provider();
        Self {
            http: reqwest::Client::new(),
            base,
            token: token.into(),
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("admin path")
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("simulator admin API: {e}"))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(format!(
                "simulator admin API answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ))
        }
    }

    /// Replaces every fault.
    pub async fn set_faults(&self, faults: &Faults) -> Result<(), String> {
        self.send(self.http.put(self.url("/__sim/faults")).json(faults))
            .await
            .map(drop)
    }

    /// Adds one rule to the current faults.
    pub async fn add_rule(&self, rule: &FaultRule) -> Result<(), String> {
        self.send(self.http.post(self.url("/__sim/faults/rules")).json(rule))
            .await
            .map(drop)
    }

    /// Every route answers 503 while `on`.
    pub async fn set_outage(&self, on: bool) -> Result<(), String> {
        let mut faults = self.faults().await?;
        faults.outage = on;
        self.set_faults(&faults).await
    }

    pub async fn faults(&self) -> Result<Faults, String> {
        let response = self.send(self.http.get(self.url("/__sim/faults"))).await?;
        response.json().await.map_err(|e| e.to_string())
    }

    pub async fn clear_faults(&self) -> Result<(), String> {
        self.send(self.http.delete(self.url("/__sim/faults"))).await.map(drop)
    }

    /// Requests served per operation since the start or the last reset.
    pub async fn stats(&self) -> Result<StatsSnapshot, String> {
        let response = self.send(self.http.get(self.url("/__sim/stats"))).await?;
        response.json().await.map_err(|e| e.to_string())
    }

    pub async fn reset_stats(&self) -> Result<(), String> {
        self.send(self.http.delete(self.url("/__sim/stats"))).await.map(drop)
    }
}
