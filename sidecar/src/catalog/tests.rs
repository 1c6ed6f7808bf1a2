// SPDX-License-Identifier: Apache-2.0

use super::*;

fn compile(patterns: &[&str]) -> HotSelector {
    let patterns: Vec<String> = patterns.iter().map(|s| (*s).to_owned()).collect();
    Catalog::builtin().compile(&patterns).unwrap()
}

fn tags(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn builtin_has_the_required_categories() {
    let catalog = Catalog::builtin();
    for name in ["crypto", "tls", "net", "auth", "file"] {
        let category = catalog.category(name).unwrap();
        assert!(!category.description.is_empty());
        assert!(!category.rules.is_empty());
    }
    let names = catalog.category_names();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn category_glob_selects_only_covered_symbols() {
    let sel = compile(&["tls/SSL_*"]);
    assert_eq!(
        sel.tags_for("libssl.so.3", Some("libssl.so.3"), "SSL_read"),
        tags(&["tls"])
    );
    // libcrypto is crypto, not tls: its functions are not selected by a tls pattern.
    assert!(
        sel.tags_for("libcrypto.so.3", Some("libcrypto.so.3"), "EVP_DigestInit")
            .is_empty()
    );
    // The pattern's own glob restricts within the category.
    assert!(
        sel.tags_for("libssl.so.3", Some("libssl.so.3"), "TLS_method")
            .is_empty()
    );
    assert_eq!(sel.categories(), vec!["tls"]);
}

#[test]
fn libraries_match_by_file_name_or_soname() {
    let sel = compile(&["crypto/*"]);
    assert_eq!(
        sel.tags_for("libcrypto.so.3", None, "EVP_sha256"),
        tags(&["crypto"])
    );
    // A renamed file still matches through its soname.
    assert_eq!(
        sel.tags_for("libcrypto-abc123.so", Some("libcrypto.so.3"), "AES_encrypt"),
        tags(&["crypto"])
    );
    // libcurl is not a crypto library.
    assert!(
        sel.tags_for(
            "libcurl.so.4.8.0",
            Some("libcurl.so.4"),
            "curl_easy_perform"
        )
        .is_empty()
    );
}

#[test]
fn go_names_match_category_patterns_directly() {
    let sel = compile(&["crypto/*", "net/http.*"]);
    assert_eq!(
        sel.tags_for("app", None, "crypto/tls.(*Conn).Handshake"),
        tags(&["crypto"])
    );
    assert_eq!(
        sel.tags_for("app", None, "golang.org/x/crypto/chacha20.New"),
        tags(&["crypto"])
    );
    assert_eq!(
        sel.tags_for("app", None, "net/http.(*Client).Do"),
        tags(&["net"])
    );
    // net/http.* asks for net/http only, not all of net.
    assert!(sel.tags_for("app", None, "net.(*conn).Read").is_empty());
    assert!(sel.tags_for("app", None, "main.main").is_empty());

    let tls = compile(&["tls/*"]);
    assert_eq!(
        tls.tags_for("app", None, "crypto/tls.(*Conn).Handshake"),
        tags(&["tls"])
    );
    assert!(tls.tags_for("app", None, "crypto/sha256.block").is_empty());
    let narrow = compile(&["crypto/tls.*"]);
    assert_eq!(
        narrow.tags_for("app", None, "crypto/tls.Dial"),
        tags(&["crypto"])
    );
    assert!(
        narrow
            .tags_for("app", None, "crypto/aes.NewCipher")
            .is_empty()
    );
}

#[test]
fn plain_globs_tag_by_covering_categories_or_custom() {
    let sel = compile(&["SSL_read*", "my_function"]);
    // libssl is in crypto and in tls.
    assert_eq!(
        sel.tags_for("libssl.so.3", Some("libssl.so.3"), "SSL_read_ex"),
        tags(&["crypto", "tls"])
    );
    assert_eq!(sel.tags_for("app", None, "my_function"), tags(&["custom"]));
    assert!(sel.tags_for("app", None, "other").is_empty());
    // Plain globs request no category.
    assert!(sel.categories().is_empty());
    assert!(
        sel.watch_tags_for("libssl.so.3", None, "SSL_read")
            .is_empty()
    );
}

#[test]
fn sym_prefix_allows_slashes() {
    let sel = compile(&["sym:example.com/lib.*"]);
    assert_eq!(
        sel.tags_for("app", None, "example.com/lib.Do"),
        tags(&["custom"])
    );
    let go_net = compile(&["sym:net/http.*"]);
    assert_eq!(go_net.tags_for("app", None, "net/http.Get"), tags(&["net"]));
}

#[test]
fn unknown_category_lists_the_known_ones() {
    let err = Catalog::builtin()
        .compile(&["golang.org/x/crypto/*".to_owned()])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::UnknownCategory { .. }));
    for name in ["auth", "crypto", "file", "net", "tls"] {
        assert!(msg.contains(name), "{msg}");
    }
    assert!(msg.contains("sym:golang.org/x/crypto/*"), "{msg}");
}

#[test]
fn malformed_patterns_are_errors() {
    for p in ["", "  ", "crypto/", "sym:"] {
        let err = Catalog::builtin().compile(&[p.to_owned()]).unwrap_err();
        assert!(
            matches!(err, CatalogError::InvalidPattern { .. }),
            "{p:?}: {err}"
        );
    }
    assert!(matches!(
        Catalog::builtin()
            .compile(&["/SSL_read".to_owned()])
            .unwrap_err(),
        CatalogError::UnknownCategory { .. }
    ));
}

#[test]
fn libc_calls_are_hot_in_libc_and_in_static_executables() {
    let sel = compile(&["net/*", "file/*"]);
    assert_eq!(
        sel.tags_for("libc.so.6", Some("libc.so.6"), "connect"),
        tags(&["net"])
    );
    assert_eq!(
        sel.tags_for("libc.so.6", Some("libc.so.6"), "__recv_chk"),
        tags(&["net"])
    );
    assert_eq!(
        sel.tags_for("libc.so.6", Some("libc.so.6"), "openat"),
        tags(&["file"])
    );
    assert_eq!(sel.tags_for("busybox", None, "unlink"), tags(&["file"]));
    // read/write are deliberately not file functions.
    assert!(
        sel.tags_for("libc.so.6", Some("libc.so.6"), "read")
            .is_empty()
    );
    assert!(
        sel.tags_for("libc.so.6", Some("libc.so.6"), "write")
            .is_empty()
    );
    assert_eq!(
        sel.tags_for("libcurl.so.4", Some("libcurl.so.4"), "curl_easy_perform"),
        tags(&["net"])
    );
    // Versioned names match by their bare name.
    assert_eq!(
        sel.tags_for("libc.so.6", None, "connect@GLIBC_2.2.5"),
        tags(&["net"])
    );
}

#[test]
fn auth_covers_the_auth_libraries() {
    let sel = compile(&["auth/*"]);
    for (file, sym) in [
        ("libpam.so.0", "pam_authenticate"),
        ("libldap-2.5.so.0", "ldap_sasl_bind_s"),
        ("libkrb5.so.3", "krb5_get_init_creds_password"),
        ("libgssapi_krb5.so.2", "gss_init_sec_context"),
        ("libsasl2.so.2", "sasl_client_start"),
    ] {
        assert_eq!(
            sel.tags_for(file, None, sym),
            tags(&["auth"]),
            "{file} {sym}"
        );
    }
    assert!(sel.tags_for("libz.so.1", None, "inflate").is_empty());
}

#[test]
fn watch_tags_ignore_the_user_glob() {
    let sel = compile(&["tls/SSL_read", "crypto/EVP_Digest*"]);
    assert_eq!(
        sel.watch_tags_for("libssl.so.3", None, "SSL_write"),
        tags(&["crypto", "tls"])
    );
    assert_eq!(
        sel.watch_tags_for("libcrypto.so.3", None, "AES_encrypt"),
        tags(&["crypto"])
    );
    assert!(sel.watch_tags_for("libc.so.6", None, "connect").is_empty());
    assert_eq!(sel.categories(), vec!["crypto", "tls"]);
    assert!(sel.may_select_in("libssl.so.3", None));
}

#[test]
fn tags_are_sorted_and_unique_across_patterns() {
    let sel = compile(&["tls/*", "crypto/*", "SSL_*", "tls/SSL_*"]);
    assert_eq!(
        sel.tags_for("libssl.so.3", None, "SSL_connect"),
        tags(&["crypto", "tls"])
    );
}

#[test]
fn extension_appends_rules_and_adds_categories() {
    let mut catalog = Catalog::builtin();
    let before = catalog.category("crypto").unwrap().rules.len();
    let ext = br#"{
        "categories": {
            "crypto": {"rules": [{"libraries": ["libmycrypto.so*"], "symbols": ["mc_*"]}]},
            "db": {"description": "Database clients", "rules": [
                {"libraries": ["libpq.so*"], "symbols": ["PQexec*", "PQconnect*"]}
            ]}
        }
    }"#;
    catalog.extend_from_slice(ext, "ext.json").unwrap();
    assert_eq!(catalog.category("crypto").unwrap().rules.len(), before + 1);
    assert!(catalog.category_names().contains(&"db"));
    let sel = catalog
        .compile(&["db/*".to_owned(), "crypto/mc_*".to_owned()])
        .unwrap();
    assert_eq!(
        sel.tags_for("libpq.so.5", None, "PQexecParams"),
        tags(&["db"])
    );
    assert_eq!(
        sel.tags_for("libmycrypto.so.1", None, "mc_encrypt"),
        tags(&["crypto"])
    );
    // A second file may append to the category the first one added, without a description.
    catalog
        .extend_from_slice(
            br#"{"categories": {"db": {"rules": [{"libraries": ["*"], "symbols": ["PQ*"]}]}}}"#,
            "b",
        )
        .unwrap();
    assert_eq!(catalog.category("db").unwrap().rules.len(), 2);
}

#[test]
fn extension_from_file_and_errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ext.json");
    std::fs::write(
        &path,
        br#"{"categories": {"db": {"description": "d", "rules": [{"libraries": ["libpq.so*"]}]}}}"#,
    )
    .unwrap();
    let err = Catalog::builtin()
        .load_extension(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ext.json")
            && err.contains("categories.db.rules[0].symbols")
            && err.contains("missing"),
        "{err}"
    );

    let missing = Catalog::builtin()
        .load_extension(&dir.path().join("nope.json"))
        .unwrap_err();
    assert!(matches!(missing, CatalogError::Read { .. }));
    assert!(missing.to_string().contains("nope.json"));

    let cases: &[(&[u8], &str)] = &[
        (b"{\"categories\": {", "not valid JSON"),
        (b"[]", "(root)"),
        (b"{}", "categories: is missing"),
        (b"{\"categories\": []}", "categories: must be an object"),
        (b"{\"categories\": {}, \"extra\": 1}", "extra: unknown field"),
        (b"{\"categories\": {\"db\": {\"rules\": []}}}", "categories.db.description"),
        (b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": []}}}", "at least one rule"),
        (b"{\"categories\": {\"db\": {\"description\": 5, \"rules\": []}}}", "categories.db.description: must be a string"),
        (b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": {}}}}", "categories.db.rules: must be an array"),
        (b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": [7]}}}", "categories.db.rules[0]: must be an object"),
        (
            b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": [{\"libraries\": \"x\", \"symbols\": [\"a\"]}]}}}",
            "categories.db.rules[0].libraries: must be an array",
        ),
        (
            b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": [{\"libraries\": [1], \"symbols\": [\"a\"]}]}}}",
            "categories.db.rules[0].libraries[0]: must be a string",
        ),
        (
            b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": [{\"libraries\": [\"*\"], \"symbols\": []}]}}}",
            "categories.db.rules[0].symbols: must have at least one glob",
        ),
        (
            b"{\"categories\": {\"db\": {\"description\": \"d\", \"rules\": [{\"libraries\": [\"*\"], \"symbols\": [\"a\"], \"x\": 1}]}}}",
            "categories.db.rules[0].x: unknown field",
        ),
        (b"{\"categories\": {\"a/b\": {\"description\": \"d\", \"rules\": []}}}", "categories.a/b"),
        (b"{\"categories\": {\"custom\": {\"description\": \"d\", \"rules\": []}}}", "reserved"),
    ];
    for (bytes, expected) in cases {
        let mut catalog = Catalog::builtin();
        let err = catalog
            .extend_from_slice(bytes, "ext.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ext.json") && err.contains(expected),
            "{}: {err}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(
            catalog,
            Catalog::builtin(),
            "a failed extension changes nothing"
        );
    }
}

#[test]
fn many_symbols_are_tagged_quickly() {
    // The shape of a real closure: thousands of exports per library, a handful of patterns. Correctness check
    // on the cached per-object rules, not a timing assertion.
    let sel = compile(&[
        "crypto/*",
        "tls/*",
        "net/*",
        "auth/*",
        "file/*",
        "SSL_read*",
    ]);
    let mut hot = 0;
    for i in 0..5000 {
        let sym = format!("EVP_fn_{i}");
        hot += usize::from(
            !sel.tags_for("libcrypto.so.3", Some("libcrypto.so.3"), &sym)
                .is_empty(),
        );
        hot += usize::from(
            !sel.tags_for("libz.so.1", Some("libz.so.1"), &format!("z_{i}"))
                .is_empty(),
        );
    }
    assert_eq!(hot, 5000);
}

/// docs/catalog.md must document every built-in rule: each category has a `## <name>` section naming each
/// of its library and symbol globs in backticks.
#[test]
fn docs_document_every_builtin_rule() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/catalog.md"))
        .unwrap();
    for category in Catalog::builtin().categories() {
        let heading = format!("\n## {}\n", category.name);
        let start = docs
            .find(&heading)
            .unwrap_or_else(|| panic!("docs/catalog.md has no section {heading:?}"));
        let rest = &docs[start + heading.len()..];
        let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
        for rule in &category.rules {
            for glob in rule.libraries.iter().chain(&rule.symbols) {
                assert!(
                    section.contains(&format!("`{glob}`")),
                    "docs/catalog.md section {} does not mention `{glob}`",
                    category.name
                );
            }
        }
    }
}

/// The example extension in docs/catalog.md is valid and is the one shipped as a test fixture.
#[test]
fn documented_extension_example_loads() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/catalog.md"))
        .unwrap();
    let start = docs.find("```json\n").unwrap() + "```json\n".len();
    let example = &docs[start..start + docs[start..].find("```").unwrap()];
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/catalog/db-extension.json"
    );
    assert_eq!(std::fs::read_to_string(fixture).unwrap(), example);

    let mut catalog = Catalog::builtin();
    catalog.load_extension(Path::new(fixture)).unwrap();
    assert_eq!(catalog.category("db").unwrap().rules.len(), 2);
    let sel = catalog
        .compile(&["db/*".to_owned(), "crypto/*".to_owned()])
        .unwrap();
    assert_eq!(
        sel.tags_for("libpq.so.5", Some("libpq.so.5"), "PQexecParams"),
        tags(&["db"])
    );
    assert_eq!(
        sel.tags_for("libsqlite3.so.0", None, "sqlite3_step"),
        tags(&["db"])
    );
    assert!(
        sel.tags_for("libsqlite3.so.0", None, "sqlite3_column_text")
            .is_empty()
    );
    assert_eq!(
        sel.tags_for("libmycrypto.so.1", None, "mc_encrypt"),
        tags(&["crypto"])
    );
}

#[test]
fn display_lists_every_category_and_rule() {
    let text = Catalog::builtin().to_string();
    for category in Catalog::builtin().categories() {
        assert!(text.contains(&format!("{}: {}\n", category.name, category.description)));
        for rule in &category.rules {
            assert!(text.contains(&format!("    symbols: {}\n", rule.symbols.join(" "))));
        }
    }
    assert!(
        text.find("auth:").unwrap() < text.find("crypto:").unwrap(),
        "sorted by name"
    );
}
