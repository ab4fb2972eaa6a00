//! Domains: `serviceDomain` and `redirectFromDomain` patterns.

use super::value::Val;
use super::ParamError;
use crate::service::{DomainAlgo, DomainPattern, UserRegex};

pub(super) fn parse_domains(
    v: &Val<'_>,
    algo: DomainAlgo,
    sep: &str,
) -> Result<Vec<DomainPattern>, ParamError> {
    v.items(sep)
        .map(|item| parse_domain(item, algo).map_err(|reason| v.invalid_item(item, reason)))
        .collect()
}

pub(super) fn parse_domain(item: &str, algo: DomainAlgo) -> Result<DomainPattern, String> {
    if let Some(rest) = item.strip_prefix('*') {
        let suffix = plain_domain(rest.trim_start_matches('*'))?;
        return Ok(DomainPattern::Suffix(suffix));
    }
    if algo == DomainAlgo::Reg {
        return UserRegex::new(item, true).map(DomainPattern::Regex);
    }
    let domain = plain_domain(item)?;
    Ok(match algo {
        DomainAlgo::Exact | DomainAlgo::Beg | DomainAlgo::Sni => DomainPattern::Exact(domain),
        DomainAlgo::End => DomainPattern::Suffix(domain),
        DomainAlgo::Dom | DomainAlgo::Reg => DomainPattern::Domain(domain),
    })
}

/// Lower-cases a non-regex domain and rejects text that could never match a port-less host.
pub(super) fn plain_domain(text: &str) -> Result<String, String> {
    if text.contains('*') {
        return Err("a wildcard '*' is only allowed at the start of a domain".to_string());
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err("a domain cannot contain whitespace or '/'".to_string());
    }
    if !text.starts_with('[') && text.contains(':') {
        return Err("hosts are matched without their port; remove the ':port'".to_string());
    }
    Ok(text.trim_end_matches('.').to_ascii_lowercase())
}
