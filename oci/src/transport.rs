// SPDX-License-Identifier: Apache-2.0
//! Transport policy: which registries may use plain HTTP, timeouts, and retries.
//!
//! Retries use exponential backoff with full jitter (a uniformly random delay in
//! `[0, min(max_delay, initial_delay * 2^n)]`, as in the AWS architecture blog "Exponential
//! Backoff and Jitter"), bounded by a number of attempts and a total time. Only failures that
//! can succeed later are retried: network errors, 429 and 5xx. A `Retry-After` (RFC 9110
//! section 10.2.3: delay-seconds or an HTTP-date) replaces the computed delay when known.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::auth::AuthError;
use crate::auth::dockerconfig::normalize_registry;

/// Registries that may be reached over plain HTTP.
///
/// An entry `host:port` allows exactly that address; an entry `host` allows every port of that host.
/// Loopback registries (`127.0.0.1`, `::1`, `localhost`) are allowed unless
/// [`InsecurePolicy::without_loopback`] is used: traffic to them never leaves the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsecurePolicy {
    registries: BTreeSet<String>,
    allow_loopback: bool,
}

impl Default for InsecurePolicy {
    fn default() -> Self {
        Self {
            registries: BTreeSet::new(),
            allow_loopback: true,
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `host` and `[v6]` into the host (brackets removed) and the port.
fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (registry, None),
    }
}

impl InsecurePolicy {
    /// The user's list of insecure registries (e.g. from `--insecure-registry`), plus loopback.
    pub fn new<S: AsRef<str>>(registries: impl IntoIterator<Item = S>) -> Result<Self, AuthError> {
        let registries = registries
            .into_iter()
            .map(|entry| {
                let entry = entry.as_ref();
                let normalized = normalize_registry(entry);
                let (host, port) = split_host_port(&normalized);
                let port_ok =
                    port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                if host.is_empty() || !port_ok || host.contains(char::is_whitespace) {
                    return Err(AuthError::InvalidRegistry {
                        entry: entry.to_owned(),
                    });
                }
                Ok(normalized)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            registries,
            allow_loopback: true,
        })
    }

    /// Requires TLS for loopback registries too, unless listed.
    pub fn without_loopback(mut self) -> Self {
        self.allow_loopback = false;
        self
    }

    /// Whether `registry` (as oci-client's `Reference::resolve_registry` gives it) may use HTTP.
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        let normalized = normalize_registry(registry);
        let (host, _) = split_host_port(&normalized);
        if self.allow_loopback && matches!(host, "127.0.0.1" | "::1" | "localhost") {
            return true;
        }
        self.registries.contains(&normalized)
            || self
                .registries
                .iter()
                .any(|entry| split_host_port(entry) == (host, None))
    }

    /// oci-client's protocol setting for a client that will talk to `registries`.
    ///
    /// oci-client compares the registry string exactly (`ClientProtocol::scheme_for`), so a
    /// host-only entry or the loopback default can only be expressed by listing the concrete
    /// `host:port` addresses the client will use.
    pub fn client_protocol(&self, registries: &[&str]) -> ClientProtocol {
        let plain: Vec<String> = registries
            .iter()
            .filter(|r| self.allows_plain_http(r))
            .map(|r| (*r).to_owned())
            .collect();
        ClientProtocol::HttpsExcept(plain)
    }
}

/// Timeouts and the insecure policy for one oci-client `Client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Plain-HTTP registries.
    pub insecure: InsecurePolicy,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Maximum time between two reads of a response.
    pub read_timeout: Duration,
}

impl Default for TransportConfig {
    /// Loopback-only plain HTTP, 10 s connect, 60 s read.
    fn default() -> Self {
        Self {
            insecure: InsecurePolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl TransportConfig {
    /// oci-client's configuration for a client that will talk to `registries`.
    pub fn client_config(&self, registries: &[&str]) -> ClientConfig {
        ClientConfig {
            protocol: self.insecure.client_protocol(registries),
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            ..ClientConfig::default()
        }
    }
}

/// Whether a failed operation may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Transient: retry, after the server's `Retry-After` when it gave one.
    Transient {
        /// The server's requested delay.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way again (4xx other than 429, bad data, refused credentials).
    Permanent,
}

/// Errors that know whether they are worth retrying.
pub trait Retryable {
    /// How to treat this error.
    fn retry_class(&self) -> RetryClass;
}

/// Classifies an HTTP status with its `Retry-After` header value, if any.
pub fn classify_status(status: u16, retry_after: Option<&str>, now: SystemTime) -> RetryClass {
    if status == 429 || (500..=599).contains(&status) {
        RetryClass::Transient {
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        }
    } else {
        RetryClass::Permanent
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classifies a reqwest failure: connect errors, timeouts, and requests or bodies cut off by the
/// peer (a registry restarting, a reset connection) are transient; a status error follows
/// [`classify_status`]; anything else (a malformed URL, a redirect loop, a bad header) is permanent.
pub fn classify_reqwest(error: &reqwest::Error) -> RetryClass {
    match error.status() {
        Some(status) => classify_status(status.as_u16(), None, SystemTime::now()),
        None if error.is_timeout()
            || error.is_connect()
            || error.is_request()
            || error.is_body() =>
        {
            RetryClass::Transient { retry_after: None }
        }
        None => RetryClass::Permanent,
    }
}

impl Retryable for OciDistributionError {
    /// oci-client's errors carry the status but not the headers, so `Retry-After` is unknown here.
    fn retry_class(&self) -> RetryClass {
        let transient = RetryClass::Transient { retry_after: None };
        match self {
            Self::RequestError(e) => classify_reqwest(e),
            Self::ServerError { code, .. } => classify_status(*code, None, SystemTime::now()),
            Self::RegistryError { envelope, .. } => {
                if envelope
                    .errors
                    .iter()
                    .any(|e| e.code == OciErrorCode::Toomanyrequests)
                {
                    transient
                } else {
                    RetryClass::Permanent
                }
            }
            Self::IoError(e) => {
                use std::io::ErrorKind as K;
                match e.kind() {
                    K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::UnexpectedEof
                    | K::Interrupted => transient,
                    _ => RetryClass::Permanent,
                }
            }
            _ => RetryClass::Permanent,
        }
    }
}

/// Bounds and shape of the retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Upper bound of the first delay.
    pub initial_delay: Duration,
    /// Upper bound of any computed delay.
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt, and no wait crosses it.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling up to 10 s, 60 s in total.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based) with `unit` uniform in `[0, 1)`, or `None`
    /// when the error is permanent, the attempts are used up, or the wait would end past the
    /// total time budget (`elapsed` is the time since the first attempt started).
    pub fn next_delay(
        &self,
        retry: u32,
        class: RetryClass,
        elapsed: Duration,
        unit: f64,
    ) -> Option<Duration> {
        let RetryClass::Transient { retry_after } = class else {
            return None;
        };
        if retry.saturating_add(1) >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(after) => after,
            None => {
                let cap = self
                    .initial_delay
                    .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
                    .unwrap_or(self.max_delay)
                    .min(self.max_delay);
                cap.mul_f64(unit.clamp(0.0, 1.0))
            }
        };
        (elapsed.saturating_add(delay) <= self.max_total).then_some(delay)
    }

    /// Runs `op` until it succeeds, fails permanently, or the policy gives up; returns the last error.
    pub async fn retry<T, E, F, Fut>(&self, what: &str, op: F) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry_with(what, op, fastrand::f64, tokio::time::sleep)
            .await
    }

    /// [`RetryPolicy::retry`] with the randomness and the sleep injected (for tests).
    pub async fn retry_with<T, E, F, Fut, R, S, SFut>(
        &self,
        what: &str,
        mut op: F,
        mut unit: R,
        mut sleep: S,
    ) -> Result<T, E>
    where
        E: Retryable + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        R: FnMut() -> f64,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let class = error.retry_class();
            let Some(delay) = self.next_delay(retry, class, started.elapsed(), unit()) else {
                if class != RetryClass::Permanent {
                    tracing::warn!(what, attempts = retry + 1, %error, "giving up after transient failures");
                }
                return Err(error);
            };
            tracing::debug!(what, attempt = retry + 1, ?delay, %error, "transient failure, retrying");
            sleep(delay).await;
            retry += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const T: RetryClass = RetryClass::Transient { retry_after: None };

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_total: Duration::from_secs(30),
        }
    }

    #[test]
    fn schedule_is_full_jitter_exponential_and_capped() {
        let p = policy();
        let caps: Vec<_> = (0..5)
            .map(|n| p.next_delay(n, T, Duration::ZERO, 1.0))
            .collect();
        let ms = |v: u64| Some(Duration::from_millis(v));
        assert_eq!(caps, vec![ms(100), ms(200), ms(400), ms(800), ms(1000)]);
        assert_eq!(p.next_delay(2, T, Duration::ZERO, 0.5), ms(200));
        assert_eq!(p.next_delay(2, T, Duration::ZERO, 0.0), ms(0));
        assert_eq!(
            p.next_delay(5, T, Duration::ZERO, 1.0),
            None,
            "6 attempts = 5 retries"
        );
        assert_eq!(p.next_delay(40, T, Duration::ZERO, 1.0), None);
        let huge = RetryPolicy {
            max_attempts: 100,
            ..p
        };
        assert_eq!(
            huge.next_delay(63, T, Duration::ZERO, 1.0),
            ms(1000),
            "no overflow at high retry counts"
        );
    }

    #[test]
    fn schedule_respects_total_budget_and_retry_after() {
        let p = policy();
        assert_eq!(p.next_delay(0, T, Duration::from_millis(29_950), 1.0), None);
        assert_eq!(
            p.next_delay(0, T, Duration::from_millis(29_900), 1.0),
            Some(Duration::from_millis(100))
        );
        let after = |s| RetryClass::Transient {
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            p.next_delay(0, after(7), Duration::ZERO, 0.0),
            Some(Duration::from_secs(7)),
            "Retry-After beats jitter and max_delay"
        );
        assert_eq!(
            p.next_delay(0, after(31), Duration::ZERO, 0.0),
            None,
            "a Retry-After past the budget gives up"
        );
        assert_eq!(
            p.next_delay(0, RetryClass::Permanent, Duration::ZERO, 0.5),
            None
        );
    }

    #[test]
    fn classifies_statuses_and_retry_after() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let after = |s| RetryClass::Transient {
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(classify_status(429, Some("120"), now), after(120));
        assert_eq!(
            classify_status(503, Some("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            after(30)
        );
        assert_eq!(
            classify_status(503, Some("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            after(0),
            "a past date means now"
        );
        assert_eq!(
            classify_status(502, Some("soon"), now),
            T,
            "garbage Retry-After is ignored, not fatal"
        );
        assert_eq!(classify_status(500, None, now), T);
        for status in [400, 401, 403, 404, 405, 409, 413] {
            assert_eq!(
                classify_status(status, Some("1"), now),
                RetryClass::Permanent,
                "{status}"
            );
        }
    }

    #[test]
    fn classifies_oci_client_errors() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: String::new(),
            message: String::new(),
        };
        assert_eq!(server(503).retry_class(), T);
        assert_eq!(server(429).retry_class(), T);
        assert_eq!(server(404).retry_class(), RetryClass::Permanent);
        assert_eq!(
            OciDistributionError::UnauthorizedError { url: String::new() }.retry_class(),
            RetryClass::Permanent
        );
        let envelope = |code: &str| OciDistributionError::RegistryError {
            envelope: serde_json::from_str(&format!(r#"{{"errors":[{{"code":"{code}"}}]}}"#))
                .unwrap(),
            url: String::new(),
        };
        assert_eq!(envelope("TOOMANYREQUESTS").retry_class(), T);
        assert_eq!(envelope("DENIED").retry_class(), RetryClass::Permanent);
        let io = |kind| OciDistributionError::IoError(std::io::Error::from(kind));
        assert_eq!(io(std::io::ErrorKind::ConnectionReset).retry_class(), T);
        assert_eq!(
            io(std::io::ErrorKind::PermissionDenied).retry_class(),
            RetryClass::Permanent
        );
    }

    #[tokio::test]
    async fn network_errors_from_reqwest_are_transient() {
        // Nothing listens on a port we just released: a real connect error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(OciDistributionError::RequestError(err).retry_class(), T);
    }

    #[derive(Debug)]
    struct Fail(RetryClass);
    impl std::fmt::Display for Fail {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Retryable for Fail {
        fn retry_class(&self) -> RetryClass {
            self.0
        }
    }

    #[tokio::test]
    async fn retry_loop_sleeps_the_schedule_then_succeeds() {
        let slept = RefCell::new(Vec::new());
        let calls = RefCell::new(0);
        let result = policy()
            .retry_with(
                "test",
                || {
                    *calls.borrow_mut() += 1;
                    let n = *calls.borrow();
                    async move { if n < 4 { Err(Fail(T)) } else { Ok(n) } }
                },
                || 0.5,
                |d| {
                    slept.borrow_mut().push(d);
                    async {}
                },
            )
            .await;
        assert_eq!(result.unwrap(), 4);
        let ms: Vec<u128> = slept.borrow().iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![50, 100, 200]);
    }

    #[tokio::test]
    async fn retry_loop_stops_on_permanent_and_after_max_attempts() {
        let calls = RefCell::new(0);
        let result: Result<(), _> = policy()
            .retry_with(
                "test",
                || {
                    *calls.borrow_mut() += 1;
                    async { Err(Fail(RetryClass::Permanent)) }
                },
                || 0.5,
                |_| async {},
            )
            .await;
        assert!(result.is_err());
        assert_eq!(*calls.borrow(), 1, "a 4xx is never retried");

        *calls.borrow_mut() = 0;
        let result: Result<(), _> = policy()
            .retry_with(
                "test",
                || {
                    *calls.borrow_mut() += 1;
                    async { Err(Fail(T)) }
                },
                || 0.5,
                |_| async {},
            )
            .await;
        assert!(result.is_err());
        assert_eq!(*calls.borrow(), 6);
    }

    #[test]
    fn insecure_policy() {
        let p = InsecurePolicy::new(["reg.example:5000", "http://plain.example", "[fd00::1]:5000"])
            .unwrap();
        for yes in [
            "127.0.0.1:5000",
            "localhost:1234",
            "[::1]:5000",
            "localhost",
            "reg.example:5000",
            "plain.example:8080",
            "plain.example",
            "[fd00::1]:5000",
        ] {
            assert!(p.allows_plain_http(yes), "{yes}");
        }
        for no in [
            "reg.example",
            "reg.example:5001",
            "127.0.0.2:5000",
            "docker.io",
            "evil.localhost:5000",
            "[fd00::1]:5001",
        ] {
            assert!(!p.allows_plain_http(no), "{no}");
        }
        let strict = InsecurePolicy::default().without_loopback();
        assert!(!strict.allows_plain_http("127.0.0.1:5000"));
        assert_eq!(
            p.client_protocol(&["127.0.0.1:5000", "ghcr.io", "reg.example:5000"]),
            ClientProtocol::HttpsExcept(vec!["127.0.0.1:5000".into(), "reg.example:5000".into()])
        );
        for bad in ["", "host:port", "a b:1", "host:"] {
            let err = InsecurePolicy::new([bad]).unwrap_err().to_string();
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
    }

    #[test]
    fn client_config_carries_timeouts_and_protocol() {
        let t = TransportConfig::default();
        let c = t.client_config(&["127.0.0.1:5000"]);
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.read_timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            c.protocol,
            ClientProtocol::HttpsExcept(vec!["127.0.0.1:5000".into()])
        );
    }
}
