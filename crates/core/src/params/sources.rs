//! Sources: query strings, `com.df.*` labels and `DFP_SERVICE_*` variables, each turned into
//! canonical [`Params`].

use percent_encoding::percent_decode_str;

use super::known::{upper_snake, ParamHandling, ParamScope, INDEX_PARAMS, KNOWN_PARAMS, MAX_INDEX};
use crate::env::Vars;
use crate::service::Params;

/// The prefix of environment-defined services (`DFP_SERVICE_*`, `DFP_SERVICE_1_*`, …).
pub const ENV_SERVICE_PREFIX: &str = "DFP_SERVICE";

/// The label prefix whose labels carry service parameters.
pub const LABEL_PREFIX: &str = "com.df.";
/// Parses a URL query string (with or without the leading `?`). Keys and values are
/// percent-decoded with `+` as a space (invalid escapes are kept literally, invalid UTF-8 is
/// replaced). When a key repeats, the first value wins, as Go's `Query().Get`.
pub fn params_from_query(query: &str) -> Params {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut params = Params::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query_component(key);
        if key.is_empty() {
            continue;
        }
        params
            .entry(key)
            .or_insert_with(|| decode_query_component(value));
    }
    params
}

pub(super) fn decode_query_component(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Keeps the `com.df.*` labels with the prefix removed (`com.df.servicePath.1` →
/// `servicePath.1`). Other labels are dropped; for a repeated key the first value wins.
pub fn params_from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
    let mut params = Params::new();
    for (key, value) in labels {
        if let Some(name) = key.strip_prefix(LABEL_PREFIX) {
            if !name.is_empty() {
                params
                    .entry(name.to_string())
                    .or_insert_with(|| value.to_string());
            }
        }
    }
    params
}

/// The services defined by `DFP_SERVICE_*` variables: `DFP_SERVICE` first (skipped when it has
/// no `DFP_SERVICE_SERVICE_NAME`), then `DFP_SERVICE_1`, `DFP_SERVICE_2`, … up to the first
/// prefix without `<prefix>_SERVICE_NAME`.
///
/// `<prefix>_<UPPER_SNAKE>` becomes the canonical parameter (`SERVICE_PATH` → `servicePath`,
/// and DFP's run-together `DISCOVERYTYPE` / `SERVICEDOMAINALGO` too), and
/// `<prefix>_<UPPER_SNAKE>_<i>` becomes `name.i` for destination parameters. Indexes are read
/// while `SERVICE_PATH_i`, `PORT_i`, `SERVICE_DOMAIN_i` or `HTTPS_PORT_i` exists, exactly the
/// rule [`parse_service`](super::parse_service) applies. Every parameter of [`KNOWN_PARAMS`] is supported (DFP
/// supported a subset and gave indexed destinations index 0).
pub fn services_from_env(vars: &dyn Vars) -> Vec<Params> {
    let mut services = Vec::new();
    if let Some(params) = service_from_env(vars, ENV_SERVICE_PREFIX) {
        services.push(params);
    }
    services.extend(
        (1u32..).map_while(|n| service_from_env(vars, &format!("{ENV_SERVICE_PREFIX}_{n}"))),
    );
    services
}

pub(super) fn service_from_env(vars: &dyn Vars, prefix: &str) -> Option<Params> {
    vars.var(&format!("{prefix}_SERVICE_NAME"))?;
    let readable = || {
        KNOWN_PARAMS
            .iter()
            .filter(|p| p.handling != ParamHandling::Internal)
    };
    let mut params = Params::new();
    for param in readable() {
        let value = vars
            .var(&format!("{prefix}_{}", param.env_name()))
            .or_else(|| {
                param
                    .legacy_env
                    .and_then(|legacy| vars.var(&format!("{prefix}_{legacy}")))
            });
        if let Some(value) = value {
            params.insert(param.name.to_string(), value);
        }
    }
    for index in 1..=MAX_INDEX {
        let exists = INDEX_PARAMS.iter().any(|name| {
            vars.var(&format!("{prefix}_{}_{index}", upper_snake(name)))
                .is_some()
        });
        if !exists {
            break;
        }
        for param in readable().filter(|p| p.scope == ParamScope::Destination) {
            if let Some(value) = vars.var(&format!("{prefix}_{}_{index}", param.env_name())) {
                params.insert(format!("{}.{index}", param.name), value);
            }
        }
    }
    Some(params)
}
