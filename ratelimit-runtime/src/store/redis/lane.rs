//! Lanes: each thread that asks for Redis decisions sends them on a connection of its own,
//! driven by a task on its own runtime.
//!
//! An Actix worker is a single-threaded runtime. Handing its decisions to another thread and
//! back costs two cross-thread wake-ups per decision, which measured as much CPU as the rest of
//! the Redis path. A lane keeps the whole trip on the worker's thread: the decision, the task
//! that batches decisions into script calls, and the connection's driver. Decisions that arrive
//! while a call is in flight still travel together in the next one.
//!
//! A store keeps one lane per thread of a single-threaded runtime, made on the thread's first
//! decision; a lane whose runtime has gone (a test's runtime, say) is made again. Lanes end with
//! the store: their task stops once the store, which holds their only sender, is dropped.
//! Elsewhere (a multi-threaded runtime) decisions go to the store's thread, as other commands.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::options::RedisOptions;
use super::sentinel::Endpoint;
use super::wire::{connect_manager, send_batch, Job, Via, MAX_BATCH};

/// The lanes of one store.
pub(super) struct Lanes {
    endpoint: Endpoint,
    options: Arc<RedisOptions>,
    lanes: Mutex<Vec<(ThreadId, mpsc::UnboundedSender<Job>)>>,
}

impl Lanes {
    pub(super) fn new(endpoint: Endpoint, options: Arc<RedisOptions>) -> Lanes {
        Lanes {
            endpoint,
            options,
            lanes: Mutex::default(),
        }
    }

    /// This thread's lane, made if need be; `None` outside a single-threaded Tokio runtime (an
    /// Actix worker, a test): on a multi-threaded one a thread is not where its tasks run, and
    /// threads come and go, so the store's thread decides there.
    pub(super) fn here(&self) -> Option<mpsc::UnboundedSender<Job>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let thread = std::thread::current().id();
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        lanes.retain(|(_, lane)| !lane.is_closed());
        if let Some((_, lane)) = lanes.iter().find(|(t, _)| *t == thread) {
            return Some(lane.clone());
        }
        let (lane, queue) = mpsc::unbounded_channel();
        runtime.spawn(serve(
            self.endpoint.clone(),
            Arc::clone(&self.options),
            queue,
        ));
        lanes.push((thread, lane.clone()));
        Some(lane)
    }

    /// Whether the lanes follow the master of sentinels.
    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self.endpoint, Endpoint::Sentinel(_))
    }
}

/// A lane's task: connects, then sends the decisions waiting in batches, one call in flight at
/// a time (what arrives meanwhile goes in the next). A failed connection answers the waiting
/// decisions with the error and ends the lane; the next decision makes a new one. Behind
/// Sentinel, a failed call makes the master a suspect, and once the sentinels name another,
/// the lane connects to it.
async fn serve(
    endpoint: Endpoint,
    options: Arc<RedisOptions>,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
    let mut manager: Option<(ConnectionManager, Via, u64)> = None;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (connection, via) = match &manager {
            Some((connection, via, generation)) if *generation == endpoint.generation() => {
                (connection.clone(), *via)
            }
            _ => {
                let connected = match endpoint.current() {
                    Ok((client, generation)) => connect_manager(client, &options)
                        .await
                        .map(|(connection, via)| (connection, via, generation)),
                    Err(error) => Err(error),
                };
                match connected {
                    Ok(connected) => {
                        let (connection, via, _) = manager.insert(connected);
                        (connection.clone(), *via)
                    }
                    Err(error) => {
                        endpoint.failed();
                        for job in batch {
                            let _ = job.done.send(Err(error.clone()));
                        }
                        return;
                    }
                }
            }
        };
        if let Err(error) = send_batch(connection, via, Arc::clone(&options), batch).await {
            endpoint.failed_with(&error);
        }
    }
}
