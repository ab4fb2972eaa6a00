//! Reading values: a parameter value with the key it was read under, and the parameter
//! source with the empty-means-absent and index-fallback rules.

use super::known::{known_param, ParamScope, INDEX_PARAMS, MAX_INDEX};
use super::ParamError;
use crate::env::{list_items, parse_decimal, parse_go_bool, GO_BOOL_HELP};
use crate::service::Params;

/// A parameter value together with the key it was read under (`port.1` or the fallback `port`).
pub(super) struct Val<'a> {
    pub(super) key: String,
    pub(super) value: &'a str,
}

impl Val<'_> {
    pub(super) fn invalid(&self, reason: impl Into<String>) -> ParamError {
        self.invalid_item(self.value, reason)
    }

    pub(super) fn invalid_item(&self, item: &str, reason: impl Into<String>) -> ParamError {
        ParamError::Invalid {
            param: self.key.clone(),
            value: item.to_string(),
            reason: reason.into(),
        }
    }

    pub(super) fn boolean(&self) -> Result<bool, ParamError> {
        parse_go_bool(self.value.trim()).ok_or_else(|| self.invalid(GO_BOOL_HELP))
    }

    pub(super) fn port(&self) -> Result<u16, ParamError> {
        parse_decimal::<u16>(self.value.trim())
            .filter(|p| *p != 0)
            .ok_or_else(|| self.invalid("not a port number (1-65535)"))
    }

    pub(super) fn seconds(&self) -> Result<u32, ParamError> {
        parse_decimal::<u32>(self.value.trim())
            .ok_or_else(|| self.invalid("not a whole number of seconds"))
    }

    /// Separator-split, trimmed, non-empty items.
    pub(super) fn items<'s>(&'s self, sep: &'s str) -> impl Iterator<Item = &'s str> + 's {
        list_items(self.value, sep)
    }
}

/// Reads parameters with the empty-means-absent and index-fallback rules.
pub(super) struct Source<'a> {
    pub(super) params: &'a Params,
}

impl<'a> Source<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A parameter read without index (a service-level one, or a destination parameter's
    /// fallback). `name` must be in [`KNOWN_PARAMS`](super::KNOWN_PARAMS): a misspelt name in
    /// the parser fails a debug assertion instead of silently reading nothing.
    pub(super) fn service(&self, name: &str) -> Option<Val<'a>> {
        debug_assert!(
            known_param(name).is_some(),
            "the parser reads {name:?}, which is not in KNOWN_PARAMS"
        );
        self.get(name).map(|value| Val {
            key: name.to_string(),
            value,
        })
    }

    /// `name.index`, falling back to the un-indexed `name`. `name` must be a destination
    /// parameter of [`KNOWN_PARAMS`](super::KNOWN_PARAMS) (checked in debug builds).
    pub(super) fn dest(&self, name: &str, index: u8) -> Option<Val<'a>> {
        debug_assert!(
            known_param(name).is_some_and(|p| p.scope == ParamScope::Destination),
            "the parser reads {name:?} per destination, which is not a destination parameter \
             of KNOWN_PARAMS"
        );
        if index > 0 {
            let key = format!("{name}.{index}");
            if let Some(value) = self.get(&key) {
                return Some(Val { key, value });
            }
        }
        self.service(name)
    }

    /// The number of contiguous indexed destinations (0 = use the un-indexed one).
    pub(super) fn indexed_count(&self) -> u8 {
        let mut count = 0;
        for index in 1..=MAX_INDEX {
            let exists = INDEX_PARAMS
                .iter()
                .any(|name| self.get(&format!("{name}.{index}")).is_some());
            if !exists {
                break;
            }
            count = index;
        }
        count
    }
}
