// SPDX-License-Identifier: Apache-2.0
//! Signing: ECDSA P-256 keys, DSSE envelopes and Sigstore bundles (docs/contracts/signing.md).
//!
//! ```text
//! statement bytes --pae()--> "DSSEv1 <len> <type> <len> <body>" --ECDSA P-256/SHA-256--> DER signature
//!   -> Envelope { payload, payloadType, signatures: [{ keyid, sig }] }
//!   -> Bundle v0.3 { mediaType, verificationMaterial.publicKey.hint, dsseEnvelope }
//! ```
//!
//! Everything here is offline: no certificate, no transparency log entry. Verification fails closed:
//! every way a bundle can be wrong has its own [`AttestError`] variant, and none of them is ignored.

mod bundle;
mod cosign;
mod dsse;
mod error;
mod keys;
mod pem;
mod statement;

pub use bundle::{
    BUNDLE_MEDIA_TYPE, Bundle, PublicKeyIdentifier, VerificationMaterial, bundle_envelope,
    verify_bundle,
};
pub use dsse::{Envelope, Signature, pae, sign_envelope, verify_envelope};
pub use error::{AttestError, EncryptedKeyProblem, KeySource, Result, StatementProblem};
pub use keys::{DEFAULT_PASSWORD_ENV, SigningKey, VerifyingKey};
pub use statement::{STATEMENT_TYPE_V1, Statement, Subject, parse_statement};

/// DSSE payload type of an in-toto Statement (the verification report).
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// DSSE payload type of a signed function map (CONTRACTS.md).
pub const FUNCTION_MAP_PAYLOAD_TYPE: &str = "application/vnd.stellaops.function-map.v1+json";

/// Validates `statement` as an in-toto Statement v1, signs its bytes unchanged as a DSSE envelope with
/// payload type [`IN_TOTO_PAYLOAD_TYPE`] and wraps the envelope in a Sigstore bundle v0.3.
///
/// This is what `linkguard attest sign` and the sidecar's report publisher do.
pub fn sign_statement(statement: &[u8], key: &SigningKey) -> Result<Bundle> {
    parse_statement(statement)?;
    let envelope = sign_envelope(IN_TOTO_PAYLOAD_TYPE, statement, key);
    Ok(bundle_envelope(envelope, &key.verifying_key().hint()))
}

/// Verifies a bundle made by [`sign_statement`] and returns the statement it carries.
pub fn verify_statement_bundle(bundle: &[u8], key: &VerifyingKey) -> Result<Statement> {
    let payload = verify_bundle(bundle, key, IN_TOTO_PAYLOAD_TYPE)?;
    parse_statement(&payload)
}
