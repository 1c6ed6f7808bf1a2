// SPDX-License-Identifier: Apache-2.0
//! Getting the function map: the newest map referrer of the app image (or a local file), its DSSE
//! signature checked against the trusted keys when there are any, its subject checked to be the image's
//! digest. A map that is missing or refused is a [`MapProblem`] the caller retries; nothing here decides
//! to fall back to an unchecked map.

use std::fmt;

use sha2::{Digest as _, Sha256};

use linkguard_oci::{Client, Digest, Reference, ReferrerFilter};

use crate::attest::{self, Envelope, FUNCTION_MAP_PAYLOAD_TYPE, VerifyingKey};
use crate::function_map::{self, FunctionMap};

/// Layer media type of a signed map (a DSSE envelope), as `linkguard map push --key` writes it.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// A map ready to use.
#[derive(Debug, Clone)]
pub struct LoadedMap {
    pub map: FunctionMap,
    /// sha256 hex of the map's JSON bytes (the payload, when signed): the report's `functionMap.digest`.
    pub sha256: String,
    /// Where it came from, for logs (`referrer sha256:...` or the file path).
    pub origin: String,
    /// The keyid of the trusted key that signed it, when it was checked.
    pub signed_by: Option<String>,
}

/// Why no usable map was obtained (the caller retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapProblem {
    /// The image has no function map referrer yet.
    Missing { image: String },
    /// A map exists but is refused: unsigned, wrongly signed, malformed, or about another image.
    Refused { origin: String, reason: String },
    /// The registry failed (unreachable, refused credentials, timed out).
    Registry { reason: String },
}

impl fmt::Display for MapProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { image } => write!(
                f,
                "{image} has no function map referrer yet: push one with `linkguard map push --image {image} \
                 MAP` (the sidecar retries and is not ready meanwhile)"
            ),
            Self::Refused { origin, reason } => {
                write!(f, "function map {origin} refused: {reason}")
            }
            Self::Registry { reason } => write!(f, "pulling the function map failed: {reason}"),
        }
    }
}

impl MapProblem {
    /// The metric label of the failed registry operation, when it was a registry failure.
    pub fn is_registry_error(&self) -> bool {
        matches!(self, Self::Registry { .. })
    }
}

/// Turns a map layer (plain JSON or a DSSE envelope) into a map of `image_hex`, checked against `trusted`.
pub fn decode(
    origin: &str,
    media_type: Option<&str>,
    data: &[u8],
    trusted: &[VerifyingKey],
    image_hex: Option<&str>,
) -> Result<LoadedMap, MapProblem> {
    let refuse = |reason: String| MapProblem::Refused {
        origin: origin.to_owned(),
        reason,
    };
    // A local file has no media type: it is an envelope when it parses as one.
    let envelope = match media_type {
        Some(DSSE_MEDIA_TYPE) => {
            Some(Envelope::from_json(data).map_err(|e| refuse(format!("bad DSSE envelope: {e}")))?)
        }
        Some(function_map::MEDIA_TYPE) => None,
        Some(other) => return Err(refuse(format!("its layer has media type {other:?}"))),
        None => Envelope::from_json(data).ok(),
    };
    let (payload, signed_by) = match envelope {
        Some(envelope) => {
            if envelope.payload_type != FUNCTION_MAP_PAYLOAD_TYPE {
                return Err(refuse(format!(
                    "its DSSE payloadType is {:?}, not {FUNCTION_MAP_PAYLOAD_TYPE:?}",
                    envelope.payload_type
                )));
            }
            if trusted.is_empty() {
                (envelope.payload.clone(), None)
            } else {
                let mut errors = Vec::new();
                let mut verified = None;
                for key in trusted {
                    match attest::verify_envelope(&envelope, key) {
                        Ok(payload) => {
                            verified = Some((payload, key.keyid()));
                            break;
                        }
                        Err(err) => errors.push(format!("key {}: {err}", key.keyid())),
                    }
                }
                match verified {
                    Some((payload, keyid)) => (payload, Some(keyid)),
                    None => {
                        return Err(refuse(format!(
                            "its signature does not verify with any of functionMap.trustedKeys ({})",
                            errors.join("; ")
                        )));
                    }
                }
            }
        }
        None if !trusted.is_empty() => {
            return Err(refuse(
                "it is not signed, and functionMap.trustedKeys requires a signature (push it with \
                 `linkguard map push --key`)"
                    .to_owned(),
            ));
        }
        None => (data.to_vec(), None),
    };
    let map = FunctionMap::from_slice(&payload, origin).map_err(|e| refuse(e.to_string()))?;
    match (map.subject.digest.get("sha256"), image_hex) {
        (None, _) => {
            return Err(refuse(
                "it is unbound (its subject names no image digest); generate it with --subject"
                    .to_owned(),
            ));
        }
        (Some(hex), Some(image)) if hex != image => {
            return Err(refuse(format!(
                "it describes sha256:{hex}, but the app image is sha256:{image}"
            )));
        }
        _ => {}
    }
    Ok(LoadedMap {
        map,
        sha256: hex::encode(Sha256::digest(&payload)),
        origin: origin.to_owned(),
        signed_by,
    })
}

/// Pulls the newest map referrer of `subject` (the image at its digest).
pub async fn pull(
    client: &Client,
    subject: &Reference,
    trusted: &[VerifyingKey],
) -> Result<LoadedMap, MapProblem> {
    let registry = |e: linkguard_oci::Error| MapProblem::Registry {
        reason: e.to_string(),
    };
    let image_hex = subject.digest().map(|d| d.hex().to_owned());
    let filter = ReferrerFilter {
        artifact_type: Some(function_map::MEDIA_TYPE.to_owned()),
        ..ReferrerFilter::default()
    };
    let mut entries = client
        .list_referrers(subject, &filter)
        .await
        .map_err(registry)?;
    crate::daemon::spool::sort_newest_first(&mut entries);
    let Some(newest) = entries.first() else {
        return Err(MapProblem::Missing {
            image: subject.to_string(),
        });
    };
    let origin = format!("referrer {}", newest.digest);
    let digest: Digest =
        newest
            .digest
            .parse()
            .map_err(|e: linkguard_oci::Error| MapProblem::Refused {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
    let artifact = client
        .pull_referrer(subject, &digest)
        .await
        .map_err(registry)?;
    let [(layer, data)] = artifact.layers.as_slice() else {
        return Err(MapProblem::Refused {
            origin,
            reason: format!("it has {} layers, expected one", artifact.layers.len()),
        });
    };
    decode(
        &origin,
        Some(layer.media_type.as_str()),
        data,
        trusted,
        image_hex.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::SigningKey;

    const HEX: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn map_json(hex: Option<&str>) -> Vec<u8> {
        let (purl, digest) = match hex {
            Some(h) => (
                format!("pkg:oci/web@sha256:{h}"),
                format!(r#"{{"sha256":"{h}"}}"#),
            ),
            None => ("pkg:oci/web".to_owned(), "{}".to_owned()),
        };
        format!(
            r#"{{"_type":"{}","subject":{{"purl":"{purl}","digest":{digest}}},
              "predicate":{{"schemaVersion":"1.0.0","service":"web","expectedPaths":[
                {{"id":"p","entrypoint":"/app","calls":[{{"symbol":"main","binary":{{"path":"/app","buildId":"aa"}}}}]}}],
                "coverage":{{"minObservationRate":0.9,"windowSeconds":60}},"generatedAt":"2026-01-01T00:00:00Z"}}}}"#,
            function_map::PREDICATE_TYPE
        )
        .into_bytes()
    }

    fn signed(bytes: &[u8], key: &SigningKey) -> Vec<u8> {
        attest::sign_envelope(FUNCTION_MAP_PAYLOAD_TYPE, bytes, key).to_json()
    }

    fn reason(result: Result<LoadedMap, MapProblem>) -> String {
        match result {
            Err(MapProblem::Refused { reason, .. }) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plain_map_is_used_when_no_key_is_trusted() {
        let bytes = map_json(Some(HEX));
        let loaded = decode("m", Some(function_map::MEDIA_TYPE), &bytes, &[], Some(HEX)).unwrap();
        assert_eq!(loaded.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(loaded.signed_by, None);
        // A file (no media type) too.
        assert!(decode("f", None, &bytes, &[], None).is_ok());
    }

    #[test]
    fn trusted_keys_refuse_unsigned_and_wrongly_signed_maps() {
        let bytes = map_json(Some(HEX));
        let trusted = SigningKey::generate();
        let other = SigningKey::generate();
        let keys = [trusted.verifying_key()];
        let r = reason(decode(
            "m",
            Some(function_map::MEDIA_TYPE),
            &bytes,
            &keys,
            Some(HEX),
        ));
        assert!(r.contains("not signed"), "{r}");
        let r = reason(decode(
            "m",
            Some(DSSE_MEDIA_TYPE),
            &signed(&bytes, &other),
            &keys,
            Some(HEX),
        ));
        assert!(r.contains("does not verify"), "{r}");
        // A file that is an envelope is checked the same way.
        let r = reason(decode("f", None, &signed(&bytes, &other), &keys, Some(HEX)));
        assert!(r.contains("does not verify"), "{r}");
        let ok = decode(
            "m",
            Some(DSSE_MEDIA_TYPE),
            &signed(&bytes, &trusted),
            &keys,
            Some(HEX),
        )
        .unwrap();
        assert_eq!(ok.signed_by, Some(trusted.keyid()));
        // The digest is of the payload, not of the envelope.
        assert_eq!(ok.sha256, hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn maps_of_another_image_unbound_maps_and_odd_layers_are_refused() {
        let r = reason(decode(
            "m",
            None,
            &map_json(Some(HEX)),
            &[],
            Some(&"ab".repeat(32)),
        ));
        assert!(r.contains("describes sha256:2c26"), "{r}");
        let r = reason(decode("m", None, &map_json(None), &[], None));
        assert!(r.contains("unbound"), "{r}");
        let r = reason(decode("m", Some("text/plain"), b"x", &[], None));
        assert!(r.contains("media type"), "{r}");
        let r = reason(decode("m", None, b"{}", &[], None));
        assert!(!r.is_empty());
        let bad =
            attest::sign_envelope("text/plain", &map_json(Some(HEX)), &SigningKey::generate())
                .to_json();
        let r = reason(decode("m", Some(DSSE_MEDIA_TYPE), &bad, &[], None));
        assert!(r.contains("payloadType"), "{r}");
    }
}
