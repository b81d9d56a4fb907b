//! Validation against the JSON Schemas in `schemas/`, which are compiled into the crate so
//! that a consumer checks exactly the contract it was built with.

use std::collections::HashSet;

use jsonschema::{PatternOptions, Resource, Validator};

use crate::codec::DecodeError;

const BASE_URI: &str = "https://schemas.phonebill.dev/";

macro_rules! schema_files {
    ($($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../../schemas/", $path)))),+]
    };
}

/// (path under `schemas/`, contents) of every schema file. The envelope comes first.
/// A test checks that this list and the folder agree.
pub const FILES: &[(&str, &str)] = schema_files![
    "envelope.v1.schema.json",
    "phonebill.product-change/ProductChangeCompleted.v1.schema.json",
    "phonebill.product-change/ProductChangeFailed.v1.schema.json",
    "phonebill.product-change/ProductChangeLateAnswerRecorded.v1.schema.json",
    "phonebill.product-change/ProductChangeRejected.v1.schema.json",
    "phonebill.product-change/ProductChangeRequested.v1.schema.json",
    "phonebill.product-change/ProductChangeSentToKos.v1.schema.json",
    "kos.billing/BillIssued.v1.schema.json",
    "kos.billing/LineProductChanged.v1.schema.json",
    "kos.billing/LineRegistered.v1.schema.json",
    "kos.billing/LineResumed.v1.schema.json",
    "kos.billing/LineSuspended.v1.schema.json",
    "kos.billing/PaymentRecorded.v1.schema.json",
    "kos.billing/ProductPublished.v1.schema.json",
    "kos.billing/ProductRepriced.v1.schema.json",
    "kos.billing/ProductWithdrawn.v1.schema.json",
    "kos.product-change-results/ProductChangeExecuted.v1.schema.json",
    "kos.product-change-results/ProductChangeRefused.v1.schema.json",
    "phonebill.bill-inquiries/BillInquired.v1.schema.json",
];

/// Every event schema, compiled once into one validator.
///
/// One validator per schema would carry one resource registry each (the JSON Schema
/// meta-schemas included): ~38 MB for 17 schemas, more than half a service's 64 MiB
/// budget. Instead one dispatcher schema (`if event_type/event_version then $ref` per
/// file) holds them all in one registry (~7 MB). Unknown types and versions are refused
/// before validation.
pub struct SchemaSet {
    known: HashSet<(String, u32)>,
    validator: Validator,
}

impl SchemaSet {
    pub fn load() -> Self {
        let mut known = HashSet::new();
        let mut branches = vec![];
        let mut resources = vec![];
        for (path, contents) in FILES {
            let schema: serde_json::Value =
                serde_json::from_str(contents).expect("schema files are valid JSON");
            let uri = format!("{BASE_URI}{path}");
            if *path != FILES[0].0 {
                let (event_type, version) = type_and_version(path);
                branches.push(serde_json::json!({
                    "if": {
                        "properties": {
                            "event_type": {"const": event_type},
                            "event_version": {"const": version}
                        },
                        "required": ["event_type", "event_version"]
                    },
                    "then": {"$ref": uri}
                }));
                known.insert((event_type, version));
            }
            resources.push((uri, Resource::from_contents(schema).expect("schema loads")));
        }
        let dispatcher = serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": format!("{BASE_URI}dispatch.json"),
            "allOf": branches
        });
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_pattern_options(PatternOptions::regex())
            .with_resources(resources.into_iter())
            .build(&dispatcher)
            .unwrap_or_else(|e| panic!("the event schemas compile: {e}"));
        Self { known, validator }
    }

    /// Checks a whole envelope (as JSON) against the schema of its type and version.
    pub fn validate(&self, envelope: &serde_json::Value) -> Result<(), DecodeError> {
        let event_type = envelope["event_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let version = envelope["event_version"].as_u64().unwrap_or_default() as u32;
        if !self.known.contains(&(event_type.clone(), version)) {
            return Err(DecodeError::UnknownVersion {
                event_type,
                version,
            });
        }
        // The common case, valid, without building the error iterator.
        if self.validator.is_valid(envelope) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(envelope)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Payload {
                event_type,
                version,
                reason: errors.join("; "),
            })
        }
    }

    /// The (event type, version) pairs that have a schema.
    pub fn known(&self) -> impl Iterator<Item = &(String, u32)> {
        self.known.iter()
    }
}

/// `dir/Name.v3.schema.json` -> ("Name", 3).
fn type_and_version(path: &str) -> (String, u32) {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.trim_end_matches(".schema.json");
    let (name, version) = stem
        .rsplit_once(".v")
        .expect("schema file names end .vN.schema.json");
    (
        name.to_owned(),
        version.parse().expect("schema version is a number"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_envelope_passes_and_a_broken_or_unknown_one_is_refused_with_its_reason() {
        let schemas = SchemaSet::load();
        let bad = serde_json::json!({
            "event_id": "not-a-uuid", "event_type": "LineResumed", "event_version": 1,
            "aggregate_id": "010-1234-5678", "sequence": 1, "occurred_at": "2026-01-01T00:00:00Z",
            "correlation_id": "00000000-0000-4000-8000-000000000001",
            "causation_id": "00000000-0000-4000-8000-000000000001",
            "payload": {"line_number": "010-1234-5678"}
        });
        assert!(matches!(
            schemas.validate(&bad),
            Err(DecodeError::Payload { .. })
        ));
        let mut unknown = bad.clone();
        unknown["event_version"] = serde_json::json!(9);
        assert!(matches!(
            schemas.validate(&unknown),
            Err(DecodeError::UnknownVersion { version: 9, .. })
        ));
        let mut wrong_payload = bad.clone();
        wrong_payload["event_id"] = serde_json::json!("00000000-0000-4000-8000-000000000002");
        wrong_payload["payload"] = serde_json::json!({"line_number": 5});
        assert!(schemas.validate(&wrong_payload).is_err());
        let mut good = bad.clone();
        good["event_id"] = serde_json::json!("00000000-0000-4000-8000-000000000002");
        assert_eq!(schemas.validate(&good), Ok(()));
    }
}
