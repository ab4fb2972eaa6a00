//! One order, with `instant-acme`: create it, publish each challenge on every replica, tell
//! the CA it is ready, wait for validation, finalize with a fresh key and fetch the chain.

use std::net::IpAddr;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use sluice_core::settings::AcmeChallenge;
use sluice_proxy::challenge::Challenge;

use super::{Acme, AcmeError};
use crate::ApiState;

/// How long the CA may take to validate or to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// A new certificate: chain and private key, PEM.
pub(super) struct Issued {
    pub(super) chain_pem: String,
    pub(super) key_pem: String,
}

/// Orders a certificate for `domains`. Challenges are withdrawn on every replica whatever the
/// outcome.
pub(super) async fn issue(
    acme: &Acme,
    state: &ApiState,
    account: &Account,
    peers: &[IpAddr],
    domains: &[String],
) -> Result<Issued, AcmeError> {
    let mut published = Vec::new();
    let outcome = run(acme, state, account, peers, domains, &mut published).await;
    for challenge in &published {
        acme.withdraw(state, peers, &challenge.token).await;
    }
    outcome
}

async fn run(
    acme: &Acme,
    state: &ApiState,
    account: &Account,
    peers: &[IpAddr],
    domains: &[String],
    published: &mut Vec<Challenge>,
) -> Result<Issued, AcmeError> {
    let kind = match state.settings.acme.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let identifiers: Vec<Identifier> = domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(AcmeError::Client)?;
    acme.metrics.order_created();
    tracing::info!(domains = %domains.join(","), order = %order.url(), "ACME order created");
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(AcmeError::Client)?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(AcmeError::Order(format!("authorization is {other:?}"))),
        }
        let domain = authorization.identifier().to_string();
        let mut handle = authorization.challenge(kind.clone()).ok_or_else(|| {
            AcmeError::Order(format!("the CA offers no {kind:?} challenge for {domain}"))
        })?;
        let challenge = Challenge {
            domain,
            token: handle.token.clone(),
            key_authorization: handle.key_authorization().as_str().to_string(),
        };
        acme.spread(state, peers, &challenge).await?;
        published.push(challenge);
        handle.set_ready().await.map_err(AcmeError::Client)?;
    }
    let status = order.poll_ready(&POLL).await.map_err(AcmeError::Client)?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order(format!(
            "the order is {status:?} after validation"
        )));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Order(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())
        .map_err(|e| AcmeError::Order(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Order(e.to_string()))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(AcmeError::Client)?;
    let chain_pem = order
        .poll_certificate(&POLL)
        .await
        .map_err(AcmeError::Client)?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}
