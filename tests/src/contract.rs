//! The adapters the port contract suites (`tests/tests/*_contract.rs`) run, set up once for
//! all of them: the embedded SQLite adapters in a scratch file of their own, and the SQS
//! adapters on fresh queues in the emulator.
//!
//! Each suite keeps what it looks behind its adapters with (its own SQL, its own SDK
//! calls); only the setup and the cleanup are shared, so that every suite runs an adapter
//! set up the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookgate::aws::{SqsEventQueue, SqsQueueConsumer};
use hookgate::sqlite::{SqliteQueue, SqliteQueueSettings};

use crate::emulator;

/// A connection of its own to the SQLite file at `path`, to look behind an adapter as
/// another process would (it waits, as the adapters do, while one of them writes).
pub fn look(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).expect("the file opens");
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("a busy timeout");
    connection
}

/// A path for an SQLite file in the temporary directory, used by nothing else. The file and
/// its companions (write-ahead log, shared memory, rollback journal) are removed on drop.
#[derive(Debug)]
pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    /// A fresh path whose file name starts with `prefix`; nothing is created yet.
    pub fn new(prefix: &str) -> Self {
        let name = format!("{}.sqlite3", emulator::unique_name(prefix));
        Self {
            path: std::env::temp_dir().join(name),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

/// The embedded queue, in a scratch file of its own that is removed when the test ends.
#[derive(Debug)]
pub struct ScratchQueue {
    // Declared first so that it is dropped, closing its connections, before the file goes.
    queue: SqliteQueue,
    file: ScratchFile,
}

impl ScratchQueue {
    /// Opens the queue in a fresh file whose name starts with `prefix`.
    pub fn open(prefix: &str, settings: SqliteQueueSettings) -> Self {
        let file = ScratchFile::new(prefix);
        let queue = SqliteQueue::open(file.path(), settings).expect("a queue in a fresh file");
        Self { queue, file }
    }

    /// The queue under test.
    pub fn adapter(&self) -> &SqliteQueue {
        &self.queue
    }

    /// The file, for a connection of its own that looks behind the adapter as another
    /// process would.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// A fresh queue in the emulator whose redrive policy moves a message to a fresh dead-letter
/// queue once it has been received `max_receive_count` times (as the deployed stack sets
/// them up), with the receivers' and the processor's adapters connected to it.
#[derive(Debug)]
pub struct SqsQueues {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
    /// What the receivers enqueue with.
    pub queue: SqsEventQueue,
    /// What the processor receives and acknowledges with.
    pub consumer: SqsQueueConsumer,
}

impl SqsQueues {
    /// Creates the queues (names starting with `prefix`) and connects the adapters.
    pub async fn new(prefix: &str, max_receive_count: u32) -> Self {
        let client = aws_sdk_sqs::Client::new(&emulator::sdk_config().await);
        let queues = emulator::create_queue_with_dead_letters(&client, prefix, max_receive_count)
            .await
            .expect("the emulator creates a queue and its dead-letter queue");
        let queue = SqsEventQueue::connect(client.clone(), queues.queue_url.clone())
            .await
            .expect("the queue exists");
        let consumer = SqsQueueConsumer::connect(client.clone(), queues.queue_url.clone())
            .await
            .expect("the consumer connects to a queue that exists");
        Self {
            client,
            queue_url: queues.queue_url,
            dlq_url: queues.dlq_url,
            queue,
            consumer,
        }
    }
}
