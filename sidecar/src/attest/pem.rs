// SPDX-License-Identifier: Apache-2.0
//! A tolerant PEM reader (RFC 7468 textual encoding): finds every `-----BEGIN X-----` ... `-----END X-----`
//! block, ignores text around blocks (OpenSSL prints explanatory text, `openssl ecparam -genkey` puts an
//! `EC PARAMETERS` block before the key), accepts CRLF and any line width, and reports RFC 1421 headers
//! (`Proc-Type: 4,ENCRYPTED`) so that legacy OpenSSL-encrypted keys get a precise error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemBlock {
    /// The label between `BEGIN ` and `-----`, e.g. `PRIVATE KEY`.
    pub label: String,
    /// Whether the block carried RFC 1421 headers (`Proc-Type`, `DEK-Info`).
    pub has_headers: bool,
    /// The body, base64-decoded; `Err` when the body is not base64.
    pub body: Result<Vec<u8>, base64::DecodeError>,
}

/// Every complete PEM block in `text`, in order. An unterminated block is dropped.
pub(crate) fn blocks(text: &str) -> Vec<PemBlock> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut has_headers = false;
        let mut terminated = false;
        for line in lines.by_ref() {
            if line == end {
                terminated = true;
                break;
            }
            if line.contains(':') {
                has_headers = true;
            } else {
                body.push_str(line);
            }
        }
        if terminated {
            out.push(PemBlock {
                label: label.to_owned(),
                has_headers,
                body: STANDARD.decode(body.as_bytes()),
            });
        }
    }
    out
}

/// Encodes `der` as a PEM block with 64-column lines and a trailing newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_blocks_among_text_and_crlf() {
        let text = "comment\r\n-----BEGIN EC PARAMETERS-----\r\nBggqhkjOPQMBBw==\r\n-----END EC PARAMETERS-----\r\n\
                    -----BEGIN EC PRIVATE KEY-----\r\nAAEC\r\nAw==\r\n-----END EC PRIVATE KEY-----\r\n";
        let found = blocks(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].label, "EC PARAMETERS");
        assert_eq!(found[1].label, "EC PRIVATE KEY");
        assert_eq!(found[1].body.as_deref().ok(), Some(&[0u8, 1, 2, 3][..]));
        assert!(!found[1].has_headers);
    }

    #[test]
    fn reports_headers_and_bad_base64_and_drops_unterminated() {
        let text = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n\
                    -----END EC PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n\
                    -----BEGIN PUBLIC KEY-----\nAAAA\n";
        let found = blocks(text);
        assert_eq!(found.len(), 2);
        assert!(found[0].has_headers);
        assert!(found[1].body.is_err());
    }

    #[test]
    fn encode_round_trips() {
        let der: Vec<u8> = (0..=255).collect();
        let text = encode("PUBLIC KEY", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        let found = blocks(&text);
        assert_eq!(found[0].body.as_deref().ok(), Some(&der[..]));
    }
}
