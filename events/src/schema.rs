//! Validation against the JSON Schemas in `schemas/`, which are compiled into the crate so
//! that a consumer checks exactly the contract it was built with.

use std::collections::HashMap;

use jsonschema::{Resource, Validator};

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

/// Every event schema, compiled once, found by (event type, version).
pub struct SchemaSet {
    by_type: HashMap<(String, u32), Validator>,
}

impl SchemaSet {
    pub fn load() -> Self {
        let envelope: serde_json::Value =
            serde_json::from_str(FILES[0].1).expect("envelope schema is valid JSON");
        let mut by_type = HashMap::new();
        for (path, contents) in &FILES[1..] {
            let schema: serde_json::Value =
                serde_json::from_str(contents).expect("schema files are valid JSON");
            let (event_type, version) = type_and_version(path);
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .with_resource(
                    format!("{BASE_URI}{}", FILES[0].0),
                    Resource::from_contents(envelope.clone()).expect("envelope schema loads"),
                )
                .build(&schema)
                .unwrap_or_else(|e| panic!("schema {path} compiles: {e}"));
            by_type.insert((event_type, version), validator);
        }
        Self { by_type }
    }

    /// Checks a whole envelope (as JSON) against the schema of its type and version.
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

    /// The (event type, version) pairs that have a schema.
    pub fn known(&self) -> impl Iterator<Item = &(String, u32)> {
        self.by_type.keys()
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
