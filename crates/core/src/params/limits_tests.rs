//! The bounds on user-supplied regular expressions, as the parser applies them.

use super::*;
use crate::service::{PathPattern, REGEX_SIZE_LIMIT};

fn parse(query: &str) -> Result<crate::service::Service, ParamError> {
    parse_service(&params_from_query(query), &ParseContext::default())
}

/// (param, value, reason) of an `Invalid` error.
fn invalid(query: &str) -> (String, String, String) {
    match parse(query) {
        Err(ParamError::Invalid {
            param,
            value,
            reason,
        }) => (param, value, reason),
        other => panic!("{query}: expected Invalid, got {other:?}"),
    }
}

/// The reconfigure that stalled the API: 99 `path_reg` destinations of `\w{100}`.
#[test]
fn ninety_nine_huge_path_regexes_are_refused_at_the_first() {
    let mut query = "serviceName=huge&pathType=path_reg".to_string();
    for i in 1..=99 {
        query.push_str(&format!("&servicePath.{i}=%5Cw%7B100%7D&port.{i}=80"));
    }
    let (param, value, reason) = invalid(&query);
    assert_eq!(param, "servicePath.1");
    assert_eq!(value, "\\w{100}");
    assert_eq!(
        reason,
        "the regular expression exceeds the 256 KiB compiled-size limit"
    );
    assert_eq!(REGEX_SIZE_LIMIT, 256 * 1024);
}

#[test]
fn every_kind_of_regex_is_bounded() {
    let huge = "%5Cw%7B100%7D";
    let cases = [
        (
            format!("serviceName=a&port=80&servicePath=/&serviceDomain={huge}&serviceDomainAlgo=hdr_reg(host)"),
            "serviceDomain",
        ),
        (
            format!("serviceName=a&port=80&servicePath=/&reqPathSearchReplace={huge},x"),
            "reqPathSearchReplace",
        ),
        (
            format!("serviceName=a&port=80&servicePath=/&reqPathSearch={huge}"),
            "reqPathSearch",
        ),
        (
            format!("serviceName=a&port=80&pathType=path_reg&servicePath=/&servicePathExclude={huge}"),
            "servicePathExclude",
        ),
        (
            format!("serviceName=a&port=80&srcPort=443&reqMode=sni&pathType=req_ssl_sni -m reg&servicePath={huge}"),
            "servicePath",
        ),
    ];
    for (query, want) in cases {
        let (param, _, reason) = invalid(&query);
        assert_eq!(param, want, "{query}");
        assert!(reason.contains("256 KiB compiled-size limit"), "{reason}");
    }
}

#[test]
fn small_regexes_keep_their_measured_size() {
    let service =
        parse("serviceName=a&port=80&pathType=path_reg&servicePath=^/api/v[0-9]%2B/").unwrap();
    let PathPattern::Regex(r) = &service.destinations[0].paths[0] else {
        panic!("not a regex");
    };
    assert!(r.compiled_size() > 0 && r.compiled_size() < 4096);
    assert_eq!(service.regex_size(), r.compiled_size());
}

#[test]
fn a_service_carries_at_most_32_regexes() {
    let destinations = |n: usize| {
        let mut query = "serviceName=many&pathType=path_reg".to_string();
        for i in 1..=n {
            query.push_str(&format!("&servicePath.{i}=^/d{i}/&port.{i}=80"));
        }
        query
    };
    assert_eq!(MAX_REGEXES_PER_SERVICE, 32);
    assert!(parse(&destinations(32)).is_ok());
    let (param, value, reason) = invalid(&destinations(33));
    assert_eq!(
        (param.as_str(), value.as_str()),
        ("servicePath.33", "^/d33/")
    );
    assert!(
        reason.contains("more than 32 regular expressions"),
        "{reason}"
    );

    // One list counts item by item; the deprecated reqPathSearch counts once, not per
    // destination.
    let list: Vec<String> = (0..32).map(|i| format!("^/l{i}/")).collect();
    let query = format!(
        "serviceName=list&port=80&pathType=path_reg&servicePath={}&reqPathSearch=^/x",
        list.join(",")
    );
    let (param, _, _) = invalid(&query);
    assert_eq!(param, "servicePath");
    let query = format!(
        "serviceName=list&pathType=path_reg&servicePath.1={}&port.1=80&servicePath.2=/&pathType.2=path_beg&port.2=81\
         &reqPathSearch=^/x",
        list[..31].join(",")
    );
    assert!(parse(&query).is_ok(), "{query}");
}

#[test]
fn anchored_literal_prefixes_are_extracted() {
    use crate::service::UserRegex;
    let prefix = |pattern: &str, ci: bool| {
        UserRegex::new(pattern, ci)
            .unwrap()
            .anchored_prefix()
            .map(str::to_string)
    };
    assert_eq!(prefix("^/api/v[0-9]+/", false).as_deref(), Some("/api/v"));
    assert_eq!(prefix(r"\A/x\.y", false).as_deref(), Some("/x.y"));
    assert_eq!(prefix("^/exact$", false).as_deref(), Some("/exact"));
    assert_eq!(prefix("^/é[a-z]", false).as_deref(), Some("/é"));
    // Case-insensitive letters are classes, not literals.
    assert_eq!(prefix("(?i)^/Api", false).as_deref(), Some("/"));
    assert_eq!(prefix("^/api", true).as_deref(), Some("/"));
    // A one-character class is that character.
    assert_eq!(prefix("^[/]a", false).as_deref(), Some("/a"));
    for unanchored in ["/api", "^(/a|/b)", "(?m)^/a", "^", "^a|^b", "x^/a"] {
        assert_eq!(prefix(unanchored, false), None, "{unanchored}");
    }
}
