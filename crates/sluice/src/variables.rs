//! The environment variables of both programs: name, default and one line of meaning.
//!
//! One table, two readers: `sluice proxy --help` and `sluice listener --help` print it, and
//! the docs test (`crates/sluice/tests/docs.rs`, which includes this file) checks it against
//! `docs/configuration.md` and against the variables the proxy's settings really read. It
//! depends on nothing but `std` so that test can include it as it is.

/// One environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Variable {
    /// The name, e.g. `DEFAULT_PORTS`.
    pub(crate) name: &'static str,
    /// The value used when it is unset (`-`: none).
    pub(crate) default: &'static str,
    /// One line of meaning.
    pub(crate) meaning: &'static str,
}

const fn var(name: &'static str, default: &'static str, meaning: &'static str) -> Variable {
    Variable {
        name,
        default,
        meaning,
    }
}

/// `sluice proxy`'s variables, in the order of `docs/configuration.md`.
pub(crate) const PROXY: &[Variable] = &[
    var("IP", "0.0.0.0", "Address of the control API."),
    var(
        "PORT",
        "8080",
        "Port of the control API; also used to reach the other replicas.",
    ),
    var(
        "DEFAULT_PORTS",
        "80 (80,443:ssl with certificates)",
        "HTTP(S) ports of the data plane, e.g. 80,443:ssl.",
    ),
    var(
        "BIND_PORTS",
        "-",
        "More HTTP(S) ports, e.g. 8080,8443:ssl (for srcPort routing).",
    ),
    var(
        "DATA_DIR",
        "/var/lib/sluice",
        "Where the service set is saved (services.json).",
    ),
    var(
        "SECRETS_DIR",
        "/run/secrets",
        "Where secrets (dfp_<variable in lower case>) are read from.",
    ),
    var("CERTS_DIR", "/certs", "Certificates directory."),
    var(
        "HOSTS_FILE",
        "-",
        "A hosts-format file consulted before the system resolver.",
    ),
    var("SEPARATOR", ",", "List separator inside parameter values."),
    var(
        "SERVICE_DOMAIN_ALGO",
        "hdr_beg(host)",
        "Default serviceDomainAlgo (matches the whole host).",
    ),
    var(
        "HTTPS_ONLY",
        "false",
        "Redirect every plain-HTTP request to https.",
    ),
    var("TIMEOUT_CONNECT", "5", "Seconds to connect to a service."),
    var(
        "TIMEOUT_SERVER",
        "20",
        "Seconds to wait for a service's response (504) and between body chunks.",
    ),
    var("TIMEOUT_CLIENT", "20", "Idle seconds for tcp/sni clients."),
    var(
        "TIMEOUT_QUEUE",
        "30",
        "Seconds a request waits for a maxConn slot, or for a task of a service that has none, before 503.",
    ),
    var(
        "TIMEOUT_TUNNEL",
        "3600",
        "Idle seconds of WebSocket and other upgraded connections.",
    ),
    var(
        "TIMEOUT_HTTP_REQUEST",
        "5",
        "Seconds to receive request headers (the longer of this and the next bounds both).",
    ),
    var(
        "TIMEOUT_HTTP_KEEP_ALIVE",
        "15",
        "Idle seconds between requests on a client connection.",
    ),
    var(
        "CONNECTION_MODE",
        "http-keep-alive",
        "Default connectionMode.",
    ),
    var(
        "COMPRESSION_ALGO",
        "-",
        "Response compression for services without their own compressionAlgo.",
    ),
    var(
        "COMPRESSION_TYPE",
        "-",
        "Content types COMPRESSION_ALGO applies to (as compressionType).",
    ),
    var(
        "SERVICE_NAME",
        "proxy",
        "The proxy's own Swarm service name: replicas are tasks.<SERVICE_NAME>.",
    ),
    var(
        "LISTENER_ADDRESS",
        "-",
        "Swarm listener address(es), comma-separated.",
    ),
    var(
        "RELOAD_INTERVAL",
        "5000",
        "Milliseconds between attempts to fetch services from the listener.",
    ),
    var(
        "RELOAD_ATTEMPTS",
        "5",
        "Accepted for compatibility; Sluice keeps trying until one listener answers.",
    ),
    var(
        "REPEAT_RELOAD",
        "false",
        "With LISTENER_RESYNC_INTERVAL=0: fetch every RELOAD_INTERVAL, add and update, never remove (DFP).",
    ),
    var(
        "LISTENER_RESYNC_INTERVAL",
        "15",
        "Seconds between re-checks of the listener; each converges on its list (0 = off).",
    ),
    var(
        "PROXY_INSTANCE_NAME",
        "docker-flow",
        "This proxy's instance name.",
    ),
    var(
        "FILTER_PROXY_INSTANCE_NAME",
        "false",
        "Ignore reconfigures for other instance names.",
    ),
    var(
        "SKIP_ADDRESS_VALIDATION",
        "true",
        "false: reject (500) a reconfigure whose service name does not resolve.",
    ),
    var("USERS", "-", "Global basic auth users (name:password,...)."),
    var(
        "USERS_PASS_ENCRYPTED",
        "false",
        "USERS holds crypt(3) hashes instead of passwords.",
    ),
    var(
        "STATS_USER",
        "-",
        "User of the statistics page (none: open).",
    ),
    var(
        "STATS_PASS",
        "-",
        "Password of the statistics page (none: open).",
    ),
    var("STATS_URI", "/admin?stats", "Path of the statistics page."),
    var(
        "STATS_PORT",
        "-",
        "A port serving only the statistics page.",
    ),
    var(
        "STATS_USER_ENV",
        "STATS_USER",
        "The variable STATS_USER is read from.",
    ),
    var(
        "STATS_PASS_ENV",
        "STATS_PASS",
        "The variable STATS_PASS is read from.",
    ),
    var(
        "STATS_URI_ENV",
        "STATS_URI",
        "The variable STATS_URI is read from.",
    ),
    var("API_USER", "-", "User protecting the control API (Sluice)."),
    var(
        "API_PASS",
        "-",
        "Password protecting the control API (Sluice).",
    ),
    var("ENABLE_H2", "true", "Offer HTTP/2 over TLS (ALPN h2)."),
    var(
        "CA_FILE",
        "-",
        "CA bundle that TLS clients' certificates are verified against (verifyClientSsl).",
    ),
    var(
        "PREFERRED_CERTIFICATE",
        "-",
        "Globs ordering the certificates; the first one is the default.",
    ),
    var(
        "ACME_DIRECTORY",
        "Let's Encrypt production",
        "ACME directory URL for acmeDomain services (Sluice).",
    ),
    var(
        "ACME_EMAIL",
        "-",
        "Contact address of the ACME account (Sluice).",
    ),
    var(
        "ACME_CA_FILE",
        "-",
        "PEM root the ACME directory's TLS certificate is verified against (a test CA; Sluice).",
    ),
    var(
        "ACME_CHALLENGE",
        "http-01",
        "ACME challenge answered: http-01 or tls-alpn-01 (Sluice).",
    ),
    var(
        "ACME_LEASE_TIMEOUT",
        "30",
        "Seconds of silence before another replica takes over ACME orders (Sluice).",
    ),
    var(
        "WORKER_THREADS",
        "number of CPUs",
        "Data-plane threads (Sluice).",
    ),
    var(
        "SHUTDOWN_GRACE",
        "10",
        "Seconds in-flight requests get to finish after SIGTERM (Sluice).",
    ),
    var(
        "MAX_CONNECTIONS",
        "10000",
        "Client connections served at once; more wait in the listen backlog (Sluice).",
    ),
    LOG_LEVEL,
    LOG_FORMAT,
    var(
        "DEBUG",
        "false",
        "The request log: one line per HTTP request and per tcp/sni connection.",
    ),
    var(
        "DEBUG_ERRORS_ONLY",
        "false",
        "With DEBUG, log only failures (status 500 and up, aborted).",
    ),
    var(
        "CAPTURE_REQUEST_HEADER",
        "-",
        "Request headers added to each request line, cut to a length: Host:15,X-Forwarded-For:20.",
    ),
];

/// `sluice listener`'s variables, in the order of `docs/configuration.md`.
pub(crate) const LISTENER: &[Variable] = &[
    var(
        "DF_DOCKER_HOST",
        "unix:///var/run/docker.sock",
        "Docker Engine endpoint (unix:// or tcp://).",
    ),
    var(
        "DF_NOTIFY_CREATE_SERVICE_URL",
        "-",
        "URL(s) notified when a service is created or changes (alias DF_NOTIF_CREATE_SERVICE_URL).",
    ),
    var(
        "DF_NOTIFY_REMOVE_SERVICE_URL",
        "-",
        "URL(s) notified when a service is removed or loses its label (alias DF_NOTIF_REMOVE_SERVICE_URL).",
    ),
    var(
        "DF_NOTIFICATION_URL",
        "-",
        "Fallback for both notification URLs.",
    ),
    var(
        "DF_NOTIFY_CREATE_SERVICE_METHOD",
        "GET",
        "HTTP method(s) of create notifications.",
    ),
    var(
        "DF_NOTIFY_REMOVE_SERVICE_METHOD",
        "GET",
        "HTTP method(s) of remove notifications.",
    ),
    var(
        "DF_NOTIFY_LABEL",
        "com.df.notify",
        "The opt-in label (key or key=value).",
    ),
    var(
        "DF_RETRY",
        "50",
        "Retries of a failed notification after the first attempt.",
    ),
    var(
        "DF_RETRY_INTERVAL",
        "5",
        "Seconds between notification attempts (0: a single attempt).",
    ),
    var(
        "DF_SERVICE_POLLING_INTERVAL",
        "30",
        "Seconds between full resyncs.",
    ),
    var(
        "DF_USE_DOCKER_SERVICE_EVENTS",
        "true",
        "Follow Docker's event stream (false: only periodic listing).",
    ),
    var(
        "DF_SERVICE_NAME_PREFIX",
        "-",
        "Prefix added to service names (<prefix>_<name>).",
    ),
    var(
        "DF_NOTIFY_TIMEOUT",
        "30",
        "Seconds per notification request (Sluice).",
    ),
    var(
        "DF_PROXY_USER",
        "-",
        "User sent to a proxy protected by API_USER (Sluice).",
    ),
    var(
        "DF_PROXY_PASS",
        "-",
        "Password sent to a proxy protected by API_PASS (Sluice).",
    ),
    var("PORT", "8080", "Port of the listener's own API."),
    var("IP", "0.0.0.0", "Address of the listener's own API."),
    var(
        "SECRETS_DIR",
        "/run/secrets",
        "Where secrets (df_notify_*_service_url, dfp_<variable>) are read from.",
    ),
    LOG_LEVEL,
    LOG_FORMAT,
];

const LOG_LEVEL: Variable = var(
    "LOG_LEVEL",
    "info",
    "Log filter, e.g. debug or sluice_proxy=debug (Sluice).",
);

const LOG_FORMAT: Variable = var("LOG_FORMAT", "text", "json for JSON log lines (Sluice).");

/// The table as `--help` shows it: one line per variable, columns aligned.
pub(crate) fn help(title: &str, variables: &[Variable]) -> String {
    let name_width = variables.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let default_width = variables
        .iter()
        .map(|v| v.default.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{title} (any of them can also be a Docker secret, see docs/configuration.md):\n  {:name_width$}  {:default_width$}  MEANING\n",
        "VARIABLE", "DEFAULT"
    );
    for v in variables {
        out.push_str(&format!(
            "  {:name_width$}  {:default_width$}  {}\n",
            v.name, v.default, v.meaning
        ));
    }
    out
}
