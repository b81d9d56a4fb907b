//! The event schemas of `events::schema::FILES`, compiled with the `regex` pattern engine.
//!
//! `events::schema::SchemaSet` compiles them with jsonschema's default (fancy-regex)
//! engine, which holds ~39 MB for these 17 schemas; the schemas' patterns need no
//! look-around, and with `regex` the same set takes ~1.3 MB, which keeps the projector
//! under its 64 MiB budget. Same files, same checks, same error text.

use std::collections::HashMap;

use events::schema::FILES;
use events::DecodeError;
use jsonschema::{PatternOptions, Resource, Validator};

const BASE_URI: &str = "https://schemas.phonebill.dev/";

pub struct Schemas {
    by_type: HashMap<(String, u32), Validator>,
}

impl Schemas {
    pub fn load() -> Self {
        let envelope: serde_json::Value =
            serde_json::from_str(FILES[0].1).expect("envelope schema is valid JSON");
        let by_type = FILES[1..]
            .iter()
            .map(|(path, contents)| {
                let schema: serde_json::Value =
                    serde_json::from_str(contents).expect("schema files are valid JSON");
                let validator = jsonschema::options()
                    .should_validate_formats(true)
                    .with_pattern_options(PatternOptions::regex())
                    .with_resource(
                        format!("{BASE_URI}{}", FILES[0].0),
                        Resource::from_contents(envelope.clone()).expect("envelope schema loads"),
                    )
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("schema {path} compiles: {e}"));
                (type_and_version(path), validator)
            })
            .collect();
        Self { by_type }
    }

    /// Checks a whole envelope against the schema of its type and version.
    pub fn validate(&self, envelope: &serde_json::Value) -> Result<(), DecodeError> {
        let event_type = envelope["event_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let version = envelope["event_version"].as_u64().unwrap_or_default() as u32;
        let validator = self
            .by_type
            .get(&(event_type.clone(), version))
            .ok_or_else(|| DecodeError::UnknownVersion {
                event_type: event_type.clone(),
                version,
            })?;
        let errors: Vec<String> = validator
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
        assert_eq!(schemas.validate(&bad), reference.validate(&bad));
        assert!(schemas.validate(&bad).is_err());
        let mut good = bad.clone();
        good["event_id"] = serde_json::json!("00000000-0000-4000-8000-000000000002");
        assert_eq!(schemas.validate(&good), Ok(()));
        assert_eq!(reference.validate(&good), Ok(()));
    }
}
