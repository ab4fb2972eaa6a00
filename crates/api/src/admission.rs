//! What the API requires of a service beyond core's parser, wherever services come from (a
//! reconfigure, the listener's sync, the state file): no control characters in values that are
//! shown back (`/config`, logs), so a value can never forge a line there.
//!
//! `users` and `serviceCert` may hold newlines (a list of users, a PEM bundle) and are never
//! shown, so they are left to the parser.

use sluice_core::params::{parse_service, ParamError, ParseContext};
use sluice_core::redact::is_secret_param;
use sluice_core::service::{Params, Service};

/// Checks the parameters' values and parses them into a service.
pub fn admit(params: &Params, parse: &ParseContext) -> Result<Service, ParamError> {
    for (name, value) in params {
        if !is_secret_param(name) && value.chars().any(is_forbidden) {
            return Err(ParamError::Invalid {
                param: name.clone(),
                // Shown with Rust's escapes (`{:?}`): the message holds no control character.
                value: value.clone(),
                reason: "control characters (CR, LF, other C0 and DEL) are not allowed".into(),
            });
        }
    }
    parse_service(params, parse)
}

fn is_forbidden(c: char) -> bool {
    c.is_ascii_control() && c != '\t'
}

/// `text` with every control character but LF and TAB written as an escape (`\r`, `\x1b`):
/// for text whose lines are meant to stay lines.
pub fn escape_control_keep_lines(text: &str) -> String {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> String {
    if !text.chars().any(|c| c.is_ascii_control() && !keep(c)) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !c.is_ascii_control() || keep(c) => out.push(c),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use sluice_core::params::params_from_query;

    use super::*;

    #[test]
    fn control_characters_are_refused_and_shown_escaped() {
        let params = params_from_query("serviceName=a&servicePath=/x%0d%0aroute%20forged&port=1");
        let error = admit(&params, &ParseContext::default()).unwrap_err();
        assert_eq!(error.param(), Some("servicePath"));
        let text = error.to_string();
        assert!(text.contains("\\r\\n"), "{text}");
        assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
        // Secret-bearing parameters may hold newlines (they are never shown).
        let params = params_from_query("serviceName=a&servicePath=/x&port=1&users=a:b%0Ac:d");
        assert_eq!(
            admit(&params, &ParseContext::default())
                .unwrap()
                .users
                .len(),
            2
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape_control_keep_lines("a\r\nb\x1b\tc\n"),
            "a\\r\nb\\x1b\tc\n"
        );
        assert_eq!(escape_control_keep_lines("plain"), "plain");
    }
}
