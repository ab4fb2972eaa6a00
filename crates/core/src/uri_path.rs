//! The request path in the one form the router, the gates and the upstream all see.
//!
//! A backend reads `/%73ecure`, `//secure`, `/./secure` and `/x/../secure` as `/secure`; if
//! the proxy matched the raw text, each spelling would slip past a route (and its basic-auth
//! gate) meant for `/secure`. [`normalize`] turns every spelling into one canonical path,
//! following RFC 3986 §6.2.2 and the steps of HAProxy's `http-request normalize-uri`:
//!
//! 1. percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
//!    percent-encoding keeps its byte with upper-case hex (`%3f` → `%3F`);
//! 2. dot segments (`.` and `..`, also spelled `%2e`) are removed (RFC 3986 §5.2.4; a `..`
//!    above the root stays at the root);
//! 3. repeated slashes are merged (`//a///b` → `/a/b`).
//!
//! Some paths cannot be normalised without guessing what the backend will make of them, and
//! are refused ([`PathError`], answered 400): an encoded slash (`%2F`, one backend reads a
//! separator, another a name character), a backslash (raw or `%5C`, a separator on Windows
//! servers), and control characters (raw or encoded, NUL included). A malformed percent
//! sequence (`%g1`, a trailing `%`) is refused too.
//!
//! The query string is not part of the path and is never touched. A path that is already in
//! normal form — nearly every path — is returned borrowed, without allocating.

use std::borrow::Cow;

/// Why a path cannot be normalised safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%2F`: an encoded `/` inside a segment.
    #[error("the path contains an encoded slash (%2F)")]
    EncodedSlash,
    /// `\` or `%5C`.
    #[error("the path contains a backslash (\\ or %5C)")]
    Backslash,
    /// A control character (`%00`–`%1F`, `%7F`), raw or encoded.
    #[error("the path contains a control character")]
    ControlCharacter,
    /// `%` not followed by two hexadecimal digits.
    #[error("the path contains a malformed percent-encoding")]
    BadPercentEncoding,
    /// The path does not start with `/` (and is not `*`).
    #[error("the path does not start with a slash")]
    NotAbsolute,
}

/// The normal form of a request path (without its query string). See the module documentation.
///
/// `*` (the `OPTIONS *` target) and the empty path (authority-form `CONNECT`) are returned as
/// they are.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.is_empty() || path == "*" {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// True when `path` (starting with `/`) is already in normal form: every percent-encoding
/// upper-case and of a byte that stays encoded, no backslash, no control character, no empty
/// segment other than a trailing one, and no dot segment.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let upper = |at: usize| {
                    bytes
                        .get(at)
                        .is_some_and(|&b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
                };
                if !(upper(i + 1) && upper(i + 2)) {
                    return false;
                }
                let value = bytes[i + 1..i + 3]
                    .iter()
                    .fold(0u8, |v, &b| v << 4 | hex_value(b).unwrap_or(0));
                if value == b'/' || value == b'\\' || is_control(value) || is_unreserved(value) {
                    return false;
                }
                i += 3;
            }
            b'\\' => return false,
            b if is_control(b) => return false,
            _ => i += 1,
        }
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Step 1, with the refusals: decodes unreserved characters and upper-cases the rest.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(PathError::BadPercentEncoding);
            };
            let value = hi << 4 | lo;
            match value {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::Backslash),
                v if is_control(v) => return Err(PathError::ControlCharacter),
                v if is_unreserved(v) => out.push(char::from(v)),
                _ => {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(hi)]));
                    out.push(char::from(HEX[usize::from(lo)]));
                }
            }
            i += 3;
            continue;
        }
        if b == b'\\' {
            return Err(PathError::Backslash);
        }
        if is_control(b) {
            return Err(PathError::ControlCharacter);
        }
        // Copy the run up to the next special byte as text (keeps multi-byte characters whole).
        let end = bytes[i..]
            .iter()
            .position(|&c| c == b'%' || c == b'\\' || is_control(c))
            .map_or(bytes.len(), |n| i + n);
        out.push_str(&path[i..end]);
        i = end;
    }
    Ok(out)
}

/// Steps 2 and 3 on a path starting with `/`: dot segments removed, empty segments merged. A
/// trailing slash (or a trailing dot segment, which names a directory) is kept.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                kept.pop();
                trailing_slash = last;
            }
            name => {
                kept.push(name);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{params_from_query, parse_service, ParseContext};
    use crate::route::{Decision, RequestFacts, RouteTable};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize(path).map(Cow::into_owned)
    }

    #[test]
    fn the_bypass_spellings_of_the_issue_all_become_the_protected_path() {
        for raw in [
            "/%73ecure/secret.txt",
            "//secure/secret.txt",
            "/./secure/secret.txt",
            "/x/../secure/secret.txt",
            "/x/%2e%2e/secure/secret.txt",
            "/x/%2E%2e/secure/secret.txt",
            "/%2e/secure/secret.txt",
            "/secure//./secret.txt",
            "/secure/%73ecret.txt",
            "/../secure/secret.txt",
        ] {
            assert_eq!(norm(raw).unwrap(), "/secure/secret.txt", "{raw}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused_with_their_reason() {
        assert_eq!(norm("/%2fsecure/x"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/a%5cb"), Err(PathError::Backslash));
        assert_eq!(norm("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a\0b"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a%0Ab"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a%7f"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a%"), Err(PathError::BadPercentEncoding));
        assert_eq!(norm("/a%4"), Err(PathError::BadPercentEncoding));
        assert_eq!(norm("/a%g1"), Err(PathError::BadPercentEncoding));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert!(PathError::EncodedSlash.to_string().contains("%2F"));
    }

    #[test]
    fn reserved_encodings_stay_encoded_with_upper_case_hex() {
        assert_eq!(norm("/a%3fb%20c").unwrap(), "/a%3Fb%20c");
        assert_eq!(norm("/%25%41").unwrap(), "/%25A");
        // `%252e` is a literal `%2e` text, not a dot segment.
        assert_eq!(norm("/a/%252e%252e/b").unwrap(), "/a/%252e%252e/b");
        assert_eq!(norm("/caf%C3%A9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn dot_segments_and_slashes() {
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("//").unwrap(), "/");
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(norm("/a//b///").unwrap(), "/a/b/");
        assert_eq!(norm("/a/.b/..c/...").unwrap(), "/a/.b/..c/...");
        assert_eq!(norm("*").unwrap(), "*");
        assert_eq!(norm("").unwrap(), "");
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c~d_e-f", "/a:b@c;d=e,f"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        assert!(matches!(normalize("/a//b"), Ok(Cow::Owned(_))));
    }

    // ----- properties ---------------------------------------------------------------------

    /// A segment that is not a dot segment, from unreserved characters and a few reserved
    /// ones that stay as they are.
    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._~:@!$&'()*+,;=-]{1,8}"
            .prop_filter("not a dot segment", |s| s != "." && s != "..")
    }

    /// A normal path: segments, maybe a trailing slash.
    fn path() -> impl Strategy<Value = String> {
        (prop::collection::vec(segment(), 0..6), any::<bool>()).prop_map(|(segs, slash)| {
            let mut p = String::new();
            for s in &segs {
                p.push('/');
                p.push_str(s);
            }
            if slash || segs.is_empty() {
                p.push('/');
            }
            p
        })
    }

    /// What may happen to one segment of an equivalent spelling: which unreserved characters
    /// are percent-encoded (lower- or upper-case hex), and what is inserted before it.
    #[derive(Debug, Clone)]
    struct Disguise {
        encode: Vec<(bool, bool)>,
        before: u8,
    }

    fn disguises() -> impl Strategy<Value = Vec<Disguise>> {
        prop::collection::vec(
            (prop::collection::vec(any::<(bool, bool)>(), 8), 0u8..6)
                .prop_map(|(encode, before)| Disguise { encode, before }),
            7,
        )
    }

    /// An equivalent spelling of `path` (a normal path as [`path`] makes them).
    fn disguise(path: &str, how: &[Disguise]) -> String {
        let (body, trailing) = match path.strip_suffix('/') {
            Some(body) => (body, true),
            None => (path, false),
        };
        let mut out = String::new();
        let segments: Vec<&str> = body.split('/').skip(1).collect();
        for (segment, how) in segments.iter().zip(how) {
            match how.before {
                1 => out.push_str("/."),
                2 => out.push_str("/x/.."),
                3 => out.push('/'),
                4 => out.push_str("/%2e"),
                5 => out.push_str("/y/%2E%2e"),
                _ => {}
            }
            out.push('/');
            for (c, (encode, upper)) in segment.chars().zip(how.encode.iter().cycle()) {
                if *encode && is_unreserved(c as u8) {
                    if *upper {
                        out.push_str(&format!("%{:02X}", c as u8));
                    } else {
                        out.push_str(&format!("%{:02x}", c as u8));
                    }
                } else {
                    out.push(c);
                }
            }
        }
        if trailing {
            out.push('/');
            if how.last().is_some_and(|h| h.before == 3) {
                out.push('/');
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_equivalent_spelling_normalises_alike(p in path(), how in disguises()) {
            let spelled = disguise(&p, &how);
            prop_assert_eq!(norm(&spelled), norm(&p), "spelling {}", spelled);
        }

        #[test]
        fn the_normal_form_is_normal(raw in "(/|[a-z.]|%2[eEfF]|%[0-9a-fA-F]{2}|\\\\){0,24}") {
            let p = format!("/{raw}");
            if let Ok(once) = norm(&p) {
                prop_assert_eq!(norm(&once), Ok(once.clone()));
                prop_assert!(matches!(normalize(&once), Ok(Cow::Borrowed(_))));
                prop_assert!(!once.contains("//"));
                prop_assert!(!once.contains("/./") && !once.contains("/../"));
                prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."));
            }
        }

        #[test]
        fn any_input_is_normalised_or_refused(raw in any::<String>()) {
            let _ = normalize(&raw);
            let _ = normalize(&format!("/{raw}"));
        }
    }

    // ----- routing on the normal form -----------------------------------------------------

    fn routing_table() -> (Vec<Arc<crate::service::Service>>, RouteTable) {
        let services: Vec<Arc<_>> = [
            "serviceName=secure&servicePath=/secure&port=80&users=u:p",
            "serviceName=open&servicePath=/&port=80",
            "serviceName=api&servicePath=/api/v1&servicePathExclude=/api/v1/private&port=80",
            "serviceName=exact&servicePath=/a/b&pathType=path&port=80",
            "serviceName=dir&servicePath=/x&pathType=path_dir&port=80",
            "serviceName=end&servicePath=.txt&pathType=path_end&port=80",
        ]
        .iter()
        .map(|q| Arc::new(parse_service(&params_from_query(q), &ParseContext::default()).unwrap()))
        .collect();
        let table = RouteTable::build(&services);
        (services, table)
    }

    fn route_of(table: &RouteTable, path: &str) -> Option<(String, usize)> {
        let headers = http::HeaderMap::new();
        let facts = RequestFacts {
            host: None,
            path,
            path_and_query: path,
            local_port: 80,
            headers: &headers,
        };
        match table.decide(&facts) {
            Decision::Forward(route) => Some((route.service.name.clone(), route.dest)),
            _ => None,
        }
    }

    fn routed_path() -> impl Strategy<Value = String> {
        let word = prop::sample::select(vec![
            "secure",
            "api",
            "v1",
            "private",
            "a",
            "b",
            "x",
            "secret.txt",
            "y",
        ]);
        (prop::collection::vec(word, 0..5), any::<bool>()).prop_map(|(words, slash)| {
            let mut p = String::new();
            for w in &words {
                p.push('/');
                p.push_str(w);
            }
            if slash || words.is_empty() {
                p.push('/');
            }
            p
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_equivalent_spelling_is_routed_alike(p in routed_path(), how in disguises()) {
            let (_services, table) = routing_table();
            let spelled = disguise(&p, &how);
            let chosen = route_of(&table, &norm(&spelled).unwrap());
            prop_assert_eq!(&chosen, &route_of(&table, &p), "spelling {}", spelled);
        }
    }

    #[test]
    fn the_protected_route_is_chosen_for_every_spelling() {
        let (_services, table) = routing_table();
        for raw in [
            "/%73ecure/s",
            "//secure/s",
            "/./secure/s",
            "/x/../secure/s",
            "/x/%2e%2e/secure/s",
        ] {
            let chosen = route_of(&table, &norm(raw).unwrap());
            assert_eq!(chosen.map(|c| c.0).as_deref(), Some("secure"), "{raw}");
        }
    }
}
