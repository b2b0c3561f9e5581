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
    /// Checking a publication: reading the file, quantizing, loading the float engine.
    pub publish: Lane,
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

/// Jobs keyed by what they produce (a model fetched by id): at most `limit` distinct keys at
/// once, and one job per key. A second caller for a key waits for the first and then finds
/// its result where the first left it (the store), instead of doing the work again.
pub struct SingleFlight {
    running: Arc<Semaphore>,
    keys: Mutex<HashMap<[u8; 32], std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

/// The right to do the job for one key; held until the job ends.
pub struct Flight {
    _key: tokio::sync::OwnedMutexGuard<()>,
    _slot: OwnedSemaphorePermit,
}

impl SingleFlight {
    pub fn new(limit: usize) -> SingleFlight {
        SingleFlight {
            running: Arc::new(Semaphore::new(limit.max(1))),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until no one else works on `key` and a slot is free.
    pub async fn enter(&self, key: [u8; 32]) -> Result<Flight, JobError> {
        let lock = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.retain(|_, w| w.strong_count() > 0);
            match keys.get(&key).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    keys.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        let key = lock.lock_owned().await;
        let slot = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| JobError::Stopped("fetch slots closed".into()))?;
        Ok(Flight {
            _key: key,
            _slot: slot,
        })
    }
}

/// A token bucket per client address: `per_hour` actions, refilled continuously, at most
/// `per_hour` saved up.
pub struct RateLimit {
    per_hour: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, std::time::Instant)>>,
}

impl RateLimit {
    pub fn new(per_hour: u32) -> RateLimit {
        RateLimit {
            per_hour: f64::from(per_hour.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one action for `client`, or says how many seconds until it may.
    pub fn take(&self, client: IpAddr) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let per_sec = self.per_hour / 3600.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget clients whose buckets have refilled; they lose nothing.
            let full = self.per_hour;
            buckets.retain(|_, (t, at)| *t + at.elapsed().as_secs_f64() * per_sec < full);
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.per_hour, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(self.per_hour);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_sec).ceil() as u64)
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

    #[test]
    fn a_client_spends_its_rate_and_others_keep_theirs() {
        let limit = RateLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limit.take(a).is_ok());
        assert!(limit.take(a).is_ok());
        let wait = limit.take(a).unwrap_err();
        // One action per half hour comes back.
        assert!((1700..=1800).contains(&wait), "{wait}");
        assert!(limit.take("10.0.0.2".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn one_flight_per_key_and_a_bounded_number_of_keys() {
        let flights = SingleFlight::new(1);
        let first = flights.enter([1; 32]).await.unwrap();
        // The same key waits for the first flight.
        let mut same = Box::pin(flights.enter([1; 32]));
        assert!(futures::poll!(&mut same).is_pending());
        // Another key waits for the slot.
        let mut other = Box::pin(flights.enter([2; 32]));
        assert!(futures::poll!(&mut other).is_pending());
        drop(first);
        let second = other.await.unwrap();
        assert!(futures::poll!(&mut same).is_pending());
        drop(second);
        drop(same.await.unwrap());
    }
}
