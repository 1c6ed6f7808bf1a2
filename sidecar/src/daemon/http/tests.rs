// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the HTTP endpoints against a server on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;

/// A server on 127.0.0.1:0 and the means to stop it.
struct Running {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    server: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start(heartbeat_timeout: Duration, options: ServerOptions) -> Self {
        let state = Arc::new(State::new(Metrics::new("9.9.9"), heartbeat_timeout));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let server = tokio::spawn(serve(listener, state.clone(), options, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Self {
            addr,
            state,
            stop,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and waits (bounded) for `serve` to return.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("serve returns after the shutdown signal")
            .unwrap()
            .unwrap();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn health_and_readiness_follow_the_state() {
    let server = Running::start(Duration::from_secs(60), ServerOptions::default()).await;
    let client = client();
    assert_eq!(
        get(&client, &server.url("/healthz")).await,
        (200, "text/plain; charset=utf-8".into(), "ok\n".into())
    );

    let (status, _, body) = get(&client, &server.url("/readyz")).await;
    assert_eq!((status, body.as_str()), (503, "not ready: starting\n"));
    server
        .state
        .set_not_ready("attaching probes: 3 of 10 files");
    let (status, _, body) = get(&client, &server.url("/readyz")).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: attaching probes: 3 of 10 files\n")
    );
    let (_, _, metrics) = get(&client, &server.url("/metrics")).await;
    assert!(metrics.contains("\nlinkguard_ready 0\n"), "{metrics}");

    server.state.set_ready();
    let (status, _, body) = get(&client, &server.url("/readyz")).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (_, _, metrics) = get(&client, &server.url("/metrics")).await;
    assert!(metrics.contains("\nlinkguard_ready 1\n"), "{metrics}");

    server.state.set_stopped("SIGTERM received");
    let (status, _, body) = get(&client, &server.url("/healthz")).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "stopped: SIGTERM received\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn healthz_fails_once_the_heartbeat_is_stale() {
    let server = Running::start(Duration::from_millis(200), ServerOptions::default()).await;
    let client = client();
    assert_eq!(get(&client, &server.url("/healthz")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = get(&client, &server.url("/healthz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("the daemon loop has not reported for "),
        "{body}"
    );
    assert!(body.contains("(limit 0.2 s)"), "{body}");
    server.state.heartbeat();
    assert_eq!(get(&client, &server.url("/healthz")).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = Running::start(Duration::from_secs(60), ServerOptions::default()).await;
    server.state.metrics().set_observation_rate(0.5);
    server.state.metrics().inc_reports_pushed();
    let (status, content_type, body) = get(&client(), &server.url("/metrics?debug=1")).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        body.contains("# TYPE linkguard_observation_rate gauge\nlinkguard_observation_rate 0.5\n"),
        "{body}"
    );
    assert!(
        body.contains("linkguard_reports_pushed_total 1\n"),
        "{body}"
    );
    assert!(
        body.contains("linkguard_build_info{version=\"9.9.9\"} 1\n"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn latest_report_is_404_until_one_is_signed_then_the_exact_bundle() {
    let server = Running::start(Duration::from_secs(60), ServerOptions::default()).await;
    let client = client();
    let (status, _, body) = get(&client, &server.url("/report/latest")).await;
    assert_eq!(
        (status, body.as_str()),
        (404, "no report has been signed yet\n")
    );

    let bundle =
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{}}"#;
    let digest = server.state.set_latest_report(bundle.to_vec());
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(Sha256::digest(bundle)))
    );
    let response = client
        .get(server.url("/report/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], BUNDLE_MEDIA_TYPE);
    assert_eq!(response.headers()[DIGEST_HEADER], digest.as_str());
    assert_eq!(response.headers()["etag"], format!("\"{digest}\"").as_str());
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..], &bundle[..]);
    // The served digest is the digest of the served bytes.
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        digest
    );

    let newer = server
        .state
        .set_latest_report(Bytes::from_static(b"{\"second\":true}"));
    let response = client
        .get(server.url("/report/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[DIGEST_HEADER], newer.as_str());
    assert_eq!(&response.bytes().await.unwrap()[..], b"{\"second\":true}");
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let server = Running::start(Duration::from_secs(60), ServerOptions::default()).await;
    let client = client();
    for path in ["/", "/health", "/metrics/", "/report", "/report/latest/x"] {
        let (status, _, body) = get(&client, &server.url(path)).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            body.contains("/healthz, /readyz, /metrics and /report/latest"),
            "{body}"
        );
    }
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = client
            .request(method.clone(), server.url("/metrics"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }
    let response = client.head(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "HEAD has no body"
    );
    server.stop().await;
}

/// Sends raw bytes on a fresh connection and reads until the server closes it (bounded).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection; got so far: {reply:?}"
    );
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn request_bodies_are_not_waited_for_and_heads_are_bounded() {
    let options = ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = Running::start(Duration::from_secs(60), options).await;
    // A promised 1 GB body that never comes: the 405 is sent anyway, and the connection closed.
    let reply = raw_exchange(
        server.addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\nabc",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    // An oversized request head is refused.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let reply = raw_exchange(server.addr, huge.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    // A client that never finishes its headers is disconnected.
    let reply = raw_exchange(server.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
    assert!(!reply.contains("200 OK"), "{reply}");
    // And the server still serves.
    let reply = raw_exchange(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200 OK\r\n") && reply.ends_with("\r\n\r\nok\n"),
        "{reply}"
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_the_listener() {
    let server = Running::start(Duration::from_secs(60), ServerOptions::default()).await;
    let addr = server.addr;
    // An idle keep-alive connection (after one request) must not hold the shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 15];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK");
    server.stop().await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the idle connection is closed by the shutdown"
    );
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "nothing listens after the shutdown");
}

#[tokio::test]
async fn connections_end_after_their_lifetime() {
    let options = ServerOptions {
        connection_lifetime: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = Running::start(Duration::from_secs(60), options).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    assert!(
        closed.is_ok(),
        "a keep-alive connection is closed after its lifetime"
    );
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200 OK"));
    server.stop().await;
}

#[test]
fn bind_names_the_address_on_failure() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string()
                .contains(&format!("cannot listen on {addr}")),
            "{err}"
        );
    });
}
