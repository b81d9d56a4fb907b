//! Secrets kept out of what a process prints about itself: configuration `Debug`
//! (`#[educe(Debug(method(...)))]` on the field) and `--help` (`hide_env_values` on the
//! argument). A URL keeps everything but its password, so a dump still says where the
//! service connects.

use std::fmt;

/// `Debug` of a URL, or of a comma-separated list of them, with each password replaced.
pub fn urls(value: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let redacted: Vec<String> = value.split(',').map(redact_url).collect();
    fmt::Debug::fmt(&redacted.join(","), f)
}

/// A secret given as a file (as mounted from Key Vault; it wins) or as a value: the
/// file's text, else the value, else `None`. `file_variable` names the file's setting in
/// the error.
pub fn file_or_value(
    file: Option<&std::path::Path>,
    value: Option<&str>,
    file_variable: &str,
) -> Result<Option<String>, String> {
    match (file, value) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| format!("{file_variable} {} is not readable: {e}", path.display())),
        (None, value) => Ok(value.map(str::to_owned)),
    }
}

/// `Debug` of an optional secret: whether it is set, never what it is.
pub fn option(value: &Option<String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value {
        Some(_) => f.write_str("Some(<redacted>)"),
        None => f.write_str("None"),
    }
}

/// `scheme://user:password@host/...` as `scheme://user:***@host/...`; a URL without a
/// password unchanged; query parameters named like a password or key are replaced too.
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "key", "token"]
        .iter()
        .any(|word| name.contains(word))
        && name != "sslkey" // a file path, not a secret
}

/// What each service's configuration test sets and checks: the secrets every service
/// holds, and that neither `--help` nor a `Debug` dump shows them.
pub mod check {
    pub const DATABASE_URL: &str = "postgres://phonebill_admin:db-secret@db:5432/phonebill";
    pub const REDIS_URL: &str = "rediss://:redis-secret@cache:6380";
    pub const SASL_PASSWORD: &str = "kafka-secret";
    /// An Ed25519 seed, base64 (of `jwt-secret-jwt-secret-jwt-secret`).
    pub const SIGNING_KEY: &str = "k1:and0LXNlY3JldC1qd3Qtc2VjcmV0LWp3dC1zZWNyZXQ=";
    /// A public key (SubjectPublicKeyInfo DER, base64), for the services that verify.
    pub const VERIFY_KEY: &str = "k1:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E=";

    /// Panics unless `command` hides the environment value of the four shared secret
    /// arguments and of `extra_ids`, and `dump` (the configuration's `Debug`, holding
    /// the values above) shows none of them nor `extra_secrets`, but does show the
    /// database URL with its password replaced.
    pub fn assert_hidden(
        command: &clap::Command,
        extra_ids: &[&str],
        dump: &str,
        extra_secrets: &[&str],
    ) {
        let ids = ["database_url", "redis_url", "sasl_password", "signing_key"];
        let shown: Vec<&str> = ids
            .iter()
            .chain(extra_ids)
            .filter(|id| {
                !command
                    .get_arguments()
                    .any(|arg| arg.get_id() == **id && arg.is_hide_env_values_set())
            })
            .copied()
            .collect();
        assert!(shown.is_empty(), "--help would print these: {shown:?}");
        let secrets = [
            "db-secret",
            "redis-secret",
            "kafka-secret",
            "and0LXNlY3JldC1qd3Qtc2VjcmV0LWp3dC1zZWNyZXQ",
        ];
        for secret in secrets.iter().chain(extra_secrets) {
            assert!(!dump.contains(secret), "{secret} in {dump}");
        }
        assert!(
            dump.contains("postgres://phonebill_admin:***@db:5432/phonebill"),
            "{dump}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_replaced_and_the_rest_kept() {
        let cases = [
            (
                "postgres://phonebill_admin:s3cr%40t@db.example:5432/phonebill?sslmode=verify-full",
                "postgres://phonebill_admin:***@db.example:5432/phonebill?sslmode=verify-full",
            ),
            ("rediss://:accesskey@cache:6380", "rediss://:***@cache:6380"),
            (
                "postgres://postgres@127.0.0.1:5432/phonebill",
                "postgres://postgres@127.0.0.1:5432/phonebill",
            ),
            (
                "postgres://u@db/x?password=hunter2&sslmode=require",
                "postgres://u@db/x?password=***&sslmode=require",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[derive(educe::Educe)]
    #[educe(Debug)]
    struct Example {
        #[educe(Debug(method(urls)))]
        url: String,
        #[educe(Debug(method(option)))]
        password: Option<String>,
        plain: u32,
    }

    #[test]
    fn debug_of_a_configuration_shows_no_secret() {
        let example = Example {
            url: "rediss://:k1@a:6380,rediss://:k2@b:6380".into(),
            password: Some("hunter2".into()),
            plain: 7,
        };
        let dump = format!("{example:?}");
        for secret in ["k1", "k2", "hunter2"] {
            assert!(!dump.contains(secret), "{dump}");
        }
        assert!(
            dump.contains("rediss://:***@a:6380,rediss://:***@b:6380"),
            "{dump}"
        );
        assert!(
            dump.contains("Some(<redacted>)") && dump.contains("plain: 7"),
            "{dump}"
        );
    }
}
