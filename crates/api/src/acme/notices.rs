//! What the dashboard shows about ACME certificates ([`sluice_proxy::acme_notices`]), compiled
//! once per tick of the ACME task.
//!
//! Every replica serves the same certificates, so each one reads the validity from its own
//! certificate store. Only the replica that orders knows the failures, the last error and when
//! it retries: it reports them itself ([`Reported`], also the certificates of
//! `GET /v1/docker-flow-proxy/acme`), and the other replicas fetch them from it once per tick,
//! so the dashboard of whichever replica a user reaches shows a failing certificate.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use sluice_proxy::acme_notices::{error_text, AcmeNotices, CertNotice, CertState, Orderer};
use sluice_proxy::certs::CertInfo;

use super::schedule;
use crate::certs::rfc3339;
use crate::ApiState;

/// What the replica that orders reports of one certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reported {
    /// The certificate's name (`acme-<first domain>`).
    pub name: String,
    /// The names it covers.
    pub domains: Vec<String>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it is renewed (RFC 3339), once one is stored.
    pub renew_at: Option<String>,
    /// When a failed attempt is retried (RFC 3339).
    #[serde(default)]
    pub retry_at: Option<String>,
    /// An order is in progress.
    #[serde(default)]
    pub ordering: bool,
}

/// The body of `GET /v1/docker-flow-proxy/acme` as another replica reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatusBody {
    holder: bool,
    certificates: Vec<Reported>,
}

/// The certificates the replica at `ip` reports, when it answers and says it orders.
pub async fn from_holder(state: &ApiState, ip: IpAddr) -> Option<Vec<Reported>> {
    let url = format!(
        "http://{}/v1/docker-flow-proxy/acme",
        SocketAddr::new(ip, state.settings.port)
    );
    let body = match state.peer_client.get(&url).await {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!(%error, "ACME state of the replica that orders not read");
            return None;
        }
    };
    let status: StatusBody = serde_json::from_slice(&body).ok()?;
    status.holder.then_some(status.certificates)
}

/// The notices for the certificates `wanted` (name → domains), given what this replica
/// stores (`stored`), who orders, and what that replica reports (`None`: nothing known).
pub fn compile(
    wanted: &BTreeMap<String, Vec<String>>,
    stored: &[CertInfo],
    orderer: Orderer,
    reported: Option<&[Reported]>,
    now: i64,
) -> AcmeNotices {
    let certificates = wanted
        .iter()
        .map(|(name, domains)| {
            let cert = stored.iter().find(|c| &c.name == name);
            let report = reported.and_then(|r| r.iter().find(|r| &r.name == name));
            let covers = cert.is_some_and(|c| {
                c.not_after > now && domains.iter().all(|d| c.dns_names.contains(d))
            });
            let state = match report {
                Some(r) if r.ordering => CertState::Ordering,
                Some(r) if r.last_error.is_some() => CertState::Failing,
                _ if covers => CertState::Valid,
                _ => CertState::Pending,
            };
            let next_attempt = match state {
                CertState::Failing => report.and_then(|r| r.retry_at.clone()),
                CertState::Valid => {
                    cert.map(|c| rfc3339(schedule::renew_at(name, c.not_before, c.not_after)))
                }
                CertState::Ordering | CertState::Pending => None,
            };
            CertNotice {
                name: name.clone(),
                domains: domains.clone(),
                state,
                valid_until: cert.map(|c| rfc3339(c.not_after)),
                failures: report.map_or(0, |r| r.failures),
                last_error: report.and_then(|r| r.last_error.as_deref()).map(error_text),
                next_attempt,
            }
        })
        .collect();
    AcmeNotices {
        orderer,
        certificates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_proxy::certs::CertOrigin;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn stored(name: &str, names: &[&str], not_after: i64) -> CertInfo {
        CertInfo {
            name: name.into(),
            origin: CertOrigin::CertsDir,
            dir: "/certs".into(),
            subject: String::new(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            not_before: NOW - 86_400,
            not_after,
            chain_pem: String::new(),
            default: false,
        }
    }

    fn wanted(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn the_state_follows_the_store_and_the_orderers_report() {
        let wanted = wanted(&[
            ("acme-a.test", &["a.test"]),
            ("acme-b.test", &["b.test"]),
            ("acme-c.test", &["c.test", "www.c.test"]),
            ("acme-d.test", &["d.test"]),
        ]);
        let certs = [
            stored("acme-a.test", &["a.test"], NOW + 89 * 86_400),
            stored("acme-b.test", &["b.test"], NOW + 86_400),
            // Lacks www.c.test: not valid for what is asked.
            stored("acme-c.test", &["c.test"], NOW + 86_400),
        ];
        let reported = [
            Reported {
                name: "acme-b.test".into(),
                failures: 2,
                last_error: Some("ACME: connection refused\nby the CA".into()),
                retry_at: Some("2026-01-01T00:00:40Z".into()),
                ..Reported::default()
            },
            Reported {
                name: "acme-d.test".into(),
                ordering: true,
                ..Reported::default()
            },
        ];
        let n = compile(
            &wanted,
            &certs,
            Orderer::Peer("10.0.1.5".into()),
            Some(&reported),
            NOW,
        );
        assert_eq!(n.orderer, Orderer::Peer("10.0.1.5".into()));
        let by_name = |name: &str| n.certificates.iter().find(|c| c.name == name).unwrap();
        let a = by_name("acme-a.test");
        assert_eq!(a.state, CertState::Valid);
        assert_eq!(a.valid_until.as_deref(), Some("2026-03-31T00:00:00Z"));
        // Renewed at about two thirds of its 90 days: around day 60 after issuance.
        let renew = a.next_attempt.as_deref().unwrap();
        assert!(
            renew.starts_with("2026-02-2") || renew.starts_with("2026-03-0"),
            "{renew}"
        );
        let b = by_name("acme-b.test");
        assert_eq!(b.state, CertState::Failing);
        assert_eq!(b.failures, 2);
        assert_eq!(
            b.last_error.as_deref(),
            Some("ACME: connection refused by the CA")
        );
        assert_eq!(b.next_attempt.as_deref(), Some("2026-01-01T00:00:40Z"));
        assert_eq!(b.valid_until.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert_eq!(by_name("acme-c.test").state, CertState::Pending);
        let d = by_name("acme-d.test");
        assert_eq!(d.state, CertState::Ordering);
        assert_eq!(
            (d.valid_until.as_deref(), d.next_attempt.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn without_a_report_a_replica_shows_what_it_stores() {
        let wanted = wanted(&[("acme-a.test", &["a.test"]), ("acme-e.test", &["e.test"])]);
        let certs = [
            stored("acme-a.test", &["a.test"], NOW + 86_400),
            // Expired: not valid any more.
            stored("acme-e.test", &["e.test"], NOW - 1),
        ];
        let n = compile(&wanted, &certs, Orderer::Unknown, None, NOW);
        let states: Vec<CertState> = n.certificates.iter().map(|c| c.state).collect();
        assert_eq!(states, [CertState::Valid, CertState::Pending]);
        assert!(n.certificates.iter().all(|c| c.last_error.is_none()));
    }

    #[test]
    fn the_status_body_reads_back() {
        let json = r#"{"Status":"OK","Holder":true,"Certificates":[{"Name":"acme-a.test",
            "Domains":["a.test"],"Failures":1,"LastError":"ACME: x","RenewAt":null,
            "RetryAt":"2026-01-01T00:00:10Z","Ordering":false}]}"#;
        let body: StatusBody = serde_json::from_str(json).unwrap();
        assert!(body.holder);
        assert_eq!(body.certificates[0].failures, 1);
        assert_eq!(
            body.certificates[0].retry_at.as_deref(),
            Some("2026-01-01T00:00:10Z")
        );
    }
}
