//! The layer both servers authenticate with: a [`Guard`] decides most requests from memory
//! (a cached credential), and those pass straight to the router's own future; only a miss or
//! a refusal allocates a future of its own.
//!
//! Hand-written rather than `axum::middleware::from_fn`, which per request boxes a clone of the
//! inner service into its `Next` and boxes the middleware's future: with it, auth on cost 4 % of
//! log-metric throughput (c64) and 6 % of 1-row scoring (c16) against a bar of 3 %
//! (docs/benchmarks.md, "Authentication").

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, Either};
use tower::ServiceExt;

/// What a guard decides from memory alone.
pub enum Fast {
    /// Let it through (the guard has added what handlers need to the request).
    Pass,
    /// Answer this instead.
    Refuse(Response),
    /// The credentials must be checked ([`Guard::slow`]).
    Check,
}

/// How one server decides who may send a request.
pub trait Guard: Clone + Send + Sync + 'static {
    /// Decides from memory (the credential cache), without awaiting.
    fn fast(&self, request: &mut Request) -> Fast;

    /// Checks the credentials and the request; the request to pass on, or the answer.
    fn slow(self, request: Request) -> BoxFuture<'static, Result<Request, Response>>;
}

/// `Router::layer(GuardLayer(guard))`.
#[derive(Clone)]
pub struct GuardLayer<G>(pub G);

impl<S, G: Clone> tower::Layer<S> for GuardLayer<G> {
    type Service = Guarded<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            guard: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guarded<S, G> {
    inner: S,
    guard: G,
}

impl<S, G> tower::Service<Request> for Guarded<S, G>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    G: Guard,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.guard.fast(&mut request) {
            Fast::Pass => Either::Left(self.inner.call(request)),
            Fast::Refuse(response) => Either::Right(Box::pin(async move { Ok(response) })),
            Fast::Check => {
                // The service made ready by poll_ready serves this request; a fresh clone
                // stays for the next (tower's rule for services used after an await).
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                let guard = self.guard.clone();
                Either::Right(Box::pin(async move {
                    match guard.slow(request).await {
                        Ok(request) => ready.oneshot(request).await,
                        Err(response) => Ok(response),
                    }
                }))
            }
        }
    }
}
