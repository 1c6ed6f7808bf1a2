// SPDX-License-Identifier: Apache-2.0
//! ECDSA P-256 signing and verifying keys: generation, PEM reading (PKCS#8, SEC1, cosign's encrypted
//! format), PEM writing (PKCS#8, SPKI), and the keyid.
//!
//! keyid = lowercase hex SHA-256 of the DER SubjectPublicKeyInfo of the key, the point uncompressed (what
//! `attest keygen`, OpenSSL and cosign write). The bundle's `publicKey.hint` is the same digest in standard
//! base64, the way cosign writes it.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::der::asn1::ObjectIdentifier;
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, LineEnding};
use rand_core::OsRng;
use sha2::{Digest as _, Sha256};

use super::cosign::{self, DecryptError};
use super::error::{AttestError, KeySource, Result};
use super::pem::{self, PemBlock};

/// Environment variable holding the password of an encrypted key unless `--password-env` names another
/// (cosign's own default).
pub const DEFAULT_PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE { SEQUENCE {
/// id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes: 0 unused bits, then the 65-byte point) }.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Human names of the algorithms and curves people most often hand us by mistake.
fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.3.132.0.34" => "ECDSA P-384".into(),
        "1.3.132.0.35" => "ECDSA P-521".into(),
        "1.3.132.0.10" => "ECDSA secp256k1".into(),
        other => format!("OID {other}"),
    }
}

/// Checks an AlgorithmIdentifier (PKCS#8 or SPKI) names EC with the P-256 curve.
fn check_algorithm(key: &KeySource, alg: &p256::pkcs8::AlgorithmIdentifierRef<'_>) -> Result<()> {
    if alg.oid != OID_EC_PUBLIC_KEY {
        return Err(AttestError::KeyAlgorithm {
            key: key.clone(),
            algorithm: algorithm_name(alg.oid),
        });
    }
    match alg.parameters_oid() {
        Ok(curve) if curve == OID_P256 => Ok(()),
        Ok(curve) => Err(AttestError::KeyAlgorithm {
            key: key.clone(),
            algorithm: algorithm_name(curve),
        }),
        Err(_) => Err(AttestError::KeyAlgorithm {
            key: key.clone(),
            algorithm: "EC key without a named curve".into(),
        }),
    }
}

fn malformed(
    key: &KeySource,
    structure: &'static str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> AttestError {
    AttestError::KeyMalformed {
        key: key.clone(),
        structure,
        source: Box::new(err),
    }
}

/// Decodes the body of `block` or reports it as corrupted.
fn body<'b>(key: &KeySource, block: &'b PemBlock) -> Result<&'b [u8]> {
    block
        .body
        .as_deref()
        .map_err(|e| AttestError::KeyPemBase64 {
            key: key.clone(),
            source: e.clone(),
        })
}

fn label_error(key: &KeySource, block: &PemBlock, hint: &'static str) -> AttestError {
    AttestError::KeyPemLabel {
        key: key.clone(),
        label: block.label.clone(),
        hint,
    }
}

/// The first PEM block that is not `EC PARAMETERS` (which `openssl ecparam -genkey` writes first).
fn key_block(key: &KeySource, text: &str) -> Result<PemBlock> {
    let blocks = pem::blocks(text);
    if let Some(block) = blocks.iter().find(|b| b.label != "EC PARAMETERS") {
        return Ok(block.clone());
    }
    match blocks.first() {
        Some(params) => Err(label_error(
            key,
            params,
            "it holds curve parameters but no key",
        )),
        None => Err(AttestError::KeyNoPem { key: key.clone() }),
    }
}

fn read_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| AttestError::KeyRead {
        path: path.to_path_buf(),
        source,
    })?;
    // A DER (binary) file decodes lossily to text without PEM markers and is reported as "no PEM block".
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Where the password of an encrypted key comes from.
#[derive(Clone, Copy)]
enum Password<'a> {
    /// The named environment variable.
    Env(&'a str),
    /// Given by the caller.
    Given(&'a [u8]),
}

impl Password<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Env(var) => (*var).to_owned(),
            Self::Given(_) => "the password given".to_owned(),
        }
    }

    fn get(&self) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Self::Env(var) => std::env::var_os(var).map(|v| Zeroizing::new(v.into_encoded_bytes())),
            Self::Given(bytes) => Some(Zeroizing::new(bytes.to_vec())),
        }
    }
}

fn secret_from_pkcs8(key: &KeySource, der: &[u8]) -> Result<p256::SecretKey> {
    let info = p256::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|e| malformed(key, "PKCS#8 PrivateKeyInfo", e))?;
    check_algorithm(key, &info.algorithm)?;
    p256::SecretKey::from_pkcs8_der(der).map_err(|e| malformed(key, "PKCS#8 PrivateKeyInfo", e))
}

fn secret_from_sec1(key: &KeySource, der: &[u8]) -> Result<p256::SecretKey> {
    let parsed =
        sec1::EcPrivateKey::try_from(der).map_err(|e| malformed(key, "SEC1 ECPrivateKey", e))?;
    if let Some(curve) = parsed.parameters.and_then(|p| p.named_curve())
        && curve != OID_P256
    {
        return Err(AttestError::KeyAlgorithm {
            key: key.clone(),
            algorithm: algorithm_name(curve),
        });
    }
    p256::SecretKey::from_sec1_der(der).map_err(|e| malformed(key, "SEC1 ECPrivateKey", e))
}

fn secret_from_cosign(
    key: &KeySource,
    document: &[u8],
    password: Password<'_>,
) -> Result<p256::SecretKey> {
    let Some(secret) = password.get() else {
        return Err(AttestError::KeyPasswordUnset {
            key: key.clone(),
            var: password.describe(),
        });
    };
    match cosign::decrypt(document, &secret) {
        Ok(pkcs8) => secret_from_pkcs8(key, &pkcs8),
        Err(DecryptError::WrongPassword) => Err(AttestError::KeyWrongPassword {
            key: key.clone(),
            var: password.describe(),
        }),
        Err(DecryptError::Format(problem)) => Err(AttestError::KeyEncrypted {
            key: key.clone(),
            problem,
        }),
    }
}

fn parse_private(key: &KeySource, text: &str, password: Password<'_>) -> Result<p256::SecretKey> {
    let block = key_block(key, text)?;
    match block.label.as_str() {
        "PRIVATE KEY" => secret_from_pkcs8(key, body(key, &block)?),
        "EC PRIVATE KEY" if block.has_headers => Err(label_error(
            key,
            &block,
            "it is encrypted with OpenSSL's legacy PEM encryption, which linkguard does not read; decrypt it with `openssl ec -in KEY -out plain.pem`",
        )),
        "EC PRIVATE KEY" => secret_from_sec1(key, body(key, &block)?),
        cosign::LABEL_SIGSTORE | cosign::LABEL_COSIGN => {
            secret_from_cosign(key, body(key, &block)?, password)
        }
        "ENCRYPTED PRIVATE KEY" => Err(label_error(
            key,
            &block,
            "encrypted PKCS#8 is not supported; decrypt it with `openssl pkcs8 -in KEY -out plain.pem` or use a cosign key",
        )),
        "RSA PRIVATE KEY" => Err(AttestError::KeyAlgorithm {
            key: key.clone(),
            algorithm: "RSA".into(),
        }),
        "PUBLIC KEY" => Err(label_error(
            key,
            &block,
            "that is a public key, but signing needs the private key (attest keygen --output-key, or cosign.key)",
        )),
        _ => Err(label_error(
            key,
            &block,
            "expected PRIVATE KEY (PKCS#8), EC PRIVATE KEY (SEC1) or ENCRYPTED SIGSTORE PRIVATE KEY (cosign)",
        )),
    }
}

fn parse_public(key: &KeySource, text: &str) -> Result<ecdsa::VerifyingKey> {
    let block = key_block(key, text)?;
    match block.label.as_str() {
        "PUBLIC KEY" => {
            let der = body(key, &block)?;
            let spki = p256::pkcs8::SubjectPublicKeyInfoRef::try_from(der)
                .map_err(|e| malformed(key, "SubjectPublicKeyInfo", e))?;
            check_algorithm(key, &spki.algorithm)?;
            ecdsa::VerifyingKey::from_public_key_der(der)
                .map_err(|e| malformed(key, "SubjectPublicKeyInfo", e))
        }
        "PRIVATE KEY"
        | "EC PRIVATE KEY"
        | "ENCRYPTED PRIVATE KEY"
        | cosign::LABEL_SIGSTORE
        | cosign::LABEL_COSIGN => Err(label_error(
            key,
            &block,
            "that is a private key, but verification needs the public key (attest keygen --output-pub, or cosign.pub)",
        )),
        "CERTIFICATE" => Err(label_error(
            key,
            &block,
            "certificates are not supported; extract the public key with `openssl x509 -pubkey -noout -in CERT`",
        )),
        _ => Err(label_error(
            key,
            &block,
            "expected a PUBLIC KEY (SubjectPublicKeyInfo) block",
        )),
    }
}

/// An ECDSA P-256 private key.
#[derive(Clone)]
pub struct SigningKey {
    inner: ecdsa::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret scalar.
        f.debug_struct("SigningKey")
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self {
            inner: ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or cosign's encrypted
    /// format, whose password is read from the environment variable `password_env` (only then).
    pub fn from_pem_file(path: &Path, password_env: &str) -> Result<Self> {
        let text = read_file(path)?;
        parse_private(&KeySource::file(path), &text, Password::Env(password_env))
            .map(Self::from_secret)
    }

    /// Like [`SigningKey::from_pem_file`], from PEM text.
    pub fn from_pem(pem: &str, password_env: &str) -> Result<Self> {
        parse_private(&KeySource::Memory, pem, Password::Env(password_env)).map(Self::from_secret)
    }

    /// Like [`SigningKey::from_pem`], with the password of an encrypted key given directly.
    pub fn from_pem_with_password(pem: &str, password: &[u8]) -> Result<Self> {
        parse_private(&KeySource::Memory, pem, Password::Given(password)).map(Self::from_secret)
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        Self {
            inner: ecdsa::SigningKey::from(secret),
        }
    }

    /// The key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AttestError::KeyEncode(Box::new(e)))
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: *self.inner.verifying_key(),
        }
    }

    /// The keyid of the public key.
    pub fn keyid(&self) -> String {
        self.verifying_key().keyid()
    }

    /// Signs `message` (hashed with SHA-256) and returns the DER-encoded signature.
    pub(crate) fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let signature: ecdsa::Signature = self.inner.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

/// An ECDSA P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: ecdsa::VerifyingKey,
}

impl VerifyingKey {
    /// Reads a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), as written by `attest keygen`,
    /// `cosign generate-key-pair` (cosign.pub) or `openssl ec -pubout`.
    pub fn from_pem_file(path: &Path) -> Result<Self> {
        let text = read_file(path)?;
        parse_public(&KeySource::file(path), &text).map(|inner| Self { inner })
    }

    /// Like [`VerifyingKey::from_pem_file`], from PEM text.
    pub fn from_pem(pem: &str) -> Result<Self> {
        parse_public(&KeySource::Memory, pem).map(|inner| Self { inner })
    }

    /// DER SubjectPublicKeyInfo with the point uncompressed.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let point = self.inner.to_encoded_point(false);
        let mut der = SPKI_P256_PREFIX.to_vec();
        der.extend_from_slice(point.as_bytes());
        der
    }

    /// PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_spki_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.to_spki_der())
    }

    /// Lowercase hex SHA-256 of [`VerifyingKey::to_spki_der`].
    pub fn keyid(&self) -> String {
        hex::encode(Sha256::digest(self.to_spki_der()))
    }

    /// The Sigstore bundle `publicKey.hint`: the same digest as the keyid, standard base64 (as cosign
    /// writes it).
    pub fn hint(&self) -> String {
        STANDARD.encode(Sha256::digest(self.to_spki_der()))
    }

    /// Whether `signature_der` is a valid DER ECDSA signature of SHA-256(`message`) by this key.
    pub(crate) fn verify_der(&self, message: &[u8], signature_der: &[u8]) -> Result<()> {
        use p256::ecdsa::signature::Verifier as _;
        let signature =
            ecdsa::Signature::from_der(signature_der).map_err(AttestError::SignatureEncoding)?;
        self.inner
            .verify(message, &signature)
            .map_err(|_| AttestError::BadSignature {
                keyid: self.keyid(),
            })
    }
}

#[cfg(test)]
mod tests {
    use p256::pkcs8::EncodePublicKey as _;

    use super::*;

    #[test]
    fn spki_matches_the_asn1_encoder() {
        let key = SigningKey::generate().verifying_key();
        let encoded = p256::PublicKey::from(&key.inner)
            .to_public_key_der()
            .unwrap();
        assert_eq!(key.to_spki_der(), encoded.as_bytes());
        assert_eq!(key.keyid().len(), 64);
        assert_eq!(
            STANDARD.decode(key.hint()).unwrap(),
            hex::decode(key.keyid()).unwrap()
        );
    }

    #[test]
    fn pkcs8_and_spki_round_trip() {
        let key = SigningKey::generate();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = SigningKey::from_pem(&pem, "LINKGUARD_TEST_UNSET_VAR").unwrap();
        assert_eq!(back.keyid(), key.keyid());
        let public = VerifyingKey::from_pem(&key.verifying_key().to_spki_pem()).unwrap();
        assert_eq!(public, key.verifying_key());
    }

    #[test]
    fn sec1_with_ec_parameters_block() {
        let key = SigningKey::generate();
        let sec1 = p256::SecretKey::from(&key.inner).to_sec1_der().unwrap();
        let text = format!(
            "{}{}",
            pem::encode(
                "EC PARAMETERS",
                &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
            ),
            pem::encode("EC PRIVATE KEY", &sec1)
        );
        assert_eq!(
            SigningKey::from_pem(&text, "X").unwrap().keyid(),
            key.keyid()
        );
    }

    #[test]
    fn cosign_encrypted_key_needs_the_right_password() {
        let key = SigningKey::generate();
        let pkcs8 = key.inner.to_pkcs8_der().unwrap();
        let text = pem::encode(
            cosign::LABEL_SIGSTORE,
            &cosign::encrypt(pkcs8.as_bytes(), b"pw", 1 << 15),
        );
        assert_eq!(
            SigningKey::from_pem_with_password(&text, b"pw")
                .unwrap()
                .keyid(),
            key.keyid()
        );
        let wrong = SigningKey::from_pem_with_password(&text, b"nope").unwrap_err();
        assert!(
            matches!(wrong, AttestError::KeyWrongPassword { .. }),
            "{wrong}"
        );
        let unset =
            SigningKey::from_pem(&text, "LINKGUARD_TEST_SURELY_UNSET_PASSWORD").unwrap_err();
        assert!(
            matches!(unset, AttestError::KeyPasswordUnset { ref var, .. } if var == "LINKGUARD_TEST_SURELY_UNSET_PASSWORD")
        );
        assert!(unset.to_string().contains("--password-env"), "{unset}");
    }

    #[test]
    fn wrong_kinds_of_input_are_named() {
        let none = SigningKey::from_pem("hello", "X").unwrap_err();
        assert!(matches!(none, AttestError::KeyNoPem { .. }));
        let key = SigningKey::generate();
        let public_as_private =
            SigningKey::from_pem(&key.verifying_key().to_spki_pem(), "X").unwrap_err();
        assert!(
            public_as_private
                .to_string()
                .contains("signing needs the private key"),
            "{public_as_private}"
        );
        let private_as_public = VerifyingKey::from_pem(&key.to_pkcs8_pem().unwrap()).unwrap_err();
        assert!(
            private_as_public
                .to_string()
                .contains("verification needs the public key"),
            "{private_as_public}"
        );
        let garbage = SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "X",
        );
        assert!(matches!(
            garbage.unwrap_err(),
            AttestError::KeyMalformed { .. }
        ));
        let bad_b64 = SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
            "X",
        );
        assert!(matches!(
            bad_b64.unwrap_err(),
            AttestError::KeyPemBase64 { .. }
        ));
    }
}
