//! Listener settings: DFSL's environment variables and secrets, parsed and validated once.
//!
//! Owns the mapping from variable names to typed settings and every validation error.
//! Defaults are DFSL's *image* defaults (listed in `docs/configuration.md`). Differences from
//! DFSL, all deliberate:
//! * an unparsable number or boolean is an error naming the variable (DFSL silently used
//!   `0` or the fallback). Both are read by [`sluice_core::env`], as the proxy's settings:
//!   numbers are ASCII digits only, booleans Go's `strconv.ParseBool` set;
//! * URL lists are trimmed (`a, b` works), empty entries are skipped, and a URL that
//!   cannot be used (bad syntax, no host, not `http://`) is an error instead of being
//!   dropped silently;
//! * two URLs with the same `host:port` are both kept (see [`crate::endpoint`]);
//! * `DF_PROXY_USER`/`DF_PROXY_PASS` (Sluice-specific) add basic auth to notifications;
//! * `DF_NOTIFY_TIMEOUT` (Sluice-specific, seconds, default 30) bounds each request;
//! * node notifications, `nodeInfo` and `DF_NOTIFY_CREATE_SERVICE_IMMEDIATELY` are not
//!   implemented; setting them produces a start-up warning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::Method;
use sluice_core::env::{list_items, parse_decimal, parse_go_bool, Vars};
use thiserror::Error;

use crate::backoff::{Backoff, BackoffError};
use crate::endpoint::{basic_auth, group, Endpoint, Target, TargetError};
use crate::notifier::RetryPolicy;
use crate::params::{NotifyLabel, ParamRules};

const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
const DEFAULT_NOTIFY_LABEL: &str = "com.df.notify";
const DEFAULT_SECRETS_DIR: &str = "/run/secrets";
const DEFAULT_RETRY: u32 = 50;
const DEFAULT_RETRY_INTERVAL_SECS: u64 = 5;
const DEFAULT_NOTIFY_TIMEOUT_SECS: u64 = 30;
const DEFAULT_RESYNC: Duration = Duration::from_secs(30);
const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A setting that could not be used.
#[derive(Debug, Error)]
pub enum ListenerSettingsError {
    /// Not a whole number in range.
    #[error("{name}={value:?} is not a valid number ({expected})")]
    InvalidNumber {
        /// Variable name.
        name: &'static str,
        /// Rejected value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Not a boolean.
    #[error("{name}={value:?} is not a boolean (use true or false)")]
    InvalidBool {
        /// Variable name.
        name: &'static str,
        /// Rejected value.
        value: String,
    },
    /// A notification URL that cannot be used. Credentials in the value are redacted.
    #[error("{source_name} entry {value:?} cannot be used: {source}")]
    InvalidUrl {
        /// Variable or secret file the URL came from.
        source_name: String,
        /// The URL, with its password and secret query values redacted (`sluice_core::redact`).
        value: String,
        /// Why.
        #[source]
        source: TargetError,
    },
    /// Not an HTTP method.
    #[error("{name} entry {value:?} is not an HTTP method")]
    InvalidMethod {
        /// Variable name.
        name: &'static str,
        /// Rejected entry.
        value: String,
    },
    /// `DF_DOCKER_HOST` in an unsupported form.
    #[error("DF_DOCKER_HOST={value:?} is not supported (use unix:///path/to/docker.sock or tcp://host:port)")]
    InvalidDockerHost {
        /// Rejected value.
        value: String,
    },
    /// `DF_NOTIFY_LABEL` without a key.
    #[error("DF_NOTIFY_LABEL={value:?} has no label key")]
    InvalidNotifyLabel {
        /// Rejected value.
        value: String,
    },
    /// Only one of `DF_PROXY_USER` and `DF_PROXY_PASS` is set.
    #[error("{present} is set but {missing} is not; set both or neither")]
    IncompleteCredentials {
        /// The variable that is set.
        present: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// Invalid reconnect backoff bounds.
    #[error("invalid Docker reconnect backoff: {0}")]
    Backoff(#[from] BackoffError),
    /// A secret file exists but cannot be read.
    #[error("cannot read secret {path}: {source}")]
    ReadSecret {
        /// File path.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the Docker Engine API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerHost {
    /// A unix socket path.
    Unix(String),
    /// `tcp://host:port` or `http://host:port` (plain HTTP).
    Tcp(String),
}

impl std::fmt::Display for DockerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DockerHost::Unix(path) => write!(f, "unix://{path}"),
            DockerHost::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// Everything the listener needs, parsed from environment variables and secrets.
///
/// | Variable | Default | Meaning |
/// |---|---|---|
/// | `DF_DOCKER_HOST` | `unix:///var/run/docker.sock` | Docker Engine (`unix://` or `tcp://`, no TLS) |
/// | `DF_NOTIFY_LABEL` | `com.df.notify` | opt-in label, `key` or `key=value` |
/// | `DF_SERVICE_NAME_PREFIX` | — | `serviceName` becomes `<prefix>_<name>` |
/// | `DF_NOTIFY_CREATE_SERVICE_URL` (`DF_NOTIF_…` wins, `DF_NOTIFICATION_URL` fallback) | — | comma-separated create URLs |
/// | `DF_NOTIFY_REMOVE_SERVICE_URL` (same aliases) | — | comma-separated remove URLs |
/// | `DF_NOTIFY_CREATE_SERVICE_METHOD`, `DF_NOTIFY_REMOVE_SERVICE_METHOD` | `GET` | methods, matched to URLs by index, last one repeats |
/// | `DF_RETRY` | `50` | retries after the first attempt |
/// | `DF_RETRY_INTERVAL` | `5` | seconds between attempts; `0` = single attempt |
/// | `DF_SERVICE_POLLING_INTERVAL` | — | full resync period in seconds when > 0 (default 30) |
/// | `DF_USE_DOCKER_SERVICE_EVENTS` | `true` | follow the Docker event stream |
/// | `DF_NOTIFY_TIMEOUT` | `30` | per-request timeout in seconds (Sluice) |
/// | `DF_PROXY_USER`, `DF_PROXY_PASS` | — | basic auth on notifications (Sluice) |
/// | `SECRETS_DIR` | `/run/secrets` | where `df_notify_create_service_url` / `df_notify_remove_service_url` are read and appended |
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub(crate) docker_host: DockerHost,
    pub(crate) rules: ParamRules,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) retry: RetryPolicy,
    pub(crate) notify_timeout: Duration,
    pub(crate) resync_interval: Duration,
    pub(crate) use_events: bool,
    pub(crate) credentials: Option<HeaderValue>,
    pub(crate) backoff: Backoff,
    pub(crate) unsupported: Vec<String>,
}

impl ListenerSettings {
    /// Parses and validates all listener settings.
    pub fn from_vars(vars: &dyn Vars) -> Result<Self, ListenerSettingsError> {
        let docker_host = parse_docker_host(
            &vars
                .var("DF_DOCKER_HOST")
                .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned()),
        )?;

        let label_raw = vars
            .var("DF_NOTIFY_LABEL")
            .unwrap_or_else(|| DEFAULT_NOTIFY_LABEL.to_owned());
        let notify_label = NotifyLabel::parse(&label_raw)
            .ok_or(ListenerSettingsError::InvalidNotifyLabel { value: label_raw })?;
        let name_prefix = vars
            .var("DF_SERVICE_NAME_PREFIX")
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());

        let secrets_dir = PathBuf::from(
            vars.var("SECRETS_DIR")
                .unwrap_or_else(|| DEFAULT_SECRETS_DIR.to_owned()),
        );
        let creates = targets(
            vars,
            &[
                "DF_NOTIF_CREATE_SERVICE_URL",
                "DF_NOTIFY_CREATE_SERVICE_URL",
                "DF_NOTIFICATION_URL",
            ],
            "DF_NOTIFY_CREATE_SERVICE_METHOD",
            &secrets_dir.join("df_notify_create_service_url"),
        )?;
        let removes = targets(
            vars,
            &[
                "DF_NOTIF_REMOVE_SERVICE_URL",
                "DF_NOTIFY_REMOVE_SERVICE_URL",
                "DF_NOTIFICATION_URL",
            ],
            "DF_NOTIFY_REMOVE_SERVICE_METHOD",
            &secrets_dir.join("df_notify_remove_service_url"),
        )?;

        let retries = number(
            vars,
            "DF_RETRY",
            u64::from(DEFAULT_RETRY),
            "a whole number >= 0",
        )?;
        let retries = u32::try_from(retries).map_err(|_| ListenerSettingsError::InvalidNumber {
            name: "DF_RETRY",
            value: retries.to_string(),
            expected: "at most 4294967295",
        })?;
        let interval = number(
            vars,
            "DF_RETRY_INTERVAL",
            DEFAULT_RETRY_INTERVAL_SECS,
            "seconds >= 0",
        )?;
        let timeout = number(
            vars,
            "DF_NOTIFY_TIMEOUT",
            DEFAULT_NOTIFY_TIMEOUT_SECS,
            "seconds > 0",
        )?;
        if timeout == 0 {
            return Err(ListenerSettingsError::InvalidNumber {
                name: "DF_NOTIFY_TIMEOUT",
                value: "0".to_owned(),
                expected: "seconds > 0",
            });
        }
        let resync_interval = match vars.var("DF_SERVICE_POLLING_INTERVAL") {
            None => DEFAULT_RESYNC,
            Some(raw) => {
                let text = raw.trim();
                // A negative number keeps the default, like zero.
                let (negative, digits) = match text.strip_prefix('-') {
                    Some(digits) => (true, digits),
                    None => (false, text),
                };
                match parse_decimal::<u64>(digits) {
                    Some(secs) if secs > 0 && !negative => Duration::from_secs(secs),
                    Some(_) => DEFAULT_RESYNC,
                    None => {
                        return Err(ListenerSettingsError::InvalidNumber {
                            name: "DF_SERVICE_POLLING_INTERVAL",
                            value: raw,
                            expected: "seconds; <= 0 keeps the 30 s default",
                        })
                    }
                }
            }
        };
        let use_events = boolean(vars, "DF_USE_DOCKER_SERVICE_EVENTS", true)?;

        let credentials = match (vars.var("DF_PROXY_USER"), vars.var("DF_PROXY_PASS")) {
            (Some(user), Some(pass)) => Some(basic_auth(&user, &pass)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ListenerSettingsError::IncompleteCredentials {
                    present: "DF_PROXY_USER",
                    missing: "DF_PROXY_PASS",
                })
            }
            (None, Some(_)) => {
                return Err(ListenerSettingsError::IncompleteCredentials {
                    present: "DF_PROXY_PASS",
                    missing: "DF_PROXY_USER",
                })
            }
        };

        let mut unsupported = Vec::new();
        for name in ["DF_NOTIFY_CREATE_NODE_URL", "DF_NOTIFY_REMOVE_NODE_URL"] {
            if vars.var(name).is_some() {
                unsupported.push(format!("{name} (node notifications are not implemented)"));
            }
        }
        for file in ["df_notify_create_node_url", "df_notify_remove_node_url"] {
            if secrets_dir.join(file).is_file() {
                unsupported.push(format!(
                    "secret {file} (node notifications are not implemented)"
                ));
            }
        }
        if vars
            .var("DF_INCLUDE_NODE_IP_INFO")
            .is_some_and(|v| parse_go_bool(v.trim()) != Some(false))
        {
            unsupported.push("DF_INCLUDE_NODE_IP_INFO (nodeInfo is not sent)".to_owned());
        }
        if vars
            .var("DF_NOTIFY_CREATE_SERVICE_IMMEDIATELY")
            .is_some_and(|v| parse_go_bool(v.trim()) != Some(false))
        {
            unsupported.push(
                "DF_NOTIFY_CREATE_SERVICE_IMMEDIATELY (creates are always sent immediately)"
                    .to_owned(),
            );
        }

        Ok(Self {
            docker_host,
            rules: ParamRules {
                notify_label,
                name_prefix,
            },
            endpoints: group(creates, removes),
            retry: RetryPolicy {
                retries,
                interval: Duration::from_secs(interval),
            },
            notify_timeout: Duration::from_secs(timeout),
            resync_interval,
            use_events,
            credentials,
            backoff: Backoff::new(DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX)?,
            unsupported,
        })
    }

    /// Replaces the Docker reconnect backoff bounds (default 500 ms doubling to 30 s).
    pub fn with_reconnect_backoff(
        mut self,
        initial: Duration,
        max: Duration,
    ) -> Result<Self, BackoffError> {
        self.backoff = Backoff::new(initial, max)?;
        Ok(self)
    }

    /// The Docker Engine address, e.g. `unix:///var/run/docker.sock`.
    pub fn docker_host(&self) -> String {
        self.docker_host.to_string()
    }

    /// The configured notification endpoints as `create=<url|-> remove=<url|->`
    /// (credentials removed), one per proxy.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(Endpoint::describe).collect()
    }

    /// DFSL settings that are set but not implemented by Sluice (for start-up warnings).
    pub fn unsupported(&self) -> &[String] {
        &self.unsupported
    }
}

fn parse_docker_host(raw: &str) -> Result<DockerHost, ListenerSettingsError> {
    let raw = raw.trim();
    let invalid = || ListenerSettingsError::InvalidDockerHost {
        value: raw.to_owned(),
    };
    if let Some(path) = raw.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(invalid());
        }
        return Ok(DockerHost::Unix(path.to_owned()));
    }
    for scheme in ["tcp://", "http://"] {
        if let Some(rest) = raw.strip_prefix(scheme) {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') {
                return Err(invalid());
            }
            return Ok(DockerHost::Tcp(format!("tcp://{hostport}")));
        }
    }
    Err(invalid())
}

fn number(
    vars: &dyn Vars,
    name: &'static str,
    default: u64,
    expected: &'static str,
) -> Result<u64, ListenerSettingsError> {
    match vars.var(name) {
        None => Ok(default),
        Some(raw) => parse_decimal::<u64>(raw.trim()).ok_or(ListenerSettingsError::InvalidNumber {
            name,
            value: raw,
            expected,
        }),
    }
}

/// Go's `strconv.ParseBool` set (`1 t T TRUE true True`, `0 f F FALSE false False`), the same
/// as the proxy's settings.
fn boolean(
    vars: &dyn Vars,
    name: &'static str,
    default: bool,
) -> Result<bool, ListenerSettingsError> {
    let Some(raw) = vars.var(name) else {
        return Ok(default);
    };
    parse_go_bool(raw.trim()).ok_or(ListenerSettingsError::InvalidBool { name, value: raw })
}

fn read_secret(path: &Path) -> Result<Option<String>, ListenerSettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ListenerSettingsError::ReadSecret {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The targets of one kind: the first set variable among `names`, then the secret file.
fn targets(
    vars: &dyn Vars,
    names: &[&'static str],
    method_var: &'static str,
    secret: &Path,
) -> Result<Vec<Target>, ListenerSettingsError> {
    let mut entries: Vec<(String, String)> = Vec::new();
    if let Some((name, list)) = names
        .iter()
        .find_map(|name| vars.var(name).map(|v| (*name, v)))
    {
        entries.extend(list_items(&list, ",").map(|e| (name.to_owned(), e.to_owned())));
    }
    if let Some(list) = read_secret(secret)? {
        let source = format!("secret {}", secret.display());
        entries.extend(list_items(&list, ",").map(|e| (source.clone(), e.to_owned())));
    }
    let methods_raw = vars.var(method_var).unwrap_or_else(|| "GET".to_owned());
    let mut methods = Vec::new();
    for entry in methods_raw.split(',') {
        let entry = entry.trim().to_ascii_uppercase();
        let method = Method::from_bytes(entry.as_bytes())
            .ok()
            .filter(|_| !entry.is_empty())
            .ok_or_else(|| ListenerSettingsError::InvalidMethod {
                name: method_var,
                value: entry.clone(),
            })?;
        methods.push(method);
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (source_name, raw))| {
            let method = methods
                .get(i)
                .or(methods.last())
                .cloned()
                .unwrap_or(Method::GET);
            Target::parse(&raw, method).map_err(|source| ListenerSettingsError::InvalidUrl {
                source_name,
                value: sluice_core::redact::redact_url(&raw).into_owned(),
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
