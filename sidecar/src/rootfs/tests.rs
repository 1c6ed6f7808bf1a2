// SPDX-License-Identifier: Apache-2.0

use std::os::unix::fs::symlink;

use super::*;

/// A small root: usrmerge links (/lib -> usr/lib, /lib64 -> /usr/lib64 absolute), a library and its soname link.
fn sample_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    let multiarch = format!("usr/lib/{MULTIARCH}");
    fs::create_dir_all(r.join(&multiarch)).unwrap();
    fs::create_dir_all(r.join("usr/lib64")).unwrap();
    fs::create_dir_all(r.join("etc")).unwrap();
    symlink("usr/lib", r.join("lib")).unwrap();
    symlink("/usr/lib64", r.join("lib64")).unwrap();
    fs::write(r.join(&multiarch).join("libfoo.so.1.2.3"), b"foo").unwrap();
    symlink("libfoo.so.1.2.3", r.join(&multiarch).join("libfoo.so.1")).unwrap();
    dir
}

fn root_of(dir: &tempfile::TempDir) -> RootFs {
    RootFs::new(dir.path()).unwrap()
}

fn always(_: &Path) -> bool {
    true
}

#[test]
fn usrmerge_and_soname_links_resolve_inside_the_root() {
    let dir = sample_root();
    let root = root_of(&dir);
    assert_eq!(
        root.canonicalize(&format!("/lib/{MULTIARCH}/libfoo.so.1"))
            .unwrap(),
        format!("/usr/lib/{MULTIARCH}/libfoo.so.1.2.3")
    );
    assert_eq!(root.canonicalize("/").unwrap(), "/");
    assert_eq!(root.canonicalize("//usr/./lib/").unwrap(), "/usr/lib");
    assert_eq!(root.canonicalize("usr/lib").unwrap(), "/usr/lib");
}

#[test]
fn absolute_link_targets_are_relative_to_the_root() {
    let dir = sample_root();
    let r = dir.path();
    // An absolute link to a path that exists on the host but not in the root must not reach the host.
    symlink("/etc/passwd", r.join("etc/passwd-link")).unwrap();
    let root = root_of(&dir);
    assert!(matches!(
        root.canonicalize("/etc/passwd-link"),
        Err(RootFsError::NotFound { .. })
    ));
    fs::write(r.join("etc/passwd"), b"root:x:0:0").unwrap();
    assert_eq!(
        root.canonicalize("/etc/passwd-link").unwrap(),
        "/etc/passwd"
    );
    // /lib64 -> /usr/lib64 (absolute) stays in the root.
    fs::write(r.join("usr/lib64/ld.so"), b"ld").unwrap();
    assert_eq!(
        root.canonicalize("/lib64/ld.so").unwrap(),
        "/usr/lib64/ld.so"
    );
}

#[test]
fn dot_dot_never_escapes_the_root() {
    let dir = sample_root();
    let r = dir.path();
    fs::write(r.join("etc/hostname"), b"image").unwrap();
    symlink("../../../../../../../../etc", r.join("usr/lib/evil")).unwrap();
    let root = root_of(&dir);
    assert_eq!(
        root.canonicalize("/usr/lib/evil/hostname").unwrap(),
        "/etc/hostname"
    );
    assert_eq!(
        root.canonicalize("/../../../etc/hostname").unwrap(),
        "/etc/hostname"
    );
    // The host's /etc/os-release exists, the root's does not.
    assert!(matches!(
        root.canonicalize("/usr/lib/evil/os-release"),
        Err(RootFsError::NotFound { .. })
    ));
    assert_eq!(
        root.host_path("/../../etc/hostname"),
        root.root().join("etc/hostname")
    );
    assert_eq!(
        root.host_path("/lib/x"),
        root.root().join("lib/x"),
        "host_path follows no links"
    );
}

#[test]
fn symlink_loops_are_errors() {
    let dir = sample_root();
    let r = dir.path();
    symlink("b", r.join("a")).unwrap();
    symlink("a", r.join("b")).unwrap();
    symlink("self", r.join("self")).unwrap();
    symlink("/loopdir/x", r.join("loopdir")).unwrap();
    let root = root_of(&dir);
    for path in ["/a", "/b", "/self", "/self/x", "/loopdir"] {
        let err = root.canonicalize(path).unwrap_err();
        assert!(
            matches!(err, RootFsError::SymlinkLoop { .. }),
            "{path}: {err}"
        );
        assert!(err.to_string().contains(path), "{err}");
    }
    // A long but finite chain is fine.
    for i in 0..30 {
        symlink(format!("c{}", i + 1), r.join(format!("c{i}"))).unwrap();
    }
    fs::write(r.join("c30"), b"end").unwrap();
    assert_eq!(root.canonicalize("/c0").unwrap(), "/c30");
}

#[test]
fn missing_and_non_directory_components() {
    let dir = sample_root();
    let root = root_of(&dir);
    let err = root.canonicalize("/usr/nope/libx.so").unwrap_err();
    assert!(
        matches!(&err, RootFsError::NotFound { missing, .. } if missing == "/usr/nope"),
        "{err}"
    );
    let file = format!("/usr/lib/{MULTIARCH}/libfoo.so.1.2.3");
    let err = root.canonicalize(&format!("{file}/x")).unwrap_err();
    assert!(
        matches!(&err, RootFsError::NotADirectory { component, .. } if *component == file),
        "{err}"
    );
    assert!(root.canonicalize(&format!("{file}/.")).is_err());
}

#[test]
fn new_rejects_missing_root_and_files() {
    let dir = sample_root();
    assert!(matches!(
        RootFs::new(&dir.path().join("nope")),
        Err(RootFsError::Open { .. })
    ));
    let file = dir.path().join("etc/file");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        RootFs::new(&file),
        Err(RootFsError::RootNotADirectory { .. })
    ));
}

#[test]
fn library_dirs_follow_ld_so_conf_then_defaults() {
    let dir = sample_root();
    let r = dir.path();
    fs::create_dir_all(r.join("etc/ld.so.conf.d")).unwrap();
    fs::write(
        r.join("etc/ld.so.conf"),
        "# comment\ninclude ld.so.conf.d/*.conf\n/opt/first:/opt/second, /opt/third=libc5\nhwcap 0 nosegneg\n\
         include /etc/ld.so.conf\n",
    )
    .unwrap();
    fs::write(
        r.join("etc/ld.so.conf.d/b.conf"),
        "/opt/b # trailing comment\n/usr/local/lib/\n",
    )
    .unwrap();
    fs::write(
        r.join("etc/ld.so.conf.d/a.conf"),
        format!("/opt/a\n/usr/lib/{MULTIARCH}\n"),
    )
    .unwrap();
    fs::write(r.join("etc/ld.so.conf.d/.hidden.conf"), "/opt/hidden\n").unwrap();
    fs::write(r.join("etc/ld.so.conf.d/ignored.txt"), "/opt/ignored\n").unwrap();
    let root = root_of(&dir);
    let mut expected: Vec<String> = [
        "/opt/a",
        &format!("/usr/lib/{MULTIARCH}"),
        "/opt/b",
        "/usr/local/lib",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expected.extend(["/opt/first", "/opt/second", "/opt/third"].map(String::from));
    for d in default_dirs() {
        if !expected.contains(&d) {
            expected.push(d);
        }
    }
    assert_eq!(root.library_dirs(), expected.as_slice());
}

#[test]
fn library_dirs_without_ld_so_conf_are_the_defaults() {
    let dir = sample_root();
    assert_eq!(root_of(&dir).library_dirs(), default_dirs().as_slice());
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            default_dirs(),
            [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib"
            ]
        );
    }
}

#[test]
fn find_library_searches_rpath_runpath_and_default_dirs() {
    let dir = sample_root();
    let r = dir.path();
    fs::create_dir_all(r.join("opt/app/lib")).unwrap();
    // $ORIGIN/.. is resolved physically, as the kernel does: the origin directory must exist.
    fs::create_dir_all(r.join("opt/app/bin")).unwrap();
    fs::create_dir_all(r.join("opt/rpath")).unwrap();
    fs::write(r.join("opt/app/lib/libfoo.so.1"), b"app's own").unwrap();
    fs::write(r.join("opt/rpath/libfoo.so.1"), b"rpath's").unwrap();
    let root = root_of(&dir);
    let default = format!("/usr/lib/{MULTIARCH}/libfoo.so.1.2.3");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    assert_eq!(
        root.find_library("libfoo.so.1", &[], &[], "/usr/bin", &always)
            .unwrap(),
        default
    );
    // $ORIGIN and ${ORIGIN}, colon-separated lists.
    assert_eq!(
        root.find_library(
            "libfoo.so.1",
            &[],
            &s(&["/nonexistent:$ORIGIN/../lib"]),
            "/opt/app/bin",
            &always
        )
        .unwrap(),
        "/opt/app/lib/libfoo.so.1"
    );
    assert_eq!(
        root.find_library(
            "libfoo.so.1",
            &s(&["${ORIGIN}/../lib"]),
            &[],
            "/opt/app/bin",
            &always
        )
        .unwrap(),
        "/opt/app/lib/libfoo.so.1"
    );
    // DT_RPATH is ignored when DT_RUNPATH is present.
    assert_eq!(
        root.find_library(
            "libfoo.so.1",
            &s(&["/opt/rpath"]),
            &s(&["/opt/app/lib"]),
            "/",
            &always
        )
        .unwrap(),
        "/opt/app/lib/libfoo.so.1"
    );
    assert_eq!(
        root.find_library("libfoo.so.1", &s(&["/opt/rpath"]), &[], "/", &always)
            .unwrap(),
        "/opt/rpath/libfoo.so.1"
    );
    // Relative and empty entries are skipped (relative to the unknown working directory).
    assert_eq!(
        root.find_library("libfoo.so.1", &s(&["opt/rpath", ""]), &[], "/", &always)
            .unwrap(),
        default
    );
    // A name with '/' is resolved directly.
    assert_eq!(
        root.find_library("/opt/rpath/libfoo.so.1", &[], &[], "/", &always)
            .unwrap(),
        "/opt/rpath/libfoo.so.1"
    );
    assert!(root.find_library("", &[], &[], "/", &always).is_none());
    assert!(
        root.find_library("libmissing.so.9", &[], &[], "/", &always)
            .is_none()
    );
}

#[test]
fn find_library_skips_rejected_candidates_and_directories() {
    let dir = sample_root();
    let r = dir.path();
    fs::create_dir_all(r.join("opt/wrongclass")).unwrap();
    fs::write(r.join("opt/wrongclass/libfoo.so.1"), b"32-bit").unwrap();
    fs::create_dir_all(r.join("opt/dir/libfoo.so.1")).unwrap();
    let root = root_of(&dir);
    let runpath = vec!["/opt/dir:/opt/wrongclass".to_owned()];
    let seen = std::cell::RefCell::new(Vec::new());
    let accept = |p: &Path| {
        seen.borrow_mut().push(p.to_owned());
        fs::read(p).map(|b| b != b"32-bit").unwrap_or(false)
    };
    let found = root
        .find_library("libfoo.so.1", &[], &runpath, "/", &accept)
        .unwrap();
    assert_eq!(found, format!("/usr/lib/{MULTIARCH}/libfoo.so.1.2.3"));
    let seen = seen.into_inner();
    assert_eq!(
        seen[0],
        root.root().join("opt/wrongclass/libfoo.so.1"),
        "the directory candidate is never offered"
    );
    assert!(
        seen.iter().all(|p| p.starts_with(root.root())),
        "only host paths inside the root are offered"
    );
}

#[test]
fn find_library_never_uses_host_libraries() {
    let dir = sample_root();
    let root = root_of(&dir);
    // Exists on every glibc host, absent from the sample root.
    assert!(
        root.find_library("libc.so.6", &[], &[], "/", &always)
            .is_none()
    );
    assert!(
        root.find_library("/etc/passwd", &[], &[], "/", &always)
            .is_none()
    );
}

#[test]
fn dynamic_string_tokens_expand() {
    let lib = expand_search_path("$ORIGIN/../$LIB:/opt/${PLATFORM}", "/app/bin");
    assert_eq!(lib[0], format!("/app/bin/../lib/{MULTIARCH}"));
    assert!(lib.contains(&"/app/bin/../lib".to_owned()));
    assert_eq!(lib.last().unwrap(), &format!("/opt/{PLATFORM}"));
}

#[test]
fn lexical_helpers() {
    assert_eq!(normalize_lexically("/usr/lib/"), "/usr/lib");
    assert_eq!(normalize_lexically("/../a/./b/../c"), "/a/c");
    assert_eq!(normalize_lexically(""), "/");
    assert_eq!(parent_dir("/etc/ld.so.conf"), "/etc");
    assert_eq!(parent_dir("/x"), "/");
}

/// The real machine as the root (Debian bookworm, usrmerge, curl and libssl3 installed - as on every machine
/// of this project's kind, see ci/setup).
#[cfg(target_arch = "x86_64")]
#[test]
fn real_machine_root_finds_libssl_through_usrmerge() {
    let root = RootFs::new(Path::new("/")).unwrap();
    assert_eq!(root.root(), Path::new("/"));
    assert!(
        root.library_dirs()
            .iter()
            .any(|d| d == "/usr/lib/x86_64-linux-gnu")
    );
    let found = root
        .find_library("libssl.so.3", &[], &[], "/usr/bin", &always)
        .unwrap();
    assert_eq!(found, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
    assert_eq!(
        root.canonicalize("/lib/x86_64-linux-gnu/libssl.so.3")
            .unwrap(),
        found
    );
    assert_eq!(root.canonicalize("/bin/sh").unwrap(), "/usr/bin/dash");
    assert_eq!(
        root.host_path(&found),
        Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3")
    );
}
