//! Requests in flight, answered oldest first.
//!
//! russh-sftp sends a request when its future is first polled and the future
//! then waits for the reply, so a request is "sent" by polling it once here
//! and kept until its turn comes. The replies arrive in the meantime and wait
//! in their futures.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

type Request<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

enum Slot<'a, T> {
    Waiting(Request<'a, T>),
    /// Finished on its first poll (typically refused before it was sent).
    Done(Option<T>),
}

/// An ordered queue of sent requests.
pub(super) struct InFlight<'a, T> {
    queue: VecDeque<Slot<'a, T>>,
}

impl<'a, T> InFlight<'a, T> {
    pub(super) fn new(capacity: usize) -> Self {
        InFlight { queue: VecDeque::with_capacity(capacity) }
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Sends `request` and queues it behind the others.
    pub(super) async fn push_back(&mut self, request: impl Future<Output = T> + Send + 'a) {
        let slot = send(Box::pin(request)).await;
        self.queue.push_back(slot);
    }

    /// Sends `request` and puts it first: its answer is wanted before the
    /// ones already queued (the rest of a short read).
    pub(super) async fn push_front(&mut self, request: impl Future<Output = T> + Send + 'a) {
        let slot = send(Box::pin(request)).await;
        self.queue.push_front(slot);
    }

    /// The oldest request's answer; `None` when nothing is in flight.
    ///
    /// Cancel-safe: when the wait is abandoned, the request stays first.
    pub(super) async fn next(&mut self) -> Option<T> {
        let result = match self.queue.front_mut()? {
            Slot::Waiting(request) => request.as_mut().await,
            Slot::Done(result) => result.take()?,
        };
        self.queue.pop_front();
        Some(result)
    }
}

/// Sends `first`, then `second`, without waiting in between, and waits for
/// both: two round trips' worth of latency in one.
pub(super) async fn both<A: Future, B: Future>(first: A, second: B) -> (A::Output, B::Output) {
    let (mut first, mut second) = (std::pin::pin!(first), std::pin::pin!(second));
    let (mut a, mut b) = (None, None);
    std::future::poll_fn(|cx| {
        // In this order on every poll, so the first poll sends `first` first.
        if a.is_none()
            && let Poll::Ready(out) = first.as_mut().poll(cx)
        {
            a = Some(out);
        }
        if b.is_none()
            && let Poll::Ready(out) = second.as_mut().poll(cx)
        {
            b = Some(out);
        }
        match (a.take(), b.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (left, right) => {
                (a, b) = (left, right);
                Poll::Pending
            }
        }
    })
    .await
}

/// Polls `request` once, which puts it on the wire.
async fn send<T>(mut request: Request<'_, T>) -> Slot<'_, T> {
    let first = std::future::poll_fn(|cx| {
        Poll::Ready(match request.as_mut().poll(cx) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        })
    })
    .await;
    match first {
        Some(result) => Slot::Done(Some(result)),
        None => Slot::Waiting(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn both_sends_in_order_and_waits_for_both() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (first, second) = (sent.clone(), sent.clone());
        let waiter = tokio::spawn(async move {
            both(
                async move {
                    first.lock().unwrap().push("first");
                    rx.await.unwrap();
                    1
                },
                async move {
                    second.lock().unwrap().push("second");
                    2
                },
            )
            .await
        });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        assert_eq!(waiter.await.unwrap(), (1, 2));
        assert_eq!(*sent.lock().unwrap(), ["first", "second"]);
    }

    #[tokio::test]
    async fn requests_go_out_at_once_and_answer_in_order() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut queue = InFlight::new(4);
        let log = sent.clone();
        queue
            .push_back(async move {
                log.lock().unwrap().push(1);
                rx.await.unwrap();
                1
            })
            .await;
        let log = sent.clone();
        queue
            .push_front(async move {
                log.lock().unwrap().push(0);
                0
            })
            .await;
        assert_eq!(*sent.lock().unwrap(), [1, 0], "both were polled when queued");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next().await, Some(0));
        tx.send(()).unwrap();
        assert_eq!(queue.next().await, Some(1));
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.next().await, None);
    }
}
