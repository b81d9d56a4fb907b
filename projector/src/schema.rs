//! The event schemas of `events::schema::FILES`, compiled into one validator.
//!
//! `events::schema::SchemaSet` compiles one validator per event type, and each carries
//! its own resource registry (the JSON Schema meta-schemas included): ~38 MB for the 17
//! schemas, more than half the projector's 64 MiB budget. Here one dispatcher schema
//! (`if event_type/event_version then $ref` per file) holds them all in one registry
//! (~7 MB). Same files, same checks; unknown types and versions are refused first, as
//! `SchemaSet` does.

use std::collections::HashSet;

use events::schema::FILES;
use events::DecodeError;
use jsonschema::{PatternOptions, Resource, Validator};

const BASE_URI: &str = "https://schemas.phonebill.dev/";

pub struct Schemas {
    known: HashSet<(String, u32)>,
    validator: Validator,
}

impl Schemas {
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
            "$id": format!("{BASE_URI}projector-dispatch.json"),
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

    /// Checks a whole envelope against the schema of its type and version.
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
    fn every_schema_compiles_and_a_broken_envelope_is_refused_as_the_events_crate_would() {
        let schemas = Schemas::load();
        let reference = events::schema::SchemaSet::load();
        let bad = serde_json::json!({
            "event_id": "not-a-uuid", "event_type": "LineResumed", "event_version": 1,
            "aggregate_id": "010-1234-5678", "sequence": 1, "occurred_at": "2026-01-01T00:00:00Z",
            "correlation_id": "00000000-0000-4000-8000-000000000001",
            "causation_id": "00000000-0000-4000-8000-000000000001",
            "payload": {"line_number": "010-1234-5678"}
        });
        assert!(matches!(
            (schemas.validate(&bad), reference.validate(&bad)),
            (
                Err(DecodeError::Payload { .. }),
                Err(DecodeError::Payload { .. })
            )
        ));
        let mut unknown = bad.clone();
        unknown["event_version"] = serde_json::json!(9);
        assert_eq!(schemas.validate(&unknown), reference.validate(&unknown));
        let mut wrong_payload = bad.clone();
        wrong_payload["event_id"] = serde_json::json!("00000000-0000-4000-8000-000000000002");
        wrong_payload["payload"] = serde_json::json!({"line_number": 5});
        assert!(schemas.validate(&wrong_payload).is_err());
        assert!(reference.validate(&wrong_payload).is_err());
        let mut good = bad.clone();
        good["event_id"] = serde_json::json!("00000000-0000-4000-8000-000000000002");
        assert_eq!(schemas.validate(&good), Ok(()));
        assert_eq!(reference.validate(&good), Ok(()));
    }
}
