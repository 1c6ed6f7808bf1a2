// SPDX-License-Identifier: Apache-2.0
//! The in-toto Statement v1 checks done before signing and after verifying
//! (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>): `_type`, a non-empty `subject`
//! whose entries each carry a non-empty digest, `predicateType`, and an object `predicate`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{AttestError, Result, StatementProblem};

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";

/// The parts of a Statement that signing checks and `attest verify` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// What the statement is about (for reports: the app image).
    pub subject: Vec<Subject>,
    /// The predicate's type URI.
    pub predicate_type: String,
    /// The predicate.
    pub predicate: Map<String, Value>,
}

/// One subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// The subject's name, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Algorithm -> lowercase hex digest; never empty.
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    /// `predicate.verdict`, if present.
    pub fn verdict(&self) -> Option<&Value> {
        self.predicate.get("verdict")
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name.as_deref().unwrap_or("(unnamed)"))?;
        for (algorithm, digest) in &self.digest {
            write!(f, " {algorithm}:{digest}")?;
        }
        Ok(())
    }
}

fn problem(p: StatementProblem) -> AttestError {
    AttestError::Statement(p)
}

fn subject(index: usize, value: &Value) -> Result<Subject> {
    let name = value.get("name").and_then(Value::as_str).map(str::to_owned);
    let no_digest = || {
        problem(StatementProblem::SubjectDigest {
            index,
            name: name.clone().unwrap_or_else(|| "unnamed".into()),
        })
    };
    let digest = value
        .get("digest")
        .and_then(Value::as_object)
        .ok_or_else(no_digest)?;
    let digest: BTreeMap<String, String> = digest
        .iter()
        .map(|(alg, hex)| match hex.as_str() {
            Some(hex) if !alg.is_empty() && !hex.is_empty() => Ok((alg.clone(), hex.to_owned())),
            _ => Err(no_digest()),
        })
        .collect::<Result<_>>()?;
    if digest.is_empty() {
        return Err(no_digest());
    }
    Ok(Subject { name, digest })
}

/// Parses and checks an in-toto Statement v1.
pub fn parse_statement(bytes: &[u8]) -> Result<Statement> {
    let value: Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|e| problem(StatementProblem::Json(e)))?;
    let kind = value
        .get("_type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != STATEMENT_TYPE_V1 {
        return Err(problem(StatementProblem::Type {
            found: kind.to_owned(),
        }));
    }
    let subjects = match value.get("subject").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list,
        _ => return Err(problem(StatementProblem::NoSubject)),
    };
    let subject = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| subject(i, s))
        .collect::<Result<Vec<_>>>()?;
    let predicate_type = match value.get("predicateType").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => return Err(problem(StatementProblem::NoPredicateType)),
    };
    let predicate = value.get("predicate").and_then(Value::as_object).cloned();
    let predicate = predicate.ok_or_else(|| problem(StatementProblem::NoPredicate))?;
    Ok(Statement {
        subject,
        predicate_type,
        predicate,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(value: Value) -> Result<Statement> {
        parse_statement(&serde_json::to_vec(&value).unwrap())
    }

    fn valid() -> Value {
        json!({
            "_type": STATEMENT_TYPE_V1,
            "subject": [{"name": "registry.example/app", "digest": {"sha256": "ab12"}}],
            "predicateType": "https://linkguard.dev/verification/v1",
            "predicate": {"verdict": "pass"}
        })
    }

    #[test]
    fn accepts_a_statement_and_reads_the_verdict() {
        let statement = check(valid()).unwrap();
        assert_eq!(
            statement.subject[0].to_string(),
            "registry.example/app sha256:ab12"
        );
        assert_eq!(statement.verdict(), Some(&json!("pass")));
    }

    #[test]
    fn names_each_problem() {
        let mut v = valid();
        v["_type"] = "https://in-toto.io/Statement/v0.1".into();
        assert!(matches!(
            check(v),
            Err(AttestError::Statement(StatementProblem::Type { .. }))
        ));

        let mut v = valid();
        v["subject"] = json!([]);
        assert!(matches!(
            check(v),
            Err(AttestError::Statement(StatementProblem::NoSubject))
        ));

        for digest in [
            json!(null),
            json!({}),
            json!({"sha256": ""}),
            json!({"sha256": 1}),
        ] {
            let mut v = valid();
            v["subject"][0]["digest"] = digest.clone();
            let err = check(v).unwrap_err();
            assert!(
                err.to_string()
                    .contains("subject[0] (registry.example/app) has no digest"),
                "{digest}: {err}"
            );
            assert!(err.to_string().contains("--subject"), "{err}");
        }

        let mut v = valid();
        v.as_object_mut().unwrap().remove("predicateType");
        assert!(matches!(
            check(v),
            Err(AttestError::Statement(StatementProblem::NoPredicateType))
        ));

        let mut v = valid();
        v["predicate"] = json!("pass");
        assert!(matches!(
            check(v),
            Err(AttestError::Statement(StatementProblem::NoPredicate))
        ));

        assert!(matches!(
            parse_statement(b"[1]"),
            Err(AttestError::Statement(StatementProblem::Json(_)))
        ));
    }
}
