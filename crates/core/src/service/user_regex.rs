//! [`UserRegex`]: a regular expression that came from a user, compiled under size limits.

use std::fmt;
use std::ops::Deref;

use regex::{Regex, RegexBuilder};

/// The most heap one user-supplied regular expression may take once compiled (its Thompson
/// NFA, as the `regex` crate measures it for `RegexBuilder::size_limit`): 256 KiB. A larger
/// expression (`\w{100}` with Unicode classes is several MiB) is refused with a 400.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// The lazy-DFA cache one user-supplied regular expression may grow to while matching
/// (`RegexBuilder::dfa_size_limit`): 1 MiB. Past it the `regex` crate falls back to slower
/// engines instead of using more memory.
pub const REGEX_DFA_SIZE_LIMIT: usize = 1024 * 1024;

/// A regular expression that came from a user (a `path_reg` path, an `hdr_reg(host)` domain, an
/// SNI `-m reg` pattern or a rewrite), compiled under [`REGEX_SIZE_LIMIT`] and
/// [`REGEX_DFA_SIZE_LIMIT`], with the compiled size it was measured at.
///
/// It dereferences to [`Regex`].
#[derive(Clone)]
pub struct UserRegex {
    regex: Regex,
    case_insensitive: bool,
    compiled_size: usize,
    anchored_prefix: Option<Box<str>>,
}

impl UserRegex {
    /// Compiles `pattern` under the size limits. The error is one line naming the problem
    /// (a syntax error, or the compiled-size limit).
    pub fn new(pattern: &str, case_insensitive: bool) -> Result<UserRegex, String> {
        let regex = RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| regex_reason(&e))?;
        let compiled_size = compiled_size(pattern, case_insensitive).ok_or_else(too_big)?;
        Ok(UserRegex {
            regex,
            case_insensitive,
            compiled_size,
            anchored_prefix: anchored_prefix(pattern, case_insensitive),
        })
    }

    /// The literal text every match starts with at the start of the subject, when the
    /// expression begins with `^` (or `\A`) followed by literal text: `^/api/v[0-9]` →
    /// `/api/v`. The router files such an expression under that prefix, so a request whose path
    /// does not start with it never reaches the expression.
    pub fn anchored_prefix(&self) -> Option<&str> {
        self.anchored_prefix.as_deref()
    }

    /// The heap its compiled program takes, in bytes (at most [`REGEX_SIZE_LIMIT`]).
    pub fn compiled_size(&self) -> usize {
        self.compiled_size
    }

    /// True when it was compiled case-insensitive (domains and SNI names, rewrites with `i`).
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }
}

impl Deref for UserRegex {
    type Target = Regex;

    fn deref(&self) -> &Regex {
        &self.regex
    }
}

impl fmt::Debug for UserRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.regex, f)
    }
}

/// The size of `pattern`'s Thompson NFA, compiled with the syntax options the `regex` crate
/// uses; `None` past [`REGEX_SIZE_LIMIT`].
fn compiled_size(pattern: &str, case_insensitive: bool) -> Option<usize> {
    use regex_automata::nfa::thompson;
    use regex_automata::util::syntax;
    thompson::NFA::compiler()
        .syntax(syntax::Config::new().case_insensitive(case_insensitive))
        .configure(thompson::Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT)))
        .build(pattern)
        .ok()
        .map(|nfa| nfa.memory_usage())
}

/// See [`UserRegex::anchored_prefix`]. `None` when the expression is not anchored at the start
/// or does not continue with literal text.
fn anchored_prefix(pattern: &str, case_insensitive: bool) -> Option<Box<str>> {
    use regex_automata::util::syntax;
    use regex_syntax::hir::{HirKind, Look};
    let config = syntax::Config::new().case_insensitive(case_insensitive);
    let hir = syntax::parse_with(pattern, &config).ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    let mut parts = parts.iter();
    if !matches!(parts.next()?.kind(), HirKind::Look(Look::Start)) {
        return None;
    }
    let mut bytes = Vec::new();
    for part in parts {
        match part.kind() {
            HirKind::Literal(literal) => bytes.extend_from_slice(&literal.0),
            _ => break,
        }
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?,
    };
    (!text.is_empty()).then(|| text.into())
}

fn too_big() -> String {
    format!(
        "the regular expression exceeds the {} KiB compiled-size limit",
        REGEX_SIZE_LIMIT / 1024
    )
}

/// One line out of the `regex` crate's multi-line diagnostics.
fn regex_reason(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let detail = text
                .lines()
                .rev()
                .find_map(|line| line.trim().strip_prefix("error: "))
                .unwrap_or("syntax error");
            format!("not a supported regular expression: {detail}")
        }
        regex::Error::CompiledTooBig(_) => too_big(),
        _ => "not a supported regular expression".to_string(),
    }
}
