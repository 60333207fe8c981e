//! Running independent jobs a bounded number at a time (megacmd's transfers, one-way sync):
//! every job runs even when others fail, and the failures come back in completion order.

use futures::StreamExt;

/// Runs `f` on every job, `parallel` at a time; returns the errors.
pub async fn run<T, E, F, Fut>(parallel: usize, jobs: Vec<T>, f: F) -> Vec<E>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    futures::stream::iter(jobs)
        .map(f)
        .buffer_unordered(parallel.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_job_runs_and_failures_are_returned() {
        let seen = std::sync::Mutex::new(Vec::new());
        let errors = super::run(2, (0..10).collect(), |i: u32| {
            let seen = &seen;
            async move {
                seen.lock().unwrap().push(i);
                if i % 3 == 0 {
                    Err(i)
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(seen.lock().unwrap().len(), 10);
        let mut errors = errors;
        errors.sort();
        assert_eq!(errors, vec![0, 3, 6, 9]);
    }
}
