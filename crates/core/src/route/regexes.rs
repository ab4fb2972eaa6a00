//! The regular expressions of one layer, matched together.
//!
//! A path expression anchored with a literal prefix (`^/api/v[0-9]`) is only tried on paths
//! that start with that prefix (the match index files it there too). When at most
//! [`DIRECT_PER_PREFIX`] distinct expressions share its prefix it runs on its own, which is
//! cheapest. Every other path expression and every `hdr_reg(host)` domain of a layer's routes
//! and redirect rules goes into one [`RegexSet`] per subject (path or host) and case
//! sensitivity. A request runs each set at most once, and only when a candidate route has
//! passed every cheaper term (port, plain paths and domains, headers, User-Agent); the
//! candidate then reads its answer from the set's result. So a request that matches nothing
//! runs at most four sets per layer plus the few expressions filed under prefixes of its path,
//! however many expressions the table holds; the router used to run every candidate's
//! expressions one by one.

use std::cell::{Cell, OnceCell};
use std::collections::{HashMap, HashSet};

use regex::{RegexSet, RegexSetBuilder, SetMatches};

use crate::service::{UserRegex, REGEX_DFA_SIZE_LIMIT};

use super::budget::MAX_TABLE_REGEX_SIZE;

/// Path expressions sharing one anchored literal prefix with at most this many others (in
/// total) run on their own instead of through the layer's set.
pub(super) const DIRECT_PER_PREFIX: usize = 4;

/// What an expression is searched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    /// The request path (without query).
    Path,
    /// The normalised host.
    Host,
}

/// One set: the distinct patterns of one subject and case sensitivity.
#[derive(Debug)]
struct Group {
    /// Pattern text → index in `set`.
    ids: HashMap<Box<str>, usize>,
    /// `None` when the set could not be compiled (then each expression runs on its own).
    set: Option<RegexSet>,
}

/// The sets of one layer, in four slots: (path, host) × (case-sensitive, case-insensitive).
#[derive(Debug, Default)]
pub(super) struct LayerRegexes {
    groups: [Option<Group>; 4],
}

fn slot(subject: Subject, case_insensitive: bool) -> usize {
    let subject = match subject {
        Subject::Path => 0,
        Subject::Host => 2,
    };
    subject + usize::from(case_insensitive)
}

impl LayerRegexes {
    /// Compiles the sets of the given expressions (repeats are filed once). Path expressions
    /// whose anchored prefix at most [`DIRECT_PER_PREFIX`] of them share are left out: they
    /// run on their own.
    pub(super) fn build<'a>(regexes: impl IntoIterator<Item = (Subject, &'a UserRegex)>) -> Self {
        let mut distinct: Vec<(usize, &UserRegex)> = Vec::new();
        let mut seen: [HashSet<&str>; 4] = Default::default();
        let mut per_prefix: HashMap<&str, usize> = HashMap::new();
        for (subject, regex) in regexes {
            let at = slot(subject, regex.case_insensitive());
            if seen[at].insert(regex.as_str()) {
                if let (Subject::Path, Some(prefix)) = (subject, regex.anchored_prefix()) {
                    *per_prefix.entry(prefix).or_default() += 1;
                }
                distinct.push((at, regex));
            }
        }
        let mut patterns: [Vec<&str>; 4] = Default::default();
        let mut ids: [HashMap<Box<str>, usize>; 4] = Default::default();
        for (at, regex) in distinct {
            let runs_alone = at < 2
                && regex
                    .anchored_prefix()
                    .and_then(|prefix| per_prefix.get(prefix))
                    .is_some_and(|&n| n <= DIRECT_PER_PREFIX);
            if runs_alone {
                continue;
            }
            ids[at].insert(regex.as_str().into(), patterns[at].len());
            patterns[at].push(regex.as_str());
        }
        let mut groups: [Option<Group>; 4] = Default::default();
        for (at, (patterns, ids)) in patterns.into_iter().zip(ids).enumerate() {
            if patterns.is_empty() {
                continue;
            }
            // Every pattern compiled alone within its own limit, and the table's total is
            // bounded, so this only fails if the combined program is larger than the sum;
            // the expressions then run one by one.
            let set = RegexSetBuilder::new(patterns)
                .case_insensitive(at % 2 == 1)
                .size_limit(2 * MAX_TABLE_REGEX_SIZE)
                .dfa_size_limit(4 * REGEX_DFA_SIZE_LIMIT)
                .build()
                .ok();
            groups[at] = Some(Group { ids, set });
        }
        LayerRegexes { groups }
    }
}

/// One request's view of a layer's sets: each set runs at most once, on first need.
pub(super) struct RegexHits<'l> {
    regexes: Option<&'l LayerRegexes>,
    path: &'l str,
    host: Option<&'l str>,
    results: [OnceCell<SetMatches>; 4],
}

impl<'l> RegexHits<'l> {
    /// Answers from `regexes` for a request with this path and (normalised) host.
    pub(super) fn new(regexes: &'l LayerRegexes, path: &'l str, host: Option<&'l str>) -> Self {
        RegexHits {
            regexes: Some(regexes),
            path,
            host,
            results: Default::default(),
        }
    }

    /// Runs every expression on its own (for a route checked outside its table).
    pub(super) fn direct(path: &'l str, host: Option<&'l str>) -> Self {
        RegexHits {
            regexes: None,
            path,
            host,
            results: Default::default(),
        }
    }

    /// True when `regex` finds a match in the request's path or host.
    pub(super) fn is_match(&self, subject: Subject, regex: &UserRegex) -> bool {
        let text = match subject {
            Subject::Path => self.path,
            Subject::Host => match self.host {
                Some(host) => host,
                None => return false,
            },
        };
        if let (Subject::Path, Some(prefix)) = (subject, regex.anchored_prefix()) {
            if !text.starts_with(prefix) {
                return false;
            }
        }
        let at = slot(subject, regex.case_insensitive());
        let group = self.regexes.and_then(|r| r.groups[at].as_ref());
        if let Some(Group {
            ids,
            set: Some(set),
        }) = group
        {
            if let Some(&id) = ids.get(regex.as_str()) {
                return self.results[at]
                    .get_or_init(|| {
                        count_run();
                        set.matches(text)
                    })
                    .matched(id);
            }
        }
        count_run();
        regex.is_match(text)
    }
}

thread_local! {
    /// Regex executions on this thread (each set or single expression search counts one).
    static RUNS: Cell<u64> = const { Cell::new(0) };
}

fn count_run() {
    RUNS.with(|runs| runs.set(runs.get() + 1));
}

/// Regex executions by the router on this thread so far (a measure for tests and benchmarks:
/// the router promises it does not grow with the number of expressions in the table).
pub fn regex_runs() -> u64 {
    RUNS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderMap;

    use super::super::budget::TABLE_REGEX_LIMIT;
    use super::super::{Decision, RequestFacts, RouteTable};
    use super::regex_runs;
    use crate::params::{params_from_query, parse_service, ParseContext};
    use crate::service::Service;

    fn svc(query: &str) -> Arc<Service> {
        Arc::new(parse_service(&params_from_query(query), &ParseContext::default()).unwrap())
    }

    /// `n` services, each on one `path_reg` path; every other one also on an `hdr_reg` host.
    /// The paths are anchored (`^/s1/…`, filed under their literal prefix) or not (`/s1/…`,
    /// searched anywhere, so never filed by prefix).
    fn regex_services(n: usize, prefix: &str, anchored: bool) -> Vec<Arc<Service>> {
        let anchor = if anchored { "^" } else { "" };
        (0..n)
            .map(|i| {
                let host = if i % 2 == 0 {
                    format!("&serviceDomain=^h{i}\\.example\\.&serviceDomainAlgo=hdr_reg(host)")
                } else {
                    String::new()
                };
                svc(&format!(
                    "serviceName={prefix}{i}&port=80&pathType=path_reg\
                     &servicePath={anchor}/{prefix}{i}/[a-z]%2B/\\d%2B${host}"
                ))
            })
            .collect()
    }

    struct Outcome {
        routed: Option<String>,
        runs: u64,
    }

    fn decide(table: &RouteTable, host: &str, path: &str, port: u16) -> Outcome {
        let headers = HeaderMap::new();
        let facts = RequestFacts {
            host: Some(host),
            path,
            path_and_query: path,
            local_port: port,
            headers: &headers,
        };
        let before = regex_runs();
        let routed = match table.decide(&facts) {
            Decision::Forward(route) => Some(route.service.name.clone()),
            _ => None,
        };
        Outcome {
            routed,
            runs: regex_runs() - before,
        }
    }

    /// What the router did before the sets: every candidate's expressions, one by one.
    fn one_by_one_runs(table: &RouteTable, host: &str, path: &str) -> u64 {
        let headers = HeaderMap::new();
        let facts = RequestFacts {
            host: Some(host),
            path,
            path_and_query: path,
            local_port: 80,
            headers: &headers,
        };
        let before = regex_runs();
        let matched = table.routes().filter(|r| r.matches(&facts)).count();
        assert_eq!(matched, 0);
        regex_runs() - before
    }

    #[test]
    fn an_unmatched_request_runs_no_anchored_regex() {
        let services = regex_services(100, "s", true);
        let table = RouteTable::build(&services[..90]).update(&services[90..], &[]);
        let unmatched = decide(&table, "h4.example.com", "/nothing/here", 80);
        assert_eq!((unmatched.routed, unmatched.runs), (None, 0));
        // Sharing the literal prefix of one route: only that route's expression (via its set).
        let near = decide(&table, "h4.example.com", "/s4/x", 80);
        assert_eq!((near.routed, near.runs), (None, 1));
        let matched = decide(&table, "h4.example.com", "/s4/abc/12", 80);
        assert_eq!(matched.routed.as_deref(), Some("s4"));
        assert!(matched.runs <= 2, "{} regex runs", matched.runs);
    }

    #[test]
    fn expressions_sharing_a_prefix_run_as_one_set() {
        let services: Vec<Arc<Service>> = (0..60)
            .map(|i| {
                svc(&format!(
                    "serviceName=sh{i}&port=80&pathType=path_reg\
                     &servicePath=^/shared/[a-z]%2B{i}$"
                ))
            })
            .collect();
        let table = RouteTable::build(&services[..50]).update(&services[50..], &[]);
        let unmatched = decide(&table, "x", "/shared/nothing", 80);
        assert_eq!(unmatched.routed, None);
        assert!(unmatched.runs <= 2, "{} regex runs", unmatched.runs);
        let matched = decide(&table, "x", "/shared/abc7", 80);
        assert_eq!(matched.routed.as_deref(), Some("sh7"));
        assert!(matched.runs <= 2, "{} regex runs", matched.runs);
        assert_eq!(decide(&table, "x", "/elsewhere", 80).runs, 0);
    }

    #[test]
    fn an_unmatched_request_runs_each_set_once_however_many_regexes() {
        let services = regex_services(100, "s", false);
        // A base layer plus a delta layer of changed services.
        let table = RouteTable::build(&services[..90]).update(&services[90..], &[]);
        let unmatched = decide(&table, "h4.example.com", "/nothing/here", 80);
        assert_eq!(unmatched.routed, None);
        // Per layer: the path set, and the host set (a host regex route has a path regex
        // that did not match, so it is never reached).
        assert!(unmatched.runs <= 4, "{} regex runs", unmatched.runs);
        let direct = one_by_one_runs(&table, "h4.example.com", "/nothing/here");
        assert_eq!(direct, 100, "regex runs one by one");

        let matched = decide(&table, "h4.example.com", "/s4/abc/12", 80);
        assert_eq!(matched.routed.as_deref(), Some("s4"));
        assert!(matched.runs <= 4, "{} regex runs", matched.runs);
        let delta = decide(&table, "h94.example.com", "/s94/abc/12", 80);
        assert_eq!(delta.routed.as_deref(), Some("s94"));
        assert!(delta.runs <= 4, "{} regex runs", delta.runs);
        // The host regex is part of the route: a wrong host does not match.
        let wrong_host = decide(&table, "other.example.com", "/s4/abc/12", 80);
        assert_eq!(wrong_host.routed, None);
    }

    #[test]
    fn cheaper_terms_are_checked_before_any_regex() {
        let mut services: Vec<Arc<Service>> = (0..50)
            .map(|i| {
                svc(&format!(
                    "serviceName=p{i}&port=80&srcPort=8081&pathType=path_reg&servicePath=^/p{i}/"
                ))
            })
            .collect();
        services.push(svc("serviceName=plain&port=80&servicePath=/plain"));
        let table = RouteTable::build(&services);
        // Arriving on another port: every regex route fails on its port first.
        let other_port = decide(&table, "example.com", "/p3/x", 80);
        assert_eq!((other_port.routed, other_port.runs), (None, 0));
        // A plain route that matches first needs no regex at all.
        let plain = decide(&table, "example.com", "/plain", 80);
        assert_eq!((plain.routed.as_deref(), plain.runs), (Some("plain"), 0));
        let on_port = decide(&table, "example.com", "/p3/x", 8081);
        assert_eq!((on_port.routed.as_deref(), on_port.runs), (Some("p3"), 1));
    }

    #[test]
    fn excludes_and_redirects_use_the_sets_too() {
        let services = vec![
            svc("serviceName=a&port=80&pathType=path_reg&servicePath=^/a/\
                 &servicePathExclude=^/a/private/"),
            svc("serviceName=r&port=80&pathType=path_reg&servicePath=^/r/\
                 &serviceDomain=^r\\.&serviceDomainAlgo=hdr_reg(host)&redirectWhenHttpProto=true"),
        ];
        let table = RouteTable::build(&services);
        assert_eq!(
            decide(&table, "x", "/a/public", 80).routed.as_deref(),
            Some("a")
        );
        assert_eq!(decide(&table, "x", "/a/private/k", 80).routed, None);
        let headers = {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-proto", http::HeaderValue::from_static("http"));
            h
        };
        let facts = RequestFacts {
            host: Some("r.example.com"),
            path: "/r/x",
            path_and_query: "/r/x",
            local_port: 80,
            headers: &headers,
        };
        let before = regex_runs();
        assert!(matches!(
            table.decide(&facts),
            Decision::Redirect { status: 302, .. }
        ));
        assert!(regex_runs() - before <= 2);
    }

    #[test]
    fn the_table_refuses_a_service_past_its_regex_budget() {
        // About 88 KiB compiled each (Unicode classes are large).
        let big = |i: usize| {
            svc(&format!(
                "serviceName=big{i}&port=80&pathType=path_reg&servicePath=^/b{i}/\\w{{5}}"
            ))
        };
        let mut table = RouteTable::default();
        let mut accepted = 0;
        let refused = loop {
            let service = big(accepted);
            match table.check_regex_budget(&service) {
                Ok(()) => {
                    table = table.update(&[service], &[]);
                    accepted += 1;
                }
                Err(error) => break error,
            }
            assert!(accepted < 100, "the budget never ran out");
        };
        assert!(table.regex_size() <= TABLE_REGEX_LIMIT);
        assert!(accepted >= 5, "only {accepted} accepted");
        assert_eq!(refused.service, format!("big{accepted}"));
        let message = refused.to_string();
        assert!(message.contains("serviceName"), "{message}");
        assert!(message.contains("1 MiB limit"), "{message}");
        // Replacing a service by one of the same size, or removing regexes, is accepted.
        table.check_regex_budget(&big(0)).unwrap();
        table
            .check_regex_budget(&svc("serviceName=big1&port=80&servicePath=/b1"))
            .unwrap();
        // A table rebuilt in full counts the same.
        let services: Vec<Arc<Service>> = (0..accepted).map(big).collect();
        assert_eq!(
            RouteTable::build(&services).regex_size(),
            table.regex_size()
        );
    }
}
