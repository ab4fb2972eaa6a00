//! `acmeDomain` / `acmeEmail`: a service asks for an ACME certificate (Sluice; see
//! `docs/acme.md`).
//!
//! `acmeDomain` lists the DNS names of one certificate (split on `SEPARATOR`, trimmed,
//! lower-cased). Each must be a plain DNS name: letters, digits, `-` and `.`, labels of 1–63
//! characters, at most 253 in all, at least two labels, no wildcard (HTTP-01 and TLS-ALPN-01
//! cannot prove a wildcard). `acmeEmail` is one contact address (`local@domain`); the global
//! `ACME_EMAIL` is used when the service gives none.

use super::value::Source;
use super::ParamError;
use crate::service::Params;

/// What a service asks of the ACME issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeRequest {
    /// The certificate's DNS names, first one names the certificate file.
    pub domains: Vec<String>,
    /// The service's contact address, if it gave one.
    pub email: Option<String>,
}

/// The service's ACME request, `None` when it has no `acmeDomain`. A bad value is an error
/// naming the parameter and the value.
pub fn acme_request(params: &Params, separator: &str) -> Result<Option<AcmeRequest>, ParamError> {
    let src = Source { params };
    let separator = if separator.is_empty() { "," } else { separator };
    let email = src
        .service("acmeEmail")
        .map(|v| {
            let text = v.value.trim();
            match text.split_once('@') {
                Some((local, domain))
                    if !local.is_empty()
                        && check_domain(domain).is_ok()
                        && !text.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                {
                    Ok(text.to_string())
                }
                _ => Err(v.invalid("not an e-mail address (local@domain)")),
            }
        })
        .transpose()?;
    let Some(value) = src.service("acmeDomain") else {
        return match email {
            Some(_) => Err(ParamError::Invalid {
                param: "acmeEmail".into(),
                value: String::new(),
                reason: "acmeEmail needs acmeDomain".into(),
            }),
            None => Ok(None),
        };
    };
    let mut domains: Vec<String> = Vec::new();
    for item in value.items(separator) {
        let domain = item.to_ascii_lowercase();
        check_domain(&domain).map_err(|reason| value.invalid_item(item, reason))?;
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    if domains.is_empty() {
        return Err(value.invalid("no domain"));
    }
    Ok(Some(AcmeRequest { domains, email }))
}

/// Checks one lower-cased DNS name.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.contains('*') {
        return Err("wildcard names cannot be validated by HTTP-01 or TLS-ALPN-01");
    }
    if domain.len() > 253 {
        return Err("longer than 253 characters");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("not a fully qualified DNS name (needs a dot)");
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return Err("not a DNS name (letters, digits, '-' and '.', labels of 1-63 characters)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::params_from_query;

    fn request(query: &str) -> Result<Option<AcmeRequest>, ParamError> {
        acme_request(&params_from_query(query), ",")
    }

    #[test]
    fn domains_are_listed_lower_cased_once() {
        let r = request("acmeDomain=Example.com,%20www.example.com,example.com&acmeEmail=a@b.org")
            .unwrap()
            .unwrap();
        assert_eq!(r.domains, ["example.com", "www.example.com"]);
        assert_eq!(r.email.as_deref(), Some("a@b.org"));
        assert_eq!(request("serviceName=x").unwrap(), None);
    }

    #[test]
    fn bad_values_name_the_parameter_and_value() {
        for (query, param, value) in [
            ("acmeDomain=*.example.com", "acmeDomain", "*.example.com"),
            ("acmeDomain=a.com,localhost", "acmeDomain", "localhost"),
            ("acmeDomain=a_b.com", "acmeDomain", "a_b.com"),
            ("acmeDomain=a.com:443", "acmeDomain", "a.com:443"),
            ("acmeDomain=a.com&acmeEmail=nobody", "acmeEmail", "nobody"),
            ("acmeEmail=a@b.org", "acmeEmail", ""),
        ] {
            match request(query) {
                Err(ParamError::Invalid {
                    param: p, value: v, ..
                }) => {
                    assert_eq!((p.as_str(), v.as_str()), (param, value), "{query}")
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
