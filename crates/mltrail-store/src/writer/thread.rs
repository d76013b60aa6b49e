//! The thread the writer runs on, and how it waits.
//!
//! A commit blocks for its fsync and for SQLite's work, so the writer has a thread of its own
//! rather than a runtime worker (on a worker it held up the request tasks queued there).
//! `Handle::block_on` would drive it, but it parks the thread as soon as the future is pending,
//! and on this 2-core VM a park and the wake-up after it cost more than what the writer waits
//! for: the next request of a client that writes one at a time (100-200 µs after an answer),
//! or sqlx's worker thread answering one statement of a general job. So this executor first
//! looks for the wake-up for a while, yielding its core, and parks only after that.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long the thread looks for a wake-up before it parks. Only a pending writer looks, and
/// an idle one parks after this once, so an idle server does not spin.
const LOOK_FOR_WAKE: Duration = Duration::from_micros(200);

/// Runs the future `start` makes to completion on a new thread named `name`, inside
/// `runtime`'s context (its I/O and timers are driven by the runtime's workers). The future is
/// made on that thread and never leaves it, so it need not be `Send` (the writer's jobs hold
/// futures of async closures, whose `Send`-ness cannot be named).
pub(crate) fn spawn<S, F>(
    name: &str,
    runtime: tokio::runtime::Handle,
    start: S,
) -> std::io::Result<JoinHandle<F::Output>>
where
    S: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _context = runtime.enter();
            drive(start())
        })
}

struct Signal {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        // Cheap when the thread is not parked: no system call.
        self.thread.unpark();
    }
}

fn drive<F: Future>(future: F) -> F::Output {
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = Waker::from(Arc::clone(&signal));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let until = Instant::now() + LOOK_FOR_WAKE;
        while !signal.woken.swap(false, Ordering::AcqRel) {
            if Instant::now() < until {
                std::thread::yield_now();
            } else {
                // An unpark that came first makes this return at once, so no wake is lost.
                std::thread::park();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wakes from other threads, before and after the look-out period, all reach the future.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pending_writer_is_woken_whether_it_looks_or_parks() {
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<u32>(4);
        let thread = spawn(
            "test-writer",
            tokio::runtime::Handle::current(),
            move || async move {
                let mut sum = 0;
                while let Some(n) = receiver.recv().await {
                    sum += n;
                }
                sum
            },
        )
        .expect("spawn");
        for (n, pause) in [(1, 0), (2, 50), (3, 1_000), (4, 20_000)] {
            tokio::time::sleep(Duration::from_micros(pause)).await;
            sender.send(n).await.expect("send");
        }
        drop(sender);
        let sum = tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join")
            .expect("writer");
        assert_eq!(sum, 10);
    }
}
