//! Group commit: heartbeats queue (bounded) for one writer thread, which commits everything
//! waiting as one transaction and only then acknowledges each. Many heartbeats per fsync,
//! one row update per host per batch, and a full queue refuses at once (HTTP 503 with
//! `Retry-After`) instead of growing memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::store::{CommitStats, HeartbeatRecord, Store, Write};

/// What a commit did, for the registry (applied only after it is durable) and for metrics.
pub struct Committed<'a> {
    pub records: &'a [Write],
    pub stats: CommitStats,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("ingest queue full ({0} waiting); retry later")]
    QueueFull(usize),
    #[error("ingest has stopped")]
    Stopped,
}

/// The outcome a submitter waits for: `Ok` once durable.
pub type Ack = oneshot::Receiver<Result<CommitStats, String>>;

impl Committed<'_> {
    pub fn heartbeats(&self) -> impl Iterator<Item = &HeartbeatRecord> {
        crate::store::heartbeats(self.records)
    }
}

struct Pending {
    record: Write,
    done: oneshot::Sender<Result<CommitStats, String>>,
}

#[derive(Clone)]
pub struct Ingest {
    tx: SyncSender<Pending>,
    depth: Arc<AtomicUsize>,
}

impl Ingest {
    /// Starts the writer thread. `on_commit` runs on it after every durable commit.
    pub fn start<S, F>(
        store: S,
        capacity: usize,
        max_batch: usize,
        on_commit: F,
    ) -> std::io::Result<(Ingest, JoinHandle<S>)>
    where
        S: Store + 'static,
        F: FnMut(Committed<'_>) + Send + 'static,
    {
        let (tx, rx) = sync_channel(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let d = depth.clone();
        let handle = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer(store, rx, d, max_batch.max(1), on_commit))?;
        Ok((Ingest { tx, depth }, handle))
    }

    /// Queues a write; the returned [`Ack`] resolves when it is durable.
    pub fn submit(&self, record: impl Into<Write>) -> Result<Ack, SubmitError> {
        let record = record.into();
        let (done, ack) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Pending { record, done }) {
            Ok(()) => Ok(ack),
            Err(e) => {
                let waiting = self.depth.fetch_sub(1, Ordering::Relaxed) - 1;
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull(waiting),
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// Heartbeats queued and not yet committed.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// After a batch of at least this many writes the writer lets [`GATHER_FOR`] pass before
/// the next commit, so that a busy collector commits fewer, larger batches (fewer fsyncs)
/// while a quiet one still commits each write the moment it arrives.
const GATHER_FROM: usize = 8;
const GATHER_FOR: Duration = Duration::from_micros(500);

fn writer<S: Store, F: FnMut(Committed<'_>)>(
    mut store: S,
    rx: Receiver<Pending>,
    depth: Arc<AtomicUsize>,
    max_batch: usize,
    mut on_commit: F,
) -> S {
    let mut records = Vec::with_capacity(max_batch);
    let mut waiters = Vec::with_capacity(max_batch);
    let mut busy = false;
    // Ends when every Ingest handle is dropped and the queue is drained.
    while let Ok(first) = rx.recv() {
        if busy {
            std::thread::sleep(GATHER_FOR);
        }
        let mut next = Some(first);
        while let Some(p) = next {
            records.push(p.record);
            waiters.push(p.done);
            next = if records.len() < max_batch {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        busy = records.len() >= GATHER_FROM;
        let started = Instant::now();
        let result = store.commit(&records);
        let took = started.elapsed();
        depth.fetch_sub(records.len(), Ordering::Relaxed);
        let reply = match result {
            Ok(stats) => {
                on_commit(Committed {
                    records: &records,
                    stats,
                    took,
                });
                Ok(stats)
            }
            Err(e) => Err(e.sentence()),
        };
        for w in waiters.drain(..) {
            let _ = w.send(reply.clone());
        }
        records.clear();
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::suite::hb;
    use crate::store::SqliteStore;
    use rollcall_proto::Health;
    use std::sync::Mutex;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_heartbeats_are_all_acked_after_being_durable_in_few_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.db");
        let commits = Arc::new(Mutex::new(Vec::new()));
        let c = commits.clone();
        let (ingest, writer) = Ingest::start(
            SqliteStore::open(&path).unwrap(),
            10_000,
            1000,
            move |done| {
                c.lock().unwrap().push(done.records.len());
            },
        )
        .unwrap();
        let mut acks = Vec::new();
        for i in 0..2000u32 {
            acks.push(
                ingest
                    .submit(hb(&format!("h{}", i % 500), i, Health::Ok, vec![]))
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap().unwrap();
        }
        drop(ingest);
        writer.join().unwrap();
        let batches = commits.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 2000);
        assert!(
            batches.len() < 2000,
            "heartbeats share transactions: {} commits",
            batches.len()
        );
        // Durable: a fresh connection sees every host, with its latest heartbeat.
        let hosts = SqliteStore::open(&path).unwrap().load_hosts().unwrap();
        assert_eq!(hosts.len(), 500);
        let h0 = hosts.iter().find(|h| h.host == "h0").unwrap();
        assert_eq!(h0.reason, "h0 at 1500");
    }

    /// A store whose commits say they started, then wait for the test's go-ahead.
    struct Gate(
        SqliteStore,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    );

    impl Store for Gate {
        fn load_hosts(&self) -> Result<Vec<crate::store::HostRow>, crate::store::StoreError> {
            self.0.load_hosts()
        }
        fn load_credentials(
            &self,
        ) -> Result<Vec<crate::store::CredentialRow>, crate::store::StoreError> {
            self.0.load_credentials()
        }
        fn recent_history(
            &self,
            h: &str,
            n: usize,
        ) -> Result<Vec<crate::store::HistoryRecord>, crate::store::StoreError> {
            self.0.recent_history(h, n)
        }
        fn history_since(
            &self,
            s: chrono::DateTime<chrono::Utc>,
            n: usize,
        ) -> Result<Vec<crate::store::HistoryRecord>, crate::store::StoreError> {
            self.0.history_since(s, n)
        }
        fn commit(&mut self, b: &[Write]) -> Result<CommitStats, crate::store::StoreError> {
            let _ = self.2.send(());
            let _ = self.1.recv();
            self.0.commit(b)
        }
        fn set_maintenance(
            &mut self,
            h: &str,
            u: Option<(chrono::DateTime<chrono::Utc>, &str)>,
        ) -> Result<bool, crate::store::StoreError> {
            self.0.set_maintenance(h, u)
        }
        fn set_lifecycle(
            &mut self,
            h: &str,
            l: Option<crate::state::Lifecycle>,
        ) -> Result<bool, crate::store::StoreError> {
            self.0.set_lifecycle(h, l)
        }
        fn host_state(&self, h: &str) -> Result<Option<String>, crate::store::StoreError> {
            self.0.host_state(h)
        }
        fn recent_events(
            &self,
            h: &str,
            n: usize,
        ) -> Result<Vec<rollcall_proto::Event>, crate::store::StoreError> {
            self.0.recent_events(h, n)
        }
        fn prune_events(
            &mut self,
            b: chrono::DateTime<chrono::Utc>,
        ) -> Result<u64, crate::store::StoreError> {
            self.0.prune_events(b)
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_loses_nothing_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (go, gate) = std::sync::mpsc::channel();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let store = Gate(
            SqliteStore::open(&dir.path().join("r.db")).unwrap(),
            gate,
            entered_tx,
        );
        let (ingest, writer) = Ingest::start(store, 2, 10, |_| {}).unwrap();
        // The writer takes the first and blocks in its commit; then two more fill the queue.
        let a1 = ingest.submit(hb("a", 1, Health::Ok, vec![])).unwrap();
        entered.recv().unwrap();
        let mut accepted = vec![a1];
        let mut refused = 0;
        for i in 2..10 {
            match ingest.submit(hb("a", i, Health::Ok, vec![])) {
                Ok(a) => accepted.push(a),
                Err(SubmitError::QueueFull(waiting)) => {
                    assert_eq!(waiting, 3, "one committing, two queued");
                    refused += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((accepted.len(), refused), (3, 6), "the bound holds");
        assert_eq!(ingest.depth(), 3);
        for _ in 0..10 {
            let _ = go.send(());
        }
        for a in accepted {
            a.await.unwrap().unwrap();
        }
        assert_eq!(ingest.depth(), 0);
        drop(ingest);
        let store = writer.join().unwrap();
        let hosts = store.load_hosts().unwrap();
        assert_eq!(
            hosts[0].reason, "a at 3",
            "every accepted heartbeat was committed, the last one wins"
        );
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_to_every_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = SqliteStore::open(&path).unwrap();
        // Make the events table unwritable by replacing it with a view.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE events; CREATE VIEW events AS SELECT 1 AS host, 2 AS seq, 3 AS at, 4 AS received_at, 5 AS body;").unwrap();
        let (ingest, _w) =
            Ingest::start(store, 10, 10, |_| panic!("nothing was committed")).unwrap();
        let ack = ingest
            .submit(hb(
                "a",
                1,
                Health::Ok,
                vec![crate::store::suite::event(1, "x")],
            ))
            .unwrap();
        let e = ack.await.unwrap().unwrap_err();
        assert!(e.contains("r.db"), "{e}");
    }
}
