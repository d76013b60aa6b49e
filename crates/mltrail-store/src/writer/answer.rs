//! How a request task waits for the writer's answer.
//!
//! Awaiting the answer parks the runtime worker when it has nothing else to do, and on this
//! 2-core VM (idle vCPUs halt without polling first) the wake-up after the writer answers took
//! 38-44 µs, measured from the writer's reply to the task running again. A client writing one
//! request at a time pays that on every request: a sixth of a durable `log_metric`. So a request
//! that is the only one waiting for the writer looks for its answer for a while, and awaits it
//! only after that. Between looks it yields to the runtime's other tasks and to other threads.
//! As soon as a second request waits too, the worker has other work and would not park, so both
//! simply await. The writer's own thread waits for its next request the same way
//! (`thread.rs`); the two cannot share code, as one is a task and the other a thread.

use crate::StoreError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot::{self, error::TryRecvError};

/// How long a lone request looks for its answer before it awaits it: longer than a durable
/// one-request commit (150-250 µs here), a general job's round trips to sqlx's thread (about
/// 600 µs for `log_param`) and a 1,000-value `log_batch` (about 1.3 ms).
const LOOK_FOR_ANSWER: Duration = Duration::from_millis(2);

/// The requests currently waiting for the writer.
#[derive(Default)]
pub(crate) struct Waiting {
    requests: AtomicUsize,
}

impl Waiting {
    /// Waits for `answer`; [`StoreError::Closed`] if the writer dropped it.
    pub(crate) async fn answer<T>(
        &self,
        mut answer: oneshot::Receiver<T>,
    ) -> Result<T, StoreError> {
        let _waiting = Waiter::enter(&self.requests);
        let until = Instant::now() + LOOK_FOR_ANSWER;
        while self.requests.load(Ordering::Relaxed) == 1 && Instant::now() < until {
            match answer.try_recv() {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Closed) => return Err(StoreError::Closed),
                Err(TryRecvError::Empty) => {
                    // Give the core away too: the writer may have been woken onto this worker's
                    // vCPU, and tokio's yield alone would keep it off until the look-out ends
                    // (the mlflow client, whose calls leave the writer time to park, lost half
                    // its rate that way, and a computing writer lost 10-30 %).
                    std::thread::yield_now();
                    tokio::task::yield_now().await
                }
            }
        }
        answer.await.map_err(|_| StoreError::Closed)
    }
}

/// Counts one waiting request for as long as it lives, so a request dropped while it waits
/// (its client went away) is no longer counted.
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn enter(requests: &'a AtomicUsize) -> Self {
        requests.fetch_add(1, Ordering::Relaxed);
        Waiter(requests)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn answer_later<T: Send + 'static>(value: T, after: Duration) -> oneshot::Receiver<T> {
        let (reply, answer) = oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let _ = reply.send(value);
        });
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_request_gets_its_answer_while_it_looks_and_after_it_stopped_looking() {
        let waiting = Waiting::default();
        let soon = waiting.answer(answer_later(1, Duration::from_micros(100)));
        assert_eq!(soon.await.expect("answered while looking"), 1);
        let late = waiting.answer(answer_later(2, LOOK_FOR_ANSWER * 3));
        assert_eq!(late.await.expect("answered after looking"), 2);
        assert_eq!(waiting.requests.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_answer() {
        let waiting = Arc::new(Waiting::default());
        let tasks: Vec<_> = (0..16u64)
            .map(|i| {
                let waiting = Arc::clone(&waiting);
                tokio::spawn(async move {
                    let answer = answer_later(i, Duration::from_micros(50 * i));
                    waiting.answer(answer).await
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.expect("task").expect("answer"), i as u64);
        }
        assert_eq!(waiting.requests.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_dropped_reply_is_a_closed_writer_and_a_dropped_request_is_no_longer_counted() {
        let waiting = Waiting::default();
        let (reply, answer) = oneshot::channel::<u8>();
        drop(reply);
        assert!(matches!(
            waiting.answer(answer).await,
            Err(StoreError::Closed)
        ));

        let (_reply, answer) = oneshot::channel::<u8>();
        let gave_up = tokio::time::timeout(LOOK_FOR_ANSWER * 3, waiting.answer(answer)).await;
        assert!(gave_up.is_err(), "no answer was sent");
        assert_eq!(waiting.requests.load(Ordering::Relaxed), 0);
    }
}
