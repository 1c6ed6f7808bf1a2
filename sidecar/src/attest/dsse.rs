// SPDX-License-Identifier: Apache-2.0
//! DSSE v1 envelopes (<https://github.com/secure-systems-lab/dsse>, protocol.md and envelope.md).
//!
//! The signature covers PAE(payloadType, payload) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body,
//! LEN being the byte length in ASCII decimal. It is ECDSA P-256 over SHA-256(PAE), DER-encoded (the
//! encoding cosign, securesystemslib and @sigstore/verify produce and accept), and in JSON the payload and
//! the signature are standard base64 with padding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize, Serializer};

use super::error::{AttestError, Result};
use super::keys::{SigningKey, VerifyingKey};

/// The Pre-Authentication Encoding of DSSE v1.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn base64_bytes<S: Serializer>(
    bytes: &[u8],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(bytes))
}

/// A DSSE envelope. JSON: `{"payload": b64, "payloadType": str, "signatures": [{"keyid": str, "sig": b64}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "WireEnvelope")]
pub struct Envelope {
    /// The signed bytes (for linkguard reports: an in-toto Statement, serialized).
    #[serde(serialize_with = "base64_bytes")]
    pub payload: Vec<u8>,
    /// How to interpret `payload`, e.g. [`super::IN_TOTO_PAYLOAD_TYPE`].
    pub payload_type: String,
    /// The signatures; linkguard writes and accepts exactly one.
    pub signatures: Vec<Signature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// keyid of the signing key (docs/contracts/signing.md); empty when unknown, and then not written.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// DER-encoded ECDSA signature of SHA-256(PAE).
    #[serde(serialize_with = "base64_bytes")]
    pub sig: Vec<u8>,
}

/// The JSON form, base64 still encoded, so that each decoding failure gets its own error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireEnvelope {
    payload: String,
    payload_type: String,
    // Protobuf JSON (Sigstore bundles) omits empty repeated fields: missing means no signature.
    #[serde(default)]
    signatures: Vec<WireSignature>,
}

#[derive(Debug, Deserialize)]
struct WireSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

impl TryFrom<WireEnvelope> for Envelope {
    type Error = AttestError;

    fn try_from(wire: WireEnvelope) -> Result<Self> {
        let payload = STANDARD
            .decode(&wire.payload)
            .map_err(|source| AttestError::Base64 {
                field: "payload",
                source,
            })?;
        let signatures = wire
            .signatures
            .into_iter()
            .map(|s| {
                let sig = STANDARD
                    .decode(&s.sig)
                    .map_err(|source| AttestError::Base64 {
                        field: "signatures[].sig",
                        source,
                    })?;
                Ok(Signature {
                    keyid: s.keyid,
                    sig,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            payload,
            payload_type: wire.payload_type,
            signatures,
        })
    }
}

impl Envelope {
    /// Parses envelope JSON, with a distinct error for bad JSON and for each bad base64 field.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let wire: WireEnvelope =
            serde_json::from_slice(bytes).map_err(AttestError::EnvelopeJson)?;
        Self::try_from(wire)
    }

    /// The envelope as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings and byte vectors into JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Signs `payload` as a DSSE envelope with one signature whose keyid is set.
pub fn sign_envelope(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let sig = key.sign_der(&pae(payload_type, payload));
    Envelope {
        payload: payload.to_vec(),
        payload_type: payload_type.to_owned(),
        signatures: vec![Signature {
            keyid: key.keyid(),
            sig,
        }],
    }
}

/// Verifies the envelope's single signature with `key` and returns the payload.
///
/// Fails closed: no signature, more than one, a keyid that names another key, a signature that is not
/// DER, or one that does not verify are each an error. An empty keyid is accepted (cosign leaves it empty).
pub fn verify_envelope(env: &Envelope, key: &VerifyingKey) -> Result<Vec<u8>> {
    let signature = match env.signatures.as_slice() {
        [] => return Err(AttestError::NoSignatures),
        [one] => one,
        more => return Err(AttestError::MultipleSignatures { count: more.len() }),
    };
    let keyid = key.keyid();
    if !signature.keyid.is_empty() && signature.keyid != keyid {
        return Err(AttestError::KeyIdMismatch {
            expected: keyid,
            found: signature.keyid.clone(),
        });
    }
    key.verify_der(&pae(&env.payload_type, &env.payload), &signature.sig)?;
    Ok(env.payload.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::IN_TOTO_PAYLOAD_TYPE;

    /// Known answer: a P-256 key and an envelope signed by pyca/cryptography (OpenSSL), not by us.
    const KAT_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/o3JsqpzFGORxWhMB3pNopAPP4sh
YVo9KlqbhLKNtTsnOixEOJ3EB5OyW0b1t8qUH58Pd7uBw8eV0poQ1ONB7Q==
-----END PUBLIC KEY-----
";
    const KAT_KEYID: &str = "0075f29717ae4e71d774ec4f48a64555ed5ea248b92a9e66d2cca9f77510a366";
    const KAT_ENVELOPE: &str = r#"{"payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEiLCJzdWJqZWN0IjpbeyJuYW1lIjoicmVnaXN0cnkuZXhhbXBsZS9hcHAiLCJkaWdlc3QiOnsic2hhMjU2IjoiNTg5MWI1YjUyMmQ1ZGYwODZkMGZmMGIxMTBmYmQ5ZDIxYmI0ZmM3MTYzYWYzNGQwODI4NmEyZTg0NmY2YmUwMyJ9fV0sInByZWRpY2F0ZVR5cGUiOiJodHRwczovL2xpbmtndWFyZC5kZXYvdmVyaWZpY2F0aW9uL3YxIiwicHJlZGljYXRlIjp7InZlcmRpY3QiOiJwYXNzIn19", "payloadType": "application/vnd.in-toto+json", "signatures": [{"keyid": "0075f29717ae4e71d774ec4f48a64555ed5ea248b92a9e66d2cca9f77510a366", "sig": "MEYCIQCkEhSakEmYT9EDmeKl/mIU14x8jgmy/GQeBB19bl6n9AIhANzdFRQ+xmee8hCDR5bzvUoFQFm877JAilm1aJm6pzOh"}]}"#;

    fn kat() -> (Envelope, VerifyingKey) {
        (
            Envelope::from_json(KAT_ENVELOPE.as_bytes()).unwrap(),
            VerifyingKey::from_pem(KAT_PUBLIC_KEY).unwrap(),
        )
    }

    #[test]
    fn pae_known_answers() {
        // The DSSE specification's test vector (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        // sigstore-rs src/bundle/dsse.rs test_pae_format.
        assert_eq!(
            pae("application/test", b"test payload"),
            b"DSSEv1 16 application/test 12 test payload"
        );
        // Empty type and payload; lengths count bytes, not characters.
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
        assert_eq!(
            pae("\u{e9}", "\u{ca0}".as_bytes()),
            "DSSEv1 2 \u{e9} 3 \u{ca0}".as_bytes()
        );
    }

    #[test]
    fn known_answer_signature_verifies() {
        let (env, key) = kat();
        assert_eq!(
            key.keyid(),
            KAT_KEYID,
            "keyid = hex SHA-256 of the DER SPKI, computed independently"
        );
        let payload = verify_envelope(&env, &key).unwrap();
        assert!(payload.starts_with(br#"{"_type":"https://in-toto.io/Statement/v1""#));
    }

    #[test]
    fn known_answer_with_flipped_bits_fails() {
        let (env, key) = kat();
        for bit in [0, 7, 100, env.payload.len() * 8 - 1] {
            let mut tampered = env.clone();
            tampered.payload[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    verify_envelope(&tampered, &key),
                    Err(AttestError::BadSignature { .. })
                ),
                "payload bit {bit}"
            );
        }
        // Flip a bit of s (the last byte of the DER signature): still DER, no longer valid.
        let mut tampered = env.clone();
        let last = tampered.signatures[0].sig.len() - 1;
        tampered.signatures[0].sig[last] ^= 0x01;
        assert!(matches!(
            verify_envelope(&tampered, &key),
            Err(AttestError::BadSignature { .. })
        ));
        // Flip a bit of the DER header: no longer DER.
        let mut tampered = env.clone();
        tampered.signatures[0].sig[0] ^= 0x01;
        assert!(matches!(
            verify_envelope(&tampered, &key),
            Err(AttestError::SignatureEncoding(_))
        ));
        // The payload type is signed too.
        let mut tampered = env;
        tampered.payload_type = "application/vnd.in-toto+jsoN".into();
        assert!(matches!(
            verify_envelope(&tampered, &key),
            Err(AttestError::BadSignature { .. })
        ));
    }

    #[test]
    fn sign_then_verify_and_fail_closed() {
        let key = SigningKey::generate();
        let env = sign_envelope(IN_TOTO_PAYLOAD_TYPE, b"{}", &key);
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(env.signatures[0].keyid, key.keyid());
        let back = Envelope::from_json(&env.to_json()).unwrap();
        assert_eq!(back, env);
        assert_eq!(verify_envelope(&back, &key.verifying_key()).unwrap(), b"{}");

        let other = SigningKey::generate().verifying_key();
        assert!(matches!(
            verify_envelope(&env, &other),
            Err(AttestError::KeyIdMismatch { .. })
        ));
        let mut anonymous = env.clone();
        anonymous.signatures[0].keyid.clear();
        assert!(matches!(
            verify_envelope(&anonymous, &other),
            Err(AttestError::BadSignature { .. })
        ));
        assert!(verify_envelope(&anonymous, &key.verifying_key()).is_ok());

        let mut none = env.clone();
        none.signatures.clear();
        assert!(matches!(
            verify_envelope(&none, &key.verifying_key()),
            Err(AttestError::NoSignatures)
        ));
        let mut two = env.clone();
        two.signatures.push(env.signatures[0].clone());
        assert!(matches!(
            verify_envelope(&two, &key.verifying_key()),
            Err(AttestError::MultipleSignatures { count: 2 })
        ));
    }

    #[test]
    fn json_decoding_errors_are_distinct() {
        let bad_payload = r#"{"payload": "not base64!", "payloadType": "t", "signatures": []}"#;
        assert!(matches!(
            Envelope::from_json(bad_payload.as_bytes()),
            Err(AttestError::Base64 {
                field: "payload",
                ..
            })
        ));
        let bad_sig = r#"{"payload": "e30=", "payloadType": "t", "signatures": [{"sig": "%%%"}]}"#;
        assert!(matches!(
            Envelope::from_json(bad_sig.as_bytes()),
            Err(AttestError::Base64 {
                field: "signatures[].sig",
                ..
            })
        ));
        // Unpadded base64 is refused: the wire format is standard base64 with padding.
        let unpadded = r#"{"payload": "e30", "payloadType": "t", "signatures": []}"#;
        assert!(matches!(
            Envelope::from_json(unpadded.as_bytes()),
            Err(AttestError::Base64 { .. })
        ));
        assert!(matches!(
            Envelope::from_json(b"[]"),
            Err(AttestError::EnvelopeJson(_))
        ));
    }
}
