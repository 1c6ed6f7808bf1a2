// SPDX-License-Identifier: Apache-2.0
//! One registry request from start to end: the credentials of its registry and access (pull or
//! push), the `WWW-Authenticate` challenge answered, transient failures retried; and the write
//! primitives built on it (blob existence, blob upload, manifest PUT).
//!
//! A 401 is answered once per request with the credentials resolved for the registry: HTTP basic,
//! or a token from the bearer challenge's realm (distribution "Token Authentication
//! Specification"), cached per registry, repository and access until it expires. A second 401, or
//! a 403, is a refusal that names the credential source. 429 and 5xx replies and network errors
//! are retried per the client's [`RetryPolicy`], after the server's `Retry-After` when it sent one;
//! every other status goes to the caller, which decides what it means.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use reqwest::header::{self, HeaderValue};
use reqwest::{Method, Response};
use tracing::debug;

use super::{Client, access_of};
use crate::auth::challenge::{Challenge, TokenResponse, parse_challenge};
use crate::auth::{Access, Credentials, ResolvedCredentials};
use crate::error::{Error, Result, Site};
use crate::reference::{Digest, Reference};
use crate::transport::{
    RetryClass, RetryPolicy, classify_reqwest, classify_status, parse_retry_after,
};

/// Largest error reply or token answer read.
const SMALL_REPLY_LIMIT: u64 = 64 * 1024;

/// One request, replayable: the body is shared, not consumed, by each attempt.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    method: Method,
    url: &'a str,
    access: Access,
    accept: Option<&'a str>,
    body: Option<(&'a str, Bytes)>,
}

impl<'a> Call<'a> {
    /// A request without a body, made with the `access` credentials.
    pub(crate) fn new(method: Method, url: &'a str, access: Access) -> Self {
        Self {
            method,
            url,
            access,
            accept: None,
            body: None,
        }
    }

    /// Sets `Accept`.
    pub(crate) fn accept(mut self, accept: &'a str) -> Self {
        self.accept = Some(accept);
        self
    }

    /// Sets the body and its `Content-Type`.
    pub(crate) fn body(mut self, content_type: &'a str, body: Bytes) -> Self {
        self.body = Some((content_type, body));
        self
    }
}

/// The slowest upload rate tolerated before an upload counts as stalled.
const MIN_UPLOAD_BYTES_PER_SECOND: u64 = 128 * 1024;

/// Time allowed for sending `len` bytes and getting the reply: the read timeout, plus the body at
/// [`MIN_UPLOAD_BYTES_PER_SECOND`].
fn upload_deadline(read_timeout: Duration, len: usize) -> Duration {
    read_timeout.saturating_add(Duration::from_secs(
        (len as u64).div_ceil(MIN_UPLOAD_BYTES_PER_SECOND),
    ))
}

/// How to treat a failed attempt.
pub(crate) fn error_class(error: &Error) -> RetryClass {
    match error {
        Error::Http { source, .. } => classify_reqwest(source),
        Error::UnexpectedStatus { status, .. } => classify_status(*status, None, SystemTime::now()),
        Error::Rejected {
            status,
            retry_after,
            ..
        } => match classify_status(*status, None, SystemTime::now()) {
            RetryClass::Transient { .. } => RetryClass::Transient {
                retry_after: *retry_after,
            },
            RetryClass::Permanent => RetryClass::Permanent,
        },
        _ => RetryClass::Permanent,
    }
}

/// `error`, or when more than one attempt was made, `error` wrapped with the attempt count.
fn gave_up(error: Error, attempts: u32, started: Instant) -> Error {
    if attempts > 1 {
        Error::RetriesExhausted {
            attempts,
            elapsed: started.elapsed(),
            source: Box::new(error),
        }
    } else {
        error
    }
}

/// The reply's `Content-Type`, without parameters, lower case.
pub(crate) fn content_type(resp: &Response) -> Option<String> {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
}

/// Reads the body, failing as soon as it passes `limit` bytes (nothing beyond it is buffered).
pub(crate) async fn read_limited(
    site: &Site,
    url: &str,
    mut resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge {
        site: Box::new(site.clone()),
        what: what.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|source| Error::Http {
            site: Box::new(site.clone()),
            url: url.to_owned(),
            source,
        })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
}

/// The registry's reason for an error reply: its error envelope's codes and messages
/// (distribution spec "Error Codes"), else the start of the body.
async fn error_detail(resp: Response) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() as u64 >= SMALL_REPLY_LIMIT {
            break;
        }
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(&body)
        && !envelope.errors.is_empty()
    {
        return envelope
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match text.trim() {
        "" => "(no reason given)".to_owned(),
        text => text.to_owned(),
    }
}

/// An error reply the caller cannot use, with the registry's reason and `Retry-After`.
pub(crate) async fn rejected(site: &Site, url: &str, resp: Response) -> Error {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    Error::Rejected {
        site: Box::new(site.clone()),
        url: url.to_owned(),
        status,
        detail: error_detail(resp).await,
        retry_after,
    }
}

impl Client {
    /// Sends `call` for `site` until it gets a reply that `read` accepts, a permanent failure, or
    /// `policy` gives up. 401 and 403 never reach `read`; neither do 429 and 5xx, which are retried.
    pub(crate) async fn send_and_read<T, F, Fut>(
        &self,
        site: &Site,
        call: &Call<'_>,
        policy: RetryPolicy,
        mut read: F,
    ) -> Result<T>
    where
        F: FnMut(Response) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let credentials = self.resolved(site, call.access)?;
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut challenged = false;
        loop {
            attempts += 1;
            let error = match self.send_once(site, call, &credentials.credentials).await {
                Err(source) => Error::Http {
                    site: Box::new(site.clone()),
                    url: call.url.to_owned(),
                    source,
                },
                Ok(resp) => match resp.status().as_u16() {
                    401 if !challenged => {
                        match self.answer_challenge(site, call, &credentials, &resp).await {
                            Ok(true) => {
                                // The same attempt again, now with credentials: not a retry.
                                challenged = true;
                                attempts -= 1;
                                continue;
                            }
                            Ok(false) => return Err(refused(site, call, &credentials, resp).await),
                            Err(error) => error,
                        }
                    }
                    401 | 403 => return Err(refused(site, call, &credentials, resp).await),
                    429 | 500..=599 => rejected(site, call.url, resp).await,
                    _ => match read(resp).await {
                        Ok(value) => return Ok(value),
                        Err(error) => error,
                    },
                },
            };
            let class = error_class(&error);
            let Some(delay) =
                policy.next_delay(attempts - 1, class, started.elapsed(), fastrand::f64())
            else {
                return Err(gave_up(error, attempts, started));
            };
            debug!(registry = %site.registry, operation = %site.operation, attempt = attempts, ?delay, %error, "transient failure, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        site: &Site,
        call: &Call<'_>,
        credentials: &Credentials,
    ) -> reqwest::Result<Response> {
        let mut req = match &call.body {
            None => self.raw.request(call.method.clone(), call.url),
            Some((_, body)) => self
                .upload
                .request(call.method.clone(), call.url)
                .timeout(upload_deadline(self.config.read_timeout, body.len())),
        };
        if let Some(accept) = call.accept {
            req = req.header(header::ACCEPT, accept);
        }
        if let Some(authorization) = self.authorization(site, call.access, credentials) {
            req = req.header(header::AUTHORIZATION, authorization);
        }
        req = match &call.body {
            Some((content_type, body)) => req
                .header(header::CONTENT_TYPE, *content_type)
                .body(body.clone()),
            None if matches!(call.method, Method::POST | Method::PUT | Method::PATCH) => {
                req.header(header::CONTENT_LENGTH, 0)
            }
            None => req,
        };
        req.send().await
    }

    /// Answers a 401's challenge with `credentials`: `Ok(true)` when there is now an
    /// `Authorization` to send, `Ok(false)` when these credentials cannot answer it.
    async fn answer_challenge(
        &self,
        site: &Site,
        call: &Call<'_>,
        credentials: &ResolvedCredentials,
        resp: &Response,
    ) -> Result<bool> {
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        match (challenge, &credentials.credentials) {
            // A bearer token given as credentials was sent already; nothing else to try.
            (_, Credentials::Bearer { .. }) | (None | Some(Challenge::Other(_)), _) => Ok(false),
            (Some(Challenge::Basic), Credentials::Anonymous) => Ok(false),
            (Some(Challenge::Basic), Credentials::Basic { username, password }) => {
                let encoded = STANDARD.encode(format!("{username}:{password}"));
                let value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| {
                    rejected_locally(site, call.url, "the credentials are not valid header text")
                })?;
                self.remember_authorization(site, call.access, value, None);
                Ok(true)
            }
            (Some(Challenge::Bearer { realm, service, .. }), _) => {
                let (value, lifetime) = self
                    .fetch_token(site, call.access, credentials, &realm, service.as_deref())
                    .await?;
                self.remember_authorization(site, call.access, value, Some(lifetime));
                Ok(true)
            }
        }
    }

    /// A token for `site`'s repository from the challenge's realm, sending basic credentials
    /// (anonymous tokens for anonymous access).
    async fn fetch_token(
        &self,
        site: &Site,
        access: Access,
        credentials: &ResolvedCredentials,
        realm: &str,
        service: Option<&str>,
    ) -> Result<(HeaderValue, Duration)> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            rejected_locally(
                site,
                realm,
                &format!("the registry's token realm is not a valid URL: {e}"),
            )
        })?;
        if url.scheme() != "https" {
            let host = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.to_owned(),
                (None, _) => String::new(),
            };
            if url.scheme() != "http" || !self.is_insecure(&host) {
                return Err(rejected_locally(
                    site,
                    realm,
                    "the token realm is not HTTPS and its host is not an insecure registry; \
                     credentials are not sent there (list it with the insecure registries to allow it)",
                ));
            }
        }
        let actions = match access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:{actions}", site.repository),
            );
        }
        let mut req = self.raw.get(url.clone());
        if let Credentials::Basic { username, password } = &credentials.credentials {
            req = req.basic_auth(username, Some(password));
        }
        let http = |source| Error::Http {
            site: Box::new(site.clone()),
            url: realm.to_owned(),
            source,
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        match status {
            200 => {
                let body =
                    read_limited(site, realm, resp, SMALL_REPLY_LIMIT, "token answer").await?;
                let token = serde_json::from_slice::<TokenResponse>(&body)
                    .ok()
                    .and_then(TokenResponse::token);
                let Some((token, lifetime)) = token else {
                    return Err(rejected_locally(
                        site,
                        realm,
                        "the token server's answer holds no token",
                    ));
                };
                let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    rejected_locally(site, realm, "the token is not valid header text")
                })?;
                Ok((value, lifetime))
            }
            401 | 403 => {
                let detail = error_detail(resp).await;
                let error = OciDistributionError::AuthenticationFailure(format!(
                    "the token server {realm} answered HTTP {status}: {detail}"
                ));
                Err(match credentials.explain(access, &site.repository, error) {
                    Err(source) => Error::Auth {
                        site: Box::new(site.clone()),
                        source,
                    },
                    Ok(_) => Error::UnexpectedStatus {
                        site: Box::new(site.clone()),
                        url: realm.to_owned(),
                        status,
                    },
                })
            }
            _ => Err(rejected(site, realm, resp).await),
        }
    }

    /// Whether the blob `digest` exists in `r`'s repository.
    pub(crate) async fn blob_exists(
        &self,
        r: &Reference,
        site: &Site,
        digest: &Digest,
    ) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", self.base_url(r));
        let call = Call::new(Method::HEAD, &url, access_of(site.operation));
        let url = url.as_str();
        self.send_and_read(site, &call, self.config.retry, |resp| async move {
            match resp.status().as_u16() {
                200..=299 => Ok(true),
                404 => Ok(false),
                _ => Err(rejected(site, url, resp).await),
            }
        })
        .await
    }

    /// Uploads `data` as the blob `digest` to `r`'s repository with the push credentials: POST
    /// then PUT (distribution spec "Pushing a blob monolithically"). The pair is retried as a
    /// whole, because an upload session does not survive a registry restart.
    pub(crate) async fn push_blob(
        &self,
        r: &Reference,
        site: &Site,
        data: Bytes,
        digest: &Digest,
    ) -> Result<()> {
        let start_url = format!("{}/blobs/uploads/", self.base_url(r));
        let policy = self.config.retry;
        let once = RetryPolicy {
            max_attempts: 1,
            ..policy
        };
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let error = match self
                .upload_once(site, &start_url, &data, digest, once)
                .await
            {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let class = error_class(&error);
            let Some(delay) =
                policy.next_delay(attempts - 1, class, started.elapsed(), fastrand::f64())
            else {
                return Err(gave_up(error, attempts, started));
            };
            debug!(registry = %site.registry, %digest, attempt = attempts, ?delay, %error, "blob upload failed, uploading again");
            tokio::time::sleep(delay).await;
        }
    }

    async fn upload_once(
        &self,
        site: &Site,
        start_url: &str,
        data: &Bytes,
        digest: &Digest,
        once: RetryPolicy,
    ) -> Result<()> {
        let start = Call::new(Method::POST, start_url, Access::Push);
        let location = self
            .send_and_read(site, &start, once, |resp| async move {
                if resp.status().as_u16() != 202 {
                    return Err(rejected(site, start_url, resp).await);
                }
                resp.headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        rejected_locally(site, start_url, "the upload reply has no Location header")
                    })
            })
            .await?;
        // Location may be absolute (distribution) or a path (ferro), with its own query.
        let mut put_url = reqwest::Url::parse(start_url)
            .and_then(|base| base.join(&location))
            .map_err(|e| {
                rejected_locally(
                    site,
                    start_url,
                    &format!("the upload Location {location:?} is not a URL: {e}"),
                )
            })?;
        put_url
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let put_url = put_url.to_string();
        let put = Call::new(Method::PUT, &put_url, Access::Push)
            .body("application/octet-stream", data.clone());
        let put_ref = put_url.as_str();
        self.send_and_read(site, &put, once, |resp| async move {
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(rejected(site, put_ref, resp).await)
            }
        })
        .await
    }

    /// PUTs a manifest under `r`'s digest (or tag) with the push credentials; returns the
    /// registry's `OCI-Subject` header, which registries with the referrers API send.
    pub(crate) async fn push_manifest(
        &self,
        r: &Reference,
        site: &Site,
        body: Bytes,
        media_type: &str,
    ) -> Result<Option<String>> {
        let url = format!("{}/manifests/{}", self.base_url(r), r.manifest_ref());
        let call = Call::new(Method::PUT, &url, Access::Push).body(media_type, body);
        let url = url.as_str();
        self.send_and_read(site, &call, self.config.retry, |resp| async move {
            if resp.status().is_success() {
                Ok(resp
                    .headers()
                    .get("oci-subject")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned))
            } else {
                Err(rejected(site, url, resp).await)
            }
        })
        .await
    }
}

/// A reply this client cannot use for a reason it found itself.
fn rejected_locally(site: &Site, url: &str, detail: &str) -> Error {
    Error::Protocol {
        site: Box::new(site.clone()),
        url: url.to_owned(),
        detail: detail.to_owned(),
    }
}

/// The registry refused `credentials` (401 after a challenge was answered, or 403).
async fn refused(
    site: &Site,
    call: &Call<'_>,
    credentials: &ResolvedCredentials,
    resp: Response,
) -> Error {
    let status = resp.status().as_u16();
    let error = OciDistributionError::ServerError {
        code: status,
        url: call.url.to_owned(),
        message: error_detail(resp).await,
    };
    match credentials.explain(call.access, &site.repository, error) {
        Err(source) => Error::Auth {
            site: Box::new(site.clone()),
            source,
        },
        Ok(_) => Error::UnexpectedStatus {
            site: Box::new(site.clone()),
            url: call.url.to_owned(),
            status,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Box<Site> {
        Box::new(Site {
            registry: "r".into(),
            repository: "a".into(),
            operation: crate::error::Operation::PushArtifact,
        })
    }

    #[test]
    fn uploads_get_time_for_their_size() {
        let read = Duration::from_secs(30);
        assert_eq!(upload_deadline(read, 0), read);
        assert_eq!(upload_deadline(read, 1), Duration::from_secs(31));
        assert_eq!(
            upload_deadline(read, 48 << 20),
            Duration::from_secs(30 + 384)
        );
    }

    #[test]
    fn rejections_keep_the_servers_retry_after() {
        let rejected = |status, retry_after| Error::Rejected {
            site: site(),
            url: String::new(),
            status,
            detail: String::new(),
            retry_after,
        };
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            error_class(&rejected(429, after)),
            RetryClass::Transient { retry_after: after }
        );
        assert_eq!(
            error_class(&rejected(503, None)),
            RetryClass::Transient { retry_after: None }
        );
        assert_eq!(error_class(&rejected(404, after)), RetryClass::Permanent);
        assert_eq!(error_class(&rejected(400, None)), RetryClass::Permanent);
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            elapsed: Duration::ZERO,
            source: Box::new(rejected(503, None)),
        };
        assert_eq!(
            error_class(&exhausted),
            RetryClass::Permanent,
            "a retry loop that gave up is not retried again by an outer one"
        );
    }
}
