// SPDX-License-Identifier: Apache-2.0

use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

const STATUS_TEXT: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: openssl
Version: 3.0.19-1~deb12u2
Description: Secure Sockets Layer toolkit - shared libraries
 This package is part of the OpenSSL project's implementation of the SSL and TLS
 .
 cryptographic protocols.

Package: curl
Status: hold ok installed
Architecture: amd64
Version: 7.88.1-10+deb12u15
Conffiles:
 /etc/curlrc 0123456789abcdef

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib (1:1.2.13.dfsg-1)
Version: 1:1.2.13.dfsg-1

Package: oldpkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: gone
Status: purge ok not-installed
Architecture: amd64

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u14";

/// A Debian-like root: usrmerge links, os-release through a symlink, a status file without a trailing newline,
/// .list files in the pre-usrmerge (/lib) and merged (/usr/lib) spellings, one package without a .list.
fn debian_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in [
        "usr/lib/x86_64-linux-gnu",
        "usr/bin",
        "etc",
        "var/lib/dpkg/info",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    symlink("usr/lib", r.join("lib")).unwrap();
    symlink("usr/bin", r.join("bin")).unwrap();
    fs::write(
        r.join("usr/lib/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    symlink("../usr/lib/os-release", r.join("etc/os-release")).unwrap();
    for f in [
        "usr/lib/x86_64-linux-gnu/libssl.so.3",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/bin/curl",
    ] {
        fs::write(r.join(f), b"\x7fELF").unwrap();
    }
    fs::write(r.join("var/lib/dpkg/status"), STATUS_TEXT).unwrap();
    let info = r.join("var/lib/dpkg/info");
    fs::write(
        info.join("libssl3:amd64.list"),
        "/.\n/usr\n/usr/lib\n/usr/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu/libssl.so.3\n",
    )
    .unwrap();
    // libc6 in bookworm still lists /lib/...: dpkg -S on the canonical /usr/lib path finds nothing.
    fs::write(
        info.join("libc6:amd64.list"),
        "/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libc.so.6\r\n",
    )
    .unwrap();
    fs::write(info.join("curl.list"), "/.\n/usr/bin/curl").unwrap();
    // A config-files package's list must not count.
    fs::write(info.join("oldpkg.list"), "/usr/bin/curl\n").unwrap();
    // zlib1g has no .list at all.
    dir
}

fn load(dir: &tempfile::TempDir) -> DpkgDb {
    DpkgDb::load(&RootFs::new(dir.path()).unwrap())
        .unwrap()
        .unwrap()
}

#[test]
fn installed_packages_and_purls() {
    let dir = debian_root();
    let db = load(&dir);
    let names: Vec<&str> = db.packages().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["libssl3", "curl", "zlib1g", "libc6"],
        "held packages are installed, config-files are not"
    );
    let ssl = db.package("libssl3", Some("amd64")).unwrap();
    assert_eq!(ssl.source.as_deref(), Some("openssl"));
    assert_eq!(
        ssl.purl,
        "pkg:deb/debian/libssl3@3.0.19-1~deb12u2?arch=amd64&distro=debian-12"
    );
    let curl = db.package("curl", None).unwrap();
    assert_eq!(
        curl.purl,
        "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u15?arch=amd64&distro=debian-12"
    );
    assert_eq!(curl.source, None);
    let zlib = db.package("zlib1g", None).unwrap();
    assert_eq!(zlib.source.as_deref(), Some("zlib"));
    assert_eq!(
        zlib.purl,
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        db.package("libc6", None).unwrap().version,
        "2.36-9+deb12u14",
        "last stanza without newline"
    );
    assert!(db.package("libssl3", Some("i386")).is_none());
    assert_eq!(db.os_release().id.as_deref(), Some("debian"));
}

#[test]
fn owner_resolves_list_entries_through_the_root() {
    let dir = debian_root();
    let db = load(&dir);
    let owner = |p: &str| db.owner(p).map(|p| p.name.clone());
    assert_eq!(
        owner("/usr/lib/x86_64-linux-gnu/libssl.so.3").as_deref(),
        Some("libssl3")
    );
    assert_eq!(
        owner("/usr/lib/x86_64-linux-gnu/libc.so.6").as_deref(),
        Some("libc6"),
        "usrmerge + CRLF"
    );
    assert_eq!(
        owner("/usr/bin/curl").as_deref(),
        Some("curl"),
        "list without trailing newline"
    );
    assert_eq!(
        owner("/usr/lib/x86_64-linux-gnu/libz.so.1"),
        None,
        "zlib1g has no .list"
    );
    assert_eq!(owner("/usr/lib/x86_64-linux-gnu/libother.so"), None);
    assert_eq!(
        owner("/usr/lib/libssl.so.3"),
        None,
        "same name, other directory"
    );
    assert_eq!(owner("no-slash"), None);
    assert_eq!(db.packages_without_file_list(), ["zlib1g"]);
}

#[test]
fn root_without_dpkg_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let root = RootFs::new(dir.path()).unwrap();
    assert!(DpkgDb::load(&root).unwrap().is_none());
    fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
    assert!(DpkgDb::load(&root).unwrap().is_none());
}

#[test]
fn status_without_info_dir_owns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
    fs::write(dir.path().join("var/lib/dpkg/status"), STATUS_TEXT).unwrap();
    let db = load(&dir);
    assert_eq!(db.packages().len(), 4);
    assert_eq!(db.file_entries(), 0);
    assert_eq!(db.os_release(), &OsRelease::default());
    // No os-release: namespace debian, no distro qualifier.
    assert_eq!(
        db.package("curl", None).unwrap().purl,
        "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u15?arch=amd64"
    );
}

#[test]
fn malformed_status_files_are_errors_with_a_line() {
    let cases = [
        (
            "Package: a\nStatus: install ok installed\nArchitecture: amd64\n",
            "line 1: installed package a has no Version",
        ),
        (
            "Package: a\nStatus: install ok installed\nVersion: 1\n",
            "has no Architecture",
        ),
        (
            "Status: install ok installed\nVersion: 1\n\nPackage: b\n",
            "line 1: stanza has no Package field",
        ),
        (
            "Package: a\nthis is not a field\n",
            "line 2: expected `Field: value`",
        ),
        (
            " leading continuation\n",
            "line 1: continuation line outside of a stanza",
        ),
    ];
    for (text, expected) in cases {
        let err = parse_status(text, Path::new("/root/var/lib/dpkg/status"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/root/var/lib/dpkg/status") && err.contains(expected),
            "{text:?}: {err}"
        );
    }
    // Through load too: the error names the file.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
    fs::write(dir.path().join("var/lib/dpkg/status"), "garbage\n").unwrap();
    let err = DpkgDb::load(&RootFs::new(dir.path()).unwrap()).unwrap_err();
    assert!(matches!(err, DpkgError::Parse { line: 1, .. }), "{err}");
}

#[test]
fn status_edge_cases_parse() {
    // CRLF line endings, blank lines with spaces, case-insensitive field names, an empty file.
    let text = "package: a\r\nstatus: install ok installed\r\narchitecture: all\r\nversion: 1.0\r\n \r\n\r\n";
    let entries = parse_status(text, Path::new("s")).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].name.as_str(), entries[0].version.as_str()),
        ("a", "1.0")
    );
    assert!(parse_status("", Path::new("s")).unwrap().is_empty());
    // Not installed states are skipped even without Version.
    let text = "Package: x\nStatus: install ok half-installed\n\nPackage: y\nStatus: install reinstreq installed\n";
    assert!(parse_status(text, Path::new("s")).unwrap().is_empty());
}

#[test]
fn purl_encoding_follows_the_purl_spec() {
    // packageurl-python 0.17 (the reference implementation) writes exactly these.
    assert_eq!(
        deb_purl(
            "debian",
            "libgmp10",
            "2:6.2.1+dfsg1-1.1",
            "amd64",
            Some("debian-12")
        ),
        "pkg:deb/debian/libgmp10@2:6.2.1%2Bdfsg1-1.1?arch=amd64&distro=debian-12"
    );
    assert_eq!(
        deb_purl("debian", "libstdc++6", "12.2.0-14", "amd64", None),
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64"
    );
    assert_eq!(percent_encode("a b/c@d?e#f%"), "a%20b%2Fc%40d%3Fe%23f%25");
    assert_eq!(percent_encode("1.0~rc1-2_x"), "1.0~rc1-2_x");
}

#[test]
fn os_release_parsing() {
    let os = OsRelease::parse(
        "# comment\nNAME='Ubuntu'\nID=ubuntu\nVERSION_ID=\"22.04\"\nID_LIKE=debian\n",
    );
    assert_eq!(os.id.as_deref(), Some("ubuntu"));
    assert_eq!(os.distro_qualifier().as_deref(), Some("ubuntu-22.04"));
    let sid = OsRelease::parse("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\n");
    assert_eq!(
        sid.distro_qualifier(),
        None,
        "testing/unstable have no VERSION_ID"
    );
    assert_eq!(
        OsRelease::parse("ID=\"with \\\"quote\\\"\"").id.as_deref(),
        Some("with \"quote\"")
    );
    assert_eq!(OsRelease::default().purl_namespace(), "debian");
}

/// This machine's own database (Debian bookworm): every package dpkg-query reports installed is loaded, and
/// the owners of curl's closure agree with `dpkg -S` - including libc6, which `dpkg -S` only finds under its
/// pre-usrmerge /lib path.
#[cfg(target_arch = "x86_64")]
#[test]
fn real_machine_database_agrees_with_dpkg() {
    let root = RootFs::new(Path::new("/")).unwrap();
    let db = DpkgDb::load(&root).unwrap().unwrap();
    let query = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev} ${binary:Package}\n"])
        .output()
        .unwrap();
    let installed = String::from_utf8(query.stdout)
        .unwrap()
        .lines()
        // Abbrev: want, state, error flag; state 'i' with no error flag is installed.
        .filter(|l| l.as_bytes().get(1) == Some(&b'i') && l.as_bytes().get(2) == Some(&b' '))
        .count();
    assert_eq!(db.packages().len(), installed);
    assert!(db.file_entries() > 10_000);

    for (path, package) in [
        ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "libssl3"),
        ("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "libssl3"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "libc6"),
        ("/usr/lib/x86_64-linux-gnu/libcurl.so.4.8.0", "libcurl4"),
        ("/usr/bin/curl", "curl"),
    ] {
        let owner = db
            .owner(path)
            .unwrap_or_else(|| panic!("no owner for {path}"));
        assert_eq!(owner.name, package, "{path}");
        assert!(
            owner
                .purl
                .starts_with(&format!("pkg:deb/debian/{package}@")),
            "{}",
            owner.purl
        );
        assert!(
            owner.purl.ends_with("?arch=amd64&distro=debian-12"),
            "{}",
            owner.purl
        );
    }
}
