// SPDX-License-Identifier: Apache-2.0
//! Sigstore bundles v0.3 holding a DSSE envelope, verified with a public key (no certificate, no
//! transparency log): the protobuf-specs `dev.sigstore.bundle.v1.Bundle` message in its JSON form
//! (camelCase field names, bytes as standard base64), as cosign v3 writes it for a key.
//!
//! ```json
//! {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial": {"publicKey": {"hint": "<base64 SHA-256 of the SPKI>"}, "tlogEntries": []},
//!  "dsseEnvelope": {"payload": "...", "payloadType": "application/vnd.in-toto+json",
//!                   "signatures": [{"sig": "...", "keyid": "..."}]}}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dsse::{Envelope, WireEnvelope, verify_envelope};
use super::error::{AttestError, Result};
use super::keys::VerifyingKey;

/// mediaType of a Sigstore bundle v0.3.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// A Sigstore bundle v0.3 with public-key verification material and a DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Always [`BUNDLE_MEDIA_TYPE`].
    pub media_type: String,
    /// Which key signed.
    pub verification_material: VerificationMaterial,
    /// The signed content.
    pub dsse_envelope: Envelope,
}

/// `verificationMaterial` of a key-signed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// The signing key, identified by a hint; the verifier brings the key itself.
    pub public_key: PublicKeyIdentifier,
    /// Transparency log entries: none when signing offline. Kept as JSON; linkguard does not verify them.
    #[serde(default)]
    pub tlog_entries: Vec<Value>,
}

/// `publicKey` of the verification material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    /// Which key to look up; linkguard writes [`VerifyingKey::hint`].
    pub hint: String,
}

impl Bundle {
    /// The bundle as pretty-printed JSON with a trailing newline.
    pub fn to_json_pretty(&self) -> Vec<u8> {
        // Strings, byte vectors and JSON values always serialize.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Wraps a signed envelope in a v0.3 bundle whose verification material names `key_hint`.
pub fn bundle_envelope(env: Envelope, key_hint: &str) -> Bundle {
    Bundle {
        media_type: BUNDLE_MEDIA_TYPE.to_owned(),
        verification_material: VerificationMaterial {
            public_key: PublicKeyIdentifier {
                hint: key_hint.to_owned(),
            },
            tlog_entries: Vec::new(),
        },
        dsse_envelope: env,
    }
}

/// Verifies a bundle's DSSE signature with `key` and returns the payload.
///
/// Fails closed, each with its own error: not JSON, a mediaType other than v0.3, certificate-based
/// verification material, a message-signature bundle, a payload type other than `expected_payload_type`,
/// bad base64, and everything [`verify_envelope`] refuses. The hint is not trusted for anything: the key
/// the caller gives is the only one tried. Transparency log entries, if any, are not verified.
pub fn verify_bundle(
    bytes: &[u8],
    key: &VerifyingKey,
    expected_payload_type: &str,
) -> Result<Vec<u8>> {
    let value: Value = serde_json::from_slice(bytes).map_err(AttestError::BundleJson)?;
    let Some(media_type) = value.get("mediaType") else {
        return Err(AttestError::NotABundle);
    };
    let media_type = media_type.as_str().unwrap_or_default();
    if media_type != BUNDLE_MEDIA_TYPE {
        return Err(AttestError::MediaType {
            found: media_type.to_owned(),
        });
    }
    let material = value.get("verificationMaterial");
    let has = |field: &str| {
        material
            .and_then(|m| m.get(field))
            .is_some_and(|v| !v.is_null())
    };
    if !has("publicKey") {
        let found = if has("x509CertificateChain") {
            "an X.509 certificate chain"
        } else if has("certificate") {
            "an X.509 certificate"
        } else {
            "missing"
        };
        return Err(AttestError::VerificationMaterial { found });
    }
    let envelope = match value.get("dsseEnvelope") {
        Some(env) if !env.is_null() => env.clone(),
        _ => return Err(AttestError::NotDsse),
    };
    let wire: WireEnvelope = serde_json::from_value(envelope).map_err(AttestError::BundleJson)?;
    let envelope = Envelope::try_from(wire)?;
    if envelope.payload_type != expected_payload_type {
        return Err(AttestError::PayloadTypeMismatch {
            expected: expected_payload_type.to_owned(),
            found: envelope.payload_type,
        });
    }
    verify_envelope(&envelope, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::{IN_TOTO_PAYLOAD_TYPE, SigningKey, sign_envelope};

    fn signed() -> (SigningKey, Value) {
        let key = SigningKey::generate();
        let env = sign_envelope(IN_TOTO_PAYLOAD_TYPE, br#"{"a":1}"#, &key);
        let bundle = bundle_envelope(env, &key.verifying_key().hint());
        (
            key,
            serde_json::from_slice(&bundle.to_json_pretty()).unwrap(),
        )
    }

    fn verify(key: &SigningKey, value: &Value) -> Result<Vec<u8>> {
        verify_bundle(
            &serde_json::to_vec(value).unwrap(),
            &key.verifying_key(),
            IN_TOTO_PAYLOAD_TYPE,
        )
    }

    #[test]
    fn json_shape_is_protobuf_specs_json() {
        let (key, value) = signed();
        assert_eq!(value["mediaType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(
            value["verificationMaterial"]["publicKey"]["hint"],
            key.verifying_key().hint()
        );
        assert_eq!(
            value["verificationMaterial"]["tlogEntries"],
            serde_json::json!([])
        );
        assert_eq!(value["dsseEnvelope"]["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        assert_eq!(value["dsseEnvelope"]["signatures"][0]["keyid"], key.keyid());
        assert!(value["dsseEnvelope"]["signatures"][0]["sig"].is_string());
        assert_eq!(verify(&key, &value).unwrap(), br#"{"a":1}"#);
        let parsed: Bundle = serde_json::from_value(value).unwrap();
        assert_eq!(parsed.media_type, BUNDLE_MEDIA_TYPE);
    }

    #[test]
    fn fails_closed_with_distinct_errors() {
        let (key, value) = signed();
        let mut v = value.clone();
        v["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.2+json".into();
        assert!(matches!(
            verify(&key, &v),
            Err(AttestError::MediaType { .. })
        ));

        let mut v = value.clone();
        v["verificationMaterial"] = serde_json::json!({"certificate": {"rawBytes": "AAAA"}});
        assert!(matches!(
            verify(&key, &v),
            Err(AttestError::VerificationMaterial {
                found: "an X.509 certificate"
            })
        ));

        let mut v = value.clone();
        let env = v.as_object_mut().unwrap().remove("dsseEnvelope").unwrap();
        v["messageSignature"] = env;
        assert!(matches!(verify(&key, &v), Err(AttestError::NotDsse)));

        let mut v = value.clone();
        v["dsseEnvelope"]["payloadType"] = "application/vnd.stellaops.function-map.v1+json".into();
        assert!(matches!(
            verify(&key, &v),
            Err(AttestError::PayloadTypeMismatch { .. })
        ));

        let mut v = value.clone();
        v["dsseEnvelope"]["payload"] = "eyJhIjoyfQ==".into(); // {"a":2}
        assert!(matches!(
            verify(&key, &v),
            Err(AttestError::BadSignature { .. })
        ));

        let mut v = value.clone();
        v["dsseEnvelope"]["payload"] = "eyJhIjoyfQ".into();
        assert!(matches!(
            verify(&key, &v),
            Err(AttestError::Base64 {
                field: "payload",
                ..
            })
        ));

        let mut v = value.clone();
        v["dsseEnvelope"]
            .as_object_mut()
            .unwrap()
            .remove("signatures");
        assert!(matches!(verify(&key, &v), Err(AttestError::NoSignatures)));

        let other = SigningKey::generate();
        assert!(matches!(
            verify(&other, &value),
            Err(AttestError::KeyIdMismatch { .. })
        ));

        assert!(matches!(
            verify_bundle(b"{", &key.verifying_key(), IN_TOTO_PAYLOAD_TYPE),
            Err(AttestError::BundleJson(_))
        ));
        let statement = br#"{"_type": "https://in-toto.io/Statement/v1"}"#;
        assert!(matches!(
            verify_bundle(statement, &key.verifying_key(), IN_TOTO_PAYLOAD_TYPE),
            Err(AttestError::NotABundle)
        ));
    }

    #[test]
    fn hint_is_not_trusted() {
        let (key, mut value) = signed();
        value["verificationMaterial"]["publicKey"]["hint"] = "someone else".into();
        assert!(verify(&key, &value).is_ok());
        let other = SigningKey::generate();
        value["dsseEnvelope"]["signatures"][0]["keyid"] = "".into();
        assert!(matches!(
            verify(&other, &value),
            Err(AttestError::BadSignature { .. })
        ));
    }
}
