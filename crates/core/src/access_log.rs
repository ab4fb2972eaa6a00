//! The request log's settings (`DEBUG`, `DEBUG_ERRORS_ONLY`, `CAPTURE_REQUEST_HEADER`,
//! `LOG_FORMAT`), read by [`crate::settings::Settings::from_vars`]. The data plane writes the
//! log (`sluice_proxy::access_log`).

use crate::env::list_items;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One `key=value` line (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `text` or `json` (ASCII case-insensitive).
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("text") {
            Ok(LogFormat::Text)
        } else if text.eq_ignore_ascii_case("json") {
            Ok(LogFormat::Json)
        } else {
            Err("unsupported log format (text or json)".to_string())
        }
    }
}

/// A request header copied into each log line, cut to `max_len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedHeader {
    /// The header name in lower case.
    pub name: String,
    /// The longest value logged, in bytes.
    pub max_len: usize,
}

/// Headers never copied into a log line: they carry credentials.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Parses DFP's `CAPTURE_REQUEST_HEADER`: comma-separated `Name:length` items
/// (`Host:15,X-Forwarded-For:20`).
pub fn parse_captured_headers(text: &str) -> Result<Vec<CapturedHeader>, String> {
    list_items(text, ",")
        .map(|item| {
            let (name, len) = item
                .split_once(':')
                .ok_or_else(|| format!("'{item}' is not Name:length"))?;
            let name = name.trim();
            if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("'{name}' is not a header name"));
            }
            let name = name.to_ascii_lowercase();
            if SECRET_HEADERS.contains(&name.as_str()) {
                return Err(format!(
                    "the {name} header carries credentials and is never logged"
                ));
            }
            let max_len = crate::env::parse_decimal::<usize>(len.trim())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("'{}' is not a length (a whole number above 0)", len.trim())
                })?;
            Ok(CapturedHeader { name, max_len })
        })
        .collect()
}

/// The request log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessLogSettings {
    /// `DEBUG`: one line per HTTP request and per layer-4 connection.
    pub enabled: bool,
    /// `DEBUG_ERRORS_ONLY`: with `DEBUG`, only failed requests (status 500 and up, aborted,
    /// refused connections).
    pub errors_only: bool,
    /// `CAPTURE_REQUEST_HEADER`: request headers added to each line.
    pub capture: Vec<CapturedHeader>,
    /// `LOG_FORMAT`: the format of request lines (and of the other log lines).
    pub format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_headers_are_name_and_length() {
        let parsed = parse_captured_headers("Host:15, X-Forwarded-For:20").unwrap();
        assert_eq!(
            parsed,
            [
                CapturedHeader {
                    name: "host".into(),
                    max_len: 15
                },
                CapturedHeader {
                    name: "x-forwarded-for".into(),
                    max_len: 20
                }
            ]
        );
        assert!(parse_captured_headers("").unwrap().is_empty());
    }

    #[test]
    fn bad_captured_headers_are_refused() {
        for (bad, why) in [
            ("Host:abc", "not a length"),
            ("Host:0", "not a length"),
            ("Host", "not Name:length"),
            ("Bad Name:3", "not a header name"),
            ("Authorization:20", "credentials"),
            ("cookie:20", "credentials"),
        ] {
            let err = parse_captured_headers(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn settings_read_the_four_variables() {
        use std::collections::HashMap;

        use crate::settings::{Settings, SettingsError};
        let vars = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = Settings::from_vars(&vars(&[
            ("DEBUG", "true"),
            ("DEBUG_ERRORS_ONLY", "1"),
            ("CAPTURE_REQUEST_HEADER", "Host:15"),
            ("LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert!(s.access_log.enabled && s.access_log.errors_only);
        assert_eq!(s.access_log.capture.len(), 1);
        assert_eq!(s.access_log.format, LogFormat::Json);
        assert_eq!(
            Settings::from_vars(&vars(&[])).unwrap().access_log,
            AccessLogSettings::default()
        );
        for (var, value) in [
            ("DEBUG", "yes"),
            ("DEBUG_ERRORS_ONLY", "maybe"),
            ("CAPTURE_REQUEST_HEADER", "Host:abc"),
            ("LOG_FORMAT", "xml"),
        ] {
            let Err(SettingsError::Invalid { var: named, .. }) =
                Settings::from_vars(&vars(&[(var, value)]))
            else {
                panic!("{var}={value} was accepted");
            };
            assert_eq!(named, var);
        }
    }

    #[test]
    fn formats() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert!(LogFormat::parse("xml").is_err());
    }
}
