//! The shared evaluation: `decide_traced` and `explain` agree with `decide`, and each route's
//! verdict names the first term it failed.

use super::*;
use crate::route::{refusal, Arrival, Mismatch, Refusal, Trace, Verdict};

fn verdicts(table: &RouteTable, req: &Req) -> Vec<(String, Verdict)> {
    table
        .explain(&req.facts())
        .routes
        .iter()
        .map(|(r, v)| (r.service.name.clone(), *v))
        .collect()
}

fn verdict_of(table: &RouteTable, req: &Req, name: &str) -> Verdict {
    verdicts(table, req)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap()
}

#[test]
fn each_route_names_the_first_term_it_failed() {
    let mut ported = dest(vec![beg("/p")]);
    ported.src_port = Some(8080);
    let mut excluded = dest(vec![beg("/x")]);
    excluded.path_excludes = vec![beg("/x/private")];
    let mut domained = dest(vec![beg("/")]);
    domained.domains = vec![host("a.example")];
    let mut headed = dest(vec![beg("/h")]);
    headed.service_headers = vec![("X-Version".into(), "2".into())];
    let mut agent = dest(vec![beg("/ua")]);
    agent.user_agents = vec!["Mobile".into()];
    let mut regex = dest(vec![PathPattern::Regex(
        UserRegex::new("^/api/v[0-9]+$", false).unwrap(),
    )]);
    regex.path_type = PathType::Reg;
    let (_, t) = table(vec![
        service("ported", vec![ported]),
        service("excluded", vec![excluded]),
        service("domained", vec![domained]),
        service("headed", vec![headed]),
        service("agent", vec![agent]),
        service("regex", vec![regex]),
        simple("catch", &["/x/private"]),
    ]);
    let req = Req::at("b.example", "/x/private/1").header("user-agent", "curl");
    let all = verdicts(&t, &req);
    let expected = [
        ("ported", Verdict::Fails(Mismatch::Port)),
        ("excluded", Verdict::Fails(Mismatch::PathExcluded)),
        ("domained", Verdict::Fails(Mismatch::Domain)),
        ("headed", Verdict::Fails(Mismatch::Path)),
        ("agent", Verdict::Fails(Mismatch::Path)),
        ("regex", Verdict::Fails(Mismatch::Path)),
        ("catch", Verdict::Chosen),
    ];
    for (name, verdict) in expected {
        assert!(
            all.contains(&(name.to_string(), verdict)),
            "{name}: {verdict:?} not in {all:?}"
        );
    }
    let at = |path: &str| Req::at("a.example", path).header("user-agent", "curl");
    assert_eq!(
        verdict_of(&t, &at("/h").port(8080), "headed"),
        Verdict::Fails(Mismatch::Header(0))
    );
    assert_eq!(
        verdict_of(&t, &at("/ua"), "agent"),
        Verdict::Fails(Mismatch::UserAgent)
    );
    assert_eq!(
        verdict_of(&t, &Req::new(None, "/"), "domained"),
        Verdict::Fails(Mismatch::NoHost)
    );
    assert_eq!(verdict_of(&t, &at("/api/v2"), "regex"), Verdict::Chosen);
    assert_eq!(
        verdict_of(&t, &at("/api/vx"), "regex"),
        Verdict::Fails(Mismatch::Path)
    );
    // A route that matches but comes after the winner (root `/` services go last).
    let req = Req::at("a.example", "/x/private/1").header("user-agent", "curl");
    assert_eq!(verdict_of(&t, &req, "catch"), Verdict::Chosen);
    assert_eq!(verdict_of(&t, &req, "domained"), Verdict::Matches);
}

#[test]
fn the_default_backend_and_redirects_are_reported() {
    let mut fallback = simple("fallback", &["/fallback"]);
    fallback.is_default_backend = true;
    let mut redirecting = dest(vec![beg("/")]);
    redirecting.domains = vec![host("new.example")];
    redirecting.redirect_from_domains = vec![host("old.example")];
    let (_, t) = table(vec![
        fallback,
        service("moved", vec![redirecting]),
        simple("app", &["/app"]),
    ]);
    let e = t.explain(&Req::at("x.example", "/nothing").facts());
    assert!(e.by_default, "{e:?}");
    assert!(matches!(e.decision, Decision::Forward(r) if r.service.name == "fallback"));
    let e = t.explain(&Req::at("x.example", "/app/1").facts());
    assert!(!e.by_default);
    let e = t.explain(&Req::at("old.example", "/app").facts());
    assert!(matches!(e.decision, Decision::Redirect { status: 301, .. }));
    assert_eq!(
        e.redirect,
        Some(("moved".to_string(), 0, "redirectFromDomain"))
    );
}

#[test]
fn decide_traced_hears_only_the_indexed_candidates() {
    #[derive(Default)]
    struct Count(Vec<(String, Result<(), Mismatch>)>);
    impl Trace for Count {
        fn candidate(&mut self, route: &Route, outcome: Result<(), Mismatch>) {
            self.0.push((route.service.name.clone(), outcome));
        }
    }
    let mut other = dest(vec![beg("/a")]);
    other.domains = vec![host("other.example")];
    let (_, t) = table(vec![service("other", vec![other]), simple("a", &["/a"])]);
    let mut trace = Count::default();
    let req = Req::at("a.example", "/a");
    let decision = t.decide_traced(&req.facts(), &mut trace);
    assert!(matches!(decision, Decision::Forward(r) if r.service.name == "a"));
    // The index never offers the other host's route; explain still checks it.
    assert_eq!(trace.0, vec![("a".to_string(), Ok(()))]);
    let e = t.explain(&req.facts());
    assert_eq!(e.checked, 1);
    assert_eq!(
        verdict_of(&t, &req, "other"),
        Verdict::Fails(Mismatch::Domain)
    );
}

#[test]
fn refusal_applies_https_only_first_then_the_deny_rules_in_order() {
    let get = |tls| Arrival {
        method: "GET",
        tls,
        client_cert_verified: false,
    };
    let mut d = dest(vec![beg("/")]);
    assert_eq!(refusal(&d, get(false)), None);
    d.deny_http = true;
    assert_eq!(refusal(&d, get(false)), Some(Refusal::PlainHttp));
    assert_eq!(refusal(&d, get(true)), None);
    d.denied_methods = vec!["GET".into()];
    assert_eq!(refusal(&d, get(true)), Some(Refusal::MethodDenied));
    d.allowed_methods = vec!["POST".into()];
    assert_eq!(refusal(&d, get(true)), Some(Refusal::MethodNotAllowed));
    d.verify_client_ssl = true;
    assert_eq!(refusal(&d, get(true)), Some(Refusal::ClientCertificate));
    let verified = Arrival {
        method: "POST",
        tls: true,
        client_cert_verified: true,
    };
    assert_eq!(refusal(&d, verified), None);
    d.https_only = true;
    let r = refusal(&d, get(false)).unwrap();
    assert_eq!((r.parameter(), r.status()), ("httpsOnly", 302));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Explain's decision is decide's; the chosen route is the only one marked chosen; a
    /// failing verdict is the route's own check; no route before a non-default choice matches.
    #[test]
    fn explain_agrees_with_decide_and_check(
        specs in proptest::collection::vec(svc_spec(), 1..7),
        reqs in proptest::collection::vec(req_spec(), 1..16),
    ) {
        let services: Vec<Arc<Service>> =
            specs.iter().enumerate().map(|(i, s)| Arc::new(to_service(i, s))).collect();
        let t = RouteTable::build(&services);
        for req in &reqs {
            let facts = req.facts();
            let e = t.explain(&facts);
            let direct = outcome(&t, req);
            let explained = match &e.decision {
                Decision::Forward(route) => forward(route),
                Decision::Redirect { status, location } => Outcome::Redirect(*status, location.clone()),
                Decision::NoRoute => Outcome::NoRoute,
            };
            prop_assert_eq!(&explained, &direct);
            let mut seen_chosen = false;
            for (route, verdict) in &e.routes {
                match verdict {
                    Verdict::Chosen => {
                        let chosen_here = matches!(direct, Outcome::Forward { order, .. } if order == route.order);
                        prop_assert!(chosen_here, "chosen {:?}", route.order);
                        seen_chosen = true;
                    }
                    Verdict::Fails(m) => prop_assert_eq!(route.check(&facts), Err(*m)),
                    Verdict::Matches => {
                        prop_assert!(route.check(&facts).is_ok());
                        let after_choice = seen_chosen || !matches!(direct, Outcome::Forward { .. });
                        prop_assert!(after_choice, "route {:?} matches before the choice", route.order);
                    }
                }
            }
            prop_assert_eq!(seen_chosen, matches!(direct, Outcome::Forward { .. }));
        }
    }
}
