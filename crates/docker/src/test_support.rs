//! Helpers shared by this crate's unit tests: demo service parameters and bounded polling.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::params::ServiceParams;
use crate::params::{build_params, Mode, NotifyLabel, ParamRules};

/// DFSL's default rules: the `com.df.notify` label, no name prefix.
pub(crate) fn rules() -> ParamRules {
    ParamRules {
        notify_label: NotifyLabel::parse("com.df.notify").unwrap(),
        name_prefix: None,
    }
}

/// The parameters of a demo service with these `com.df.*` labels.
pub(crate) fn demo_params(name: &str, labels: &[(&str, &str)], mode: Mode) -> ServiceParams {
    let labels: HashMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    build_params(name, &labels, mode, &rules())
}

/// Polls `done` every 10 ms of real time; panics naming `what` after 5 s.
pub(crate) async fn poll_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
