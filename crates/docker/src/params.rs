//! Notification parameters derived from a Swarm service's spec (see `docs/labels.md`).
//!
//! This module owns the rules that turn a Docker service into the query parameters the
//! proxy receives: which services are watched (the notify label), how labels become
//! parameters, and how `serviceName`, `replicas` and `distribute` are filled in. It is pure:
//! it reads already-fetched [`bollard::models::Service`] values and never talks to Docker.
//!
//! Rules, in overwrite order (later steps win):
//! 1. every label `com.df.<rest>` (non-empty `<rest>`) becomes `<rest>=<value>`, except the
//!    notify label's own key (the proxy's own mapping,
//!    [`sluice_core::params::params_from_labels`]);
//! 2. `serviceName` is the Docker service name, with the stack prefix `<stack>_` trimmed
//!    when `com.df.shortName` is `true` (case-insensitive) and the stack label
//!    `com.docker.stack.namespace` is set, and then `DF_SERVICE_NAME_PREFIX` prepended as
//!    `<prefix>_`. DFSL prepends first and trims second, so with a prefix `shortName`
//!    never worked there (its W19); Sluice trims first so both settings take effect;
//! 3. `replicas` is the replicated count for every non-global mode (absent count: `0`);
//!    global services have none, so the proxy treats them as global;
//! 4. `distribute` is `true` unless a `com.df.distribute` label gave a value.
//!
//! Remove parameters are the create parameters without `replicas` (DFSL sends the labels,
//! `serviceName` and `distribute`, which the proxy needs for e.g. `aclName`).

use std::collections::BTreeMap;

use bollard::models::Service;
use sluice_core::params::{params_from_labels, LABEL_PREFIX};

/// Docker's stack label, used for `shortName` trimming.
const STACK_LABEL: &str = "com.docker.stack.namespace";

/// The opt-in label (`DF_NOTIFY_LABEL`), as `key` or `key=value`.
///
/// DFSL lists services by the label's *presence* but, when handling an event,
/// requires the value `true`; so a `com.df.notify=false` service was announced at start-up
/// and dropped on the next event. Sluice applies one rule everywhere:
/// * `DF_NOTIFY_LABEL=key` (the default `com.df.notify`): the service is watched when the
///   label's value, trimmed and case-insensitive, is one of `true`, `t`, `1`, `yes`, `on`.
///   Any other value (`false`, `0`, empty, or the "any value" the old tutorial suggests)
///   means "not watched";
/// * `DF_NOTIFY_LABEL=key=value`: the label must equal `value` exactly (Docker's own
///   `label=key=value` filter semantics).
///
/// In both forms only the key is dropped from the parameters (DFSL dropped it only when
/// `DF_NOTIFY_LABEL` had no `=value`, leaking `notify=true` otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotifyLabel {
    pub(crate) key: String,
    pub(crate) value: Option<String>,
}

/// Whether a service carries the notify label, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LabelVerdict {
    Watched,
    Missing,
    /// The label is present with a value that does not enable notifications.
    NotEnabled(String),
}

impl NotifyLabel {
    /// Parses `key` or `key=value`; `None` when the key is empty.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let (key, value) = match raw.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.to_owned())),
            None => (raw, None),
        };
        (!key.is_empty()).then(|| Self {
            key: key.to_owned(),
            value,
        })
    }

    /// Judges a service's labels.
    pub(crate) fn verdict(
        &self,
        labels: &std::collections::HashMap<String, String>,
    ) -> LabelVerdict {
        let Some(actual) = labels.get(&self.key) else {
            return LabelVerdict::Missing;
        };
        let enabled = match &self.value {
            Some(wanted) => actual == wanted,
            None => is_truthy(actual),
        };
        if enabled {
            LabelVerdict::Watched
        } else {
            LabelVerdict::NotEnabled(actual.clone())
        }
    }
}

/// Values that switch the notify label on (see [`NotifyLabel`]).
pub(crate) fn is_truthy(value: &str) -> bool {
    const TRUTHY: [&str; 5] = ["true", "t", "1", "yes", "on"];
    let value = value.trim();
    TRUTHY.iter().any(|t| value.eq_ignore_ascii_case(t))
}

/// Settings that influence parameter building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamRules {
    pub(crate) notify_label: NotifyLabel,
    /// `DF_SERVICE_NAME_PREFIX`; `None` when unset.
    pub(crate) name_prefix: Option<String>,
}

/// The parameters for one service: what a create and a remove notification carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceParams {
    pub(crate) create: BTreeMap<String, String>,
    pub(crate) remove: BTreeMap<String, String>,
}

impl ServiceParams {
    /// The `serviceName` the proxy keys this service by.
    pub(crate) fn service_name(&self) -> &str {
        self.create.get("serviceName").map_or("", String::as_str)
    }
}

/// The swarm mode of a service, as far as parameters care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Global,
    /// Replicated (or a job mode, which DFSL also reports with a replica count).
    Replicated(i64),
}

/// Why a listed service produced no parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The notify label is present but its value does not enable notifications.
    NotEnabled { value: String },
    /// The notify label is absent (possible only if Docker's filter did not apply).
    NoLabel,
    /// Docker returned a service without a spec or name.
    Malformed,
    /// Another service already produced the same `serviceName`.
    DuplicateName { service_name: String, kept: String },
}

/// Builds the parameters for one service from its name, labels and mode.
pub(crate) fn build_params(
    docker_name: &str,
    labels: &std::collections::HashMap<String, String>,
    mode: Mode,
    rules: &ParamRules,
) -> ServiceParams {
    // The proxy's own label-to-parameter mapping, without the notify label.
    let mut create = params_from_labels(
        labels
            .iter()
            .filter(|(key, _)| **key != rules.notify_label.key)
            .map(|(key, value)| (key.as_str(), value.as_str())),
    );

    let mut name = docker_name;
    let short = labels
        .get(&format!("{LABEL_PREFIX}shortName"))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if short {
        if let Some(stack) = labels.get(STACK_LABEL).filter(|s| !s.is_empty()) {
            name = name.strip_prefix(&format!("{stack}_")).unwrap_or(name);
        }
    }
    let service_name = match &rules.name_prefix {
        Some(prefix) => format!("{prefix}_{name}"),
        None => name.to_owned(),
    };
    create.insert("serviceName".to_owned(), service_name);

    create
        .entry("distribute".to_owned())
        .or_insert_with(|| "true".to_owned());

    let mut remove = create.clone();
    if let Mode::Replicated(replicas) = mode {
        create.insert("replicas".to_owned(), replicas.to_string());
        // A `com.df.replicas` label would be overridden on create; keep remove consistent.
        remove.remove("replicas");
    }
    ServiceParams { create, remove }
}

/// The parameters of a Docker service, or why it has none.
pub(crate) fn service_params(service: &Service, rules: &ParamRules) -> Result<ServiceParams, Skip> {
    let spec = service.spec.as_ref().ok_or(Skip::Malformed)?;
    let name = spec
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(Skip::Malformed)?;
    let empty = std::collections::HashMap::new();
    let labels = spec.labels.as_ref().unwrap_or(&empty);
    match rules.notify_label.verdict(labels) {
        LabelVerdict::Watched => {}
        LabelVerdict::Missing => return Err(Skip::NoLabel),
        LabelVerdict::NotEnabled(value) => return Err(Skip::NotEnabled { value }),
    }
    let mode = match spec.mode.as_ref() {
        Some(mode) if mode.global.is_some() => Mode::Global,
        Some(mode) => Mode::Replicated(
            mode.replicated
                .as_ref()
                .and_then(|r| r.replicas)
                .unwrap_or(0),
        ),
        None => Mode::Replicated(0),
    };
    Ok(build_params(name, labels, mode, rules))
}

/// The desired state computed from one Docker listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Listing {
    /// `serviceName` -> parameters.
    pub(crate) services: BTreeMap<String, ServiceParams>,
    /// Docker service name -> why it was skipped.
    pub(crate) skipped: BTreeMap<String, Skip>,
    /// `serviceName` -> the Docker service's id (for listing its tasks).
    pub(crate) ids: BTreeMap<String, String>,
}

/// Computes the desired state from a list of services. Services are considered in
/// Docker-name order, so when two map to the same `serviceName` (e.g. `a_web` and `b_web`
/// both with `shortName=true`) the first by name is kept and the other reported.
pub(crate) fn listing(services: &[Service], rules: &ParamRules) -> Listing {
    let mut named: Vec<(&str, &Service)> = services
        .iter()
        .map(|s| {
            let name = s
                .spec
                .as_ref()
                .and_then(|spec| spec.name.as_deref())
                .or(s.id.as_deref())
                .unwrap_or("");
            (name, s)
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));

    let mut out = Listing::default();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (docker_name, service) in named {
        match service_params(service, rules) {
            Ok(params) => {
                let service_name = params.service_name().to_owned();
                if let Some(kept) = owners.get(&service_name) {
                    out.skipped.insert(
                        docker_name.to_owned(),
                        Skip::DuplicateName {
                            service_name,
                            kept: kept.clone(),
                        },
                    );
                    continue;
                }
                owners.insert(service_name.clone(), docker_name.to_owned());
                if let Some(id) = service.id.as_deref() {
                    out.ids.insert(service_name.clone(), id.to_owned());
                }
                out.services.insert(service_name, params);
            }
            Err(skip) => {
                out.skipped.insert(docker_name.to_owned(), skip);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated};

    use super::*;
    use crate::query::encode_params;

    fn rules() -> ParamRules {
        ParamRules {
            notify_label: NotifyLabel::parse("com.df.notify").unwrap(),
            name_prefix: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn service(name: &str, pairs: &[(&str, &str)], mode: Mode) -> Service {
        let mode = match mode {
            Mode::Global => ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            },
            Mode::Replicated(n) => ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
                ..Default::default()
            },
        };
        Service {
            id: Some(format!("id-{name}")),
            spec: Some(ServiceSpec {
                name: Some(name.to_owned()),
                labels: Some(labels(pairs)),
                mode: Some(mode),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn label_sets_to_queries() {
        let notify = ("com.df.notify", "true");
        let stack = ("com.docker.stack.namespace", "mystack");
        // (docker name, labels, mode, prefix, expected create query, expected remove query)
        type Row<'a> = (
            &'a str,
            Vec<(&'a str, &'a str)>,
            Mode,
            Option<&'a str>,
            &'a str,
            &'a str,
        );
        let table: Vec<Row> = vec![
            (
                "go-demo",
                vec![
                    notify,
                    ("com.df.servicePath", "/demo"),
                    ("com.df.port", "8080"),
                ],
                Mode::Replicated(1),
                None,
                "distribute=true&port=8080&replicas=1&serviceName=go-demo&servicePath=%2Fdemo",
                "distribute=true&port=8080&serviceName=go-demo&servicePath=%2Fdemo",
            ),
            (
                "go-demo",
                vec![
                    notify,
                    ("com.df.distribute", "false"),
                    ("com.df.port", "8080"),
                ],
                Mode::Global,
                None,
                "distribute=false&port=8080&serviceName=go-demo",
                "distribute=false&port=8080&serviceName=go-demo",
            ),
            (
                "demo",
                vec![
                    notify,
                    ("com.df.serviceName", "other"),
                    ("com.df.replicas", "9"),
                ],
                Mode::Replicated(3),
                None,
                "distribute=true&replicas=3&serviceName=demo",
                "distribute=true&serviceName=demo",
            ),
            (
                "mystack_web",
                vec![notify, stack, ("com.df.shortName", "true")],
                Mode::Replicated(2),
                None,
                "distribute=true&replicas=2&serviceName=web&shortName=true",
                "distribute=true&serviceName=web&shortName=true",
            ),
            (
                "mystack_web",
                vec![notify, stack, ("com.df.shortName", "TRUE")],
                Mode::Replicated(2),
                Some("dev1"),
                "distribute=true&replicas=2&serviceName=dev1_web&shortName=TRUE",
                "distribute=true&serviceName=dev1_web&shortName=TRUE",
            ),
            (
                "mystack_web",
                vec![notify, stack, ("com.df.shortName", "false")],
                Mode::Replicated(1),
                None,
                "distribute=true&replicas=1&serviceName=mystack_web&shortName=false",
                "distribute=true&serviceName=mystack_web&shortName=false",
            ),
            (
                "mystack_web",
                vec![notify, stack],
                Mode::Replicated(1),
                Some("dev1"),
                "distribute=true&replicas=1&serviceName=dev1_mystack_web",
                "distribute=true&serviceName=dev1_mystack_web",
            ),
            (
                "svc",
                vec![
                    notify,
                    ("com.df.", "ignored"),
                    ("com.example.other", "x"),
                    ("com.df.serviceDomain", "*domain.com,a b"),
                ],
                Mode::Replicated(0),
                None,
                "distribute=true&replicas=0&serviceDomain=%2Adomain.com%2Ca+b&serviceName=svc",
                "distribute=true&serviceDomain=%2Adomain.com%2Ca+b&serviceName=svc",
            ),
            (
                "svc",
                vec![("com.df.notify", "yes"), ("com.df.notifyDev", "x")],
                Mode::Replicated(1),
                None,
                "distribute=true&notifyDev=x&replicas=1&serviceName=svc",
                "distribute=true&notifyDev=x&serviceName=svc",
            ),
        ];
        for (name, pairs, mode, prefix, create, remove) in table {
            let mut rules = rules();
            rules.name_prefix = prefix.map(str::to_owned);
            let params = service_params(&service(name, &pairs, mode), &rules)
                .unwrap_or_else(|skip| panic!("{name} {pairs:?} skipped: {skip:?}"));
            assert_eq!(
                encode_params(&params.create),
                create,
                "create for {pairs:?}"
            );
            assert_eq!(
                encode_params(&params.remove),
                remove,
                "remove for {pairs:?}"
            );
        }
    }

    #[test]
    fn notify_label_truthiness() {
        let label = NotifyLabel::parse("com.df.notify").unwrap();
        for value in ["true", "True", " TRUE ", "t", "1", "yes", "On"] {
            assert_eq!(
                label.verdict(&labels(&[("com.df.notify", value)])),
                LabelVerdict::Watched,
                "{value:?}"
            );
        }
        for value in ["false", "0", "", "any", "no"] {
            assert_eq!(
                label.verdict(&labels(&[("com.df.notify", value)])),
                LabelVerdict::NotEnabled(value.to_owned()),
                "{value:?}"
            );
        }
        assert_eq!(label.verdict(&labels(&[])), LabelVerdict::Missing);
    }

    #[test]
    fn notify_label_with_value_matches_exactly_and_drops_only_the_key() {
        let label = NotifyLabel::parse("com.df.notifyDev=enabled").unwrap();
        assert_eq!(label.key, "com.df.notifyDev");
        assert_eq!(
            label.verdict(&labels(&[("com.df.notifyDev", "enabled")])),
            LabelVerdict::Watched
        );
        assert_eq!(
            label.verdict(&labels(&[("com.df.notifyDev", "true")])),
            LabelVerdict::NotEnabled("true".to_owned())
        );
        let rules = ParamRules {
            notify_label: label,
            name_prefix: None,
        };
        let svc = service(
            "a",
            &[("com.df.notifyDev", "enabled"), ("com.df.notify", "true")],
            Mode::Global,
        );
        let params = service_params(&svc, &rules).unwrap();
        assert_eq!(
            encode_params(&params.create),
            "distribute=true&notify=true&serviceName=a"
        );
        assert_eq!(NotifyLabel::parse(""), None);
        assert_eq!(NotifyLabel::parse("=x"), None);
    }

    #[test]
    fn listing_skips_disabled_and_malformed_and_resolves_duplicates() {
        let stack_a = [
            ("com.df.notify", "true"),
            ("com.docker.stack.namespace", "a"),
            ("com.df.shortName", "true"),
        ];
        let stack_b = [
            ("com.df.notify", "true"),
            ("com.docker.stack.namespace", "b"),
            ("com.df.shortName", "true"),
        ];
        let services = vec![
            service("b_web", &stack_b, Mode::Replicated(1)),
            service("a_web", &stack_a, Mode::Replicated(1)),
            service("off", &[("com.df.notify", "false")], Mode::Global),
            service("plain", &[], Mode::Global),
            Service::default(),
        ];
        let listing = listing(&services, &rules());
        assert_eq!(listing.services.keys().collect::<Vec<_>>(), vec!["web"]);
        assert_eq!(
            listing.services["web"]
                .create
                .get("replicas")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            listing.skipped.get("b_web"),
            Some(&Skip::DuplicateName {
                service_name: "web".to_owned(),
                kept: "a_web".to_owned()
            })
        );
        assert_eq!(
            listing.skipped.get("off"),
            Some(&Skip::NotEnabled {
                value: "false".to_owned()
            })
        );
        assert_eq!(listing.skipped.get("plain"), Some(&Skip::NoLabel));
        assert_eq!(listing.skipped.get(""), Some(&Skip::Malformed));
    }

    #[test]
    fn job_modes_and_missing_counts_report_zero_replicas() {
        let mut svc = service("job", &[("com.df.notify", "true")], Mode::Replicated(1));
        if let Some(spec) = svc.spec.as_mut() {
            spec.mode = Some(ServiceSpecMode {
                global_job: Some(HashMap::new()),
                ..Default::default()
            });
        }
        let params = service_params(&svc, &rules()).unwrap();
        assert_eq!(params.create.get("replicas").map(String::as_str), Some("0"));
    }
}
