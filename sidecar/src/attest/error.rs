// SPDX-License-Identifier: Apache-2.0
//! The errors of [`crate::attest`]: one variant per failure, each message saying what failed, on what
//! input, and what the user can do about it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias of the attest module.
pub type Result<T, E = AttestError> = std::result::Result<T, E>;

/// Where a key came from, for error messages: a file, or PEM text handed over in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A key file.
    File(PathBuf),
    /// PEM text passed to `from_pem`.
    Memory,
}

impl KeySource {
    pub(crate) fn file(path: &Path) -> Self {
        Self::File(path.to_path_buf())
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "key file {}", path.display()),
            Self::Memory => f.write_str("PEM key"),
        }
    }
}

/// What is wrong with a cosign-format encrypted key (`cosign generate-key-pair`).
#[derive(Debug, thiserror::Error)]
pub enum EncryptedKeyProblem {
    /// The PEM body is not the JSON document cosign writes.
    #[error("the encrypted key is not cosign's JSON document")]
    Json(#[source] serde_json::Error),
    /// A base64 field of the document does not decode.
    #[error("field {field} of the encrypted key is not valid base64")]
    Base64 {
        /// JSON field name.
        field: &'static str,
        /// Decoder error.
        #[source]
        source: base64::DecodeError,
    },
    /// The key derivation function is not scrypt.
    #[error("unsupported key derivation function {0:?} (cosign uses \"scrypt\")")]
    Kdf(String),
    /// scrypt parameters other than the three sets cosign and go-tuf write; refused so that a crafted
    /// key cannot make us allocate gigabytes.
    #[error(
        "unsupported scrypt parameters N={n} r={r} p={p} (cosign writes N=32768, 65536 or 131072 with r=8, p=1)"
    )]
    ScryptParams {
        /// Cost parameter.
        n: u64,
        /// Block size.
        r: u32,
        /// Parallelism.
        p: u32,
    },
    /// The cipher is not NaCl secretbox.
    #[error("unsupported cipher {0:?} (cosign uses \"nacl/secretbox\")")]
    Cipher(String),
    /// Salt or nonce of the wrong length.
    #[error("field {field} has {len} bytes, expected {expected}")]
    Length {
        /// JSON field name.
        field: &'static str,
        /// Bytes found.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
}

/// What is wrong with an in-toto Statement.
#[derive(Debug, thiserror::Error)]
pub enum StatementProblem {
    /// Not JSON at all, or not a JSON object.
    #[error("not a JSON object")]
    Json(#[source] serde_json::Error),
    /// `_type` is missing or another version.
    #[error("_type is {found:?}, expected \"https://in-toto.io/Statement/v1\"")]
    Type {
        /// The `_type` found (empty when missing).
        found: String,
    },
    /// `subject` is missing or empty.
    #[error("subject is missing or empty: a statement must name the image it is about")]
    NoSubject,
    /// A subject without a usable digest.
    #[error(
        "subject[{index}] ({name}) has no digest: bind the function map to the image with --subject or `map push`"
    )]
    SubjectDigest {
        /// Position in `subject`.
        index: usize,
        /// The subject's name, or "unnamed".
        name: String,
    },
    /// `predicateType` missing or empty.
    #[error("predicateType is missing or empty")]
    NoPredicateType,
    /// `predicate` missing or not an object.
    #[error("predicate is missing or not a JSON object")]
    NoPredicate,
}

/// Errors of key handling, signing and verification.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    // ---- keys -------------------------------------------------------------------------------------
    /// The key file cannot be read.
    #[error("cannot read key file {path}")]
    KeyRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No PEM block in the input.
    #[error(
        "{key}: no PEM block found (expected text starting with \"-----BEGIN ...-----\"); create a key with `linkguard attest keygen` or `cosign generate-key-pair`"
    )]
    KeyNoPem {
        /// Where the key came from.
        key: KeySource,
    },
    /// A PEM block that is not the kind of key asked for.
    #[error("{key} holds a PEM \"{label}\" block; {hint}")]
    KeyPemLabel {
        /// Where the key came from.
        key: KeySource,
        /// The PEM label found.
        label: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// The PEM body is not base64.
    #[error("{key}: the PEM block is corrupted (its body is not base64)")]
    KeyPemBase64 {
        /// Where the key came from.
        key: KeySource,
        /// Decoder error.
        #[source]
        source: base64::DecodeError,
    },
    /// The DER inside the PEM does not parse as the key structure its label announces.
    #[error("{key}: the {structure} inside the PEM block is malformed")]
    KeyMalformed {
        /// Where the key came from.
        key: KeySource,
        /// The ASN.1 structure expected.
        structure: &'static str,
        /// Parser error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A well-formed key of another algorithm or curve.
    #[error(
        "{key}: {algorithm} keys are not supported, linkguard signs with ECDSA P-256 only; create a key with `linkguard attest keygen` or `cosign generate-key-pair`"
    )]
    KeyAlgorithm {
        /// Where the key came from.
        key: KeySource,
        /// The algorithm or curve found.
        algorithm: String,
    },
    /// An encrypted key, but the password variable is not set.
    #[error(
        "{key} is encrypted; put its password in the environment variable {var} (or name another variable with --password-env)"
    )]
    KeyPasswordUnset {
        /// Where the key came from.
        key: KeySource,
        /// The environment variable consulted.
        var: String,
    },
    /// Decryption failed: wrong password (the secretbox tag does not match) or a corrupted key.
    #[error(
        "{key}: wrong password in {var} (or the encrypted key is corrupted): decryption failed"
    )]
    KeyWrongPassword {
        /// Where the key came from.
        key: KeySource,
        /// The environment variable consulted.
        var: String,
    },
    /// An encrypted key in a shape cosign does not write.
    #[error("{key}: {problem}")]
    KeyEncrypted {
        /// Where the key came from.
        key: KeySource,
        /// What is wrong (part of the message, not a separate cause).
        problem: EncryptedKeyProblem,
    },
    /// Encoding a key failed (should not happen for a valid P-256 key).
    #[error("cannot encode the key")]
    KeyEncode(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    // ---- bundle and envelope ------------------------------------------------------------------------
    /// The bundle is not JSON of the expected shape.
    #[error("not a Sigstore bundle (not JSON of the bundle shape)")]
    BundleJson(#[source] serde_json::Error),
    /// The envelope is not JSON of the DSSE shape.
    #[error("not a DSSE envelope (not JSON of the envelope shape)")]
    EnvelopeJson(#[source] serde_json::Error),
    /// A JSON document without a mediaType: not a bundle at all.
    #[error(
        "no mediaType: this is not a Sigstore bundle (pass the .bundle.json that `attest sign` wrote)"
    )]
    NotABundle,
    /// The bundle's mediaType is not v0.3.
    #[error(
        "bundle mediaType is {found:?}, expected \"application/vnd.dev.sigstore.bundle.v0.3+json\""
    )]
    MediaType {
        /// The mediaType found (empty when missing).
        found: String,
    },
    /// The bundle holds a message signature instead of a DSSE envelope.
    #[error(
        "bundle holds no dsseEnvelope (a messageSignature bundle signs a file digest, not a statement)"
    )]
    NotDsse,
    /// The bundle's verification material is not a public key hint.
    #[error(
        "bundle verification material is {found}, expected publicKey: linkguard verifies key-signed bundles with --key"
    )]
    VerificationMaterial {
        /// What was found instead.
        found: &'static str,
    },
    /// The envelope has no signature.
    #[error("the DSSE envelope has no signature")]
    NoSignatures,
    /// The envelope has more than one signature; linkguard writes and accepts exactly one.
    #[error("the DSSE envelope has {count} signatures; linkguard accepts exactly one")]
    MultipleSignatures {
        /// Number of signatures.
        count: usize,
    },
    /// The signature names another key.
    #[error(
        "the signature's keyid is {found}, but the given public key's keyid is {expected}: wrong key?"
    )]
    KeyIdMismatch {
        /// keyid of the verifying key.
        expected: String,
        /// keyid in the signature.
        found: String,
    },
    /// The envelope carries another payload type than the caller expects.
    #[error("payloadType is {found:?}, expected {expected:?}")]
    PayloadTypeMismatch {
        /// The expected type.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A base64 field of the envelope does not decode (standard alphabet, padded).
    #[error("{field} is not valid base64 (standard alphabet, padded)")]
    Base64 {
        /// JSON field.
        field: &'static str,
        /// Decoder error.
        #[source]
        source: base64::DecodeError,
    },
    /// The signature is not a DER-encoded ECDSA signature.
    #[error("the signature is not a DER-encoded ECDSA P-256 signature")]
    SignatureEncoding(#[source] p256::ecdsa::Error),
    /// The signature does not verify: the payload, its type or the signature was changed, or another key
    /// signed it.
    #[error(
        "signature verification failed with key {keyid}: the payload or signature was modified, or another key signed it"
    )]
    BadSignature {
        /// keyid of the verifying key.
        keyid: String,
    },

    // ---- statement -----------------------------------------------------------------------------------
    /// The payload is not an in-toto Statement v1.
    #[error("not an in-toto Statement v1: {0}")]
    Statement(StatementProblem),
}

impl AttestError {
    /// Whether this error means "the signed content or its signature is wrong" (a failing verdict, exit 1)
    /// rather than "the input could not be read" (exit 2).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::MediaType { .. }
                | Self::NotDsse
                | Self::VerificationMaterial { .. }
                | Self::NoSignatures
                | Self::MultipleSignatures { .. }
                | Self::KeyIdMismatch { .. }
                | Self::PayloadTypeMismatch { .. }
                | Self::Base64 { .. }
                | Self::SignatureEncoding(_)
                | Self::BadSignature { .. }
                | Self::Statement(_)
        )
    }
}
