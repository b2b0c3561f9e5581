//! Loaded models kept between requests: one cache, bounded in bytes, for every form a model
//! is loaded in (tensor engines, language models, zk circuits). Every load reads the model's
//! bytes through [`ModelCache::read_verified`], which re-hashes them against the model id, so
//! a blob changed on disk is never run.
//!
//! Sizes are estimates stated by whoever loads a form. Eviction drops the
//! cache's reference only: a running generation or proof keeps its own `Arc`, so memory in use
//! can briefly exceed the budget, never what the cache itself holds.

use crate::store::Store;
use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use verity_core::{ModelId, ModelManifest};

/// A map bounded by the total size its entries state, evicting the least recently used first.
pub struct Recent<K, V> {
    entries: HashMap<K, Entry<V>>,
    budget: u64,
    held: u64,
    clock: u64,
}

struct Entry<V> {
    value: V,
    bytes: u64,
    used: u64,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Recent<K, V> {
    pub fn new(budget_bytes: u64) -> Self {
        Recent {
            entries: HashMap::new(),
            budget: budget_bytes,
            held: 0,
            clock: 0,
        }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|e| {
            e.used = clock;
            e.value.clone()
        })
    }

    /// Keeps `value` (replacing any under `key`), evicting the least recently used entries
    /// until it fits. A value larger than the whole budget is not kept, and nothing is evicted
    /// for it: its user holds it for as long as it runs, and the next request loads it again.
    /// Returns whether the value was kept.
    pub fn insert(&mut self, key: K, value: V, bytes: u64) -> bool {
        if let Some(old) = self.entries.remove(&key) {
            self.held -= old.bytes;
        }
        if bytes > self.budget {
            return false;
        }
        while self.held + bytes > self.budget {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(evicted) = oldest.and_then(|k| self.entries.remove(&k)) else {
                break;
            };
            self.held -= evicted.bytes;
        }
        self.clock += 1;
        self.held += bytes;
        let used = self.clock;
        self.entries.insert(key, Entry { value, bytes, used });
        true
    }

    /// The total size the kept entries state; never more than the budget.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }
}

/// Why a model's stored bytes could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("model bytes for {id} unavailable: {source}")]
    Unavailable { id: ModelId, source: std::io::Error },
    #[error("stored bytes of {0} do not match its id")]
    Tampered(ModelId),
}

/// A model in one loaded form: the form's type tells the forms of one model apart.
type Key = (ModelId, TypeId);
type Shared = Arc<dyn Any + Send + Sync>;

pub struct ModelCache {
    store: Arc<Store>,
    recent: Mutex<Recent<Key, Shared>>,
    /// Forms being loaded now; a second request for one waits for the first to finish.
    loading: Mutex<HashSet<Key>>,
    loaded: Condvar,
}

/// Takes a lock even if a thread panicked while holding it: every critical section here
/// leaves the data consistent (a panicking load only leaves a form unloaded).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Clears a form's "being loaded" mark however its load ends, and wakes those waiting for it.
struct LoadingMark<'a> {
    cache: &'a ModelCache,
    key: Key,
}

impl Drop for LoadingMark<'_> {
    fn drop(&mut self) {
        lock(&self.cache.loading).remove(&self.key);
        self.cache.loaded.notify_all();
    }
}

impl ModelCache {
    pub fn new(store: Arc<Store>, budget_bytes: u64) -> ModelCache {
        ModelCache {
            store,
            recent: Mutex::new(Recent::new(budget_bytes)),
            loading: Mutex::new(HashSet::new()),
            loaded: Condvar::new(),
        }
    }

    /// The model's bytes from the blob store, checked against its id.
    pub fn read_verified(&self, id: &ModelId) -> Result<Vec<u8>, BlobError> {
        let bytes = std::fs::read(self.store.blob_path(id))
            .map_err(|source| BlobError::Unavailable { id: *id, source })?;
        if ModelId::of_bytes(&bytes) != *id {
            return Err(BlobError::Tampered(*id));
        }
        Ok(bytes)
    }

    fn cached<T: Any + Send + Sync>(&self, key: &Key) -> Option<Arc<T>> {
        // The key's TypeId is T's, so the downcast cannot fail.
        lock(&self.recent).get(key)?.downcast::<T>().ok()
    }

    /// The model `m` loaded as a `T`: from the cache, or built by `build` from the verified
    /// bytes and kept at the size `footprint` estimates for it. Concurrent first requests load
    /// it once. Blocking: call from a blocking thread.
    pub fn load<T, E>(
        &self,
        m: &ModelManifest,
        build: impl FnOnce(&[u8]) -> Result<T, E>,
        footprint: impl FnOnce(&T) -> u64,
    ) -> Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
        E: From<BlobError>,
    {
        let key = (m.id, TypeId::of::<T>());
        let _mark = loop {
            if let Some(v) = self.cached(&key) {
                return Ok(v);
            }
            let mut loading = lock(&self.loading);
            if loading.insert(key) {
                break LoadingMark { cache: self, key };
            }
            while loading.contains(&key) {
                loading = self.loaded.wait(loading).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Loaded by another thread between the look-up and the mark.
        if let Some(v) = self.cached(&key) {
            return Ok(v);
        }
        let value = Arc::new(build(&self.read_verified(&m.id)?)?);
        self.keep_arc(m.id, value.clone(), footprint(&value));
        Ok(value)
    }

    /// Keeps a model loaded elsewhere (at publish time), so its first use does not load it
    /// again.
    pub fn keep<T: Any + Send + Sync>(&self, id: ModelId, value: T, bytes: u64) {
        self.keep_arc(id, Arc::new(value), bytes);
    }

    fn keep_arc<T: Any + Send + Sync>(&self, id: ModelId, value: Arc<T>, bytes: u64) {
        lock(&self.recent).insert((id, TypeId::of::<T>()), value, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_beyond_the_byte_budget() {
        let mut r = Recent::new(100);
        assert!(r.insert("a", 1, 40));
        assert!(r.insert("b", 2, 40));
        assert_eq!(r.get(&"a"), Some(1)); // "b" is now the least recently used
        assert!(r.insert("c", 3, 40));
        assert_eq!(
            (r.get(&"a"), r.get(&"b"), r.get(&"c")),
            (Some(1), None, Some(3))
        );
        assert_eq!(r.held_bytes(), 80);
        // Replacing an entry frees its old size first.
        assert!(r.insert("c", 4, 60));
        assert_eq!((r.get(&"a"), r.get(&"c")), (Some(1), Some(4)));
        assert_eq!(r.held_bytes(), 100);
        // A large entry evicts as many of the oldest as it needs.
        assert!(r.insert("d", 5, 90));
        assert_eq!(
            (r.get(&"a"), r.get(&"c"), r.get(&"d")),
            (None, None, Some(5))
        );
        assert_eq!(r.held_bytes(), 90);
    }

    #[test]
    fn never_holds_more_than_the_budget_and_refuses_what_cannot_fit() {
        let mut r = Recent::new(1000);
        for i in 0..200u64 {
            r.insert(i % 37, i, 1 + (i * 7919) % 300);
            assert!(r.held_bytes() <= 1000);
        }
        let before = r.held_bytes();
        // Larger than the whole budget: not kept, and nothing evicted for it.
        assert!(!r.insert(999, 0, 1001));
        assert_eq!(r.get(&999), None);
        assert_eq!(r.held_bytes(), before);
    }

    fn published(dir: &std::path::Path, bytes: &[u8]) -> (Arc<Store>, ModelManifest) {
        let store = Arc::new(Store::open(dir).unwrap());
        let blob = store.blob_from_bytes(bytes).unwrap();
        let manifest = ModelManifest {
            id: ModelId::of_bytes(bytes),
            name: "m".into(),
            version: "1".into(),
            format: verity_core::ModelFormat::VerityInt8,
            inputs: vec![],
            outputs: vec![],
            operators: vec![],
            size: bytes.len() as u64,
            publisher: verity_core::NodeKey::from_seed([1; 32]).public(),
            created_at_ms: 0,
            parent: None,
            calibration_hash: None,
            canonical: None,
        };
        store.import(blob, &manifest).unwrap();
        (store, manifest)
    }

    #[test]
    fn a_blob_changed_on_disk_is_refused_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = published(dir.path(), b"model bytes");
        let cache = ModelCache::new(store.clone(), 1 << 20);
        let len = |b: &[u8]| Ok::<_, BlobError>(b.len());
        assert_eq!(*cache.load(&m, len, |_| 11).unwrap(), 11);

        std::fs::write(store.blob_path(&m.id), b"model bytez").unwrap();
        let mut built = false;
        let build = |b: &[u8]| {
            built = true;
            Ok::<_, BlobError>(b.to_vec())
        };
        let refused = cache.load(&m, build, |_| 11);
        assert!(matches!(refused, Err(BlobError::Tampered(id)) if id == m.id));
        assert!(!built, "tampered bytes reached the loader");
        std::fs::remove_file(store.blob_path(&m.id)).unwrap();
        assert!(matches!(
            cache.read_verified(&m.id),
            Err(BlobError::Unavailable { .. })
        ));
    }

    #[test]
    fn concurrent_first_requests_load_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = published(dir.path(), b"shared model");
        let cache = ModelCache::new(store, 1 << 20);
        let builds = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let build = |b: &[u8]| {
                        builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, BlobError>(b.len())
                    };
                    cache.load(&m, build, |_| 1).unwrap()
                });
            }
        });
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
