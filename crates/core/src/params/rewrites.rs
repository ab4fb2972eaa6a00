//! Rewrites: `reqPathSearchReplace` and the deprecated `reqPathSearch` / `reqPathReplace`.

use super::value::Source;
use super::ParamError;
use crate::service::{PathRewrite, UserRegex};

pub(super) fn parse_legacy_rewrite(src: &Source<'_>) -> Result<Option<PathRewrite>, ParamError> {
    let Some(search) = src.service("reqPathSearch") else {
        return Ok(None);
    };
    let replace_val = src.service("reqPathReplace");
    let replace_text = replace_val.as_ref().map_or("", |v| v.value);
    let regex = UserRegex::new(search.value, false).map_err(|reason| search.invalid(reason))?;
    let replace = translate_replacement(replace_text).map_err(|reason| match &replace_val {
        Some(v) => v.invalid(reason),
        None => search.invalid(reason),
    })?;
    Ok(Some(PathRewrite {
        search: regex,
        replace,
        global: false,
        source: format!("{},{replace_text}", search.value),
    }))
}

/// `search,replace[,flags]` → a rewrite.
pub(super) fn parse_rewrite_pair(pair: &str) -> Result<PathRewrite, String> {
    let parts: Vec<&str> = pair.split(',').collect();
    let (search, replace, flags) = match parts.as_slice() {
        [search, replace] => (*search, *replace, ""),
        [search, replace, flags] => (*search, *replace, flags.trim()),
        _ => return Err("expected search,replace[,flags]".to_string()),
    };
    if search.is_empty() {
        return Err("the search expression is empty".to_string());
    }
    let mut global = false;
    let mut case_insensitive = false;
    for flag in flags.chars() {
        match flag {
            'g' => global = true,
            'i' => case_insensitive = true,
            other => return Err(format!("unsupported regsub flag '{other}' (only g and i)")),
        }
    }
    Ok(PathRewrite {
        search: UserRegex::new(search, case_insensitive)?,
        replace: translate_replacement(replace)?,
        global,
        source: pair.to_string(),
    })
}

/// HAProxy `regsub` replacement → `regex` crate replacement: `\N` → `${N}`, `\\` → `\`,
/// `\xHH` → the ASCII character, `$` → `$$`; any other `\c` stays as typed.
pub(super) fn translate_replacement(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(digit @ '0'..='9') => {
                    out.push_str("${");
                    out.push(digit);
                    out.push('}');
                }
                Some('\\') => out.push('\\'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    let byte = (hex.len() == 2)
                        .then(|| u8::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .filter(u8::is_ascii)
                        .ok_or_else(|| {
                            "\\x must be followed by two hex digits of an ASCII character"
                                .to_string()
                        })?;
                    match char::from(byte) {
                        '$' => out.push_str("$$"),
                        ch => out.push(ch),
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return Err("the replacement ends with a lone backslash".to_string()),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}
