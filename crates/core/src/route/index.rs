//! The match index: candidates filed by host (exact names, suffixes, label-boundary domains)
//! and, inside each host bucket, by path (byte prefixes, exact paths).

use std::collections::HashMap;

use crate::service::{DomainPattern, PathPattern};

/// The path terms an indexed item is filed under.
#[derive(Clone, Copy)]
pub(super) enum PathSpec<'a> {
    /// Any path (redirectFromDomain).
    Any,
    /// The path patterns (ORed); none means the item never matches and is not filed.
    Patterns(&'a [PathPattern]),
}

/// What [`MatchIndex::build`] files for one rank.
pub(super) struct IndexItem<'a> {
    pub(super) domains: &'a [DomainPattern],
    pub(super) paths: PathSpec<'a>,
}

/// Buckets with at most this many items are scanned instead of indexed by path (tests use
/// a tiny threshold so that the small random tables exercise both forms).
pub(super) const SMALL_BUCKET: usize = if cfg!(test) { 2 } else { 8 };

/// Candidate lookup by host, then path. Items are identified by their rank (position in
/// evaluation order); [`MatchIndex::best`] returns the smallest rank the caller's full check
/// accepts, so the index only has to return a superset of the matching items.
#[derive(Debug, Default)]
pub(super) struct MatchIndex {
    /// `DomainPattern::Exact`, keyed by the host.
    pub(super) exact: HashMap<Box<str>, PathIndex>,
    /// `DomainPattern::Suffix`, keyed by the suffix.
    pub(super) suffix: KeyedByLength<PathIndex>,
    /// `DomainPattern::Domain`, keyed by the domain (matched at label boundaries).
    pub(super) domain: KeyedByLength<PathIndex>,
    /// Items with a regex domain (the regex is checked by the caller).
    pub(super) regex: PathIndex,
    /// Items without domains.
    pub(super) any_host: PathIndex,
}

impl MatchIndex {
    /// Files every item by host, then indexes the larger host buckets by path.
    /// Linear in the number of patterns.
    pub(super) fn build(items: &[IndexItem<'_>]) -> MatchIndex {
        let mut index = MatchIndex::default();
        for (rank, item) in items.iter().enumerate() {
            if let PathSpec::Patterns([]) = item.paths {
                continue;
            }
            if item.domains.is_empty() {
                index.any_host.push(rank);
                continue;
            }
            for domain in item.domains {
                let bucket = match domain {
                    DomainPattern::Exact(s) => index.exact.entry(s.as_str().into()).or_default(),
                    DomainPattern::Suffix(s) => index.suffix.entry(s),
                    DomainPattern::Domain(s) => index.domain.entry(s),
                    DomainPattern::Regex(_) => &mut index.regex,
                };
                bucket.push(rank);
            }
        }
        let buckets = index
            .exact
            .values_mut()
            .chain(index.suffix.map.values_mut())
            .chain(index.domain.map.values_mut())
            .chain([&mut index.regex, &mut index.any_host]);
        for bucket in buckets {
            bucket.finish(items);
        }
        index
    }

    /// The smallest rank among the candidates for this request that `accept` approves.
    /// `host` is the normalised host (`None` when the request has none).
    pub(super) fn best(
        &self,
        host: Option<&str>,
        path: &str,
        path_and_query: &str,
        mut accept: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mut best = None;
        let mut visit =
            |bucket: &PathIndex| bucket.visit(path, path_and_query, &mut best, &mut accept);
        if let Some(host) = host {
            if let Some(bucket) = self.exact.get(host) {
                visit(bucket);
            }
            for len in self.suffix.lengths_up_to(host.len()) {
                if let Some(bucket) = host
                    .get(host.len() - len..)
                    .and_then(|s| self.suffix.get(s))
                {
                    visit(bucket);
                }
            }
            let bytes = host.as_bytes();
            for len in self.domain.lengths_up_to(host.len()) {
                let start = host.len() - len;
                if start > 0 && bytes[start - 1] != b'.' {
                    continue;
                }
                if let Some(bucket) = host.get(start..).and_then(|s| self.domain.get(s)) {
                    visit(bucket);
                }
            }
            visit(&self.regex);
        }
        visit(&self.any_host);
        best
    }
}

/// A map from text to values plus the sorted set of key lengths present, so a lookup of
/// "every key that is a prefix/suffix of X" costs one probe per distinct length.
#[derive(Debug)]
pub(super) struct KeyedByLength<V> {
    pub(super) map: HashMap<Box<str>, V>,
    pub(super) lengths: Vec<usize>,
}

impl<V> Default for KeyedByLength<V> {
    fn default() -> Self {
        KeyedByLength {
            map: HashMap::new(),
            lengths: Vec::new(),
        }
    }
}

impl<V: Default> KeyedByLength<V> {
    pub(super) fn entry(&mut self, key: &str) -> &mut V {
        if let Err(at) = self.lengths.binary_search(&key.len()) {
            self.lengths.insert(at, key.len());
        }
        self.map.entry(key.into()).or_default()
    }
}

impl<V> KeyedByLength<V> {
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub(super) fn lengths_up_to(&self, max: usize) -> impl Iterator<Item = usize> + '_ {
        self.lengths
            .iter()
            .copied()
            .take_while(move |&len| len <= max)
    }
}

/// The candidates of one host bucket: a short list checked one by one, or an index by path.
#[derive(Debug)]
pub(super) enum PathIndex {
    /// Ascending ranks; also the form every bucket has while the index is being filled.
    Small(Vec<usize>),
    /// More than [`SMALL_BUCKET`] items, indexed by path.
    Tree(Box<PathTree>),
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex::Small(Vec::new())
    }
}

impl PathIndex {
    pub(super) fn push(&mut self, rank: usize) {
        if let PathIndex::Small(list) = self {
            push_rank(list, rank);
        }
    }

    /// Turns a bucket that grew past [`SMALL_BUCKET`] into a path index.
    pub(super) fn finish(&mut self, items: &[IndexItem<'_>]) {
        let PathIndex::Small(ranks) = self else {
            return;
        };
        if ranks.len() <= SMALL_BUCKET {
            ranks.shrink_to_fit();
            return;
        }
        let mut tree = PathTree::default();
        for &rank in ranks.iter() {
            tree.insert(rank, items[rank].paths);
        }
        *self = PathIndex::Tree(Box::new(tree));
    }

    pub(super) fn visit(
        &self,
        path: &str,
        path_and_query: &str,
        best: &mut Option<usize>,
        accept: &mut impl FnMut(usize) -> bool,
    ) {
        match self {
            PathIndex::Small(list) => scan(list, best, accept),
            PathIndex::Tree(tree) => tree.visit(path, path_and_query, best, accept),
        }
    }
}

/// Candidate lists (ascending ranks) by path.
#[derive(Debug, Default)]
pub(super) struct PathTree {
    /// Items matching any path.
    pub(super) any: Vec<usize>,
    /// `path_beg`, keyed by the prefix; `path_reg` by its anchored literal prefix.
    pub(super) prefix: KeyedByLength<Vec<usize>>,
    /// `url_beg`, keyed by the prefix of path plus query.
    pub(super) url_prefix: KeyedByLength<Vec<usize>>,
    /// `path`, keyed by the whole path.
    pub(super) exact: HashMap<Box<str>, Vec<usize>>,
    /// Everything else (`path_end`, `path_sub`, `path_dir`, `path_reg` without an anchored
    /// literal prefix), checked one by one.
    pub(super) scan: Vec<usize>,
}

impl PathTree {
    pub(super) fn insert(&mut self, rank: usize, paths: PathSpec<'_>) {
        let patterns = match paths {
            PathSpec::Any => {
                push_rank(&mut self.any, rank);
                return;
            }
            PathSpec::Patterns(p) => p,
        };
        for pattern in patterns {
            let list = match pattern {
                PathPattern::Prefix(s) => self.prefix.entry(s),
                // A `^literal…` expression can only match paths starting with the literal.
                PathPattern::Regex(r) if r.anchored_prefix().is_some() => {
                    self.prefix.entry(r.anchored_prefix().unwrap_or_default())
                }
                PathPattern::UrlPrefix(s) => self.url_prefix.entry(s),
                PathPattern::Exact(s) => self.exact.entry(s.as_str().into()).or_default(),
                PathPattern::Suffix(_)
                | PathPattern::Substring(_)
                | PathPattern::Dir(_)
                | PathPattern::Regex(_)
                | PathPattern::Sni(_) => &mut self.scan,
            };
            push_rank(list, rank);
        }
    }

    pub(super) fn visit(
        &self,
        path: &str,
        path_and_query: &str,
        best: &mut Option<usize>,
        accept: &mut impl FnMut(usize) -> bool,
    ) {
        scan(&self.any, best, accept);
        for (keys, text) in [(&self.prefix, path), (&self.url_prefix, path_and_query)] {
            for len in keys.lengths_up_to(text.len()) {
                if let Some(list) = text.get(..len).and_then(|k| keys.get(k)) {
                    scan(list, best, accept);
                }
            }
        }
        if let Some(list) = self.exact.get(path) {
            scan(list, best, accept);
        }
        scan(&self.scan, best, accept);
    }
}

/// Appends a rank, skipping the repeat when one item files several patterns in one list.
pub(super) fn push_rank(list: &mut Vec<usize>, rank: usize) {
    debug_assert!(list.last().copied().unwrap_or(0) <= rank);
    if list.last() != Some(&rank) {
        list.push(rank);
    }
}

/// Walks an ascending candidate list and lowers `best` to the first accepted rank below it.
pub(super) fn scan(
    list: &[usize],
    best: &mut Option<usize>,
    accept: &mut impl FnMut(usize) -> bool,
) {
    for &rank in list {
        if best.is_some_and(|b| rank >= b) {
            return;
        }
        if accept(rank) {
            *best = Some(rank);
            return;
        }
    }
}
