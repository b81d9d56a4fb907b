//! Facts KOS publishes on `kos.billing`. The command side builds its pre-check
//! reference data (catalog, lines) from them.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KosFact {
    ProductPublished(ProductPublished),
    LineRegistered(LineRegistered),
}

crate::event_family!(KosFact {
    ProductPublished(ProductPublished) = ("ProductPublished", 1),
    LineRegistered(LineRegistered) = ("LineRegistered", 1),
});

/// A product in the catalog (new, or its full current state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPublished {
    pub product_code: String,
    pub name: String,
    pub operator: String,
    /// Monthly fee in won.
    pub monthly_fee: i64,
    /// Data allowance in MB; `None` means unlimited.
    pub data_mb: Option<i64>,
    /// Voice allowance in minutes; `None` means unlimited.
    pub voice_minutes: Option<i64>,
    /// SMS allowance; `None` means unlimited.
    pub sms_count: Option<i64>,
    pub on_sale: bool,
}

/// A subscriber line (new, or its full current state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRegistered {
    pub line_number: String,
    pub customer_id: String,
    pub customer_name: String,
    pub operator: String,
    pub status: LineStatus,
    pub product_code: String,
    pub contract: Contract,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LineStatus {
    Active,
    Suspended,
}

impl LineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LineStatus::Active => "ACTIVE",
            LineStatus::Suspended => "SUSPENDED",
        }
    }
}

/// The commitment (약정) a line is under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub commitment_months: u32,
    pub started_on: NaiveDate,
    pub ends_on: NaiveDate,
}
