// SPDX-License-Identifier: Apache-2.0
//! cosign's encrypted private key format (`cosign generate-key-pair`).
//!
//! The PEM block (`ENCRYPTED SIGSTORE PRIVATE KEY`, or `ENCRYPTED COSIGN PRIVATE KEY` before cosign 2)
//! holds a JSON document written by go-tuf's `encrypted` package:
//!
//! ```json
//! {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": "<32 bytes, base64>"},
//!  "cipher": {"name": "nacl/secretbox", "nonce": "<24 bytes, base64>"},
//!  "ciphertext": "<base64>"}
//! ```
//!
//! key = scrypt(password, salt, N, r, p, 32 bytes); plaintext = secretbox_open(ciphertext, nonce, key),
//! and the plaintext is the PKCS#8 DER of the private key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use p256::elliptic_curve::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};

use super::error::EncryptedKeyProblem;

/// PEM label written by cosign 2 and later.
pub(crate) const LABEL_SIGSTORE: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label written by cosign 1.
pub(crate) const LABEL_COSIGN: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const KDF_SCRYPT: &str = "scrypt";
const CIPHER_SECRETBOX: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// The scrypt parameter sets go-tuf's `encrypted` package accepts (legacy, standard, OWASP). Anything else
/// is refused before deriving: N=2^20, r=8 would already cost 1 GiB of memory.
const ACCEPTED_SCRYPT: [(u64, u32, u32); 3] = [(1 << 15, 8, 1), (1 << 16, 8, 1), (1 << 17, 8, 1)];

#[derive(Debug, Serialize, Deserialize)]
struct Document {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Why decryption failed.
#[derive(Debug)]
pub(crate) enum DecryptError {
    /// The document is not what cosign writes.
    Format(EncryptedKeyProblem),
    /// The secretbox tag does not verify: wrong password or corrupted ciphertext.
    WrongPassword,
}

impl From<EncryptedKeyProblem> for DecryptError {
    fn from(problem: EncryptedKeyProblem) -> Self {
        Self::Format(problem)
    }
}

fn decode(field: &'static str, value: &str) -> Result<Vec<u8>, EncryptedKeyProblem> {
    STANDARD
        .decode(value)
        .map_err(|source| EncryptedKeyProblem::Base64 { field, source })
}

fn exact<const N: usize>(
    field: &'static str,
    bytes: &[u8],
) -> Result<[u8; N], EncryptedKeyProblem> {
    bytes.try_into().map_err(|_| EncryptedKeyProblem::Length {
        field,
        len: bytes.len(),
        expected: N,
    })
}

fn derive_key(
    password: &[u8],
    salt: &[u8],
    params: &ScryptParams,
) -> Result<Zeroizing<[u8; KEY_LEN]>, EncryptedKeyProblem> {
    let bad = || EncryptedKeyProblem::ScryptParams {
        n: params.n,
        r: params.r,
        p: params.p,
    };
    if !ACCEPTED_SCRYPT.contains(&(params.n, params.r, params.p)) {
        return Err(bad());
    }
    let log_n = u8::try_from(params.n.trailing_zeros()).map_err(|_| bad())?;
    let scrypt_params =
        scrypt::Params::new(log_n, params.r, params.p, KEY_LEN).map_err(|_| bad())?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    scrypt::scrypt(password, salt, &scrypt_params, key.as_mut_slice()).map_err(|_| bad())?;
    Ok(key)
}

/// Decrypts the JSON document of a cosign encrypted key, returning the PKCS#8 DER inside.
pub(crate) fn decrypt(
    document: &[u8],
    password: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let doc: Document = serde_json::from_slice(document).map_err(EncryptedKeyProblem::Json)?;
    if doc.kdf.name != KDF_SCRYPT {
        return Err(EncryptedKeyProblem::Kdf(doc.kdf.name).into());
    }
    if doc.cipher.name != CIPHER_SECRETBOX {
        return Err(EncryptedKeyProblem::Cipher(doc.cipher.name).into());
    }
    let salt = exact::<SALT_LEN>("kdf.salt", &decode("kdf.salt", &doc.kdf.salt)?)?;
    let nonce = exact::<NONCE_LEN>("cipher.nonce", &decode("cipher.nonce", &doc.cipher.nonce)?)?;
    let ciphertext = decode("ciphertext", &doc.ciphertext)?;
    let key = derive_key(password, &salt, &doc.kdf.params)?;
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    let plaintext = cipher
        .decrypt(&Nonce::from(nonce), ciphertext.as_slice())
        .map_err(|_| DecryptError::WrongPassword)?;
    Ok(Zeroizing::new(plaintext))
}

/// Encrypts `plaintext` the way cosign does (standard scrypt parameters), returning the JSON document.
/// Used by tests; keys written for users are plain PKCS#8 (`attest keygen`).
#[cfg(test)]
pub(crate) fn encrypt(plaintext: &[u8], password: &[u8], n: u64) -> Vec<u8> {
    use rand_core::{OsRng, RngCore};
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    let params = ScryptParams { n, r: 8, p: 1 };
    let key =
        derive_key(password, &salt, &params).unwrap_or_else(|e| panic!("test scrypt params: {e}"));
    let cipher = XSalsa20Poly1305::new(key.as_slice().into());
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), plaintext)
        .unwrap_or_else(|e| panic!("secretbox seal: {e}"));
    let doc = Document {
        kdf: Kdf {
            name: KDF_SCRYPT.into(),
            params,
            salt: STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_SECRETBOX.into(),
            nonce: STANDARD.encode(nonce),
        },
        ciphertext: STANDARD.encode(ciphertext),
    };
    serde_json::to_vec(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(result: Result<Zeroizing<Vec<u8>>, DecryptError>) -> EncryptedKeyProblem {
        match result {
            Err(DecryptError::Format(p)) => p,
            Err(DecryptError::WrongPassword) => {
                panic!("expected a format problem, got WrongPassword")
            }
            Ok(_) => panic!("expected a format problem, got a key"),
        }
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let doc = encrypt(b"secret pkcs8", b"pw", 1 << 15);
        assert_eq!(
            decrypt(&doc, b"pw").ok().as_deref().map(Vec::as_slice),
            Some(&b"secret pkcs8"[..])
        );
        assert!(matches!(
            decrypt(&doc, b"other"),
            Err(DecryptError::WrongPassword)
        ));
    }

    #[test]
    fn refuses_unknown_kdf_cipher_and_costly_params() {
        let doc = encrypt(b"k", b"pw", 1 << 15);
        let mut value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        value["kdf"]["params"]["N"] = serde_json::json!(1u64 << 20);
        let costly = serde_json::to_vec(&value).unwrap();
        assert!(
            matches!(problem(decrypt(&costly, b"pw")), EncryptedKeyProblem::ScryptParams { n, .. } if n == 1 << 20)
        );

        let mut value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        value["kdf"]["name"] = serde_json::json!("pbkdf2");
        assert!(matches!(
            problem(decrypt(&serde_json::to_vec(&value).unwrap(), b"pw")),
            EncryptedKeyProblem::Kdf(_)
        ));

        let mut value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        value["cipher"]["name"] = serde_json::json!("aes-gcm");
        assert!(matches!(
            problem(decrypt(&serde_json::to_vec(&value).unwrap(), b"pw")),
            EncryptedKeyProblem::Cipher(_)
        ));

        let mut value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        value["cipher"]["nonce"] = serde_json::json!("AAAA");
        assert!(matches!(
            problem(decrypt(&serde_json::to_vec(&value).unwrap(), b"pw")),
            EncryptedKeyProblem::Length {
                field: "cipher.nonce",
                len: 3,
                expected: 24
            }
        ));

        assert!(matches!(
            problem(decrypt(b"not json", b"pw")),
            EncryptedKeyProblem::Json(_)
        ));
    }
}
