//! GET-item throughput of the Connect simulator on this machine, so that benchmarks can
//! show it is never their bottleneck. Run: `cargo bench --bench sim_throughput`.
//! Load and simulator share the machine; figures are a lower bound of the simulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connect_sim::{self as sim, DataFile, SimConfig};
use onepassword_operator::connect::{ConnectClient, ConnectConfig, RetryPolicy};
use secrecy::SecretString;

const CONCURRENCY: usize = 32;
const DURATION: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let sim = sim::start(
        SimConfig::new(DataFile::embedded_example()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut config = ConnectConfig::new(sim.url(), SecretString::from("demo-operator-token"));
    config.retry = RetryPolicy::none();
    let client = ConnectClient::new(config).unwrap();
    let vault = client
        .list_vaults(None)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.name == "Demo")
        .unwrap();
    let vault_id: Arc<str> = vault.id.into();
    let item_id: Arc<str> = client.list_items(&vault_id, None).await.unwrap().remove(0).id.into();
    let url = sim
        .url()
        .join(&format!("/v1/vaults/{vault_id}/items/{item_id}"))
        .unwrap();

    // Raw HTTP: what the simulator serves when the client does no decoding.
    let http = reqwest::Client::new();
    let (raw_client, raw_url) = (http.clone(), url.clone());
    let raw = load(move || {
        let (http, url) = (raw_client.clone(), raw_url.clone());
        async move {
            let response = http.get(url).bearer_auth("demo-operator-token").send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
        }
    })
    .await;
    // Through the project's client, decoding every FullItem as the operator does.
    let decoded = load(move || {
        let (client, vault, item) = (client.clone(), vault_id.clone(), item_id.clone());
        async move {
            client.get_item(&vault, &item).await.unwrap();
        }
    })
    .await;
    println!(
        "simulator GET item, {CONCURRENCY} connections, {}s each:",
        DURATION.as_secs()
    );
    println!("  raw HTTP:             {raw:>8.0} requests/s");
    println!("  ConnectClient decode: {decoded:>8.0} requests/s");
}

async fn load<F, Fut>(request: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (done, request) = (done.clone(), request.clone());
            tokio::spawn(async move {
                while started.elapsed() < DURATION {
                    request().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
