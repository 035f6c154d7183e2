//! The embedded adapters `hookgate dev` runs on: a queue (with visibility timeouts, receive
//! counts and a dead-letter queue), an idempotency store and a store for bodies too large
//! for a message, each in an SQLite file, durable across `kill -9` and restarts. They keep the same port contracts as the SQS and DynamoDB
//! adapters, checked by the same suites.
//!
//! Both may live in one file (their tables differ), and several processes may open it at
//! once: every operation is one `BEGIN IMMEDIATE` transaction. The file's schema is
//! versioned with `PRAGMA user_version`; a file written by a newer hookgate is refused
//! rather than misread.
//!
//! Made for one machine's development traffic, not for production volumes: nothing is
//! pruned (claims past their retention are replaced when their key comes again, and dead
//! letters stay until redriven, where SQS would drop them after 14 days), and a waiting
//! receive scans the queue table. Delete the file to start afresh.

mod archive;
mod bodies;
mod database;
mod queue;
mod store;

pub use archive::SqliteArchive;
pub use bodies::SqliteBodyStore;
pub use queue::{QueueDepth, SqliteQueue, SqliteQueueSettings};
pub use store::SqliteStore;

#[cfg(test)]
pub(crate) mod testing {
    //! Scratch files for the adapters' unit tests.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A path of its own in the temporary directory; the file, its WAL and shared-memory
    /// companions (or a directory made under it) are removed on drop.
    #[derive(Debug)]
    pub(crate) struct ScratchFile {
        path: PathBuf,
    }

    impl ScratchFile {
        pub(crate) fn new(name: &str) -> Self {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.subsec_nanos())
                .unwrap_or_default();
            let unique = format!(
                "hookgate-{name}-{}-{nanos}-{}.sqlite3",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            Self {
                path: std::env::temp_dir().join(unique),
            }
        }

        pub(crate) fn path(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for ScratchFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut name = self.path.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
        }
    }
}
