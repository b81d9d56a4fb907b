//! The command side's domain: no I/O here. Handlers load what a decision needs, then call
//! into these types.
//!
//! - [`line_number`]: the validated line number (aggregate id).
//! - [`reference`]: the facts about lines and products that pre-checks read.
//! - [`product_change`]: the pre-checks of a product-change request, as a plain function.
//! - [`line`]: the line aggregate (cqrs-es): commands in, events out.

pub mod line;
pub mod line_number;
pub mod product_change;
pub mod reference;
