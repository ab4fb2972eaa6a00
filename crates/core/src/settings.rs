//! Settings read from environment variables (and, through the caller's [`Vars`], secrets).
//!
//! [`Settings::from_vars`] reads every variable in [`known_variables`] once, applies the
//! defaults below and reports the first bad value as [`SettingsError::Invalid`] naming the
//! variable. Booleans use Go's `strconv.ParseBool` set; anything else is an error (DFP often
//! treated it as `false`).
//!
//! | Variable | Default | Field |
//! |---|---|---|
//! | `IP` | `0.0.0.0` | [`Settings::ip`] (control API address) |
//! | `PORT` | `8080` | [`Settings::port`] (`0` = any free port, for tests) |
//! | `DEFAULT_PORTS` | `80` | [`Settings::default_ports`] |
//! | `BIND_PORTS` | (none) | [`Settings::bind_ports`] |
//! | `DATA_DIR` | `/var/lib/sluice` | [`Settings::data_dir`] (Sluice) |
//! | `SECRETS_DIR` | `/run/secrets` | [`Settings::secrets_dir`] (Sluice) |
//! | `CERTS_DIR` | `/certs` | [`Settings::certs_dir`] (Sluice) |
//! | `SEPARATOR` | `,` | [`ParseContext::separator`] |
//! | `SERVICE_DOMAIN_ALGO` | `hdr_beg(host)` | [`ParseContext::default_domain_algo`] |
//! | `HTTPS_ONLY` | `false` | [`ParseContext::https_only`] |
//! | `TIMEOUT_CONNECT` / `CLIENT` / `SERVER` / `QUEUE` / `TUNNEL` / `HTTP_REQUEST` / `HTTP_KEEP_ALIVE` | 5 / 20 / 20 / 30 / 3600 / 5 / 15 s | [`Settings::timeouts`] |
//! | `SERVICE_NAME` | `proxy` | [`Settings::service_name`] |
//! | `LISTENER_ADDRESS` | (none) | [`Settings::listener_addresses`] (comma-separated) |
//! | `PROXY_INSTANCE_NAME` | `docker-flow` | [`Settings::proxy_instance_name`] |
//! | `FILTER_PROXY_INSTANCE_NAME` | `false` | [`Settings::filter_proxy_instance_name`] |
//! | `SKIP_ADDRESS_VALIDATION` | `true` | [`Settings::skip_address_validation`] |
//! | `CONNECTION_MODE` | `http-keep-alive` | [`Settings::connection_mode`] (DFP's code fell back to `http-server-close`; its image set keep-alive) |
//! | `WORKER_THREADS` | number of CPUs | [`Settings::worker_threads`] (Sluice; `0` = number of CPUs) |
//! | `SHUTDOWN_GRACE` | `10` s | [`Settings::shutdown_grace`] (Sluice) |
//! | `MAX_CONNECTIONS` | `10000` | [`Settings::max_connections`] (Sluice; at least 1) |
//! | `RELOAD_INTERVAL` | `5000` ms | [`Settings::reload_interval`] |
//! | `RELOAD_ATTEMPTS` | `5` | [`Settings::reload_attempts`] |
//! | `REPEAT_RELOAD` | `false` | [`Settings::repeat_reload`] |
//! | `LISTENER_RESYNC_INTERVAL` | `15` s | [`Settings::listener_resync_interval`] (Sluice; `0` = off) |
//! | `USERS` | (none) | [`Settings::users`] (global basic-auth users) |
//! | `USERS_PASS_ENCRYPTED` | `false` | [`Settings::users_pass_encrypted`] |
//! | `STATS_USER` / `STATS_PASS` | (none) | [`Settings::stats`] (both set = statistics on) |
//! | `STATS_USER_ENV` / `STATS_PASS_ENV` / `STATS_URI_ENV` | `STATS_USER` / `STATS_PASS` / `STATS_URI` | names of the variables read for the three values |
//! | `STATS_URI` | `/admin?stats` | [`StatsSettings::uri`] |
//! | `STATS_PORT` | (none) | [`StatsSettings::port`] (`80` = none, as DFP) |
//! | `API_USER` / `API_PASS` | (none) | [`Settings::api_auth`] (Sluice; both or neither) |
//! | `ENABLE_H2` | `true` | [`Settings::enable_h2`] (ALPN `h2,http/1.1` on TLS ports, else `http/1.1`) |
//! | `CA_FILE` | (none) | [`Settings::ca_file`] (client certificates are requested and verified against it) |
//! | `PREFERRED_CERTIFICATE` | (none) | [`Settings::preferred_certificates`] (comma-separated file-name globs) |
//! | `COMPRESSION_ALGO` / `COMPRESSION_TYPE` | (none) | [`Settings::compression`] (the `compressionAlgo` / `compressionType` rules; a service's own setting wins) |
//! | `ACME_DIRECTORY` / `ACME_EMAIL` / `ACME_CA_FILE` / `ACME_CHALLENGE` / `ACME_LEASE_TIMEOUT` | Let's Encrypt production / (none) / (none) / `http-01` / `30` s | [`Settings::acme`] (Sluice; `docs/acme.md`) |
//! | `DEBUG` / `DEBUG_ERRORS_ONLY` / `CAPTURE_REQUEST_HEADER` / `LOG_FORMAT` | `false` / `false` / (none) / `text` | [`Settings::access_log`] (the request log) |
//!
//! Port lists (`DEFAULT_PORTS`, `BIND_PORTS`) are comma-separated items `80`, `443:ssl`. HAProxy
//! bind options such as `8443 accept-proxy:ssl` are rejected with an error naming the option.
//! DFP's image defaulted `DEFAULT_PORTS` to `80,443:ssl`. Sluice's default is `80`, and becomes
//! `80,443:ssl` when certificates exist at startup ([`Settings::listener_ports`]); an explicitly
//! set `DEFAULT_PORTS` always wins ([`Settings::default_ports_set`]).
//!
//! `USERS` entries are separated by `,` or newlines; the password is everything after the
//! first `:` and entries without a password are dropped. A `USERS` value that yields no user
//! at all still turns authentication on, and then nobody is let in (fail closed, as DFP).
//! The statistics page is open when **both** `STATS_USER` and `STATS_PASS` are `none`
//! (ASCII case-insensitive); DFP opened it when either one was `none`, which let a typo in one
//! value disable the protection. Giving only one of `API_USER`/`API_PASS` is an error.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::access_log::{parse_captured_headers, AccessLogSettings, LogFormat};
use crate::credentials::{parse_user_list, Credentials};
pub use crate::env::Vars;
use crate::env::{list_items, parse_decimal, parse_go_bool, GO_BOOL_HELP};
use crate::params::{parse_compression_values, ParseContext};
use crate::service::{Compression, ConnectionMode, DomainAlgo, User};

/// Why the environment does not describe valid settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A variable has a value Sluice cannot use.
    #[error("invalid {var}={value:?}: {reason}")]
    Invalid {
        /// The variable name, e.g. `PORT`.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One listening port of the HTTP listener (`80`, `443:ssl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// The port (`0` = any free port, for tests).
    pub port: u16,
    /// TLS is terminated on this port.
    pub ssl: bool,
}

impl PortSpec {
    /// Parses one item: `80`, `443:ssl`. Whitespace around the item is ignored; HAProxy bind
    /// options (`8443 accept-proxy:ssl`) are rejected.
    pub fn parse(item: &str) -> Result<PortSpec, String> {
        let item = item.trim();
        let (body, ssl) = match item.rsplit_once(':') {
            Some((body, "ssl")) => (body.trim_end(), true),
            Some((_, other)) => {
                return Err(format!("unknown port suffix ':{other}' (only ':ssl')"))
            }
            None => (item, false),
        };
        let mut words = body.split_whitespace();
        let port_text = words.next().unwrap_or_default();
        if let Some(option) = words.next() {
            return Err(format!("bind option '{option}' is not supported"));
        }
        let port = parse_decimal::<u16>(port_text)
            .ok_or_else(|| format!("'{port_text}' is not a port number (0-65535)"))?;
        Ok(PortSpec { port, ssl })
    }

    /// Parses a comma-separated list; empty items are skipped.
    pub fn parse_list(text: &str) -> Result<Vec<PortSpec>, String> {
        list_items(text, ",").map(PortSpec::parse).collect()
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ssl {
            write!(f, "{}:ssl", self.port)
        } else {
            write!(f, "{}", self.port)
        }
    }
}

/// Proxy-wide timeouts (`TIMEOUT_*`, integer seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `TIMEOUT_CONNECT`: connecting to an upstream.
    pub connect: Duration,
    /// `TIMEOUT_CLIENT`: client inactivity.
    pub client: Duration,
    /// `TIMEOUT_SERVER`: upstream inactivity.
    pub server: Duration,
    /// `TIMEOUT_QUEUE`: waiting for an upstream connection slot.
    pub queue: Duration,
    /// `TIMEOUT_TUNNEL`: inactivity of WebSocket and TCP tunnels.
    pub tunnel: Duration,
    /// `TIMEOUT_HTTP_REQUEST`: receiving a complete request head.
    pub http_request: Duration,
    /// `TIMEOUT_HTTP_KEEP_ALIVE`: an idle client connection between requests.
    pub http_keep_alive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            client: Duration::from_secs(20),
            server: Duration::from_secs(20),
            queue: Duration::from_secs(30),
            tunnel: Duration::from_secs(3600),
            http_request: Duration::from_secs(5),
            http_keep_alive: Duration::from_secs(15),
        }
    }
}

/// Who may see the statistics page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsAuth {
    /// `STATS_USER=none` and `STATS_PASS=none`: no authentication.
    Open,
    /// Basic authentication with these credentials (realm `Strictly Private`).
    Basic(Credentials),
}

/// The statistics page (`STATS_*`); present only when it is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSettings {
    /// `STATS_USER` / `STATS_PASS`.
    pub auth: StatsAuth,
    /// `STATS_URI`: requests whose path and query start with it get the page.
    pub uri: String,
    /// `STATS_PORT`: an extra listener serving only the page (`None` for unset or `80`).
    pub port: Option<u16>,
}

/// The default `STATS_URI`.
pub const DEFAULT_STATS_URI: &str = "/admin?stats";

/// Everything Sluice reads from its environment. See the module documentation for the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `IP`: the control API address.
    pub ip: IpAddr,
    /// `PORT`: the control API port (and the port peers are reached on).
    pub port: u16,
    /// `DEFAULT_PORTS`: the HTTP listener ports.
    pub default_ports: Vec<PortSpec>,
    /// `BIND_PORTS`: additional HTTP listener ports.
    pub bind_ports: Vec<PortSpec>,
    /// `DATA_DIR`: where the service set is persisted.
    pub data_dir: PathBuf,
    /// `SECRETS_DIR`: where `dfp_*` and `cert-*` secrets are read.
    pub secrets_dir: PathBuf,
    /// `CERTS_DIR`: where certificates are stored.
    pub certs_dir: PathBuf,
    /// `SEPARATOR`, `SERVICE_DOMAIN_ALGO`, `HTTPS_ONLY`.
    pub parse: ParseContext,
    /// `TIMEOUT_*`.
    pub timeouts: Timeouts,
    /// `SERVICE_NAME`: the proxy's own Swarm service (peers are `tasks.<name>`).
    pub service_name: String,
    /// `LISTENER_ADDRESS`: Swarm listener addresses.
    pub listener_addresses: Vec<String>,
    /// `PROXY_INSTANCE_NAME`.
    pub proxy_instance_name: String,
    /// `FILTER_PROXY_INSTANCE_NAME`: ignore services for other proxy instances.
    pub filter_proxy_instance_name: bool,
    /// `SKIP_ADDRESS_VALIDATION`: do not resolve a service name before accepting it.
    pub skip_address_validation: bool,
    /// `CONNECTION_MODE`: the default connection mode.
    pub connection_mode: ConnectionMode,
    /// `WORKER_THREADS`: data-plane worker threads (at least 1).
    pub worker_threads: usize,
    /// `SHUTDOWN_GRACE`: how long open connections may drain on shutdown.
    pub shutdown_grace: Duration,
    /// `MAX_CONNECTIONS`: client connections the data plane serves at once (HTTP ports, all
    /// workers together); more wait in the listen backlog.
    pub max_connections: usize,
    /// `RELOAD_INTERVAL`: pause between listener fetch attempts.
    pub reload_interval: Duration,
    /// `RELOAD_ATTEMPTS`: fetch attempts per listener when there are several.
    pub reload_attempts: u32,
    /// `REPEAT_RELOAD`: keep fetching from the (single) listener.
    pub repeat_reload: bool,
    /// `LISTENER_RESYNC_INTERVAL`: how often the listener is asked again and the registry
    /// converged on its answer (zero: never).
    pub listener_resync_interval: Duration,
    /// `USERS`: global basic-auth users (`None` when unset). `Some` with an empty list means
    /// authentication was asked for but no entry was usable: every request is refused.
    pub users: Option<Vec<User>>,
    /// `USERS_PASS_ENCRYPTED`: the global passwords are crypt(3) hashes.
    pub users_pass_encrypted: bool,
    /// `STATS_*`: the statistics page, when enabled.
    pub stats: Option<StatsSettings>,
    /// `API_USER` / `API_PASS`: basic auth required on the control API.
    pub api_auth: Option<Credentials>,
    /// `DEFAULT_PORTS` was given explicitly (then certificates do not add `443:ssl`).
    pub default_ports_set: bool,
    /// `ENABLE_H2`: offer HTTP/2 through ALPN on TLS ports.
    pub enable_h2: bool,
    /// `CA_FILE`: PEM file of CAs that client certificates are verified against.
    pub ca_file: Option<PathBuf>,
    /// `PREFERRED_CERTIFICATE`: file-name globs (`*` only) ordering certificates; the first
    /// certificate in that order is the default one.
    pub preferred_certificates: Vec<String>,
    /// `COMPRESSION_ALGO` / `COMPRESSION_TYPE`: response compression for services that do
    /// not set `compressionAlgo` themselves.
    pub compression: Option<Compression>,
    /// `DEBUG`, `DEBUG_ERRORS_ONLY`, `CAPTURE_REQUEST_HEADER`, `LOG_FORMAT`: the request log.
    pub access_log: AccessLogSettings,
    /// `ACME_*`: the ACME issuer used for services with `acmeDomain`.
    pub acme: AcmeSettings,
}

/// Let's Encrypt's production directory, the default `ACME_DIRECTORY`.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The ACME challenge type answered (`ACME_CHALLENGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcmeChallenge {
    /// `http-01`: `/.well-known/acme-challenge/<token>` on the HTTP ports.
    #[default]
    Http01,
    /// `tls-alpn-01`: the `acme-tls/1` protocol on the TLS ports.
    TlsAlpn01,
}

/// `ACME_*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// `ACME_DIRECTORY`: the directory URL (`https://`).
    pub directory: String,
    /// `ACME_EMAIL`: the account's contact address.
    pub email: Option<String>,
    /// `ACME_CA_FILE`: the PEM root the directory's TLS certificate is verified against
    /// (a test CA such as Pebble's); unset = the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `ACME_CHALLENGE`: which challenge type is answered.
    pub challenge: AcmeChallenge,
    /// `ACME_LEASE_TIMEOUT`: how long a replica must have been silent before the next one
    /// takes over its orders.
    pub lease_timeout: Duration,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            directory: LETS_ENCRYPT_DIRECTORY.to_string(),
            email: None,
            ca_file: None,
            challenge: AcmeChallenge::Http01,
            lease_timeout: Duration::from_secs(30),
        }
    }
}

impl Settings {
    /// The HTTP listener ports: `DEFAULT_PORTS` then `BIND_PORTS`. When `DEFAULT_PORTS` was not
    /// set and certificates exist, the default is `80,443:ssl` instead of `80`.
    pub fn listener_ports(&self, have_certificates: bool) -> Vec<PortSpec> {
        let mut ports = self.default_ports.clone();
        if !self.default_ports_set && have_certificates && !ports.iter().any(|p| p.ssl) {
            ports.push(PortSpec {
                port: 443,
                ssl: true,
            });
        }
        ports.extend(self.bind_ports.iter().copied());
        ports
    }
}

const KNOWN_VARIABLES: &[&str] = &[
    "IP",
    "PORT",
    "DEFAULT_PORTS",
    "BIND_PORTS",
    "DATA_DIR",
    "SECRETS_DIR",
    "CERTS_DIR",
    "SEPARATOR",
    "SERVICE_DOMAIN_ALGO",
    "HTTPS_ONLY",
    "TIMEOUT_CONNECT",
    "TIMEOUT_CLIENT",
    "TIMEOUT_SERVER",
    "TIMEOUT_QUEUE",
    "TIMEOUT_TUNNEL",
    "TIMEOUT_HTTP_REQUEST",
    "TIMEOUT_HTTP_KEEP_ALIVE",
    "SERVICE_NAME",
    "LISTENER_ADDRESS",
    "PROXY_INSTANCE_NAME",
    "FILTER_PROXY_INSTANCE_NAME",
    "SKIP_ADDRESS_VALIDATION",
    "CONNECTION_MODE",
    "WORKER_THREADS",
    "SHUTDOWN_GRACE",
    "MAX_CONNECTIONS",
    "RELOAD_INTERVAL",
    "RELOAD_ATTEMPTS",
    "REPEAT_RELOAD",
    "LISTENER_RESYNC_INTERVAL",
    "USERS",
    "USERS_PASS_ENCRYPTED",
    "STATS_USER_ENV",
    "STATS_PASS_ENV",
    "STATS_URI_ENV",
    "STATS_USER",
    "STATS_PASS",
    "STATS_URI",
    "STATS_PORT",
    "API_USER",
    "API_PASS",
    "ENABLE_H2",
    "CA_FILE",
    "PREFERRED_CERTIFICATE",
    "COMPRESSION_ALGO",
    "COMPRESSION_TYPE",
    "DEBUG",
    "DEBUG_ERRORS_ONLY",
    "CAPTURE_REQUEST_HEADER",
    "LOG_FORMAT",
    "ACME_DIRECTORY",
    "ACME_EMAIL",
    "ACME_CA_FILE",
    "ACME_CHALLENGE",
    "ACME_LEASE_TIMEOUT",
];

/// Every variable [`Settings::from_vars`] reads, in table order.
pub fn known_variables() -> &'static [&'static str] {
    KNOWN_VARIABLES
}

const DEFAULT_DEFAULT_PORTS: PortSpec = PortSpec {
    port: 80,
    ssl: false,
};

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ip: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            default_ports: vec![DEFAULT_DEFAULT_PORTS],
            bind_ports: Vec::new(),
            data_dir: PathBuf::from("/var/lib/sluice"),
            secrets_dir: PathBuf::from("/run/secrets"),
            certs_dir: PathBuf::from("/certs"),
            parse: ParseContext::default(),
            timeouts: Timeouts::default(),
            service_name: "proxy".to_string(),
            listener_addresses: Vec::new(),
            proxy_instance_name: "docker-flow".to_string(),
            filter_proxy_instance_name: false,
            skip_address_validation: true,
            connection_mode: ConnectionMode::KeepAlive,
            worker_threads: cpu_count(),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            reload_interval: Duration::from_millis(5000),
            reload_attempts: 5,
            repeat_reload: false,
            listener_resync_interval: Duration::from_secs(15),
            users: None,
            users_pass_encrypted: false,
            stats: None,
            api_auth: None,
            default_ports_set: false,
            enable_h2: true,
            ca_file: None,
            preferred_certificates: Vec::new(),
            compression: None,
            access_log: AccessLogSettings::default(),
            acme: AcmeSettings::default(),
        }
    }
}

/// Reads variables and turns parse failures into [`SettingsError`]s naming the variable.
struct Reader<'a> {
    vars: &'a dyn Vars,
}

impl Reader<'_> {
    fn parsed<T>(
        &self,
        var: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, SettingsError> {
        match self.vars.var(var) {
            None => Ok(None),
            Some(value) => parse(&value)
                .map(Some)
                .map_err(|reason| SettingsError::Invalid {
                    var: var.to_string(),
                    value,
                    reason,
                }),
        }
    }

    fn string(&self, var: &str, default: String) -> String {
        self.vars.var(var).unwrap_or(default)
    }

    fn path(&self, var: &str, default: PathBuf) -> PathBuf {
        self.vars.var(var).map_or(default, PathBuf::from)
    }

    fn boolean(&self, var: &str, default: bool) -> Result<bool, SettingsError> {
        self.parsed(var, |v| {
            parse_go_bool(v.trim()).ok_or_else(|| GO_BOOL_HELP.to_string())
        })
        .map(|b| b.unwrap_or(default))
    }

    fn number<T: std::str::FromStr>(
        &self,
        var: &str,
        what: &str,
    ) -> Result<Option<T>, SettingsError> {
        self.parsed(var, |v| {
            parse_decimal::<T>(v.trim()).ok_or_else(|| format!("not {what}"))
        })
    }

    fn seconds(&self, var: &str, default: Duration) -> Result<Duration, SettingsError> {
        self.number::<u64>(var, "a whole number of seconds")
            .map(|s| s.map_or(default, Duration::from_secs))
    }

    /// A value read through DFP's `<NAME>_ENV` indirection: `indirection` names the variable
    /// holding it (default `name`).
    fn indirect(&self, indirection: &str, name: &str) -> Option<String> {
        let target = self
            .vars
            .var(indirection)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| name.to_string());
        self.vars.var(&target)
    }

    fn stats(&self) -> Result<Option<StatsSettings>, SettingsError> {
        let user = self.indirect("STATS_USER_ENV", "STATS_USER");
        let pass = self.indirect("STATS_PASS_ENV", "STATS_PASS");
        let uri = self
            .indirect("STATS_URI_ENV", "STATS_URI")
            .map(|u| u.trim().to_string())
            .unwrap_or_else(|| DEFAULT_STATS_URI.to_string());
        if !uri.starts_with('/') {
            return Err(SettingsError::Invalid {
                var: "STATS_URI".into(),
                value: uri,
                reason: "must start with '/'".into(),
            });
        }
        let port = self
            .number::<u16>("STATS_PORT", "a port number (0-65535)")?
            .filter(|p| *p != 80);
        let (Some(user), Some(password)) = (user, pass) else {
            return Ok(None);
        };
        let auth = if user.eq_ignore_ascii_case("none") && password.eq_ignore_ascii_case("none") {
            StatsAuth::Open
        } else {
            StatsAuth::Basic(Credentials { user, password })
        };
        Ok(Some(StatsSettings { auth, uri, port }))
    }

    /// `COMPRESSION_ALGO` / `COMPRESSION_TYPE`, parsed like the service parameters (split on
    /// `SEPARATOR` and whitespace).
    fn compression(&self, separator: &str) -> Result<Option<Compression>, SettingsError> {
        const ALGO: &str = "COMPRESSION_ALGO";
        const TYPE: &str = "COMPRESSION_TYPE";
        let algo = self.vars.var(ALGO);
        let types = self.vars.var(TYPE);
        parse_compression_values(
            algo.as_deref().map(|v| (ALGO, v)),
            types.as_deref().map(|v| (TYPE, v)),
            separator,
        )
        .map_err(|e| match e {
            crate::params::ParamError::Invalid {
                param,
                value,
                reason,
            } => SettingsError::Invalid {
                var: param,
                value,
                reason,
            },
            other => SettingsError::Invalid {
                var: ALGO.into(),
                value: algo.unwrap_or_default(),
                reason: other.to_string(),
            },
        })
    }

    fn acme(&self) -> Result<AcmeSettings, SettingsError> {
        let d = AcmeSettings::default();
        let directory = self
            .parsed("ACME_DIRECTORY", |v| {
                let v = v.trim();
                if v.len() > "https://".len() && v[..8].eq_ignore_ascii_case("https://") {
                    Ok(v.to_string())
                } else {
                    Err("not an https:// URL".to_string())
                }
            })?
            .unwrap_or(d.directory);
        let email = self
            .parsed("ACME_EMAIL", |v| {
                let v = v.trim();
                match v.split_once('@') {
                    Some((local, domain))
                        if !local.is_empty()
                            && domain.contains('.')
                            && !v.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                    {
                        Ok(v.to_string())
                    }
                    _ => Err("not an e-mail address (local@domain)".to_string()),
                }
            })?
            .or(d.email);
        let challenge = self
            .parsed("ACME_CHALLENGE", |v| match v.trim() {
                c if c.eq_ignore_ascii_case("http-01") => Ok(AcmeChallenge::Http01),
                c if c.eq_ignore_ascii_case("tls-alpn-01") => Ok(AcmeChallenge::TlsAlpn01),
                _ => Err("unsupported challenge (http-01 or tls-alpn-01)".to_string()),
            })?
            .unwrap_or(d.challenge);
        let lease_timeout = self
            .parsed("ACME_LEASE_TIMEOUT", |v| {
                match parse_decimal::<u64>(v.trim()) {
                    Some(n) if n > 0 => Ok(Duration::from_secs(n)),
                    _ => Err("not a whole number of seconds of at least 1".to_string()),
                }
            })?
            .unwrap_or(d.lease_timeout);
        Ok(AcmeSettings {
            directory,
            email,
            ca_file: self.vars.var("ACME_CA_FILE").map(PathBuf::from),
            challenge,
            lease_timeout,
        })
    }

    fn api_auth(&self) -> Result<Option<Credentials>, SettingsError> {
        match (self.vars.var("API_USER"), self.vars.var("API_PASS")) {
            (Some(user), Some(password)) => Ok(Some(Credentials { user, password })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(SettingsError::Invalid {
                var: "API_PASS".into(),
                value: String::new(),
                reason: "API_USER is set, so API_PASS must be set too".into(),
            }),
            (None, Some(_)) => Err(SettingsError::Invalid {
                var: "API_USER".into(),
                value: String::new(),
                reason: "API_PASS is set, so API_USER must be set too".into(),
            }),
        }
    }
}

impl Settings {
    /// Reads every variable of [`known_variables`]; unset (or empty) variables take their
    /// defaults. The first unusable value is returned as an error.
    pub fn from_vars(vars: &dyn Vars) -> Result<Settings, SettingsError> {
        let d = Settings::default();
        let r = Reader { vars };
        let ip = r
            .parsed("IP", |v| {
                v.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| "not an IP address".to_string())
            })?
            .unwrap_or(d.ip);
        let port = r
            .number::<u16>("PORT", "a port number (0-65535)")?
            .unwrap_or(d.port);
        let given_default_ports = r.parsed("DEFAULT_PORTS", PortSpec::parse_list)?;
        let default_ports_set = given_default_ports.is_some();
        let default_ports = given_default_ports.unwrap_or(d.default_ports);
        let bind_ports = r
            .parsed("BIND_PORTS", PortSpec::parse_list)?
            .unwrap_or(d.bind_ports);
        let data_dir = r.path("DATA_DIR", d.data_dir);
        let secrets_dir = r.path("SECRETS_DIR", d.secrets_dir);
        let certs_dir = r.path("CERTS_DIR", d.certs_dir);
        let separator = r.string("SEPARATOR", d.parse.separator);
        let default_domain_algo = r
            .parsed("SERVICE_DOMAIN_ALGO", |v| {
                DomainAlgo::parse(v).ok_or_else(|| {
                    "unsupported algorithm (hdr(host), hdr_beg(host), hdr_end(host), \
                     hdr_dom(host), hdr_reg(host), req.ssl_sni)"
                        .to_string()
                })
            })?
            .unwrap_or(d.parse.default_domain_algo);
        let https_only = r.boolean("HTTPS_ONLY", d.parse.https_only)?;
        let timeouts = Timeouts {
            connect: r.seconds("TIMEOUT_CONNECT", d.timeouts.connect)?,
            client: r.seconds("TIMEOUT_CLIENT", d.timeouts.client)?,
            server: r.seconds("TIMEOUT_SERVER", d.timeouts.server)?,
            queue: r.seconds("TIMEOUT_QUEUE", d.timeouts.queue)?,
            tunnel: r.seconds("TIMEOUT_TUNNEL", d.timeouts.tunnel)?,
            http_request: r.seconds("TIMEOUT_HTTP_REQUEST", d.timeouts.http_request)?,
            http_keep_alive: r.seconds("TIMEOUT_HTTP_KEEP_ALIVE", d.timeouts.http_keep_alive)?,
        };
        let service_name = r.string("SERVICE_NAME", d.service_name);
        let listener_addresses = r
            .vars
            .var("LISTENER_ADDRESS")
            .map(|v| list_items(&v, ",").map(str::to_string).collect())
            .unwrap_or(d.listener_addresses);
        let proxy_instance_name = r.string("PROXY_INSTANCE_NAME", d.proxy_instance_name);
        let filter_proxy_instance_name =
            r.boolean("FILTER_PROXY_INSTANCE_NAME", d.filter_proxy_instance_name)?;
        let skip_address_validation =
            r.boolean("SKIP_ADDRESS_VALIDATION", d.skip_address_validation)?;
        let connection_mode = r
            .parsed("CONNECTION_MODE", |v| {
                ConnectionMode::parse(v).ok_or_else(|| {
                    "unsupported connection mode (http-keep-alive, http-server-close, httpclose \
                     or forceclose)"
                        .to_string()
                })
            })?
            .unwrap_or(d.connection_mode);
        let worker_threads = match r.number::<usize>("WORKER_THREADS", "a whole number")? {
            None | Some(0) => d.worker_threads,
            Some(n) => n,
        };
        let shutdown_grace = r.seconds("SHUTDOWN_GRACE", d.shutdown_grace)?;
        let max_connections = r
            .parsed("MAX_CONNECTIONS", |v| {
                match parse_decimal::<usize>(v.trim()) {
                    Some(n) if n > 0 => Ok(n),
                    _ => Err("not a whole number of at least 1".to_string()),
                }
            })?
            .unwrap_or(d.max_connections);
        let reload_interval = r
            .number::<u64>("RELOAD_INTERVAL", "a whole number of milliseconds")?
            .map_or(d.reload_interval, Duration::from_millis);
        let reload_attempts = r
            .number::<u32>("RELOAD_ATTEMPTS", "a whole number")?
            .unwrap_or(d.reload_attempts);
        let repeat_reload = r.boolean("REPEAT_RELOAD", d.repeat_reload)?;
        let listener_resync_interval =
            r.seconds("LISTENER_RESYNC_INTERVAL", d.listener_resync_interval)?;
        let users = r.vars.var("USERS").map(|text| {
            let mut users = parse_user_list(&text);
            users.retain(|u| u.password.is_some());
            users
        });
        let users_pass_encrypted = r.boolean("USERS_PASS_ENCRYPTED", d.users_pass_encrypted)?;
        let stats = r.stats()?;
        let api_auth = r.api_auth()?;
        let enable_h2 = r.boolean("ENABLE_H2", d.enable_h2)?;
        let ca_file = r.vars.var("CA_FILE").map(PathBuf::from);
        let preferred_certificates = r
            .vars
            .var("PREFERRED_CERTIFICATE")
            .map(|v| list_items(&v, ",").map(str::to_string).collect())
            .unwrap_or(d.preferred_certificates);
        let compression = r.compression(&separator)?;
        let acme = r.acme()?;
        let access_log = AccessLogSettings {
            enabled: r.boolean("DEBUG", false)?,
            errors_only: r.boolean("DEBUG_ERRORS_ONLY", false)?,
            capture: r
                .parsed("CAPTURE_REQUEST_HEADER", parse_captured_headers)?
                .unwrap_or_default(),
            format: r
                .parsed("LOG_FORMAT", LogFormat::parse)?
                .unwrap_or_default(),
        };

        Ok(Settings {
            ip,
            port,
            default_ports,
            bind_ports,
            data_dir,
            secrets_dir,
            certs_dir,
            parse: ParseContext {
                separator,
                default_domain_algo,
                https_only,
            },
            timeouts,
            service_name,
            listener_addresses,
            proxy_instance_name,
            filter_proxy_instance_name,
            skip_address_validation,
            connection_mode,
            worker_threads,
            shutdown_grace,
            max_connections,
            reload_interval,
            reload_attempts,
            repeat_reload,
            listener_resync_interval,
            users,
            users_pass_encrypted,
            stats,
            api_auth,
            default_ports_set,
            enable_h2,
            ca_file,
            preferred_certificates,
            compression,
            access_log,
            acme,
        })
    }
}

#[cfg(test)]
mod tests;
