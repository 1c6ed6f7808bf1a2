// SPDX-License-Identifier: Apache-2.0

use std::fs;
use std::os::unix::fs::symlink;

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sbom")
        .join(name)
}

const DISTRO2SBOM: &str = "curl-debian12.distro2sbom.cdx17.json";
const NO_PURLS: &str = "curl-debian12.nopurl.cdx17.json";
const CYCLONEDX_PY: &str = "venv.cyclonedx-py.cdx16.json";
const SPDX: &str = "curl-debian12.distro2sbom.spdx.json";

fn parse(json: &str) -> Result<Sbom, SbomError> {
    Sbom::from_slice(json.as_bytes(), "test.json")
}

fn err(json: &str) -> String {
    parse(json).unwrap_err().to_string()
}

#[test]
fn real_generators_parse() {
    let d2s = Sbom::from_file(&fixture(DISTRO2SBOM)).unwrap();
    assert_eq!(d2s.spec_version.as_deref(), Some("1.7"));
    assert!(
        d2s.serial_number
            .as_deref()
            .is_some_and(|s| s.starts_with("urn:uuid:"))
    );
    assert_eq!(d2s.components.len(), 32);
    let ssl = d2s.components.iter().find(|c| c.name == "libssl3").unwrap();
    assert_eq!(ssl.kind.as_deref(), Some("library"));
    assert!(
        ssl.purl
            .as_deref()
            .is_some_and(|p| p.starts_with("pkg:deb/debian/libssl3@"))
    );
    let bytes = fs::read(fixture(DISTRO2SBOM)).unwrap();
    assert_eq!(d2s.sha256, hex::encode(Sha256::digest(&bytes)));

    let py = Sbom::from_file(&fixture(CYCLONEDX_PY)).unwrap();
    assert_eq!(py.spec_version.as_deref(), Some("1.6"));
    assert!(py.components.len() > 10);
    assert!(py.components.iter().all(|c| {
        c.purl
            .as_deref()
            .is_some_and(|p| p.starts_with("pkg:pypi/"))
    }));

    let bare = Sbom::from_file(&fixture(NO_PURLS)).unwrap();
    assert_eq!(
        bare.components.len(),
        32,
        "an SBOM without any purl is accepted"
    );
    assert!(bare.components.iter().all(|c| c.purl.is_none()));
}

/// cyclonedx-bom (the Rust crate) as a generator of older spec versions, with nested components and 1.5
/// evidence occurrences.
fn crate_generated(version: cyclonedx_bom::models::bom::SpecVersion) -> Vec<u8> {
    use cyclonedx_bom::models::bom::Bom;
    use cyclonedx_bom::models::component::{
        Classification, Component as CdxComponent, ComponentEvidence, Components, Occurrence,
        Occurrences,
    };
    use cyclonedx_bom::models::property::{Properties, Property};
    use std::str::FromStr;

    let mut lib = CdxComponent::new(
        Classification::Library,
        "libfoo1",
        "1.2-3",
        Some("libfoo".into()),
    );
    lib.purl = Some(
        cyclonedx_bom::external_models::uri::Purl::from_str(
            "pkg:deb/debian/libfoo1@1.2-3?arch=amd64",
        )
        .unwrap(),
    );
    lib.evidence = Some(ComponentEvidence {
        licenses: None,
        copyright: None,
        occurrences: Some(Occurrences(vec![Occurrence::new(
            "/lib/x86_64-linux-gnu/libfoo.so.1",
        )])),
        callstack: None,
        identity: None,
    });
    let mut bin = CdxComponent::new(
        Classification::Application,
        "app",
        "0.1",
        Some("app".into()),
    );
    bin.purl = Some(
        cyclonedx_bom::external_models::uri::Purl::from_str("pkg:golang/example.com/app@0.1")
            .unwrap(),
    );
    // A nested file component without a purl: its enclosing component's purl applies.
    let file = CdxComponent::new(
        Classification::File,
        "usr/local/bin/app",
        "0.1",
        Some("app-file".into()),
    );
    bin.components = Some(Components(vec![file]));
    bin.properties = Some(Properties(vec![Property::new(
        "syft:location:0:path",
        "/opt/app/bin/app-real",
    )]));
    let bom = Bom {
        components: Some(Components(vec![lib, bin])),
        ..Bom::default()
    };
    let mut out = Vec::new();
    bom.output_as_json(&mut out, version).unwrap();
    out
}

#[test]
fn crate_generated_sboms_of_older_versions_parse() {
    use cyclonedx_bom::models::bom::SpecVersion;
    for (version, name) in [
        (SpecVersion::V1_3, "1.3"),
        (SpecVersion::V1_4, "1.4"),
        (SpecVersion::V1_5, "1.5"),
    ] {
        let sbom = Sbom::from_slice(&crate_generated(version), "gen.json").unwrap();
        assert_eq!(sbom.spec_version.as_deref(), Some(name));
        let names: Vec<&str> = sbom.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["libfoo1", "app", "usr/local/bin/app"],
            "nested components are flattened"
        );
        assert_eq!(sbom.components[2].files, ["/usr/local/bin/app"]);
        assert_eq!(sbom.components[1].files, ["/opt/app/bin/app-real"]);
        // Evidence occurrences exist from 1.5 on; older versions drop them.
        let expected: &[&str] = if name == "1.5" {
            &["/lib/x86_64-linux-gnu/libfoo.so.1"]
        } else {
            &[]
        };
        assert_eq!(sbom.components[0].files, expected, "{name}");
    }
}

/// A root with usrmerge, the files the generated SBOM talks about, and a dpkg database for the distro2sbom
/// fixture's libssl3/libc6/curl (at the fixture's versions) plus a package the SBOM does not list.
fn sample_root() -> (tempfile::TempDir, RootFs) {
    let d2s = Sbom::from_file(&fixture(DISTRO2SBOM)).unwrap();
    let version = |n: &str| {
        d2s.components
            .iter()
            .find(|c| c.name == n)
            .unwrap()
            .version
            .clone()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in [
        "usr/lib/x86_64-linux-gnu",
        "usr/local/bin",
        "usr/bin",
        "opt/app/bin",
        "etc",
        "var/lib/dpkg/info",
    ] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    symlink("usr/lib", r.join("lib")).unwrap();
    fs::write(r.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    for f in [
        "usr/lib/x86_64-linux-gnu/libfoo.so.1",
        "usr/lib/x86_64-linux-gnu/libssl.so.3",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "usr/lib/x86_64-linux-gnu/libextra.so.1",
        "usr/local/bin/app",
        "usr/bin/curl",
        "opt/app/bin/app-real",
    ] {
        fs::write(r.join(f), b"\x7fELF").unwrap();
    }
    let mut status = String::new();
    for (name, version) in [
        ("libssl3", version("libssl3")),
        ("libc6", version("libc6")),
        ("curl", version("curl")),
        ("libextra1", "1.0-1".to_owned()),
    ] {
        status.push_str(&format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n"
        ));
    }
    fs::write(r.join("var/lib/dpkg/status"), status).unwrap();
    let info = r.join("var/lib/dpkg/info");
    fs::write(
        info.join("libssl3:amd64.list"),
        "/usr/lib/x86_64-linux-gnu/libssl.so.3\n",
    )
    .unwrap();
    fs::write(
        info.join("libc6:amd64.list"),
        "/lib/x86_64-linux-gnu/libc.so.6\n",
    )
    .unwrap();
    fs::write(info.join("curl.list"), "/usr/bin/curl\n").unwrap();
    fs::write(
        info.join("libextra1.list"),
        "/usr/lib/x86_64-linux-gnu/libextra.so.1\n",
    )
    .unwrap();
    let root = RootFs::new(r).unwrap();
    (dir, root)
}

#[test]
fn purl_from_sbom_file_evidence() {
    let (_dir, root) = sample_root();
    let sbom = Sbom::from_slice(
        &crate_generated(cyclonedx_bom::models::bom::SpecVersion::V1_5),
        "gen.json",
    )
    .unwrap();
    let from_sbom = |purl: &str| {
        Some(PurlMatch {
            purl: purl.to_owned(),
            source: PurlSource::Sbom,
        })
    };
    // The occurrence says /lib/..., the canonical path is /usr/lib/... (usrmerge).
    assert_eq!(
        sbom.purl_for_file("/usr/lib/x86_64-linux-gnu/libfoo.so.1", &root, None),
        from_sbom("pkg:deb/debian/libfoo1@1.2-3?arch=amd64")
    );
    // A relative file-component name, without a purl of its own: the enclosing component's purl.
    assert_eq!(
        sbom.purl_for_file("/usr/local/bin/app", &root, None),
        from_sbom("pkg:golang/example.com/app@0.1")
    );
    // A syft location property.
    assert_eq!(
        sbom.purl_for_file("/opt/app/bin/app-real", &root, None),
        from_sbom("pkg:golang/example.com/app@0.1")
    );
    // Nothing owns it (no evidence, no dpkg database).
    assert_eq!(sbom.purl_for_file("/usr/bin/curl", &root, None), None);
}

#[test]
fn purl_through_dpkg_matches_sbom_components() {
    let (_dir, root) = sample_root();
    let dpkg = DpkgDb::load(&root).unwrap().unwrap();
    let d2s = Sbom::from_file(&fixture(DISTRO2SBOM)).unwrap();
    let sbom_purl = |name: &str| {
        d2s.components
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .purl
            .clone()
            .unwrap()
    };

    // By purl: the SBOM's own spelling (distro2sbom writes '+' unencoded and no distro qualifier).
    let ssl = d2s
        .purl_for_file("/usr/lib/x86_64-linux-gnu/libssl.so.3", &root, Some(&dpkg))
        .unwrap();
    assert_eq!(
        ssl,
        PurlMatch {
            purl: sbom_purl("libssl3"),
            source: PurlSource::Sbom
        }
    );
    let libc = d2s
        .purl_for_file("/usr/lib/x86_64-linux-gnu/libc.so.6", &root, Some(&dpkg))
        .unwrap();
    assert_eq!(
        libc,
        PurlMatch {
            purl: sbom_purl("libc6"),
            source: PurlSource::Sbom
        },
        "usrmerge .list entry"
    );
    // The SBOM does not list libextra1: the dpkg-derived purl.
    let extra = d2s
        .purl_for_file(
            "/usr/lib/x86_64-linux-gnu/libextra.so.1",
            &root,
            Some(&dpkg),
        )
        .unwrap();
    assert_eq!(
        extra,
        PurlMatch {
            purl: "pkg:deb/debian/libextra1@1.0-1?arch=amd64&distro=debian-12".to_owned(),
            source: PurlSource::Dpkg
        }
    );
    // Nothing owns it.
    assert_eq!(
        d2s.purl_for_file("/usr/local/bin/app", &root, Some(&dpkg)),
        None
    );

    // The same SBOM without purls: matched by name and version, purl from dpkg.
    let bare = Sbom::from_file(&fixture(NO_PURLS)).unwrap();
    let curl = bare
        .purl_for_file("/usr/bin/curl", &root, Some(&dpkg))
        .unwrap();
    assert_eq!(curl.source, PurlSource::SbomComponentDpkgPurl);
    assert_eq!(curl.purl, dpkg.package("curl", None).unwrap().purl);
    assert!(
        curl.purl.contains("%2Bdeb12u") && curl.purl.ends_with("?arch=amd64&distro=debian-12"),
        "{}",
        curl.purl
    );

    // An SBOM of other ecosystems: the dpkg package is not in it.
    let py = Sbom::from_file(&fixture(CYCLONEDX_PY)).unwrap();
    assert_eq!(
        py.purl_for_file("/usr/bin/curl", &root, Some(&dpkg))
            .unwrap()
            .source,
        PurlSource::Dpkg
    );
}

#[test]
fn package_matching_rules() {
    let package = DebPackage {
        name: "zlib1g".into(),
        version: "1:1.2.13.dfsg-1".into(),
        architecture: "amd64".into(),
        source: Some("zlib".into()),
        purl: "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12".into(),
    };
    let one = |component: &str| {
        let sbom = parse(&format!(
            r#"{{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{component}]}}"#
        ))
        .unwrap();
        sbom.component_for_package(&package)
            .map(|c| c.bom_ref.clone().unwrap_or_default())
    };
    let yes = |c: &str| assert_eq!(one(c).as_deref(), Some("x"), "{c}");
    let no = |c: &str| assert_eq!(one(c), None, "{c}");
    // trivy: epoch as qualifier; syft: raw; packageurl-python: %3A and %2B forms.
    yes(
        r#"{"bom-ref": "x", "name": "zlib1g", "purl": "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64&epoch=1"}"#,
    );
    yes(
        r#"{"bom-ref": "x", "name": "zlib1g", "purl": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12"}"#,
    );
    yes(r#"{"bom-ref": "x", "name": "zlib", "purl": "pkg:deb/ubuntu/zlib1g@1%3A1.2.13.dfsg-1"}"#);
    yes(r#"{"bom-ref": "x", "name": "zlib1g", "version": "1.2.13.dfsg-1"}"#);
    yes(r#"{"bom-ref": "x", "name": "zlib1g"}"#);
    no(
        r#"{"bom-ref": "x", "name": "zlib1g", "purl": "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=i386"}"#,
    );
    no(
        r#"{"bom-ref": "x", "name": "zlib1g", "purl": "pkg:deb/debian/zlib1g@1:1.2.11.dfsg-2?arch=amd64"}"#,
    );
    no(r#"{"bom-ref": "x", "name": "zlib1g", "purl": "pkg:pypi/zlib1g@1.2.13"}"#);
    no(r#"{"bom-ref": "x", "name": "zlib1g", "version": "1.2.11"}"#);
}

#[test]
fn any_spec_version_is_accepted() {
    for version in [
        r#""1.2""#, r#""1.7""#, r#""1.8""#, r#""2.0""#, "1.4", "null",
    ] {
        let sbom = parse(&format!(
            r#"{{"bomFormat": "CycloneDX", "specVersion": {version}, "components": []}}"#
        ))
        .unwrap();
        assert_eq!(
            sbom.spec_version.as_deref(),
            Some(version.trim_matches('"')).filter(|v| *v != "null")
        );
    }
    // No components at all, unknown fields everywhere.
    let sbom = parse(
        r#"{"bomFormat": "CycloneDX", "future": {"x": 1}, "metadata": {"component": {"name": "img",
        "components": [{"name": "inner", "purl": "pkg:generic/inner@1", "future": true}]}}}"#,
    )
    .unwrap();
    assert_eq!(
        sbom.components.len(),
        1,
        "metadata.component's nested components are included"
    );
    assert_eq!(
        sbom.components[0].purl.as_deref(),
        Some("pkg:generic/inner@1")
    );
}

#[test]
fn rejections_name_the_file_and_the_problem() {
    // Truncated real SBOM.
    let bytes = fs::read(fixture(DISTRO2SBOM)).unwrap();
    let truncated = Sbom::from_slice(&bytes[..bytes.len() / 2], "cut.json").unwrap_err();
    assert!(matches!(truncated, SbomError::NotJson { .. }));
    assert!(
        truncated.to_string().contains("cut.json")
            && truncated.to_string().contains("CycloneDX JSON")
    );
    // Real SPDX JSON from distro2sbom.
    let spdx = Sbom::from_file(&fixture(SPDX)).unwrap_err().to_string();
    assert!(
        spdx.contains(SPDX) && spdx.contains("SPDX is not supported, give a CycloneDX JSON SBOM"),
        "{spdx}"
    );
    assert!(err("SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\n").contains("SPDX is not supported"));
    assert!(
        err("<?xml version=\"1.0\"?>\n<bom xmlns=\"http://cyclonedx.org/schema/bom/1.5\"/>")
            .contains("is XML")
    );
    let missing = Sbom::from_file(Path::new("/nonexistent/sbom.json")).unwrap_err();
    assert!(
        matches!(missing, SbomError::Read { .. })
            && missing.to_string().contains("/nonexistent/sbom.json")
    );

    let cases = [
        ("", "not valid JSON"),
        (
            "{\"bomFormat\": \"CycloneDX\", \"components\": [",
            "not valid JSON",
        ),
        ("[]", "top level is not a JSON object"),
        ("{}", "bomFormat is missing"),
        (r#"{"bomFormat": "SPDX"}"#, "bomFormat is \"SPDX\""),
        (
            r#"{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"}"#,
            "SPDX is not supported",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "specVersion": {}}"#,
            "specVersion: must be a string",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "serialNumber": 5}"#,
            "serialNumber: must be a string",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": {}}"#,
            "components: must be an array",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": ["libssl3"]}"#,
            "components[0]: a component must be a JSON object",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": "a", "components": [{"name": "b"}, 7]}]}"#,
            "components[0].components[1]: a component must be a JSON object",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": 5}]}"#,
            "components[0].name: must be a string",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": "a", "purl": []}]}"#,
            "components[0].purl: must be a string",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": "a", "evidence": {"occurrences": "x"}}]}"#,
            "components[0].evidence.occurrences: must be an array",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": "a", "evidence": {"occurrences": [{"location": 1}]}}]}"#,
            "components[0].evidence.occurrences[0].location: must be a string",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": "a", "properties": {}}]}"#,
            "components[0].properties: must be an array",
        ),
        (
            r#"{"bomFormat": "CycloneDX", "components": [{"name": "a", "properties": [{"name": "syft:location:0:path", "value": 3}]}]}"#,
            "components[0].properties[0].value: must be a string",
        ),
    ];
    for (json, expected) in cases {
        let message = err(json);
        assert!(
            message.contains("test.json") && message.contains(expected),
            "{json}: {message}"
        );
    }
}

#[test]
fn file_properties_and_paths() {
    assert!(is_file_property("syft:location:0:path"));
    assert!(is_file_property("syft:location:12:path"));
    assert!(is_file_property("aquasecurity:trivy:FilePath"));
    assert!(!is_file_property("syft:location:0:layerID"));
    assert!(!is_file_property("syft:location::path"));
    assert_eq!(normalize_sbom_path("usr/bin/app"), "/usr/bin/app");
    assert_eq!(
        normalize_sbom_path("file:///usr/./bin//app"),
        "/usr/bin/app"
    );
    assert_eq!(normalize_sbom_path("./opt/../usr/bin/app"), "/usr/bin/app");
}

/// The real machine with the distro2sbom fixture produced on it: every object of curl's closure gets a purl,
/// from the SBOM when the installed version is still the fixture's, from dpkg when a security update has
/// moved it on since the fixture was made.
#[cfg(target_arch = "x86_64")]
#[test]
fn real_machine_curl_closure() {
    let root = RootFs::new(Path::new("/")).unwrap();
    let dpkg = DpkgDb::load(&root).unwrap().unwrap();
    let sbom = Sbom::from_file(&fixture(DISTRO2SBOM)).unwrap();
    for path in [
        "/usr/bin/curl",
        "/usr/lib/x86_64-linux-gnu/libcurl.so.4",
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
    ] {
        let canonical = root.canonicalize(path).unwrap();
        let package = dpkg
            .owner(&canonical)
            .unwrap_or_else(|| panic!("dpkg owns {canonical}"));
        let found = sbom.purl_for_file(&canonical, &root, Some(&dpkg)).unwrap();
        let listed = sbom
            .components
            .iter()
            .find(|c| c.name == package.name)
            .unwrap();
        if listed.version.as_deref() == Some(package.version.as_str()) {
            assert_eq!(found.source, PurlSource::Sbom, "{canonical}");
            assert_eq!(Some(&found.purl), listed.purl.as_ref(), "{canonical}");
        } else {
            assert_eq!(
                found,
                PurlMatch {
                    purl: package.purl.clone(),
                    source: PurlSource::Dpkg
                },
                "{canonical}"
            );
        }
    }
}
