//! A blocking face of [`Store`] for callers without a tokio runtime.

use crate::{Config, Error, Expect, Loaded, Outcome, Store};

/// [`Store`] with its own current-thread tokio runtime: each call blocks the calling thread
/// until it returns (within the store's deadline, see the crate docs). Calling it from inside a
/// tokio runtime panics; use [`Store`] there. The runtime only runs during a call, so
/// connections idle between calls are re-checked by the next call's hedging, not by a timer.
pub struct BlockingStore {
    runtime: tokio::runtime::Runtime,
    store: Store,
}

impl BlockingStore {
    /// See [`Store::connect`].
    pub fn connect(config: Config) -> Result<BlockingStore, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("tokio runtime: {e}")))?;
        let store = runtime.block_on(Store::connect(config))?;
        Ok(BlockingStore { runtime, store })
    }

    /// The async store inside, e.g. to hand to a runtime of the caller's.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// See [`Store::load`].
    pub fn load(&self, user: &str) -> Result<Option<Loaded>, Error> {
        self.runtime.block_on(self.store.load(user))
    }

    /// See [`Store::commit_counters`].
    pub fn commit_counters(
        &self,
        user: &str,
        state_revision: i64,
        counters_revision: i64,
        counters: &[u8],
    ) -> Result<Outcome, Error> {
        self.runtime.block_on(self.store.commit_counters(
            user,
            state_revision,
            counters_revision,
            counters,
        ))
    }

    /// See [`Store::put_state`].
    pub fn put_state(&self, user: &str, state: &[u8], expect: Expect) -> Result<Outcome, Error> {
        self.runtime
            .block_on(self.store.put_state(user, state, expect))
    }

    /// See [`Store::delete`].
    pub fn delete(&self, user: &str) -> Result<bool, Error> {
        self.runtime.block_on(self.store.delete(user))
    }

    /// See [`Store::list`].
    pub fn list(&self) -> Result<Vec<String>, Error> {
        self.runtime.block_on(self.store.list())
    }
}
