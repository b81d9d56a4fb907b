//! What the pre-checks know about a line and a product, taken from KOS facts.

use events::kos::LineStatus;

#[derive(Debug, Clone, PartialEq)]
pub struct LineFacts {
    pub line_number: String,
    pub customer_id: String,
    pub operator: String,
    pub status: LineStatus,
    pub product_code: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductFacts {
    pub product_code: String,
    pub operator: String,
    pub on_sale: bool,
}
