//! The regex budget: how much heap the compiled regular expressions of all services of one
//! table may take, and the error for a service that would exceed it.

use crate::params::ParamError;

/// The most heap the compiled regular expressions of all services of one table may take
/// together: 32 MiB (each one is also bounded by
/// [`REGEX_SIZE_LIMIT`](crate::service::REGEX_SIZE_LIMIT), and each service by
/// [`MAX_REGEXES_PER_SERVICE`](crate::params::MAX_REGEXES_PER_SERVICE)).
pub const MAX_TABLE_REGEX_SIZE: usize = 32 * 1024 * 1024;

/// A service refused by [`RouteTable::check_regex_budget`]. It converts into a
/// [`ParamError`] about `serviceName` (a 400 from the API).
///
/// [`RouteTable::check_regex_budget`]: crate::route::RouteTable::check_regex_budget
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {service:?} for parameter serviceName: {}", self.reason())]
pub struct RegexBudgetError {
    /// The service refused.
    pub service: String,
    /// The compiled size of its regular expressions, in bytes.
    pub service_size: usize,
    /// The compiled size of the other services' regular expressions, in bytes.
    pub others_size: usize,
    /// The limit, in bytes ([`MAX_TABLE_REGEX_SIZE`]).
    pub limit: usize,
}

impl RegexBudgetError {
    /// What is wrong, without the service name.
    pub fn reason(&self) -> String {
        format!(
            "the service's regular expressions take {} KiB compiled and the other services' {} \
             KiB; together they exceed the {} MiB limit for the regular expressions of all \
             services",
            self.service_size.div_ceil(1024),
            self.others_size.div_ceil(1024),
            self.limit / (1024 * 1024)
        )
    }
}

impl From<RegexBudgetError> for ParamError {
    fn from(error: RegexBudgetError) -> ParamError {
        ParamError::Invalid {
            param: "serviceName".to_string(),
            reason: error.reason(),
            value: error.service,
        }
    }
}

/// The bound [`RouteTable::check_regex_budget`] applies: [`MAX_TABLE_REGEX_SIZE`] (tests use
/// 1 MiB so that a table can reach it with a few dozen expressions).
///
/// [`RouteTable::check_regex_budget`]: crate::route::RouteTable::check_regex_budget
pub(super) const TABLE_REGEX_LIMIT: usize = if cfg!(test) {
    1024 * 1024
} else {
    MAX_TABLE_REGEX_SIZE
};
