//! The redirect and deny phase a routed request passes before authentication: `httpsOnly`
//! sends plain-HTTP requests to https, then `verifyClientSsl`, `allowedMethods`,
//! `deniedMethods` and `denyHttp` answer 403 (in that order, as DFP's backend rules). The data
//! plane and explain both call [`refusal`].

use crate::service::Destination;

/// Why a routed request is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `httpsOnly` on a plain-HTTP connection: redirect with this status.
    HttpsOnly {
        /// The destination's `httpsRedirectCode`.
        status: u16,
    },
    /// `verifyClientSsl` and the client presented no certificate that verified.
    ClientCertificate,
    /// `allowedMethods` does not list the method.
    MethodNotAllowed,
    /// `deniedMethods` lists the method.
    MethodDenied,
    /// `denyHttp` on a plain-HTTP connection.
    PlainHttp,
}

impl Refusal {
    /// The service parameter behind the refusal.
    pub fn parameter(self) -> &'static str {
        match self {
            Refusal::HttpsOnly { .. } => "httpsOnly",
            Refusal::ClientCertificate => "verifyClientSsl",
            Refusal::MethodNotAllowed => "allowedMethods",
            Refusal::MethodDenied => "deniedMethods",
            Refusal::PlainHttp => "denyHttp",
        }
    }

    /// The status of the answer (a redirect for `httpsOnly`, else 403).
    pub fn status(self) -> u16 {
        match self {
            Refusal::HttpsOnly { status } => status,
            _ => 403,
        }
    }
}

/// How the request arrived, as far as the deny phase cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival<'a> {
    /// The request method.
    pub method: &'a str,
    /// The connection is TLS.
    pub tls: bool,
    /// The client presented a certificate that verified against `CA_FILE`.
    pub client_cert_verified: bool,
}

/// The redirect or deny rule of `dest` that applies to the request, if any.
pub fn refusal(dest: &Destination, arrival: Arrival<'_>) -> Option<Refusal> {
    let method = arrival.method;
    if dest.https_only && !arrival.tls {
        return Some(Refusal::HttpsOnly {
            status: dest.https_redirect_code.get(),
        });
    }
    if dest.verify_client_ssl && !arrival.client_cert_verified {
        Some(Refusal::ClientCertificate)
    } else if !dest.allowed_methods.is_empty() && !dest.allowed_methods.iter().any(|m| m == method)
    {
        Some(Refusal::MethodNotAllowed)
    } else if dest.denied_methods.iter().any(|m| m == method) {
        Some(Refusal::MethodDenied)
    } else if dest.deny_http && !arrival.tls {
        Some(Refusal::PlainHttp)
    } else {
        None
    }
}

/// The `Location` of an `httpsOnly` redirect: the Host without its port, then `https_port`
/// unless it is 443 or unset, then the path and query.
pub fn https_location(host: Option<&str>, path_and_query: &str, https_port: Option<u16>) -> String {
    let host = host.unwrap_or("");
    let bare = match host.rfind(':') {
        Some(at) if !host.ends_with(']') && host[at + 1..].bytes().all(|b| b.is_ascii_digit()) => {
            &host[..at]
        }
        _ => host,
    };
    match https_port {
        Some(port) if port != 443 => format!("https://{bare}:{port}{path_and_query}"),
        _ => format!("https://{bare}{path_and_query}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_location_drops_the_plain_port() {
        assert_eq!(
            https_location(Some("example.com:8080"), "/a?b=1", None),
            "https://example.com/a?b=1"
        );
        assert_eq!(
            https_location(Some("example.com"), "/a?b=1", Some(443)),
            "https://example.com/a?b=1"
        );
        assert_eq!(
            https_location(Some("example.com:8080"), "/a?b=1", Some(8443)),
            "https://example.com:8443/a?b=1"
        );
        assert_eq!(https_location(Some("[::1]"), "/", None), "https://[::1]/");
    }
}
