//! Load as a user's tooling makes it: many requests at a time, timed. Shared by the
//! benchmarks so that the operator's figures and the plain client's are taken alike.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;

/// Runs `write` for `0..n`, `concurrency` at a time, and returns how long all took.
pub async fn timed_writes<F, Fut>(n: usize, concurrency: usize, write: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(write)
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn every_write_runs_once_and_no_more_than_the_concurrency_at_a_time() {
        let (running, most, done) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        timed_writes(50, 4, |_| async {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            tokio::task::yield_now().await;
            running.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
        })
        .await;
        assert_eq!(done.load(Ordering::SeqCst), 50);
        assert_eq!(most.load(Ordering::SeqCst), 4);
    }
}
