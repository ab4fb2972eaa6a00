//! The service set the registry holds, and how two versions of a service compare. A leaf: the
//! registry, its layer-4 gate, the listener sync and dry runs all build on it.

use std::sync::Arc;

use sluice_core::service::{Params, Service};

/// The service set, keyed by service name: a persistent map, so publishing a version to
/// readers and writing it out is O(1) to hand over however many services there are.
pub type ServiceMap = imbl::OrdMap<String, Arc<Service>>;

/// Two parameter sets route alike: equal but for `distribute`, which only says how a change
/// travelled (a replica holds `distribute=false` where the listener lists `true`).
pub(crate) fn same_routing(a: &Params, b: &Params) -> bool {
    let routed = |p: &Params| {
        p.iter()
            .filter(|(k, _)| k.as_str() != "distribute")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    routed(a) == routed(b)
}

#[cfg(test)]
mod tests {
    use sluice_core::params::params_from_query;

    use super::*;

    #[test]
    fn distribute_is_not_a_difference() {
        let a = params_from_query("serviceName=a&port=1&distribute=true");
        assert!(same_routing(&a, &params_from_query("serviceName=a&port=1")));
        assert!(!same_routing(
            &a,
            &params_from_query("serviceName=a&port=2")
        ));
        assert!(!same_routing(
            &a,
            &params_from_query("serviceName=a&port=1&users=u:p")
        ));
    }
}
