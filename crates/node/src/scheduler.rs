//! Admission of heavy work. Chat generations, tensor inferences and zk jobs each run in a
//! lane: `concurrency` jobs at once, up to `queue` more waiting; beyond that a request is
//! refused at once (429) rather than piling up blocking threads and memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node's lanes, one per kind of work.
pub struct Scheduler {
    pub chat: Lane,
    pub infer: Lane,
    pub prove: Lane,
}

/// Bounded admission: a semaphore for the running jobs behind a counter for the waiting ones.
pub struct Lane {
    /// What the lane's jobs do, for the refusal message ("generating", "proving", ...).
    work: &'static str,
    running: Arc<Semaphore>,
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("this node is {work} at capacity ({capacity} running or queued); retry later")]
    Busy { work: &'static str, capacity: usize },
    /// The job panicked, or the runtime is shutting down.
    #[error("{0}")]
    Stopped(String),
}

/// A place in line; leaving the line (or finishing) frees it.
struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The right to run one job, held until the job ends.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _ticket: Ticket,
}

impl Lane {
    pub fn new(work: &'static str, concurrency: usize, queue: usize) -> Lane {
        let concurrency = concurrency.max(1);
        Lane {
            work,
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency + queue,
        }
    }

    /// Waits for a slot, or refuses at once when the line is full.
    pub async fn admit(&self) -> Result<Slot, JobError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(JobError::Busy {
                work: self.work,
                capacity: self.capacity,
            });
        }
        let ticket = Ticket(self.admitted.clone());
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| JobError::Stopped(format!("{} slots closed", self.work)))?;
        Ok(Slot {
            _permit: permit,
            _ticket: ticket,
        })
    }

    /// Runs a blocking job once admitted, holding its slot until it returns.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobError> {
        let slot = self.admit().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            job()
        })
        .await
        .map_err(|e| JobError::Stopped(e.to_string()))
    }
}

/// Counts what each client address holds (connections, or expensive requests in flight).
pub struct PerClient {
    limit: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One unit held by a client; dropping it gives the unit back.
pub struct Held {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    pub fn new(limit: usize) -> PerClient {
        PerClient {
            limit: limit.max(1),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one unit for `client`, or `None` when it already holds its limit.
    pub fn enter(self: &Arc<Self>, client: IpAddr) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Held {
            owner: self.clone(),
            client,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_queue_requests_are_refused_and_slots_are_freed() {
        let lane = Lane::new("testing", 1, 1);
        let running = lane.admit().await.unwrap();
        let mut waiting = Box::pin(lane.admit());
        assert!(futures::poll!(&mut waiting).is_pending());
        let refused = lane.admit().await.err().unwrap();
        assert!(matches!(refused, JobError::Busy { capacity: 2, .. }));
        drop(running);
        let second = waiting.await.unwrap();
        // A request that gave up waiting frees its place in line.
        let mut gave_up = Box::pin(lane.admit());
        assert!(futures::poll!(&mut gave_up).is_pending());
        drop(gave_up);
        let mut next = Box::pin(lane.admit());
        assert!(futures::poll!(&mut next).is_pending());
        drop(second);
        next.await.unwrap();
    }

    #[tokio::test]
    async fn a_job_holds_its_slot_until_it_returns() {
        let lane = Lane::new("testing", 1, 0);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let job = lane.run(move || wait.recv().is_ok());
        tokio::pin!(job);
        assert!(futures::poll!(&mut job).is_pending());
        // Let the blocking thread start and take the slot's place.
        tokio::task::yield_now().await;
        assert!(matches!(lane.admit().await, Err(JobError::Busy { .. })));
        release.send(()).unwrap();
        assert!(job.await.unwrap());
        drop(lane.admit().await.unwrap());
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_it_back() {
        let share = Arc::new(PerClient::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = share.enter(a).unwrap();
        let second = share.enter(a).unwrap();
        assert!(share.enter(a).is_none());
        // Another client is not affected.
        assert!(share.enter(b).is_some());
        drop(first);
        assert!(share.enter(a).is_some());
        // A client holding nothing leaves no entry behind.
        drop(second);
        assert!(share.held.lock().unwrap().is_empty());
    }
}
