//! The single writer. SQLite allows one writer at a time; instead of letting request tasks fight
//! for the lock ("database is locked"), every mutation is sent here. The writer takes whatever
//! has queued up, runs each job under its own SAVEPOINT inside one transaction, commits once
//! (one fsync for the whole group) and only then answers each caller. A failing job rolls back
//! to its savepoint and does not disturb the others in its group.

use crate::audit::AuditHead;
use crate::{Backend, StoreError};
use futures::future::BoxFuture;
use mltrail_core::AuditEvent;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The connection a write job runs on, already inside the group's transaction.
pub type Tx = sqlx::AnyConnection;

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type JobFn = Box<
    dyn for<'c> FnOnce(&'c mut Tx, &'c mut AuditCtx) -> BoxFuture<'c, (bool, Completion)> + Send,
>;

enum Msg {
    Job { actor: String, run: JobFn },
    Shutdown(oneshot::Sender<()>),
}

/// Upper bound on jobs per transaction, so one commit never holds a huge backlog hostage.
const MAX_GROUP: usize = 512;

pub(crate) struct WriterHandle {
    sender: mpsc::Sender<Msg>,
    join: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Appends audit events for the job being run; the chain head carries across the jobs of a group.
pub struct AuditCtx {
    actor: String,
    head: AuditHead,
}

impl AuditCtx {
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Appends one event for `entity`, whose state digest is read back from the transaction,
    /// so the digest describes exactly what is being committed.
    pub async fn record(
        &mut self,
        tx: &mut Tx,
        action: &str,
        entity: &crate::audit::Entity,
    ) -> Result<(), StoreError> {
        let digest = crate::audit::state_digest(tx, entity).await?;
        self.append(tx, action, entity.kind(), &entity.id(), digest)
            .await
    }

    /// Appends an event whose state lives outside the database (an artifact's content digest).
    pub async fn record_external(
        &mut self,
        tx: &mut Tx,
        action: &str,
        kind: &str,
        id: &str,
        digest: Option<String>,
    ) -> Result<(), StoreError> {
        self.append(tx, action, kind, id, digest).await
    }

    async fn append(
        &mut self,
        tx: &mut Tx,
        action: &str,
        kind: &str,
        id: &str,
        digest: Option<String>,
    ) -> Result<(), StoreError> {
        let event = AuditEvent {
            seq: self.head.seq + 1,
            time: mltrail_core::now_millis(),
            actor: self.actor.clone(),
            action: action.to_string(),
            entity_type: kind.to_string(),
            entity_id: id.to_string(),
            state_digest: digest,
        };
        let hash = self.head.hash.next(&event);
        sqlx::query(
            "INSERT INTO audit_log (seq, time, actor, action, entity_type, entity_id, state_digest, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.seq)
        .bind(event.time)
        .bind(event.actor)
        .bind(event.action)
        .bind(event.entity_type)
        .bind(event.entity_id)
        .bind(event.state_digest)
        .bind(hash.to_hex())
        .execute(&mut *tx)
        .await?;
        self.head = AuditHead {
            seq: event.seq,
            hash,
        };
        Ok(())
    }
}

impl WriterHandle {
    pub(crate) async fn start(mut conn: Tx, backend: Backend) -> Result<Self, StoreError> {
        let head = crate::audit::load_head(&mut conn).await?;
        let (sender, receiver) = mpsc::channel(4096);
        let join = tokio::spawn(run(conn, backend, receiver, head));
        Ok(WriterHandle {
            sender,
            join: Mutex::new(Some(join)),
        })
    }

    pub(crate) async fn submit<T, F>(&self, actor: String, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx, &'c mut AuditCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, StoreError>>();
        let run: JobFn = Box::new(move |tx, audit| {
            Box::pin(async move {
                let result = job(tx, audit).await;
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let _ = reply.send(match commit {
                        Ok(()) => result,
                        Err(e) => result.and(Err(e)),
                    });
                });
                (ok, completion)
            })
        });
        self.sender
            .send(Msg::Job { actor, run })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Msg::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        if let Some(join) = self.join.lock().await.take() {
            let _ = join.await;
        }
    }
}

async fn exec(conn: &mut Tx, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(StoreError::from)
}

async fn run(mut conn: Tx, backend: Backend, mut receiver: mpsc::Receiver<Msg>, head: AuditHead) {
    let mut audit = AuditCtx {
        actor: String::new(),
        head,
    };
    let begin = match backend {
        // IMMEDIATE takes the write lock up front, so a reader upgrading can never deadlock us.
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut stop: Option<oneshot::Sender<()>> = None;
    while stop.is_none() {
        let Some(first) = receiver.recv().await else {
            break;
        };
        let mut group = Vec::new();
        let mut push = |msg: Msg, group: &mut Vec<(String, JobFn)>| match msg {
            Msg::Job { actor, run } => group.push((actor, run)),
            Msg::Shutdown(done) => stop = Some(done),
        };
        push(first, &mut group);
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(msg) => push(msg, &mut group),
                Err(_) => break,
            }
        }
        if group.is_empty() {
            continue;
        }
        let committed_head = audit.head;
        let mut completions = Vec::with_capacity(group.len());
        let outcome = run_group(&mut conn, begin, &mut audit, group, &mut completions).await;
        let outcome = match outcome {
            Ok(()) => exec(&mut conn, "COMMIT").await,
            Err(e) => Err(e),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "write group failed; rolling back");
            let _ = exec(&mut conn, "ROLLBACK").await;
            audit.head = committed_head;
        }
        for completion in completions {
            completion(outcome.clone());
        }
    }
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

async fn run_group(
    conn: &mut Tx,
    begin: &'static str,
    audit: &mut AuditCtx,
    group: Vec<(String, JobFn)>,
    completions: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    let mut jobs = group.into_iter();
    if let Err(e) = exec(conn, begin).await {
        // Nothing ran; dropping the jobs drops their reply senders and callers see an error.
        drop(jobs);
        return Err(e);
    }
    for (actor, job) in jobs.by_ref() {
        audit.actor = actor;
        let before = audit.head;
        exec(conn, "SAVEPOINT job").await?;
        let (ok, completion) = job(conn, audit).await;
        completions.push(completion);
        if ok {
            exec(conn, "RELEASE SAVEPOINT job").await?;
        } else {
            exec(conn, "ROLLBACK TO SAVEPOINT job").await?;
            exec(conn, "RELEASE SAVEPOINT job").await?;
            audit.head = before;
        }
    }
    Ok(())
}
