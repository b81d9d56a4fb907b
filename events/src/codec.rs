//! JSON in and out. Decoding never panics: bad bytes, a wrong shape, an unknown event
//! type or an unknown version each give a [`DecodeError`] that says what was wrong.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::Envelope;

/// Why a message could not be decoded. The `Display` text is what lands in a
/// dead-letter record, so it names the type and version it saw.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("not a valid envelope: {0}")]
    Envelope(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("unsupported version {version} of event type `{event_type}`")]
    UnknownVersion { event_type: String, version: u32 },
    #[error("payload of `{event_type}` v{version} does not match its schema: {reason}")]
    Payload {
        event_type: String,
        version: u32,
        reason: String,
    },
}

impl DecodeError {
    /// A short, fixed label for metrics (the `Display` text carries the detail).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Envelope(_) => "envelope",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::UnknownVersion { .. } => "unknown_version",
            DecodeError::Payload { .. } => "payload",
        }
    }
}

/// A family of events that travel in envelopes (one enum per topic family).
pub trait EventPayload: Sized {
    fn event_type(&self) -> &'static str;
    fn event_version(&self) -> u32;
    /// The payload object as it appears on the wire.
    fn to_payload(&self) -> serde_json::Value;
    /// Builds the event from a wire payload, lifting older versions to the current one.
    fn from_payload(
        event_type: &str,
        version: u32,
        payload: serde_json::Value,
    ) -> Result<Self, DecodeError>;
}

/// Reads an envelope without looking inside its payload.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))
}

/// Reads the envelopes of a message: one, or a batch (a JSON array of envelopes, or
/// query-service's compact batch of bill inquiries, `bill_inquiry::encode_batch`, each
/// row expanded), never looking inside their payloads. A batch
/// reads whole or not at all, and an error names the element; an empty one is refused.
pub fn decode_envelopes(bytes: &[u8]) -> Result<Vec<Envelope>, DecodeError> {
    if let Some(rows) = crate::bill_inquiry::decode_rows(bytes)? {
        return Ok(rows.into_iter().map(|(envelope, _)| envelope).collect());
    }
    if !is_batch(bytes) {
        return Ok(vec![decode_envelope(bytes)?]);
    }
    let items: Vec<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    if items.is_empty() {
        return Err(DecodeError::Envelope("an empty batch".into()));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item)
                .map_err(|e| DecodeError::Envelope(format!("batch element {i}: {e}")))
        })
        .collect()
}

/// [`decode`] of every envelope of a message (see [`decode_envelopes`]).
pub fn decode_all<E: EventPayload>(bytes: &[u8]) -> Result<Vec<(Envelope, E)>, DecodeError> {
    if !is_batch(bytes) {
        return Ok(vec![decode(bytes)?]);
    }
    decode_envelopes(bytes)?
        .into_iter()
        .enumerate()
        .map(|(i, envelope)| {
            typed(envelope).map_err(|e| DecodeError::Envelope(format!("batch element {i}: {e}")))
        })
        .collect()
}

/// Whether a message's bytes are a batch (a JSON array) rather than one envelope.
pub fn is_batch(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// Reads an envelope and its typed payload.
pub fn decode<E: EventPayload>(bytes: &[u8]) -> Result<(Envelope, E), DecodeError> {
    typed(decode_envelope(bytes)?)
}

/// [`decode`] of JSON already parsed (to check it against its schema, say): the text is
/// not read a second time.
pub fn decode_value<E: EventPayload>(
    value: serde_json::Value,
) -> Result<(Envelope, E), DecodeError> {
    let envelope =
        serde_json::from_value(value).map_err(|e| DecodeError::Envelope(e.to_string()))?;
    typed(envelope)
}

fn typed<E: EventPayload>(envelope: Envelope) -> Result<(Envelope, E), DecodeError> {
    let event = E::from_payload(
        &envelope.event_type,
        envelope.event_version,
        envelope.payload.clone(),
    )?;
    Ok((envelope, event))
}

pub fn encode(envelope: &Envelope) -> Vec<u8> {
    serde_json::to_vec(envelope).expect("an envelope always serializes")
}

/// Serializes a payload struct (a helper for [`EventPayload::to_payload`]).
pub fn payload_of<T: Serialize>(body: &T) -> serde_json::Value {
    serde_json::to_value(body).expect("event payloads always serialize")
}

/// Deserializes a payload struct of a known type and version.
pub fn payload_from<T: DeserializeOwned>(
    event_type: &str,
    version: u32,
    payload: serde_json::Value,
) -> Result<T, DecodeError> {
    serde_json::from_value(payload).map_err(|e| DecodeError::Payload {
        event_type: event_type.to_owned(),
        version,
        reason: e.to_string(),
    })
}

/// Declares an event family: an enum whose variants each wrap one payload struct, with
/// the wire name and version of each. Generates the [`EventPayload`] impl so the names
/// live in one place.
#[macro_export]
macro_rules! event_family {
    ($family:ident { $($variant:ident($payload:ty) = ($name:literal, $version:literal)),+ $(,)? }) => {
        impl $crate::codec::EventPayload for $family {
            fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name,)+ }
            }

            fn event_version(&self) -> u32 {
                match self { $(Self::$variant(_) => $version,)+ }
            }

            fn to_payload(&self) -> serde_json::Value {
                match self { $(Self::$variant(body) => $crate::codec::payload_of(body),)+ }
            }

            fn from_payload(
                event_type: &str,
                version: u32,
                payload: serde_json::Value,
            ) -> Result<Self, $crate::codec::DecodeError> {
                match event_type {
                    $($name => {
                        if version != $version {
                            return Err($crate::codec::DecodeError::UnknownVersion {
                                event_type: event_type.to_owned(),
                                version,
                            });
                        }
                        $crate::codec::payload_from::<$payload>(event_type, version, payload)
                            .map(Self::$variant)
                    })+
                    other => Err($crate::codec::DecodeError::UnknownType(other.to_owned())),
                }
            }
        }

        impl $family {
            /// Every (event type, version) of this family, for schema coverage checks.
            pub const VERSIONS: &'static [(&'static str, u32)] = &[$(($name, $version)),+];
        }
    };
}
