//! The URLs the client commands take (`health --url`, `load http`, `load ws`): `scheme://host[:port]/path?query`.

use http::Uri;

/// Where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host:port` (the scheme's default port when the URL has none).
    pub(crate) authority: String,
    /// The request target: path and query.
    pub(crate) target: String,
}

/// Why a URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid URL {url:?}: {why}")]
pub(crate) struct BadUrl {
    /// The URL given.
    pub(crate) url: String,
    /// What is wrong with it.
    pub(crate) why: String,
}

impl Endpoint {
    /// Parses `url`, whose scheme must be `scheme` (`http` or `ws`; both default to port 80).
    pub(crate) fn parse(url: &str, scheme: &str) -> Result<Endpoint, BadUrl> {
        let invalid = |why: String| BadUrl {
            url: url.to_owned(),
            why,
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| invalid(format!("expected {scheme}://host:port/path")))?;
        if uri.scheme_str() != Some(scheme) {
            return Err(invalid(format!("the scheme must be {scheme}://")));
        }
        let host = uri.host().ok_or_else(|| invalid("no host".to_owned()))?;
        let port = uri.port_u16().unwrap_or(80);
        let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Endpoint {
            authority: format!("{host}:{port}"),
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_endpoints() {
        assert_eq!(
            Endpoint::parse("http://127.0.0.1:8080/demo/health", "http").unwrap(),
            Endpoint {
                authority: "127.0.0.1:8080".into(),
                target: "/demo/health".into()
            }
        );
        assert_eq!(
            Endpoint::parse("ws://app/demo/ws?x=1", "ws").unwrap(),
            Endpoint {
                authority: "app:80".into(),
                target: "/demo/ws?x=1".into()
            }
        );
        assert_eq!(Endpoint::parse("http://app", "http").unwrap().target, "/");
    }

    #[test]
    fn bad_urls_say_why() {
        let err = Endpoint::parse("https://app/", "http").unwrap_err();
        assert_eq!(err.why, "the scheme must be http://");
        assert!(err.to_string().contains("\"https://app/\""), "{err}");
        assert!(Endpoint::parse("::", "http").is_err());
        assert!(Endpoint::parse("/relative", "ws").is_err());
    }
}
