//! The one reader of environment-style values, shared by the proxy's settings, its
//! `DFP_SERVICE_*` services, the service parameters and the listener's settings.
//!
//! A leaf module: it imports nothing else of the crate, so every other module may use it.
//!
//! * [`Vars`]: where variables come from (an empty value counts as unset);
//! * [`parse_go_bool`]: Go's `strconv.ParseBool` set, and nothing else;
//! * [`parse_decimal`]: ASCII digits only (no sign, no spaces inside);
//! * [`list_items`]: separator-split, trimmed, non-empty items.

use std::collections::HashMap;

/// Where settings come from: the process environment with `SECRETS_DIR` files overlaid (in
/// the binaries), or a plain map (in tests).
pub trait Vars {
    /// The value of a variable, `None` when unset. Implementations treat an empty value as unset.
    fn var(&self, key: &str) -> Option<String>;
}

impl Vars for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

/// What a rejected boolean should have been, for error messages.
pub const GO_BOOL_HELP: &str = "not a boolean (use true/false, 1/0, t/f, TRUE/FALSE, True/False)";

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A decimal number made of ASCII digits only (no sign, no spaces inside).
pub fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The items of a `sep`-separated list, trimmed, empty items dropped.
pub fn list_items<'s>(text: &'s str, sep: &'s str) -> impl Iterator<Item = &'s str> + 's {
    text.split(sep)
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bool_is_exactly_go_parse_bool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false), "{f}");
        }
        for bad in ["tRuE", "fAlSe", "yes", "on", "", " true", "2"] {
            assert_eq!(parse_go_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn decimals_are_digits_only() {
        assert_eq!(parse_decimal::<u16>("8080"), Some(8080));
        assert_eq!(parse_decimal::<u16>("65536"), None);
        for bad in ["", "+1", "-1", " 1", "1.5", "0x10"] {
            assert_eq!(parse_decimal::<u64>(bad), None, "{bad}");
        }
    }

    #[test]
    fn list_items_are_trimmed_and_empty_ones_dropped() {
        let items: Vec<&str> = list_items(" a, b ,,c ,", ",").collect();
        assert_eq!(items, ["a", "b", "c"]);
        assert_eq!(list_items(" ", ",").count(), 0);
    }
}
