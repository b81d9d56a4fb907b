use std::fmt;

/// A Korean mobile number in the form `010-1234-5678`. Built only through [`LineNumber::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineNumber(String);

impl LineNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bytes = raw.as_bytes();
        let shape_ok = bytes.len() == 13
            && raw.starts_with("010-")
            && bytes[8] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 3 || i == 8 || b.is_ascii_digit());
        if shape_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a line number like 010-1234-5678",
                raw.chars().take(40).collect::<String>()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LineNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_korean_mobile_shape() {
        assert_eq!(
            LineNumber::parse("010-1234-5678").unwrap().as_str(),
            "010-1234-5678"
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "01012345678",
            "011-1234-5678",
            "010-123-45678",
            "010-1234-567",
            "010-1234-56789",
            "010-12a4-5678",
            "010 1234 5678",
            "０１０-1234-5678",
            "010-1234-5678\n",
        ] {
            assert!(LineNumber::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
