//! The regular expressions of one layer, matched together.
//!
//! Every distinct `path_reg` path (or exclude) and `hdr_reg(host)` domain of a layer's routes
//! and redirect rules goes into one [`RegexSet`] per subject (path or host) and case
//! sensitivity. A request runs each set at most once, and only when a candidate route has
//! passed every cheaper term (port, plain paths and domains, headers, User-Agent); the
//! candidate then reads its answer from the set's result. So a request costs at most four
//! regex executions per layer however many expressions the table holds, where it used to run
//! every candidate's expressions one by one (each a full search of the path).

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;

use regex::{RegexSet, RegexSetBuilder, SetMatches};

use crate::service::{UserRegex, REGEX_DFA_SIZE_LIMIT};

use super::table::MAX_TABLE_REGEX_SIZE;

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
    /// Compiles the sets of the given expressions (repeats are filed once).
    pub(super) fn build<'a>(regexes: impl IntoIterator<Item = (Subject, &'a UserRegex)>) -> Self {
        let mut patterns: [Vec<&str>; 4] = Default::default();
        let mut ids: [HashMap<Box<str>, usize>; 4] = Default::default();
        for (subject, regex) in regexes {
            let at = slot(subject, regex.case_insensitive());
            let next = patterns[at].len();
            if let std::collections::hash_map::Entry::Vacant(entry) =
                ids[at].entry(regex.as_str().into())
            {
                entry.insert(next);
                patterns[at].push(regex.as_str());
            }
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
