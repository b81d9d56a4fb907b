//! Checks on admin input: each failure names the field and has a stable code, and runs
//! before anything is written.

use crate::error::AppError;
use service_kit::problem::ProblemCode;

/// `010-1234-5678`.
pub fn line_number(value: &str) -> Result<(), AppError> {
    let b = value.as_bytes();
    let ok = b.len() == 13
        && value.starts_with("010-")
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 3 || i == 8 || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(AppError::refused(
            ProblemCode::InvalidLineNumber,
            format!("line number `{value}` is not of the form 010-1234-5678"),
        ))
    }
}

/// Upper-case letters, digits and `-`, 1 to 64 characters, starting with a letter or digit.
pub fn product_code(value: &str) -> Result<(), AppError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('-')
        && value
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(AppError::refused(
            ProblemCode::InvalidProductCode,
            format!("product code `{value}` must be 1 to 64 upper-case letters, digits and dashes"),
        ))
    }
}

/// Upper-case letters and digits, 1 to 64 characters (`CUST0001`).
pub fn customer_id(value: &str) -> Result<(), AppError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(AppError::refused(
            ProblemCode::InvalidCustomerId,
            format!("customer id `{value}` must be 1 to 64 upper-case letters and digits"),
        ))
    }
}

/// Upper-case letters, 2 to 16 characters (`KT`, `LGU`, `SKT`).
pub fn operator(value: &str) -> Result<(), AppError> {
    let ok = (2..=16).contains(&value.len()) && value.bytes().all(|c| c.is_ascii_uppercase());
    if ok {
        Ok(())
    } else {
        Err(AppError::refused(
            ProblemCode::InvalidOperator,
            format!("operator `{value}` must be 2 to 16 upper-case letters"),
        ))
    }
}

/// A non-blank display text of at most `max` characters.
pub fn text(code: ProblemCode, field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(AppError::refused(
            code,
            format!("{field} must be 1 to {max} characters and not blank"),
        ));
    }
    Ok(())
}

/// An amount in won or a count: 0 to `max`.
pub fn amount(field: &str, value: i64, max: i64) -> Result<(), AppError> {
    if !(0..=max).contains(&value) {
        return Err(AppError::refused(
            ProblemCode::InvalidAmount,
            format!("{field} must be between 0 and {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers() {
        assert!(line_number("010-0000-0001").is_ok());
        for bad in [
            "01000000001",
            "010-000-00001",
            "011-0000-0001",
            "010-0000-000a",
            "",
        ] {
            assert!(line_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn product_codes_and_ids() {
        assert!(product_code("5G-STANDARD-001").is_ok());
        for bad in [
            "",
            "5g-lite",
            "'; drop table lines;--",
            "-X",
            &"A".repeat(65),
        ] {
            assert!(product_code(bad).is_err(), "{bad}");
        }
        assert!(customer_id("CUST0001").is_ok());
        assert!(customer_id("cust 1").is_err());
        assert!(operator("KT").is_ok());
        assert!(operator("K").is_err());
        assert!(amount("fee", -1, 10).is_err());
    }
}
