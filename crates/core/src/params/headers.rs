//! Header operations (`addReqHeader`, …, `delResHeader`) and `serviceHeader`.

use http::header::{HeaderName, HeaderValue as HttpHeaderValue};

use super::value::Val;
use super::ParamError;
use crate::service::{HeaderCondition, HeaderOp, HeaderValue, ValuePart};

pub(super) fn push_header_ops(
    ops: &mut Vec<HeaderOp>,
    add: Option<Val<'_>>,
    set: Option<Val<'_>>,
    del: Option<Val<'_>>,
    sep: &str,
) -> Result<(), ParamError> {
    if let Some(v) = add {
        for item in split_outside_quotes(v.value, sep) {
            let (name, value, when) =
                parse_header_item(item).map_err(|reason| v.invalid_item(item, reason))?;
            ops.push(HeaderOp::Add { name, value, when });
        }
    }
    if let Some(v) = set {
        for item in split_outside_quotes(v.value, sep) {
            let (name, value, when) =
                parse_header_item(item).map_err(|reason| v.invalid_item(item, reason))?;
            ops.push(HeaderOp::Set { name, value, when });
        }
    }
    if let Some(v) = del {
        for item in v.items(sep) {
            let name = header_name(item).map_err(|reason| v.invalid_item(item, reason))?;
            ops.push(HeaderOp::Del { name });
        }
    }
    Ok(())
}

/// Splits on `sep` except inside a quoted value (a quote opens only after whitespace).
/// Items are trimmed; empty items are dropped.
pub(super) fn split_outside_quotes<'s>(value: &'s str, sep: &str) -> Vec<&'s str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut prev_is_space = false;
    let mut at = 0;
    while at < value.len() {
        let rest = &value[at..];
        if quote.is_none() && rest.starts_with(sep) {
            items.push(&value[start..at]);
            at += sep.len();
            start = at;
            prev_is_space = false;
            continue;
        }
        let Some(c) = rest.chars().next() else { break };
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if q == '"' && c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if prev_is_space && (c == '"' || c == '\'') => quote = Some(c),
            None => {}
        }
        prev_is_space = c.is_whitespace();
        at += c.len_utf8();
    }
    items.push(&value[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

pub(super) fn header_name(text: &str) -> Result<String, String> {
    HeaderName::from_bytes(text.as_bytes())
        .map(|name| name.as_str().to_string())
        .map_err(|_| "not a valid HTTP header name".to_string())
}

/// `Name value[ condition]` → its parts.
pub(super) fn parse_header_item(
    item: &str,
) -> Result<(String, HeaderValue, HeaderCondition), String> {
    let item = item.trim();
    let (name, rest) = match item.find(char::is_whitespace) {
        Some(at) => (&item[..at], item[at..].trim_start()),
        None => (item, ""),
    };
    let name = header_name(name)?;
    let (text, condition) = if rest.starts_with('"') || rest.starts_with('\'') {
        let (text, after) = take_quoted(rest)?;
        if !after.is_empty() && !after.starts_with(char::is_whitespace) {
            return Err("unexpected text after the closing quote".to_string());
        }
        (text, after.trim())
    } else {
        let at = condition_start(rest).unwrap_or(rest.len());
        let text = rest[..at].trim_end();
        if text.is_empty() {
            return Err("missing header value".to_string());
        }
        (text.to_string(), rest[at..].trim())
    };
    let when = parse_condition(condition)?;
    let value = parse_value_parts(&text)?;
    Ok((name, value, when))
}

/// Reads a quoted value at the start of `text`; returns it unquoted and the text after it.
pub(super) fn take_quoted(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("missing header value".to_string());
    };
    let mut out = String::new();
    while let Some((at, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => break,
            }
        } else if c == quote {
            return Ok((out, &text[at + c.len_utf8()..]));
        } else {
            out.push(c);
        }
    }
    Err("unterminated quoted value".to_string())
}

/// The byte offset of the first whitespace-separated `if` / `unless` token.
pub(super) fn condition_start(text: &str) -> Option<usize> {
    let mut token_start = None;
    for (at, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_whitespace() {
            if let Some(start) = token_start.take() {
                if matches!(&text[start..at], "if" | "unless") {
                    return Some(start);
                }
            }
        } else if token_start.is_none() {
            token_start = Some(at);
        }
    }
    None
}

pub(super) fn parse_condition(text: &str) -> Result<HeaderCondition, String> {
    if text.is_empty() {
        return Ok(HeaderCondition::Always);
    }
    let mut tokens = text.split_whitespace();
    let keyword = tokens.next().unwrap_or_default();
    let body: String = tokens.collect();
    let when = match (keyword, body.as_str()) {
        ("if", "{ssl_fc}") | ("unless", "!{ssl_fc}") => HeaderCondition::IfTls,
        ("unless", "{ssl_fc}") | ("if", "!{ssl_fc}") => HeaderCondition::UnlessTls,
        _ => {
            return Err(
                "unsupported condition (only `if { ssl_fc }`, `unless { ssl_fc }` and \
                 `if !{ ssl_fc }`)"
                    .to_string(),
            )
        }
    };
    Ok(when)
}

const PLACEHOLDER_HELP: &str =
    "only the placeholders %[src], %[dst_port] and %[ssl_fc] are supported";

/// Literal text with `%[src]`, `%[dst_port]`, `%[ssl_fc]` placeholders and `%%` escapes.
pub(super) fn parse_value_parts(text: &str) -> Result<HeaderValue, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            literal.push('%');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| "unterminated %[ placeholder".to_string())?;
            let part = match inner[..close].trim() {
                "src" => ValuePart::ClientIp,
                "dst_port" => ValuePart::LocalPort,
                "ssl_fc" => ValuePart::Tls,
                other if other.starts_with("env(") => {
                    return Err(format!("%[{other}] cannot be used: {PLACEHOLDER_HELP}"))
                }
                other => {
                    return Err(format!(
                        "unsupported placeholder %[{other}]: {PLACEHOLDER_HELP}"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(ValuePart::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &inner[close + 1..];
        } else {
            literal.push('%');
            rest = after;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(ValuePart::Text(literal));
    }
    for part in &parts {
        if let ValuePart::Text(t) = part {
            if HttpHeaderValue::from_str(t).is_err() {
                return Err("not a valid HTTP header value (control characters)".to_string());
            }
        }
    }
    Ok(HeaderValue(parts))
}

pub(super) fn parse_service_headers(
    v: &Val<'_>,
    sep: &str,
) -> Result<Vec<(String, String)>, ParamError> {
    v.items(sep)
        .map(|item| {
            let (name, value) = item
                .split_once(':')
                .ok_or_else(|| v.invalid_item(item, "expected Name:value"))?;
            let name = header_name(name.trim()).map_err(|reason| v.invalid_item(item, reason))?;
            let value = value.trim();
            if HttpHeaderValue::from_str(value).is_err() {
                return Err(v.invalid_item(item, "not a valid HTTP header value"));
            }
            Ok((name, value.to_string()))
        })
        .collect()
}
