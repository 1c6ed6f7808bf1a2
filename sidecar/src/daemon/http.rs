// SPDX-License-Identifier: Apache-2.0
//! The sidecar's HTTP endpoints (hyper, HTTP/1 only, GET/HEAD only, no request bodies read):
//!
//! | path             | 200 when                                  | otherwise                         |
//! |------------------|-------------------------------------------|-----------------------------------|
//! | `/healthz`       | the loop's heartbeat is recent            | 503 with the reason               |
//! | `/readyz`        | probes are attached and the map is loaded | 503 with the reason               |
//! | `/metrics`       | always (Prometheus text 0.0.4)            |                                   |
//! | `/report/latest` | a report was signed                       | 404 before the first report       |
//!
//! Other paths are 404, other methods 405.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::metrics::{self, BpfStats, Metrics};

/// Media type of `/report/latest` (a Sigstore bundle v0.3).
pub use crate::attest::BUNDLE_MEDIA_TYPE;

/// Response header carrying the digest (`sha256:<hex>`) of the `/report/latest` body, the same digest
/// the report has as an OCI layer.
pub const DIGEST_HEADER: &str = "x-linkguard-report-digest";

/// Largest request head (request line + headers) accepted; larger ones get 431 from hyper. The
/// endpoints take no parameters, so a scraper or probe never comes close.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The latest signed report as served on `/report/latest`.
#[derive(Debug, Clone)]
pub struct LatestReport {
    /// The signed bundle bytes, exactly as pushed.
    pub bundle: Bytes,
    /// `sha256:<hex>` of `bundle`.
    pub digest: String,
}

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Time a client gets to send a request's headers.
    pub header_read_timeout: Duration,
    /// Longest life of one connection (bounds idle keep-alive and slow readers); after it the
    /// connection is closed gracefully (an in-flight response still gets `shutdown_grace`).
    pub connection_lifetime: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// After the shutdown signal (or a connection's lifetime), how long an open connection gets to
    /// finish its response.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(120),
            max_connections: 64,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// What the endpoints serve, shared (in an `Arc`) between the daemon loop and the server.
#[derive(Debug)]
pub struct State {
    metrics: Metrics,
    heartbeat_timeout: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    last_heartbeat: Instant,
    stopped: Option<String>,
    not_ready: Option<String>,
    latest: Option<LatestReport>,
}

impl State {
    /// New state: not ready ("starting"), alive until `heartbeat_timeout` passes without
    /// [`State::heartbeat`] (the clock starts now, so startup counts against it too).
    pub fn new(metrics: Metrics, heartbeat_timeout: Duration) -> Self {
        metrics.set_ready(false);
        Self {
            metrics,
            heartbeat_timeout,
            inner: Mutex::new(Inner {
                last_heartbeat: Instant::now(),
                stopped: None,
                not_ready: Some("starting".to_owned()),
                latest: None,
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data stays consistent field by field; a panic elsewhere must not take /healthz down.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The metrics served on `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The loop is alive: call at least once per `heartbeat_timeout`, including while waiting.
    pub fn heartbeat(&self) {
        self.inner().last_heartbeat = Instant::now();
    }

    /// The loop has ended (or is shutting down) for `reason`: `/healthz` answers 503 from now on.
    pub fn set_stopped(&self, reason: impl Into<String>) {
        self.inner().stopped = Some(reason.into());
    }

    /// Ready: probes attached and map loaded. Also sets `linkguard_ready` to 1.
    pub fn set_ready(&self) {
        self.inner().not_ready = None;
        self.metrics.set_ready(true);
    }

    /// Not ready because of `reason` (served as the `/readyz` body). Sets `linkguard_ready` to 0.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.inner().not_ready = Some(reason.into());
        self.metrics.set_ready(false);
    }

    /// `None` when ready, else the reason.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.inner().not_ready.clone()
    }

    /// `Ok(())` while alive, else the reason.
    pub fn liveness(&self) -> Result<(), String> {
        let inner = self.inner();
        if let Some(reason) = &inner.stopped {
            return Err(format!("stopped: {reason}"));
        }
        let silent = inner.last_heartbeat.elapsed();
        if silent > self.heartbeat_timeout {
            return Err(format!(
                "the daemon loop has not reported for {:.1} s (limit {:.1} s)",
                silent.as_secs_f64(),
                self.heartbeat_timeout.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Serves `bundle` on `/report/latest` from now on; returns its `sha256:<hex>` digest.
    pub fn set_latest_report(&self, bundle: impl Into<Bytes>) -> String {
        let bundle = bundle.into();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bundle)));
        self.inner().latest = Some(LatestReport {
            bundle,
            digest: digest.clone(),
        });
        digest
    }

    /// The report `/report/latest` serves.
    pub fn latest_report(&self) -> Option<LatestReport> {
        self.inner().latest.clone()
    }
}

/// Serves the endpoints on `listener` until `shutdown` completes, then stops accepting, lets open
/// connections finish their response (up to `options.shutdown_grace`) and returns. Works on a
/// current-thread runtime (connections are `tokio::spawn`ed). Returns an error only when accepting
/// fails in a way that does not recover (running out of descriptors or memory is waited out).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::{sync::Arc, time::Duration};
/// use linkguard::daemon::{http, metrics::Metrics};
/// let state = Arc::new(http::State::new(Metrics::default(), Duration::from_secs(30)));
/// let listener = http::bind("127.0.0.1:9464".parse()?).await?;
/// let (stop, mut stopped) = tokio::sync::watch::channel(false);
/// let server = tokio::spawn(http::serve(listener, state.clone(), http::ServerOptions::default(), async move {
///     let _ = stopped.wait_for(|s| *s).await;
/// }));
/// // ... the loop runs, calling state.heartbeat(), state.set_ready(), ...
/// let _ = stop.send(true);
/// let _ = server.await;
/// # Ok(()) }
/// ```
pub async fn serve<F>(
    listener: TcpListener,
    state: Arc<State>,
    options: ServerOptions,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut connections = JoinSet::new();
    // Logged when it starts and when it ends, not on every retry.
    let mut accept_failing = false;
    let result = loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break Ok(()),
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break Ok(()),
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if std::mem::take(&mut accept_failing) {
                    tracing::info!("http: accepting connections again");
                }
                connections.spawn(connection(
                    stream,
                    peer,
                    state.clone(),
                    options.clone(),
                    stop_rx.clone(),
                    permit,
                ));
            }
            Err(err) if transient_accept_error(&err) => {
                // EMFILE and friends: a busy loop would not free anything; wait a little.
                if !std::mem::replace(&mut accept_failing, true) {
                    tracing::warn!(error = %err, "http: accept failed, retrying every 100 ms");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => break Err(err),
        }
    };
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = connections.len(),
            "http: closing connections still open after the grace period"
        );
        connections.shutdown().await;
    }
    result
}

/// Accept errors that concern one connection or a passing shortage, not the listener.
fn transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    ) || matches!(
        err.raw_os_error(),
        Some(
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EPROTO | libc::EPERM
        )
    )
}

/// Serves one connection until the client closes it, its lifetime ends or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    options: ServerOptions,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&state, request.method(), request.uri().path());
        async move { Ok::<_, Infallible>(response) }
    });
    let mut conn = pin!(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout)
            .max_buf_size(2 * MAX_HEADER_BYTES)
            .max_header_size(MAX_HEADER_BYTES)
            .serve_connection(TokioIo::new(stream), service)
    );
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "http: connection ended with an error");
            }
            return;
        }
        _ = stop.wait_for(|stop| *stop) => {}
        () = tokio::time::sleep(options.connection_lifetime) => {}
    }
    // Finish the response in flight (if any), then close; never wait longer than the grace period.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(options.shutdown_grace, conn).await;
}

/// The response to `method path`. Bodies are never read: no endpoint takes one.
fn respond(state: &State, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if !matches!(path, "/healthz" | "/readyz" | "/metrics" | "/report/latest") {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "not found: {path}; the endpoints are /healthz, /readyz, /metrics and /report/latest\n"
            ),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed on {path}; use GET\n"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/healthz" => match state.liveness() {
            Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        "/readyz" => match state.not_ready_reason() {
            None => text(StatusCode::OK, "ready\n".to_owned()),
            Some(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        "/metrics" => {
            // Read at scrape time: the kernel's counters are the freshest source.
            state.metrics.set_bpf_stats(BpfStats::read_self());
            let body = state.metrics.render();
            with_type(
                Response::new(Full::new(Bytes::from(body))),
                metrics::CONTENT_TYPE,
            )
        }
        _ => match state.latest_report() {
            None => text(
                StatusCode::NOT_FOUND,
                "no report has been signed yet\n".to_owned(),
            ),
            Some(latest) => {
                let mut response =
                    with_type(Response::new(Full::new(latest.bundle)), BUNDLE_MEDIA_TYPE);
                if let Ok(digest) = HeaderValue::from_str(&latest.digest) {
                    response.headers_mut().insert(DIGEST_HEADER, digest);
                }
                if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", latest.digest)) {
                    response.headers_mut().insert(ETAG, etag);
                }
                response
            }
        },
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = with_type(
        Response::new(Full::new(Bytes::from(body))),
        "text/plain; charset=utf-8",
    );
    *response.status_mut() = status;
    response
}

fn with_type(
    mut response: Response<Full<Bytes>>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Health, metrics and the latest report change all the time: no proxy may serve a stale one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Binds `addr` (for example `0.0.0.0:9464`), naming the address in the error.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (http.listen / --listen): {e}"),
        )
    })
}

#[cfg(test)]
mod tests;
