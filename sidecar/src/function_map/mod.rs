// SPDX-License-Identifier: Apache-2.0
//! The function map: which functions of an image are expected to run, and how much of them must be seen.
//!
//! The on-disk contract is docs/contracts/function-map.md (JSON Schema beside it). The map is an in-toto
//! style document: `_type`, `subject` (the app image), `predicate`. Both the camelCase schema form and
//! the documented snake_case form are read; only camelCase is written.

mod model;
mod validate;

pub use model::*;
pub use validate::{MapError, ValidationError, ValidationIssue};

use std::path::Path;

/// The `_type` written into every map.
pub const PREDICATE_TYPE: &str = "https://stella.ops/predicates/function-map/v1";
/// The documented alias of [`PREDICATE_TYPE`], accepted on read.
pub const PREDICATE_TYPE_ALIAS: &str = "stella.ops/functionMap@v1";
/// DSSE payload type and OCI artifactType of a function map.
pub const MEDIA_TYPE: &str = "application/vnd.stellaops.function-map.v1+json";
/// The only `schemaVersion` this build understands.
pub const SCHEMA_VERSION: &str = "1.0.0";

impl FunctionMap {
    /// Parses and validates a map from JSON bytes. `source` names the input in errors.
    pub fn from_slice(bytes: &[u8], source: &str) -> Result<Self, MapError> {
        let map: FunctionMap = serde_json::from_slice(bytes).map_err(|e| MapError::Parse {
            source_name: source.to_owned(),
            source: e,
        })?;
        map.validate().map_err(|e| MapError::Invalid {
            source_name: source.to_owned(),
            source: e,
        })?;
        Ok(map)
    }

    /// Reads, parses and validates a map file.
    pub fn from_file(path: &Path) -> Result<Self, MapError> {
        let bytes = std::fs::read(path).map_err(|e| MapError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        Self::from_slice(&bytes, &path.display().to_string())
    }

    /// The canonical JSON form: camelCase, two-space indented, trailing newline. Deterministic for a
    /// given map (field order is the struct order; maps are `BTreeMap`s).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Serializing plain structs, strings, numbers and BTreeMaps cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Whether the map names an image digest. A map generated without `--subject` is unbound: its
    /// subject is `pkg:oci/<service>` with an empty digest, to be bound to an image later.
    pub fn is_bound(&self) -> bool {
        self.subject.digest.contains_key("sha256")
    }

    /// All expected paths that count towards the observation rate (not optional).
    pub fn required_paths(&self) -> impl Iterator<Item = &ExpectedPath> {
        self.predicate.expected_paths.iter().filter(|p| !p.optional)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
    const BUILD_ID: &str = "30563306a0d30a4acfe7ce1e066c8696b5e7856f";

    fn camel() -> String {
        format!(
            r#"{{"_type":"{PREDICATE_TYPE}",
              "subject":{{"purl":"pkg:oci/web@sha256:{HEX}","digest":{{"sha256":"{HEX}"}},"name":"web"}},
              "predicate":{{"schemaVersion":"1.0.0","service":"web","buildId":"b1",
                "expectedPaths":[{{"id":"web:SSL_connect@libssl.so.3","entrypoint":"/usr/bin/web",
                  "calls":[{{"symbol":"SSL_connect","binary":{{"path":"/usr/lib/libssl.so.3","buildId":"{BUILD_ID}"}},"offset":4096}}],
                  "tags":["tls"]}}],
                "coverage":{{"minObservationRate":0.9,"windowSeconds":600,"failOnUnexpected":true,"perTag":{{"tls":1.0}}}},
                "generatedAt":"2026-01-01T00:00:00Z"}}}}"#
        )
    }

    fn snake() -> String {
        format!(
            r#"{{"type":"{PREDICATE_TYPE_ALIAS}",
              "subject":{{"purl":"pkg:oci/web@sha256:{HEX}","digest":{{"sha256":"{HEX}"}},"name":"web"}},
              "predicate":{{"schema_version":"1.0.0","service":"web","build_id":"b1",
                "expected_paths":[{{"id":"web:SSL_connect@libssl.so.3","entrypoint":"/usr/bin/web",
                  "calls":[{{"symbol":"SSL_connect","binary":{{"path":"/usr/lib/libssl.so.3","build_id":"{BUILD_ID}"}},"offset":4096}}],
                  "tags":["tls"]}}],
                "coverage":{{"min_observation_rate":0.9,"window_seconds":600,"fail_on_unexpected":true,"per_tag":{{"tls":1.0}}}},
                "generated_at":"2026-01-01T00:00:00Z"}}}}"#
        )
    }

    #[test]
    fn the_snake_case_form_reads_as_the_camel_case_form_and_writes_camel_case() {
        let from_camel = FunctionMap::from_slice(camel().as_bytes(), "camel").unwrap();
        let mut from_snake = FunctionMap::from_slice(snake().as_bytes(), "snake").unwrap();
        assert_eq!(from_snake.type_, PREDICATE_TYPE_ALIAS);
        from_snake.type_ = PREDICATE_TYPE.to_owned();
        assert_eq!(from_snake, from_camel);
        let written = String::from_utf8(from_snake.to_canonical_json()).unwrap();
        for camel_key in [
            "\"_type\"",
            "\"expectedPaths\"",
            "\"minObservationRate\"",
            "\"buildId\"",
            "\"perTag\"",
        ] {
            assert!(
                written.contains(camel_key),
                "{camel_key} missing in {written}"
            );
        }
        for snake_key in [
            "expected_paths",
            "min_observation_rate",
            "build_id",
            "\"type\"",
        ] {
            assert!(
                !written.contains(snake_key),
                "{snake_key} written in {written}"
            );
        }
        assert_eq!(
            FunctionMap::from_slice(written.as_bytes(), "rewritten").unwrap(),
            from_snake
        );
    }

    #[test]
    fn coverage_defaults_apply_when_absent() {
        let text = camel().replace(
            r#""coverage":{"minObservationRate":0.9,"windowSeconds":600,"failOnUnexpected":true,"perTag":{"tls":1.0}},"#,
            "",
        );
        let map = FunctionMap::from_slice(text.as_bytes(), "no-coverage").unwrap();
        assert_eq!(map.predicate.coverage, Coverage::default());
        assert_eq!(map.predicate.coverage.min_observation_rate, 0.95);
        assert_eq!(map.predicate.coverage.window_seconds, 1800);
    }

    fn issues(text: &str) -> Vec<ValidationIssue> {
        match FunctionMap::from_slice(text.as_bytes(), "test") {
            Err(MapError::Invalid { source, .. }) => source.issues,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let mut value: serde_json::Value = serde_json::from_str(&camel()).unwrap();
        let path = value["predicate"]["expectedPaths"][0].clone();
        value["predicate"]["expectedPaths"] = serde_json::json!([path.clone(), path]);
        value["predicate"]["coverage"]["minObservationRate"] = serde_json::json!(1.5);
        value["predicate"]["coverage"]["perTag"] = serde_json::json!({ "auth": 0.5 });
        let found = issues(&value.to_string());
        let fields: Vec<&str> = found.iter().map(|i| i.field.as_str()).collect();
        assert!(
            fields.contains(&"predicate.expectedPaths[1].id"),
            "{found:?}"
        );
        assert!(
            fields.contains(&"predicate.coverage.minObservationRate"),
            "{found:?}"
        );
        assert!(
            fields.contains(&"predicate.coverage.perTag.auth"),
            "{found:?}"
        );
        let duplicate = found
            .iter()
            .find(|i| i.field == "predicate.expectedPaths[1].id")
            .unwrap();
        assert!(duplicate.problem.contains("duplicate"), "{duplicate:?}");
    }

    #[test]
    fn malformed_json_and_unknown_fields_are_parse_errors_naming_the_input() {
        let err = FunctionMap::from_slice(b"{\"_type\":", "broken.json").unwrap_err();
        assert!(matches!(err, MapError::Parse { .. }));
        assert!(err.to_string().contains("broken.json"), "{err}");
        let extra = camel().replacen(
            "\"service\":\"web\"",
            "\"service\":\"web\",\"servcie\":1",
            1,
        );
        let err = FunctionMap::from_slice(extra.as_bytes(), "typo.json").unwrap_err();
        assert!(err.to_string().contains("servcie"), "{err}");
    }
}
