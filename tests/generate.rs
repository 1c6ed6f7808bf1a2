// SPDX-License-Identifier: Apache-2.0
//! `linkguard map generate` / `map validate` / `map catalog` end to end, on this machine's real
//! binaries (curl and its closure: libcurl, libssl, libcrypto, libc), real SBOMs and the ELF fixtures
//! of tests/fixtures/elf. Expected build-ids and offsets come from binutils' readelf.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed step is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use linkguard_integration_tests::{fixture, linkguard};
use serde_json::Value;

const GENERATED_AT: &str = "2026-01-01T00:00:00Z";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = linkguard(args);
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The CycloneDX 1.7 SBOM that distro2sbom (PyPI) wrote for curl's Debian packages on this machine kind
/// (tests/fixtures/sbom/README.md).
fn distro2sbom_fixture() -> PathBuf {
    fixture("sbom/curl-debian12.distro2sbom.cdx17.json")
}

/// Generates into a temp dir with the fixed timestamp; returns the run and the map file.
fn generate(dir: &Path, extra: &[&str]) -> (Run, PathBuf) {
    let out = dir.join("map.json");
    let mut args = vec![
        "map",
        "generate",
        "--generated-at",
        GENERATED_AT,
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (run(&args), out)
}

fn read_map(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn paths(map: &Value) -> &Vec<Value> {
    map["predicate"]["expectedPaths"]
        .as_array()
        .expect("expectedPaths")
}

/// The first call of the path for `symbol` whose binary's file name starts with `library`.
fn call<'a>(map: &'a Value, symbol: &str, library: &str) -> &'a Value {
    paths(map)
        .iter()
        .map(|p| &p["calls"][0])
        .find(|c| {
            c["symbol"] == symbol
                && c["binary"]["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .starts_with(library)
        })
        .unwrap_or_else(|| panic!("no path for {symbol} in {library}"))
}

fn readelf(args: &[&str], path: &str) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(path)
        .output()
        .expect("readelf (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn readelf_build_id(path: &str) -> String {
    let notes = readelf(&["-n"], path);
    let line = notes
        .lines()
        .find(|l| l.contains("Build ID:"))
        .expect("Build ID note");
    line.rsplit(' ').next().unwrap().to_owned()
}

/// readelf's answer for the uprobe offset of `symbol@@version` (or `symbol` in .symtab): the
/// symbol value translated through the LOAD program header that contains it.
fn readelf_offset(path: &str, symbol_column: &str, table: &str) -> u64 {
    let syms = readelf(&[table, "-W"], path);
    let line = syms
        .lines()
        .find(|l| l.split_whitespace().nth(7) == Some(symbol_column))
        .unwrap_or_else(|| panic!("{symbol_column} in readelf {table} {path}"));
    let value = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
    for load in readelf(&["-lW"], path)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("LOAD"))
    {
        let f: Vec<u64> = load
            .split_whitespace()
            .skip(1)
            .take(4)
            .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap())
            .collect();
        if value >= f[1] && value < f[1] + f[3] {
            return value - f[1] + f[0];
        }
    }
    panic!("{symbol_column} of {path} is in no LOAD segment")
}

fn curl_args(sbom: &Path) -> Vec<String> {
    [
        "--sbom",
        sbom.to_str().unwrap(),
        "--rootfs",
        "/",
        "--service",
        "web",
        "--entrypoint",
        "/usr/bin/curl",
        "--hot-functions",
        "crypto/*",
        "tls/*",
        "net/*",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn curl_map_matches_readelf_and_validates() {
    let dir = tempfile::tempdir().unwrap();
    let args = curl_args(&distro2sbom_fixture());
    let (gen_run, out) = generate(dir.path(), &strs(&args));
    assert_eq!(gen_run.code, 0, "{}", gen_run.stderr);
    assert!(
        gen_run.stderr.contains("libraries in the closure"),
        "summary on stderr: {}",
        gen_run.stderr
    );

    let validate = run(&["map", "validate", out.to_str().unwrap()]);
    assert_eq!(validate.code, 0, "{}{}", validate.stdout, validate.stderr);
    let map = read_map(&out);
    let n = paths(&map).len();
    assert_eq!(
        validate.stdout.trim(),
        format!("valid: {n} paths ({n} required)")
    );

    let libssl = std::fs::canonicalize("/lib/x86_64-linux-gnu/libssl.so.3").unwrap();
    let libcrypto = std::fs::canonicalize("/lib/x86_64-linux-gnu/libcrypto.so.3").unwrap();
    let (libssl, libcrypto) = (libssl.to_str().unwrap(), libcrypto.to_str().unwrap());

    let connect = call(&map, "SSL_connect", "libssl.so.3");
    assert_eq!(connect["binary"]["path"], libssl);
    assert_eq!(connect["binary"]["buildId"], readelf_build_id(libssl));
    assert_eq!(connect["version"], "OPENSSL_3.0.0");
    assert_eq!(
        connect["offset"],
        readelf_offset(libssl, "SSL_connect@@OPENSSL_3.0.0", "--dyn-syms")
    );
    assert!(
        connect["caller"]["path"]
            .as_str()
            .unwrap()
            .contains("libcurl.so.4"),
        "libcurl calls SSL_connect"
    );
    assert!(
        connect["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/libssl3"),
        "{}",
        connect["purl"]
    );

    // libcrypto functions called by libssl and by libcurl.
    for symbol in ["EVP_DigestInit_ex", "EVP_CIPHER_CTX_new"] {
        let c = call(&map, symbol, "libcrypto.so.3");
        assert_eq!(c["binary"]["path"], libcrypto);
        assert_eq!(c["binary"]["buildId"], readelf_build_id(libcrypto));
        let expected = readelf_offset(libcrypto, &format!("{symbol}@@OPENSSL_3.0.0"), "--dyn-syms");
        assert_eq!(c["offset"], expected, "{symbol}");
        assert!(
            c["purl"].as_str().unwrap().starts_with("pkg:deb/debian/"),
            "{}",
            c["purl"]
        );
    }
    let tagged = |symbol: &str, tag: &str| {
        paths(&map).iter().any(|p| {
            p["calls"][0]["symbol"] == symbol
                && p["tags"].as_array().unwrap().iter().any(|t| t == tag)
        })
    };
    assert!(tagged("SSL_connect", "tls"));
    assert!(tagged("EVP_DigestInit_ex", "crypto"));
    assert!(
        tagged("connect", "net"),
        "libcurl's connect() into libc is a net path"
    );

    let ids: Vec<&str> = paths(&map)
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "ids are unique and sorted");
    assert!(ids.contains(&"curl:SSL_connect@libssl.so.3"));

    let scopes = map["predicate"]["watchScopes"].as_array().unwrap();
    let crypto_scope = scopes
        .iter()
        .find(|s| s["binary"]["path"] == libcrypto)
        .expect("libcrypto watch scope");
    assert!(
        crypto_scope["symbols"].as_array().unwrap().len() > 1000,
        "all functions of libcrypto are watched"
    );

    assert_eq!(
        map["subject"]["purl"], "pkg:oci/web",
        "unbound without --subject"
    );
    assert_eq!(map["predicate"]["generatedAt"], GENERATED_AT);
    assert_eq!(
        map["predicate"]["generatedFrom"]["staticAnalysis"],
        "elf-linkage"
    );
    assert_eq!(
        map["predicate"]["generatedFrom"]["sbom"]["format"],
        "CycloneDX"
    );
}

#[test]
fn same_inputs_give_byte_identical_maps() {
    let sbom = distro2sbom_fixture();
    let hex = "0123456789abcdef".repeat(4);
    let subject = format!("registry.example/web@sha256:{hex}");
    let mut args = curl_args(&sbom);
    args.extend([
        "--subject".into(),
        subject,
        "--tag-min".into(),
        "tls=1.0".into(),
    ]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (run_a, out_a) = generate(a.path(), &strs(&args));
    let (run_b, out_b) = generate(b.path(), &strs(&args));
    assert_eq!((run_a.code, run_b.code), (0, 0), "{}", run_a.stderr);
    assert_eq!(
        std::fs::read(&out_a).unwrap(),
        std::fs::read(&out_b).unwrap()
    );
    let map = read_map(&out_a);
    assert_eq!(map["subject"]["digest"]["sha256"], hex);
    assert_eq!(
        map["subject"]["purl"],
        format!("pkg:oci/registry.example/web@sha256:{hex}")
    );
    assert_eq!(map["predicate"]["coverage"]["perTag"]["tls"], 1.0);
}

#[test]
fn unknown_category_lists_the_known_ones_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    let (r, out) = generate(
        dir.path(),
        &[
            "--sbom",
            sbom.to_str().unwrap(),
            "--service",
            "web",
            "--entrypoint",
            "/usr/bin/curl",
            "--hot-functions",
            "nosuch/*",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    for known in ["crypto", "tls", "net", "auth", "file"] {
        assert!(r.stderr.contains(known), "{known} listed in: {}", r.stderr);
    }
    assert!(r.stderr.contains("nosuch"), "{}", r.stderr);
    assert!(!out.exists(), "a failed run leaves no map");
}

#[test]
fn bad_subject_and_tag_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = curl_args(&distro2sbom_fixture());
    args.extend(["--subject".into(), "web:latest".into()]);
    let (r, _) = generate(dir.path(), &strs(&args));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--subject"), "{}", r.stderr);

    let mut args = curl_args(&distro2sbom_fixture());
    args.extend(["--tag-min".into(), "auth=0.5".into()]);
    let (r, _) = generate(dir.path(), &strs(&args));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--tag-min auth"), "{}", r.stderr);
}

/// A rootfs with curl and its whole closure copied in, except libssl.so.3.
fn rootfs_without_libssl() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/curl", root.path().join("usr/bin/curl")).unwrap();
    let ldd = Command::new("ldd")
        .arg("/usr/bin/curl")
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let mut copied = 0;
    for line in text.lines() {
        let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) else {
            continue;
        };
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        if name != "libssl.so.3" {
            std::fs::copy(path, lib.join(name)).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 10, "curl's closure from ldd: {text}");
    std::os::unix::fs::symlink("usr/lib", root.path().join("lib")).unwrap();
    root
}

#[test]
fn missing_library_is_a_diagnostic_not_a_failure() {
    let root = rootfs_without_libssl();
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    let (r, out) = generate(
        dir.path(),
        &[
            "--sbom",
            sbom.to_str().unwrap(),
            "--rootfs",
            root.path().to_str().unwrap(),
            "--service",
            "web",
            "--entrypoint",
            "/usr/bin/curl",
            "--hot-functions",
            "crypto/*",
            "tls/*",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let warning = r
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: library libssl.so.3"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(
        warning.contains("libcurl.so.4"),
        "names who needs it: {warning}"
    );
    let map = read_map(&out);
    let ssl = call(&map, "SSL_connect", "libssl.so.3");
    assert!(
        ssl["unresolved"].as_str().unwrap().contains("libssl.so.3"),
        "{ssl}"
    );
    assert!(ssl.get("offset").is_none());
    // What is present still resolves, with the copied file's build-id.
    let evp = call(&map, "EVP_DigestInit_ex", "libcrypto.so.3");
    assert!(evp.get("unresolved").is_none());
    assert_eq!(
        evp["binary"]["buildId"],
        readelf_build_id("/lib/x86_64-linux-gnu/libcrypto.so.3")
    );
    let validate = run(&["map", "validate", out.to_str().unwrap()]);
    assert_eq!(validate.code, 0, "{}", validate.stdout);
}

#[test]
fn sbom_without_purls_takes_purls_from_dpkg() {
    let dir = tempfile::tempdir().unwrap();
    let sbom = fixture("sbom/curl-debian12.nopurl.cdx17.json");
    assert!(
        !std::fs::read_to_string(&sbom).unwrap().contains("\"purl\""),
        "the fixture has no purls"
    );
    let (r, out) = generate(dir.path(), &strs(&curl_args(&sbom)));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let map = read_map(&out);
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "libssl3"])
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&installed.stdout).into_owned();
    let ssl = call(&map, "SSL_connect", "libssl.so.3");
    let purl = ssl["purl"].as_str().unwrap();
    assert!(
        purl.starts_with(&format!("pkg:deb/debian/libssl3@{version}?")),
        "{purl} vs dpkg {version}"
    );
}

#[test]
fn stripped_binary_resolves_through_dynsym() {
    let exe = fixture("elf/hello-stripped");
    let exe = exe.to_str().unwrap();
    assert!(
        !readelf(&["-S"], exe).contains(".symtab"),
        "the fixture is stripped"
    );
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    let (r, out) = generate(
        dir.path(),
        &[
            "--sbom",
            sbom.to_str().unwrap(),
            "--service",
            "hello",
            "--entrypoint",
            exe,
            "--hot-functions",
            "net/*",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let map = read_map(&out);
    let socket = call(&map, "socket", "libc.so.6");
    assert_eq!(
        socket["caller"]["path"], exe,
        "the stripped binary itself calls socket()"
    );
    assert_eq!(socket["caller"]["buildId"], readelf_build_id(exe));
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    let libc = libc.to_str().unwrap();
    let version = socket["version"].as_str().unwrap();
    assert_eq!(
        socket["offset"],
        readelf_offset(libc, &format!("socket@@{version}"), "--dyn-syms")
    );
    assert_eq!(paths(&map)[0]["entrypoint"], exe);
}

#[test]
fn static_binary_paths_are_its_own_functions() {
    let exe = fixture("elf/hello-static");
    let exe = exe.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    let (r, out) = generate(
        dir.path(),
        &[
            "--sbom",
            sbom.to_str().unwrap(),
            "--service",
            "hello",
            "--entrypoint",
            exe,
            "--hot-functions",
            "hello_*",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let map = read_map(&out);
    let ids: Vec<&str> = paths(&map)
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "hello-static:hello_checksum@hello-static",
            "hello-static:hello_open_socket@hello-static"
        ]
    );
    let c = &paths(&map)[1]["calls"][0];
    assert_eq!(c["binary"]["path"], exe);
    assert!(c.get("caller").is_none(), "the call is inside the binary");
    assert_eq!(c["offset"], readelf_offset(exe, "hello_open_socket", "-s"));
}

#[test]
fn go_binary_functions_match_go_package_patterns() {
    let exe = "/usr/local/bin/docker";
    if !Path::new(exe).exists() {
        println!(
            "SKIP go_binary_functions_match_go_package_patterns: no Go binary with .symtab at {exe}"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    let (r, out) = generate(
        dir.path(),
        &[
            "--sbom",
            sbom.to_str().unwrap(),
            "--service",
            "docker",
            "--entrypoint",
            exe,
            "--hot-functions",
            "crypto/*",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let map = read_map(&out);
    let handshake = call(&map, "crypto/tls.(*Conn).Handshake", "docker");
    assert_eq!(handshake["binary"]["path"], exe);
    assert_eq!(handshake["binary"]["buildId"], readelf_build_id(exe));
    assert_eq!(
        handshake["offset"],
        readelf_offset(exe, "crypto/tls.(*Conn).Handshake", "-s")
    );
}

#[test]
fn stripped_go_binary_functions_come_from_pclntab() {
    let exe = "/usr/local/bin/terraform";
    if !Path::new(exe).exists() {
        println!(
            "SKIP stripped_go_binary_functions_come_from_pclntab: no stripped Go binary at {exe}"
        );
        return;
    }
    assert!(
        !readelf(&["-S"], exe).contains(".symtab"),
        "{exe} is stripped"
    );
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    let (r, out) = generate(
        dir.path(),
        &[
            "--sbom",
            sbom.to_str().unwrap(),
            "--service",
            "tf",
            "--entrypoint",
            exe,
            "--hot-functions",
            "tls/*",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let map = read_map(&out);
    let handshake = call(&map, "crypto/tls.(*Conn).Handshake", "terraform");
    assert!(handshake["offset"].as_u64().unwrap() > 0);
    // No GNU build-id note (only Go's own): the file is identified by its sha256.
    assert!(!readelf(&["-n"], exe).contains("Build ID:"));
    assert!(handshake["binary"].get("buildId").is_none());
    let sha256sum = Command::new("sha256sum")
        .arg(exe)
        .output()
        .expect("sha256sum (coreutils)");
    let digest = String::from_utf8_lossy(&sha256sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(handshake["binary"]["sha256"], digest);
}

#[test]
fn truncated_and_non_elf_entrypoints_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sbom = distro2sbom_fixture();
    for (name, expected) in [
        ("hello-truncated", "truncated"),
        ("not-elf", "not an ELF file"),
    ] {
        let exe = fixture(&format!("elf/{name}"));
        let (r, out) = generate(
            dir.path(),
            &[
                "--sbom",
                sbom.to_str().unwrap(),
                "--service",
                "x",
                "--entrypoint",
                exe.to_str().unwrap(),
                "--hot-functions",
                "net/*",
            ],
        );
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains(expected) && r.stderr.contains(name),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(!out.exists());
    }
}

#[test]
fn output_to_stdout() {
    let args = curl_args(&distro2sbom_fixture());
    let mut all = vec![
        "map",
        "generate",
        "--generated-at",
        GENERATED_AT,
        "--output",
        "-",
    ];
    all.extend(strs(&args));
    let r = run(&all);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let map: Value = serde_json::from_str(&r.stdout).expect("the map on stdout, nothing else");
    assert!(!paths(&map).is_empty());
}

#[test]
fn validate_reports_every_issue() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"_type":"https://stella.ops/predicates/function-map/v1",
            "subject":{"purl":"pkg:oci/web@sha256:abc","digest":{"sha256":"abc"}},
            "predicate":{"schemaVersion":"1.0.0","service":"web","expectedPaths":[],
                         "coverage":{"minObservationRate":1.5},"generatedAt":"yesterday"}}"#,
    )
    .unwrap();
    let r = run(&["map", "validate", bad.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    for field in [
        "subject.digest.sha256",
        "predicate.expectedPaths",
        "minObservationRate",
        "generatedAt",
    ] {
        assert!(r.stdout.contains(field), "{field} in: {}", r.stdout);
    }
}

#[test]
fn catalog_lists_categories() {
    let r = run(&["map", "catalog"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for category in ["crypto", "tls", "net", "auth", "file"] {
        assert!(r.stdout.contains(category), "{category} in: {}", r.stdout);
    }
    assert!(
        r.stdout.contains("libcrypto"),
        "rules name their libraries: {}",
        r.stdout
    );
}

#[test]
fn catalog_extensions_add_categories() {
    let extension = fixture("catalog/db-extension.json");
    let r = run(&["map", "catalog", "--catalog", extension.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("db:") && r.stdout.contains("libpq.so*"),
        "{}",
        r.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let mut args = curl_args(&distro2sbom_fixture());
    args.extend(["--catalog".into(), extension.to_str().unwrap().into()]);
    let (r, out) = generate(dir.path(), &strs(&args));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!paths(&read_map(&out)).is_empty());
}
