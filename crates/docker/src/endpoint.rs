//! Notification targets: parsing configured URLs and grouping them into endpoints.
//!
//! A [`Target`] is one configured URL with its HTTP method, ready to be combined with
//! notification parameters. An [`Endpoint`] is the unit that gets its own delivery task:
//! the create URL and the remove URL of one proxy (DFSL groups URLs by `host:port`).
//! Unlike DFSL, a second URL for the same `host:port` is not silently dropped: URLs of one
//! host are paired in order and extra ones become endpoints of their own. Credentials in
//! a URL (`http://user:pass@proxy:8080/...`) become a basic-auth header and are never
//! logged. Only plain `http://` is supported (no TLS client).

use std::collections::BTreeMap;

use base64::Engine as _;
use hyper::header::HeaderValue;
use hyper::{Method, Uri};
use sluice_core::redact::redact_url;
use thiserror::Error;

use crate::query::{compose_url, query_unescape, reencode_query};

/// Why a configured URL was rejected.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The text is not a URI.
    #[error("not a valid URL: {source}")]
    Invalid {
        /// Parser error.
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// Only `http` is supported.
    #[error("unsupported scheme {scheme:?} (only http:// is supported)")]
    UnsupportedScheme {
        /// The scheme found (empty when missing).
        scheme: String,
    },
    /// No host after the scheme.
    #[error("the URL has no host")]
    MissingHost,
    /// A fragment (`#...`) cannot be sent.
    #[error("the URL must not contain a fragment (#)")]
    Fragment,
}

/// One notification URL and its method.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) method: Method,
    /// `http://host:port/path`, without credentials or query.
    base: String,
    /// The configured query, re-encoded the way DFSL does (see [`crate::query`]).
    query: Option<String>,
    /// Basic auth from the URL's user-info, if any.
    pub(crate) auth: Option<HeaderValue>,
    /// Lower-case `host:port` as written, used for grouping.
    pub(crate) authority: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("method", &self.method)
            .field("url", &self.display())
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Target {
    /// Parses one configured URL.
    pub(crate) fn parse(raw: &str, method: Method) -> Result<Self, TargetError> {
        if raw.contains('#') {
            return Err(TargetError::Fragment);
        }
        let uri: Uri = raw
            .parse()
            .map_err(|source| TargetError::Invalid { source })?;
        let scheme = uri.scheme_str().unwrap_or("");
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(TargetError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
        let authority = uri.authority().ok_or(TargetError::MissingHost)?;
        let (userinfo, hostport) = match authority.as_str().rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority.as_str()),
        };
        if authority.host().is_empty() {
            return Err(TargetError::MissingHost);
        }
        let auth = userinfo.map(|info| {
            let (user, pass) = info.split_once(':').unwrap_or((info, ""));
            let user = query_unescape(&user.replace('+', "%2B")).unwrap_or_else(|| user.to_owned());
            let pass = query_unescape(&pass.replace('+', "%2B")).unwrap_or_else(|| pass.to_owned());
            basic_auth(&user, &pass)
        });
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        Ok(Self {
            method,
            base: format!("http://{hostport}{path}"),
            query: uri.query().and_then(reencode_query),
            auth,
            authority: hostport.to_ascii_lowercase(),
        })
    }

    /// The full URL for a notification with these parameters.
    pub(crate) fn url(&self, params: &BTreeMap<String, String>) -> String {
        compose_url(&self.base, self.query.as_deref(), params)
    }

    /// The configured URL without credentials (and with any secret value of its query
    /// redacted), for logs.
    pub(crate) fn display(&self) -> String {
        redact_url(&self.url(&BTreeMap::new())).into_owned()
    }
}

/// A `Basic` authorization header value, marked sensitive.
pub(crate) fn basic_auth(user: &str, pass: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut value = HeaderValue::try_from(format!("Basic {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// One proxy: where its create and remove notifications go. At least one side is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) create: Option<Target>,
    pub(crate) remove: Option<Target>,
}

impl Endpoint {
    /// A short description for logs.
    pub(crate) fn describe(&self) -> String {
        let show = |t: &Option<Target>| t.as_ref().map_or("-".to_owned(), Target::display);
        format!(
            "create={} remove={}",
            show(&self.create),
            show(&self.remove)
        )
    }
}

/// Groups targets by `host:port`, pairing the n-th create URL of a host with its n-th
/// remove URL. Endpoint order follows first appearance (creates first).
pub(crate) fn group(creates: Vec<Target>, removes: Vec<Target>) -> Vec<Endpoint> {
    let mut order: Vec<String> = Vec::new();
    let mut by_host: BTreeMap<String, (Vec<Target>, Vec<Target>)> = BTreeMap::new();
    for (is_create, target) in creates
        .into_iter()
        .map(|t| (true, t))
        .chain(removes.into_iter().map(|t| (false, t)))
    {
        let slot = by_host.entry(target.authority.clone()).or_insert_with(|| {
            order.push(target.authority.clone());
            (Vec::new(), Vec::new())
        });
        if is_create {
            slot.0.push(target);
        } else {
            slot.1.push(target);
        }
    }
    let mut endpoints = Vec::new();
    for host in order {
        let Some((creates, removes)) = by_host.remove(&host) else {
            continue;
        };
        let mut creates = creates.into_iter();
        let mut removes = removes.into_iter();
        loop {
            let (create, remove) = (creates.next(), removes.next());
            if create.is_none() && remove.is_none() {
                break;
            }
            endpoints.push(Endpoint { create, remove });
        }
    }
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(raw: &str) -> Target {
        Target::parse(raw, Method::GET).unwrap()
    }

    #[test]
    fn parses_and_composes_urls() {
        let target = t("http://proxy:8080/v1/docker-flow-proxy/reconfigure");
        let params: BTreeMap<String, String> =
            [("serviceName", "go-demo"), ("servicePath", "/demo")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(
            target.url(&params),
            "http://proxy:8080/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=%2Fdemo"
        );
        assert_eq!(target.authority, "proxy:8080");
        assert_eq!(
            t("http://proxy:8080/x?dog=cat&bear=fox").url(&params),
            "http://proxy:8080/x?bear=fox&dog=cat&serviceName=go-demo&servicePath=%2Fdemo"
        );
        assert_eq!(t("http://Proxy").display(), "http://Proxy/");
        assert_eq!(t("http://Proxy").authority, "proxy");
    }

    #[test]
    fn credentials_in_url_become_basic_auth_and_are_hidden() {
        let target = t("http://admin:s%40cret@proxy:8080/v1/docker-flow-proxy/remove");
        assert_eq!(
            target.display(),
            "http://proxy:8080/v1/docker-flow-proxy/remove"
        );
        let auth = target.auth.clone().unwrap();
        assert!(auth.is_sensitive());
        // base64("admin:s@cret")
        assert_eq!(auth.to_str().unwrap(), "Basic YWRtaW46c0BjcmV0");
        assert!(!format!("{target:?}").contains("cret"));
        // A secret in the configured query is kept in the URL sent, not in the one logged.
        let target = t("http://proxy:8080/remove?pass=QueryPw&x=1");
        assert!(target.url(&BTreeMap::new()).contains("pass=QueryPw"));
        assert_eq!(
            target.display(),
            "http://proxy:8080/remove?pass=REDACTED&x=1"
        );
        assert!(!format!("{target:?}").contains("QueryPw"));
    }

    #[test]
    fn rejects_unsupported_urls() {
        assert!(matches!(
            Target::parse("https://proxy/x", Method::GET),
            Err(TargetError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Target::parse("proxy:8080/x", Method::GET),
            Err(TargetError::UnsupportedScheme { .. }) | Err(TargetError::Invalid { .. })
        ));
        assert!(matches!(
            Target::parse("/just/a/path", Method::GET),
            Err(TargetError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Target::parse("http://proxy/x#frag", Method::GET),
            Err(TargetError::Fragment)
        ));
        assert!(matches!(
            Target::parse("http://pro xy/", Method::GET),
            Err(TargetError::Invalid { .. })
        ));
    }

    #[test]
    fn groups_by_host_pairing_in_order() {
        let endpoints = group(
            vec![
                t("http://host1:8080/c"),
                t("http://host2:8080/c"),
                t("http://host2:8080/c2"),
                t("http://host2/c"),
            ],
            vec![t("http://host2:8080/r"), t("http://host3/r")],
        );
        let shown: Vec<String> = endpoints.iter().map(Endpoint::describe).collect();
        assert_eq!(
            shown,
            vec![
                "create=http://host1:8080/c remove=-",
                "create=http://host2:8080/c remove=http://host2:8080/r",
                "create=http://host2:8080/c2 remove=-",
                "create=http://host2/c remove=-",
                "create=- remove=http://host3/r",
            ]
        );
    }
}
