// SPDX-License-Identifier: Apache-2.0
//! Unit tests of the generation rules: symbol binding order and versions, ids, subjects, options.
//! End-to-end runs on curl's real closure are in tests/generate.rs.

use std::collections::BTreeMap;

use super::assemble::{assign_ids, coverage};
use super::closure::{LoadedObject, ObjectStore};
use super::*;
use crate::elf::{Binding, DefinedFunction, ElfClass, ElfInfo, ElfKind, ImportedFunction};
use crate::function_map::{BinaryRef, Call, DEFAULT_WINDOW_SECONDS, ExpectedPath};

fn info(exports: Vec<DefinedFunction>) -> ElfInfo {
    ElfInfo {
        class: ElfClass::Elf64,
        little_endian: true,
        machine: 62,
        kind: ElfKind::SharedObject,
        build_id: Some("ab".into()),
        interpreter: None,
        soname: None,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
        is_static: false,
        is_go: false,
        has_sections: true,
        has_symtab: false,
        imports: Vec::new(),
        exports,
        symtab_functions: Vec::new(),
        go_functions: Vec::new(),
        loads: Vec::new(),
    }
}

fn function(
    name: &str,
    version: Option<&str>,
    default_version: bool,
    value: u64,
) -> DefinedFunction {
    DefinedFunction {
        name: name.into(),
        version: version.map(Into::into),
        default_version,
        binding: Binding::Global,
        value,
        size: 8,
        offset: Some(value),
        ifunc: false,
    }
}

fn import(name: &str, version: Option<&str>) -> ImportedFunction {
    ImportedFunction {
        name: name.into(),
        version: version.map(Into::into),
        version_file: None,
        weak: false,
    }
}

/// Three objects in load order: an executable, a library with versioned duplicates, a library
/// that also defines `connect` (unversioned).
fn store() -> (ObjectStore, Vec<usize>) {
    let mut store = ObjectStore::default();
    let exe = store.insert(LoadedObject::new(
        "/usr/bin/app".into(),
        info(Vec::new()),
        None,
    ));
    let libc = store.insert(LoadedObject::new(
        "/usr/lib/libc.so.6".into(),
        info(vec![
            function("memcpy", Some("GLIBC_2.2.5"), false, 0x100),
            function("memcpy", Some("GLIBC_2.14"), true, 0x200),
            function("connect", Some("GLIBC_2.2.5"), true, 0x300),
            function("plain", None, true, 0x400),
        ]),
        None,
    ));
    let other = store.insert(LoadedObject::new(
        "/usr/lib/libother.so".into(),
        info(vec![
            function("connect", None, true, 0x500),
            function("only_here", None, true, 0x600),
        ]),
        None,
    ));
    (store, vec![exe, libc, other])
}

fn resolved_value(store: &ObjectStore, order: &[usize], import: &ImportedFunction) -> Option<u64> {
    paths::resolve(store, order, import).map(|(id, index)| store.get(id).info.exports[index].value)
}

#[test]
fn versioned_imports_bind_their_exact_version() {
    let (store, order) = store();
    assert_eq!(
        resolved_value(&store, &order, &import("memcpy", Some("GLIBC_2.2.5"))),
        Some(0x100),
        "hidden @ version"
    );
    assert_eq!(
        resolved_value(&store, &order, &import("memcpy", Some("GLIBC_2.14"))),
        Some(0x200)
    );
    assert_eq!(
        resolved_value(&store, &order, &import("memcpy", None)),
        Some(0x200),
        "unversioned -> default @@"
    );
    assert_eq!(
        resolved_value(&store, &order, &import("memcpy", Some("GLIBC_9.9"))),
        None,
        "no such version"
    );
    assert_eq!(
        resolved_value(&store, &order, &import("plain", Some("GLIBC_2.2.5"))),
        Some(0x400),
        "unversioned def"
    );
}

#[test]
fn the_first_definer_in_load_order_wins() {
    let (store, order) = store();
    assert_eq!(
        resolved_value(&store, &order, &import("connect", None)),
        Some(0x300)
    );
    let reversed: Vec<usize> = order.iter().rev().copied().collect();
    assert_eq!(
        resolved_value(&store, &reversed, &import("connect", None)),
        Some(0x500)
    );
    assert_eq!(
        resolved_value(&store, &order, &import("only_here", None)),
        Some(0x600)
    );
    assert_eq!(
        resolved_value(&store, &order, &import("nowhere", None)),
        None
    );
}

#[test]
fn export_lookup_by_name_finds_every_version() {
    let (store, order) = store();
    let libc = store.get(order[1]);
    let versions: Vec<_> = libc
        .exports_named("memcpy")
        .map(|(_, f)| f.version.clone())
        .collect();
    assert_eq!(versions.len(), 2);
    assert_eq!(libc.exports_named("memcp").count(), 0);
    assert_eq!(libc.exports_named("zzz").count(), 0);
    assert_eq!(libc.origin_dir(), "/usr/lib");
}

fn path(id: &str, version: Option<&str>) -> ExpectedPath {
    ExpectedPath {
        id: id.into(),
        entrypoint: "/usr/bin/app".into(),
        calls: vec![Call {
            symbol: "memcpy".into(),
            version: version.map(Into::into),
            binary: BinaryRef {
                path: "/usr/lib/libc.so.6".into(),
                build_id: Some("ab".into()),
                sha256: None,
            },
            caller: None,
            purl: None,
            offset: None,
            unresolved: None,
        }],
        tags: vec!["file".into()],
        optional: false,
    }
}

#[test]
fn colliding_ids_get_stable_suffixes() {
    let a = assign_ids(vec![
        path("app:memcpy@libc.so.6", Some("GLIBC_2.2.5")),
        path("app:memcpy@libc.so.6", Some("GLIBC_2.14")),
        path("app:connect@libc.so.6", None),
    ]);
    let b = assign_ids(vec![
        path("app:connect@libc.so.6", None),
        path("app:memcpy@libc.so.6", Some("GLIBC_2.14")),
        path("app:memcpy@libc.so.6", Some("GLIBC_2.2.5")),
    ]);
    assert_eq!(a, b, "input order does not change ids");
    let ids: Vec<_> = a.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "app:connect@libc.so.6",
            "app:memcpy@libc.so.6",
            "app:memcpy@libc.so.6#2"
        ]
    );
    assert_eq!(
        a[1].calls[0].version.as_deref(),
        Some("GLIBC_2.14"),
        "the suffix order is the version order"
    );
}

#[test]
fn subjects() {
    let hex = "a".repeat(64);
    let subject =
        parse_subject(&format!("ghcr.io/acme/web@sha256:{}", hex.to_uppercase())).unwrap();
    assert_eq!(
        subject.purl,
        format!("pkg:oci/ghcr.io/acme/web@sha256:{hex}")
    );
    assert_eq!(subject.digest.get("sha256"), Some(&hex));
    assert_eq!(subject.name.as_deref(), Some("ghcr.io/acme/web"));
    for bad in [
        "web",
        "web@sha256:abc",
        &format!("web@sha512:{hex}"),
        &format!("@sha256:{hex}"),
        &format!("a b@sha256:{hex}"),
    ] {
        let err = parse_subject(bad).unwrap_err();
        assert!(err.to_string().contains("--subject"), "{err}");
    }
    let unbound = unbound_subject("web");
    assert_eq!(unbound.purl, "pkg:oci/web");
    assert!(unbound.digest.is_empty());
}

#[test]
fn options_are_checked_before_any_work() {
    let base = GenerateOptions {
        service: "web".into(),
        entrypoints: vec!["/usr/bin/curl".into()],
        hot_functions: vec!["crypto/*".into()],
        ..GenerateOptions::default()
    };
    assert!(check_options(&base).is_ok());
    let err = check_options(&GenerateOptions {
        min_rate: Some(1.5),
        ..base.clone()
    })
    .unwrap_err();
    assert!(err.to_string().contains("--min-rate"), "{err}");
    let per_tag = BTreeMap::from([("crypto".to_owned(), -0.1)]);
    let err = check_options(&GenerateOptions {
        per_tag,
        ..base.clone()
    })
    .unwrap_err();
    assert!(err.to_string().contains("--tag-min crypto"), "{err}");
    assert!(matches!(
        check_options(&GenerateOptions {
            window_seconds: Some(0),
            ..base.clone()
        }),
        Err(GenerateError::ZeroWindow)
    ));
    assert!(matches!(
        check_options(&GenerateOptions {
            entrypoints: vec![],
            ..base.clone()
        }),
        Err(GenerateError::NoEntrypoints)
    ));
    assert!(matches!(
        check_options(&GenerateOptions {
            hot_functions: vec![],
            ..base.clone()
        }),
        Err(GenerateError::NoHotFunctions)
    ));
    assert!(matches!(
        check_options(&GenerateOptions {
            service: " ".into(),
            ..base
        }),
        Err(GenerateError::NoService)
    ));
}

#[test]
fn service_names_fit_in_a_purl() {
    let opts = GenerateOptions {
        service: "web@1".into(),
        entrypoints: vec!["/usr/bin/curl".into()],
        hot_functions: vec!["crypto/*".into()],
        ..GenerateOptions::default()
    };
    let err = check_options(&opts).unwrap_err();
    assert!(err.to_string().contains("--service"), "{err}");
}

#[test]
fn per_tag_minimums_need_a_path_with_the_tag() {
    let opts = GenerateOptions {
        per_tag: BTreeMap::from([("crypto".to_owned(), 1.0)]),
        ..GenerateOptions::default()
    };
    let err = coverage(&opts, &[path("x", None)]).unwrap_err();
    assert!(
        err.to_string().contains("file"),
        "lists the tags the map has: {err}"
    );
    let opts = GenerateOptions {
        per_tag: BTreeMap::from([("file".to_owned(), 1.0)]),
        min_rate: Some(0.5),
        ..opts
    };
    let coverage = coverage(&opts, &[path("x", None)]).unwrap();
    assert_eq!(coverage.min_observation_rate, 0.5);
    assert_eq!(coverage.window_seconds, DEFAULT_WINDOW_SECONDS);
}

fn map_with(subject: Subject, paths: Vec<ExpectedPath>) -> FunctionMap {
    FunctionMap {
        type_: crate::function_map::PREDICATE_TYPE.into(),
        subject,
        predicate: crate::function_map::Predicate {
            schema_version: crate::function_map::SCHEMA_VERSION.into(),
            service: "web".into(),
            build_id: None,
            expected_paths: paths,
            watch_scopes: Vec::new(),
            coverage: crate::function_map::Coverage::default(),
            generated_at: "2026-01-01T00:00:00Z".into(),
            generated_from: None,
            generator: None,
        },
    }
}

#[test]
fn unbound_maps_validate_and_say_so() {
    let unbound = map_with(unbound_subject("web"), vec![path("x", None)]);
    assert!(unbound.validate().is_ok(), "{:?}", unbound.validate());
    assert!(!unbound.is_bound());
    let bound = map_with(
        parse_subject(&format!("web@sha256:{}", "b".repeat(64))).unwrap(),
        vec![path("x", None)],
    );
    assert!(bound.validate().is_ok() && bound.is_bound());
    // A purl that names a digest the digest map lacks is not "unbound", it is broken.
    let mut broken = unbound_subject("web");
    broken.purl = format!("pkg:oci/web@sha256:{}", "b".repeat(64));
    let err = map_with(broken, vec![path("x", None)])
        .validate()
        .unwrap_err();
    assert!(
        err.issues
            .iter()
            .any(|i| i.field == "subject.digest.sha256"),
        "{err}"
    );
}

#[test]
fn only_unresolved_calls_may_lack_a_binary_identity() {
    let mut missing = path("x", None);
    missing.calls[0].binary.build_id = None;
    let err = map_with(unbound_subject("web"), vec![missing.clone()])
        .validate()
        .unwrap_err();
    assert!(
        err.issues
            .iter()
            .any(|i| i.field.ends_with("calls[0].binary")),
        "{err}"
    );
    missing.calls[0].unresolved = Some("libssl.so.3 is not in the rootfs".into());
    assert!(
        map_with(unbound_subject("web"), vec![missing])
            .validate()
            .is_ok()
    );
}
