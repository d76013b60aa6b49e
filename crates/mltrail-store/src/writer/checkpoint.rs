//! WAL checkpoints off the commit path. SQLite's default checkpoints inside whichever commit
//! pushes the WAL past 1,000 pages, so that request also pays for copying pages into the
//! database file and fsyncing it (a quarter of a 1,000-value `log_batch`). The writer
//! connections turn that off; this task checkpoints on its own connection instead, passively
//! (never blocking writers) every interval. Only a writer can start the WAL over, so the
//! writer bounds its size itself (`NativeWriter::bound_wal`), with little left to copy after
//! this task. Commits stay as durable as before: each one still fsyncs the WAL.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::StoreError;

const INTERVAL: Duration = Duration::from_millis(200);

pub(crate) struct Checkpointer {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Checkpointer {
    /// `url` is the writer's `sqlite://` URL.
    pub(crate) async fn start(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?.disable_statement_logging();
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stopped.changed() => break,
                }
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
            }
            // Leave the database file complete and the WAL empty for whoever opens it next.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await
            {
                tracing::warn!(error = %e, "final WAL checkpoint failed");
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer { stop, task })
    }

    /// Runs a last checkpoint and closes the connection.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
