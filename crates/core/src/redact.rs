//! Redaction of secret-bearing values before anything is logged.
//!
//! Reconfigure parameters travel in query strings, labels and environment variables, and some
//! of them carry secrets: `users` holds `name:password` pairs and `serviceCert` a private key.
//! Every log line that shows a URL, a query or a parameter goes through this module, which keeps
//! parameter names (so a line still says what was sent) and replaces the values of the
//! secret-bearing ones with [`REDACTED`]. A password in a URL's user-info is replaced too.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// What a secret value is replaced with.
pub const REDACTED: &str = "REDACTED";

/// Canonical names (lower case) of the parameters whose values are secrets.
const SECRET_PARAMS: &[&str] = &["users", "servicecert", "pass", "password", "api_pass"];

/// Whether the parameter (in any of its spellings: `users`, `users.2`, `users_2`,
/// `com.df.users`, `DFP_SERVICE_USERS`, `DFP_SERVICE_1_SERVICE_CERT`) carries a secret.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.trim();
    let name = name.strip_prefix("com.df.").unwrap_or(name);
    // Environment-defined services: DFP_SERVICE[_N]_<UPPER_SNAKE>.
    let name = match name.strip_prefix("DFP_SERVICE_") {
        Some(rest) => rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_'),
        None => name,
    };
    // Indexed destinations: `name.N` or `name_N`.
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = base
        .strip_suffix('.')
        .or_else(|| base.strip_suffix('_'))
        .unwrap_or(name);
    let folded: String = base
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_PARAMS
        .iter()
        .any(|secret| secret.replace('_', "") == folded)
        || folded.ends_with("password")
        || folded.ends_with("pass")
}

/// A query string (`a=1&users=u:p`) with the values of secret parameters replaced.
/// Names and the other values are kept byte for byte.
pub fn redact_query(query: &str) -> Cow<'_, str> {
    redact_query_with(query, is_secret_param)
}

/// [`redact_query`] with another rule for which (percent-decoded) parameter names are secret.
pub fn redact_query_with(query: &str, is_secret: impl Fn(&str) -> bool) -> Cow<'_, str> {
    let pair_is_secret = |pair: &str| {
        let Some((name, _)) = pair.split_once('=') else {
            return false;
        };
        let name = name.replace('+', " ");
        is_secret(&percent_decode_str(&name).decode_utf8_lossy())
    };
    if !query.split('&').any(pair_is_secret) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            if pair_is_secret(pair) {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                Cow::Owned(format!("{name}={REDACTED}"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// A URL with the password of its user-info and the secret values of its query replaced.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let (before_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let head = redact_userinfo(before_query);
    let query = query.map(redact_query);
    match (head, query) {
        (Cow::Borrowed(_), None) => Cow::Borrowed(url),
        (Cow::Borrowed(_), Some(Cow::Borrowed(_))) => Cow::Borrowed(url),
        (head, None) => Cow::Owned(head.into_owned()),
        (head, Some(query)) => Cow::Owned(format!("{head}?{query}")),
    }
}

fn redact_userinfo(head: &str) -> Cow<'_, str> {
    let Some(scheme_end) = head.find("://") else {
        return Cow::Borrowed(head);
    };
    let authority_start = scheme_end + 3;
    let rest = &head[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(head);
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return Cow::Borrowed(head);
    };
    Cow::Owned(format!(
        "{}{}:{REDACTED}{}",
        &head[..authority_start],
        &userinfo[..colon],
        &head[authority_start + at..]
    ))
}

/// The value to log for a parameter: the value itself, or [`REDACTED`] for a secret one.
pub fn param_value<'a>(name: &str, value: &'a str) -> &'a str {
    if is_secret_param(name) {
        REDACTED
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parameters_in_every_spelling() {
        for name in [
            "users",
            "users.2",
            "users_3",
            "com.df.users",
            "com.df.users.1",
            "serviceCert",
            "com.df.serviceCert",
            "DFP_SERVICE_USERS",
            "DFP_SERVICE_1_SERVICE_CERT",
            "DFP_SERVICE_SERVICE_CERT",
            "API_PASS",
            "DF_PROXY_PASS",
        ] {
            assert!(is_secret_param(name), "{name} must be secret");
        }
        for name in [
            "serviceName",
            "servicePath",
            "com.df.port",
            "usersSecret",
            "usersPassEncrypted",
        ] {
            assert!(!is_secret_param(name), "{name} is not secret");
        }
    }

    #[test]
    fn queries_keep_names_and_lose_secret_values() {
        let query =
            "serviceName=go&users=admin:hunter2&servicePath=/x&serviceCert=-----BEGIN%20PRIVATE";
        assert_eq!(
            redact_query(query),
            "serviceName=go&users=REDACTED&servicePath=/x&serviceCert=REDACTED"
        );
        assert!(matches!(
            redact_query("serviceName=go&port=80"),
            Cow::Borrowed(_)
        ));
        // A percent-encoded name is still recognised.
        assert_eq!(redact_query("us%65rs=a:b"), "us%65rs=REDACTED");
    }

    #[test]
    fn urls_lose_userinfo_passwords_and_secret_values() {
        assert_eq!(
            redact_url("http://admin:s3cret@proxy:8080/v1/docker-flow-proxy/reconfigure?serviceName=a&users=u:p"),
            "http://admin:REDACTED@proxy:8080/v1/docker-flow-proxy/reconfigure?serviceName=a&users=REDACTED"
        );
        let plain = "http://proxy:8080/v1/docker-flow-proxy/reconfigure?serviceName=a";
        assert!(matches!(redact_url(plain), Cow::Borrowed(_)));
    }

    #[test]
    fn param_values() {
        assert_eq!(param_value("users", "a:b"), REDACTED);
        assert_eq!(param_value("servicePath", "/a"), "/a");
    }
}
