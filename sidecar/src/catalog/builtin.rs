// SPDX-License-Identifier: Apache-2.0
//! The built-in hot-function categories. docs/catalog.md documents every rule below and says why it is there;
//! a unit test keeps the two in step.
//!
//! Library globs match the object's file name or its DT_SONAME. `*` stands for any object, which is how
//! statically linked and Go executables (which define these functions themselves) are covered; such rules only
//! use names that are specific to the API they stand for (a libc call name, a library's own prefix, a Go package
//! path).

/// One rule: (library globs, symbol globs).
pub(super) type RuleSpec = (&'static [&'static str], &'static [&'static str]);

/// One category: (name, description, rules).
pub(super) type CategorySpec = (&'static str, &'static str, &'static [RuleSpec]);

const CRYPTO_LIBRARIES: &[&str] = &[
    "libcrypto.so*",
    "libssl.so*",
    "libgnutls.so*",
    "libnettle.so*",
    "libhogweed.so*",
    "libsodium.so*",
    "libgcrypt.so*",
    "libmbedcrypto.so*",
    "libmbedtls.so*",
    "libmbedx509.so*",
    "libwolfssl.so*",
    "libk5crypto.so*",
];

const CRYPTO_STATIC: &[&str] = &[
    "EVP_*",
    "SSL_*",
    "OPENSSL_*",
    "gnutls_*",
    "nettle_*",
    "sodium_*",
    "crypto_aead_*",
    "crypto_box*",
    "crypto_secretbox*",
    "crypto_sign*",
    "gcry_*",
    "mbedtls_*",
    "wolfSSL_*",
];

const GO_CRYPTO: &[&str] = &[
    "crypto/*",
    "golang.org/x/crypto/*",
    "vendor/golang.org/x/crypto/*",
];

const TLS_OPENSSL: &[&str] = &["SSL_*", "TLS_*", "DTLS_*", "OPENSSL_init_ssl"];

const TLS_GNUTLS: &[&str] = &[
    "gnutls_init",
    "gnutls_deinit",
    "gnutls_handshake*",
    "gnutls_record_*",
    "gnutls_bye",
    "gnutls_session_*",
    "gnutls_priority_*",
    "gnutls_credentials_*",
    "gnutls_certificate_*",
    "gnutls_transport_*",
    "gnutls_alert_*",
    "gnutls_server_name_*",
    "gnutls_alpn_*",
];

const TLS_STATIC_AND_GO: &[&str] = &[
    "SSL_*",
    "TLS_*",
    "DTLS_*",
    "gnutls_handshake*",
    "gnutls_record_*",
    "gnutls_bye",
    "mbedtls_ssl_*",
    "wolfSSL_*",
    "crypto/tls.*",
];

/// libc's socket and name-resolution calls, with the `_FORTIFY_SOURCE` variants that fortified builds (all of
/// Debian's) import instead of the plain names.
const NET_LIBC: &[&str] = &[
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "send",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recv",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "__recv_chk",
    "__recvfrom_chk",
    "shutdown",
    "getaddrinfo",
    "getnameinfo",
    "gethostbyname",
    "gethostbyname2",
    "gethostbyname_r",
    "gethostbyname2_r",
    "gethostbyaddr",
    "gethostbyaddr_r",
];

const NET_GO: &[&str] = &[
    "net.*",
    "net/*",
    "golang.org/x/net/*",
    "vendor/golang.org/x/net/*",
];

const AUTH_LIBRARIES: &[&str] = &[
    "libpam.so*",
    "libpam_misc.so*",
    "libldap.so*",
    "libldap-*.so*",
    "libldap_r*.so*",
    "libkrb5.so*",
    "libgssapi_krb5.so*",
    "libgssapi.so*",
    "libsasl2.so*",
    "libcrypt.so*",
];

const AUTH_STATIC_AND_GO: &[&str] = &[
    "pam_*",
    "ldap_*",
    "krb5_*",
    "gss_*",
    "sasl_*",
    "golang.org/x/oauth2*",
    "net/http.(*Request).BasicAuth",
    "net/http.(*Request).SetBasicAuth",
];

/// libc calls that open, create, remove, rename or change the permissions of files. read/write are left out on
/// purpose (docs/catalog.md says why).
const FILE_LIBC: &[&str] = &[
    "open",
    "open64",
    "openat",
    "openat64",
    "__open_2",
    "__open64_2",
    "__openat_2",
    "__openat64_2",
    "creat",
    "creat64",
    "fopen",
    "fopen64",
    "freopen",
    "freopen64",
    "unlink",
    "unlinkat",
    "remove",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "truncate",
    "truncate64",
    "ftruncate",
    "ftruncate64",
    "mknod",
    "mknodat",
];

const FILE_GO: &[&str] = &[
    "os.Open",
    "os.OpenFile",
    "os.Create",
    "os.CreateTemp",
    "os.ReadFile",
    "os.WriteFile",
    "os.Remove",
    "os.RemoveAll",
    "os.Rename",
    "os.Mkdir",
    "os.MkdirAll",
    "os.MkdirTemp",
    "os.Chmod",
    "os.Chown",
    "os.Lchown",
    "os.Link",
    "os.Symlink",
    "os.Truncate",
    "os.(*File).Chmod",
    "os.(*File).Chown",
    "os.(*File).Truncate",
];

const EXEC_LIBC: &[&str] = &[
    "execve",
    "execveat",
    "fexecve",
    "execv",
    "execvp",
    "execvpe",
    "execl",
    "execlp",
    "execle",
    "posix_spawn",
    "posix_spawnp",
    "system",
    "popen",
];

const EXEC_GO: &[&str] = &[
    "os/exec.*",
    "os.StartProcess",
    "syscall.Exec",
    "syscall.ForkExec",
    "syscall.StartProcess",
];

pub(super) const BUILTIN: &[CategorySpec] = &[
    (
        "crypto",
        "Cryptographic primitives: OpenSSL (libcrypto, libssl), GnuTLS, Nettle/Hogweed, libsodium, libgcrypt, \
         Mbed TLS, wolfSSL, Kerberos' libk5crypto, and Go's crypto packages",
        &[
            (CRYPTO_LIBRARIES, &["*"]),
            (&["*"], CRYPTO_STATIC),
            (&["*"], GO_CRYPTO),
        ],
    ),
    (
        "tls",
        "TLS/DTLS sessions: libssl's SSL_*/TLS_*/DTLS_* API, GnuTLS handshake, record and session functions, Mbed TLS \
         and wolfSSL sessions, Go's crypto/tls",
        &[
            (&["libssl.so*"], TLS_OPENSSL),
            (&["libgnutls.so*"], TLS_GNUTLS),
            (&["libmbedtls.so*"], &["mbedtls_ssl_*"]),
            (&["libwolfssl.so*"], &["wolfSSL_*"]),
            (&["*"], TLS_STATIC_AND_GO),
        ],
    ),
    (
        "net",
        "Network I/O: libc's socket and name-resolution calls, libresolv, libcurl, and Go's net packages",
        &[
            (&["*"], NET_LIBC),
            (&["libresolv.so*"], &["res_*", "__res_*"]),
            (
                &["libcurl.so*", "libcurl-gnutls.so*", "libcurl-nss.so*"],
                &["curl_*"],
            ),
            (&["*"], NET_GO),
        ],
    ),
    (
        "auth",
        "Authentication and credentials: PAM, LDAP, Kerberos 5 and GSS-API, Cyrus SASL, libcrypt password hashing, \
         Go's golang.org/x/oauth2 and HTTP basic auth",
        &[(AUTH_LIBRARIES, &["*"]), (&["*"], AUTH_STATIC_AND_GO)],
    ),
    (
        "file",
        "File-system changes: libc's open/create/remove/rename/link/permission calls and Go's os file functions \
         (read/write excluded)",
        &[(&["*"], FILE_LIBC), (&["*"], FILE_GO)],
    ),
    (
        "exec",
        "Program execution: libc's exec*/posix_spawn/system/popen and Go's os/exec",
        &[(&["*"], EXEC_LIBC), (&["*"], EXEC_GO)],
    ),
];
