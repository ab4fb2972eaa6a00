//! HTTP basic authentication of the data plane: compiled user lists, the `Authorization`
//! header, password checks and the 401 challenge.
//!
//! # Threat model
//!
//! * **Who is trusted:** the operator (environment, secrets, the control API) configures the
//!   users. Every HTTP client is untrusted: it controls the `Authorization` header completely.
//! * **What is protected:** a destination's upstream is reached only with credentials valid
//!   for it. The proxy never reveals passwords or hashes: not in responses, not in logs, not in
//!   `Debug` output; the upstream does not see the client's `Authorization` header (it is
//!   removed once it has been checked), so one service cannot harvest another's credentials.
//! * **Attacks handled:** malformed, oversized, non-UTF-8 or repeated `Authorization`
//!   headers are a plain 401 (never a 500 or a panic); decoded credentials are capped at
//!   [`MAX_DECODED`] bytes; plain passwords are compared in constant time over SHA-256
//!   digests (no length or prefix leak), and an unknown user costs the same comparison;
//!   crypt(3) hashes (`$1$`, `$5$`, `$6$`, bcrypt `$2a$/$2b$/$2y$`, traditional DES) are
//!   verified off the worker thread, so a slow bcrypt cost cannot stall other connections.
//! * **Fail closed:** when users were asked for (`USERS`, `users`, `usersSecret`) but none is
//!   usable — an empty list, a missing or empty secret file, a user whose password was never
//!   found — the gate exists with no user and refuses everyone.
//! * **Not handled here:** brute-force rate limiting (as HAProxy, every attempt is answered)
//!   and transport secrecy (basic auth over plain HTTP is readable on the wire; use TLS).
//!
//! Successful hash verifications are remembered per worker thread for a short time, keyed by
//! a SHA-256 digest of the list's identity and the exact header value, so a keep-alive client
//! does not pay a crypt(3) computation on every request. A reconfiguration compiles a new list
//! with a new identity, so a removed user or a changed password takes effect immediately.
//!
//! # Which gate applies
//!
//! Per destination: nothing when it has `ignoreAuthorization`; otherwise the service's own
//! users (realm `<serviceName>Realm`) when the service was given `users` or `usersSecret`;
//! otherwise the global `USERS` (realm `defaultRealm`) when set; otherwise nothing. Service
//! users **replace** the global ones for that service, as the documentation promises (DFP's
//! generated configuration demanded both, contrary to its documentation).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Response, StatusCode};
use sha2::{Digest, Sha256};
use sluice_core::credentials::{parse_user_list, password_for};
use sluice_core::service::{Service, User};
use subtle::ConstantTimeEq;

use crate::body::ProxyBody;

/// The largest decoded `user:password` accepted, in bytes.
pub const MAX_DECODED: usize = 1024;
/// The realm of the global `USERS`.
pub const DEFAULT_REALM: &str = "defaultRealm";
/// How long a successful hash verification is remembered on a worker thread.
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Remembered verifications per worker thread before the memory is cleared.
const VERIFIED_MAX: usize = 4096;

static NEXT_LIST_ID: AtomicU64 = AtomicU64::new(1);

/// A stored password: plain text or a crypt(3) hash.
#[derive(Clone)]
enum Secret {
    /// SHA-256 of the plain password (compared in constant time).
    Plain([u8; 32]),
    /// A crypt(3) hash (`$6$…`, `$2y$…`, …).
    Crypt(Arc<str>),
}

/// A compiled list of users with one realm: what one destination checks.
pub struct Gate {
    id: u64,
    realm: String,
    users: Vec<(String, Secret)>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("realm", &self.realm)
            .field(
                "users",
                &self.users.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Gate {
    /// Compiles `users` (a user without password is left out: it can never log in).
    /// `encrypted` marks every password as a crypt(3) hash.
    pub fn new(realm: &str, users: &[User], encrypted: bool) -> Gate {
        Gate::from_entries(
            realm,
            users.iter().filter_map(|u| {
                u.password
                    .as_deref()
                    .map(|p| (u.name.as_str(), p, encrypted))
            }),
        )
    }

    fn from_entries<'a>(
        realm: &str,
        entries: impl Iterator<Item = (&'a str, &'a str, bool)>,
    ) -> Gate {
        Gate {
            id: NEXT_LIST_ID.fetch_add(1, Ordering::Relaxed),
            realm: realm.to_string(),
            users: entries
                .map(|(name, password, encrypted)| {
                    let secret = if encrypted {
                        Secret::Crypt(Arc::from(password))
                    } else {
                        Secret::Plain(Sha256::digest(password.as_bytes()).into())
                    };
                    (name.to_string(), secret)
                })
                .collect(),
        }
    }

    /// The realm sent in the challenge.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How many users can log in (0 = everyone is refused).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// True when the request's `Authorization` header holds valid credentials.
    pub async fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(header) = single_authorization(headers) else {
            return false;
        };
        let Some(creds) = BasicCredentials::parse(header) else {
            return false;
        };
        let key = self.cache_key(header.as_bytes());
        if recall(&key) {
            return true;
        }
        let given = Sha256::digest(&creds.password);
        let mut plain_ok = subtle::Choice::from(0u8);
        let mut hashes = Vec::new();
        for (name, secret) in &self.users {
            if name.as_bytes() != creds.user.as_slice() {
                continue;
            }
            match secret {
                Secret::Plain(digest) => plain_ok |= digest.ct_eq(given.as_slice()),
                Secret::Crypt(hash) => hashes.push(hash.clone()),
            }
        }
        if hashes.is_empty()
            && self
                .users
                .iter()
                .all(|(n, _)| n.as_bytes() != creds.user.as_slice())
        {
            // Unknown user: spend the same comparison a known one would.
            let _ = [0u8; 32].ct_eq(given.as_slice());
        }
        if bool::from(plain_ok) {
            return true;
        }
        if hashes.is_empty() {
            return false;
        }
        let Ok(password) = String::from_utf8(creds.password) else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || {
            hashes.iter().any(|hash| verify_crypt(&password, hash))
        })
        .await
        .unwrap_or(false);
        if verified {
            remember(key);
        }
        verified
    }

    fn cache_key(&self, header: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.id.to_le_bytes());
        h.update(header);
        h.finalize().into()
    }
}

/// Checks `password` against one crypt(3) hash; an unknown or malformed hash never matches.
fn verify_crypt(password: &str, hash: &str) -> bool {
    // pwhash treats anything without a `$` prefix as traditional DES, which is only
    // meaningful for exactly 13 characters.
    if !hash.starts_with('$') && hash.len() != 13 {
        return false;
    }
    pwhash::unix::verify(password, hash)
}

thread_local! {
    static VERIFIED: RefCell<HashMap<[u8; 32], Instant>> = RefCell::new(HashMap::new());
}

fn recall(key: &[u8; 32]) -> bool {
    VERIFIED.with(|cache| {
        let mut cache = cache.borrow_mut();
        match cache.get(key) {
            Some(at) if at.elapsed() < VERIFIED_TTL => true,
            Some(_) => {
                cache.remove(key);
                false
            }
            None => false,
        }
    })
}

fn remember(key: [u8; 32]) {
    VERIFIED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= VERIFIED_MAX {
            cache.clear();
        }
        cache.insert(key, Instant::now());
    });
}

/// The one `Authorization` header of a request; `None` when absent or repeated.
fn single_authorization(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// Decoded basic credentials. Bytes, because HAProxy compares bytes.
#[derive(PartialEq, Eq)]
pub struct BasicCredentials {
    /// The user name (before the first `:`).
    pub user: Vec<u8>,
    /// The password (after the first `:`).
    pub password: Vec<u8>,
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicCredentials {
    /// Parses `Basic <base64(user:password)>`. The scheme is case-insensitive; padding is
    /// optional. Anything else — another scheme, bad base64, no `:`, too long — is `None`.
    pub fn parse(value: &HeaderValue) -> Option<BasicCredentials> {
        let text = value.to_str().ok()?.trim();
        let (scheme, rest) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let encoded = rest.trim();
        if encoded.is_empty() || encoded.len() > MAX_DECODED.div_ceil(3) * 4 {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .ok()?;
        if decoded.len() > MAX_DECODED {
            return None;
        }
        let colon = decoded.iter().position(|b| *b == b':')?;
        Some(BasicCredentials {
            user: decoded[..colon].to_vec(),
            password: decoded[colon + 1..].to_vec(),
        })
    }
}

/// The global users (`USERS`, `USERS_PASS_ENCRYPTED`) as the registry knows them.
#[derive(Clone, Default)]
pub struct GlobalUsers {
    /// The users (each with a password).
    pub users: Vec<User>,
    /// The passwords are crypt(3) hashes.
    pub encrypted: bool,
}

impl fmt::Debug for GlobalUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalUsers")
            .field("users", &self.users)
            .field("encrypted", &self.encrypted)
            .finish()
    }
}

/// The gate for a service's own users, or `None` when the service asked for none.
///
/// `secret` is the text of `dfp_users_<usersSecret>` (`None` when the service names no
/// secret or the file could not be read). The rules, in order:
/// 1. `users` given: each user without a password takes it from the secret's users when
///    `usersSecret` is set, else from the global users (with the global hash flag); the lookup
///    ignores ASCII case. Users still without a password are left out.
/// 2. only `usersSecret`: every user of the secret that has a password.
/// 3. either was given but nothing usable resulted: a gate without users (refuses everyone).
pub fn service_gate(
    service: &Service,
    secret: Option<&str>,
    global: Option<&GlobalUsers>,
) -> Option<Gate> {
    if service.users.is_empty() && service.users_secret.is_none() {
        return None;
    }
    let realm = format!("{}Realm", service.name);
    let from_secret = secret.map(parse_user_list).unwrap_or_default();
    let own = service.users_pass_encrypted;
    let mut entries: Vec<(&str, &str, bool)> = Vec::new();
    if !service.users.is_empty() {
        for user in &service.users {
            let found = match user.password.as_deref() {
                Some(p) => Some((p, own)),
                None if service.users_secret.is_some() => {
                    password_for(&from_secret, &user.name).map(|p| (p, own))
                }
                None => global
                    .and_then(|g| password_for(&g.users, &user.name).map(|p| (p, g.encrypted))),
            };
            match found {
                Some((password, encrypted)) => entries.push((&user.name, password, encrypted)),
                None => tracing::warn!(
                    service = %service.name,
                    user = %user.name,
                    "user has no password anywhere; it cannot log in"
                ),
            }
        }
    } else {
        for user in &from_secret {
            if let Some(password) = user.password.as_deref() {
                entries.push((&user.name, password, own));
            }
        }
    }
    if entries.is_empty() {
        tracing::warn!(
            service = %service.name,
            "users were asked for but none is usable; every request will get 401"
        );
    }
    Some(Gate::from_entries(&realm, entries.into_iter()))
}

/// Every gate of a routing state: the global one and one per service that has users.
#[derive(Debug, Default, Clone)]
pub struct AuthTable {
    global: Option<Arc<Gate>>,
    services: HashMap<String, Arc<Gate>>,
}

impl AuthTable {
    /// A table from the global gate and the services' gates.
    pub fn new(global: Option<Arc<Gate>>, services: HashMap<String, Arc<Gate>>) -> AuthTable {
        AuthTable { global, services }
    }

    /// The gate a request to `service`'s destination must pass, if any.
    pub fn gate(&self, service: &str, ignore_authorization: bool) -> Option<&Gate> {
        if ignore_authorization {
            return None;
        }
        self.services
            .get(service)
            .or(self.global.as_ref())
            .map(|g| g.as_ref())
    }
}

/// The 401 answer: `WWW-Authenticate: Basic realm="<realm>"`, a small HTML body, no caching,
/// and the connection closed (as HAProxy does).
pub fn challenge(realm: &str) -> Response<ProxyBody> {
    let html = "<html><body><h1>401 Unauthorized</h1>\n\
You need a valid user and password to access this content.\n</body></html>\n";
    let mut resp = Response::new(ProxyBody::full(Bytes::from_static(html.as_bytes())));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    let safe: String = realm
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    let value = HeaderValue::from_str(&format!("Basic realm=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"restricted\""));
    h.insert(WWW_AUTHENTICATE, value);
    resp
}

/// Constant-time check of one plain name/password pair (statistics page, control API).
pub fn plain_matches(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let Some(creds) = single_authorization(headers).and_then(BasicCredentials::parse) else {
        return false;
    };
    let user_ok = Sha256::digest(&creds.user).ct_eq(&Sha256::digest(user.as_bytes()));
    let pass_ok = Sha256::digest(&creds.password).ct_eq(&Sha256::digest(password.as_bytes()));
    bool::from(user_ok & pass_ok)
}

/// The `Authorization` header value for sending `user:password` (to peers, listeners).
pub fn basic_header(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::params::{params_from_query, parse_service};
    use sluice_core::settings::Settings;

    const SEED_HASH: &str = "$6$F2eJJA.G$BfoxX38MoNS10tywEzQZVDZOAjJn9wyTZJecYg.CymjwE8Rgm7xJn0KG3faT36GZbOtrsu4ba.vhsnHrPCNAa0";

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> HeaderMap {
        headers(&basic_header(user, pass))
    }

    fn service(query: &str) -> Service {
        parse_service(
            &params_from_query(&format!(
                "serviceName=go-demo&servicePath=/demo&port=80&{query}"
            )),
            &Settings::default().parse,
        )
        .unwrap()
    }

    fn admits(gate: &Gate, h: &HeaderMap) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(gate.admits(h))
    }

    fn global(text: &str, encrypted: bool) -> GlobalUsers {
        GlobalUsers {
            users: parse_user_list(text),
            encrypted,
        }
    }

    #[test]
    fn header_parsing_is_strict_and_never_panics() {
        let ok = BasicCredentials::parse(&HeaderValue::from_static("basic bXktdXNlcjpteTpwYXNz"))
            .unwrap();
        assert_eq!(ok.user, b"my-user");
        assert_eq!(ok.password, b"my:pass");
        for bad in [
            "Basic",
            "Basic ",
            "Bearer bXktdXNlcjpteS1wYXNz",
            "Basic !!!!",
            "Basic bm9jb2xvbg==",
            "Basicbm9jb2xvbg==",
        ] {
            assert!(
                BasicCredentials::parse(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
        let long = format!("Basic {}", "QUFB".repeat(400));
        assert!(BasicCredentials::parse(&HeaderValue::from_str(&long).unwrap()).is_none());
        let non_utf8 = HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap();
        assert!(BasicCredentials::parse(&non_utf8).is_none());
        assert!(!format!("{ok:?}").contains("my:pass"));
    }

    #[test]
    fn plain_users_are_checked_by_exact_name_and_password() {
        let gate = Gate::new(
            DEFAULT_REALM,
            &parse_user_list("my-user:my-pass,u2:p:2"),
            false,
        );
        assert!(admits(&gate, &basic("my-user", "my-pass")));
        assert!(admits(&gate, &basic("u2", "p:2")));
        assert!(!admits(&gate, &basic("my-user", "my-pas")));
        assert!(
            !admits(&gate, &basic("MY-USER", "my-pass")),
            "names are case-sensitive"
        );
        assert!(!admits(&gate, &basic("nobody", "my-pass")));
        assert!(!admits(&gate, &HeaderMap::new()));
        let mut twice = basic("my-user", "my-pass");
        twice.append(AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        assert!(!admits(&gate, &twice), "repeated headers are refused");
    }

    #[test]
    fn the_seed_sha512_hash_verifies() {
        let gate = Gate::new(
            "go-demoRealm",
            &parse_user_list(&format!("admin:{SEED_HASH}")),
            true,
        );
        assert!(admits(&gate, &basic("admin", "password")));
        // A second time comes from the per-thread memory of verified headers.
        assert!(admits(&gate, &basic("admin", "password")));
        assert!(!admits(&gate, &basic("admin", "Password")));
        assert!(
            !admits(&gate, &basic("admin", SEED_HASH)),
            "the hash is not the password"
        );
    }

    #[test]
    #[allow(deprecated)] // md5-crypt and sha256-crypt hashes are what users may still have
    fn every_crypt_scheme_is_understood() {
        let hashes = [
            pwhash::md5_crypt::hash("pw").unwrap(),
            pwhash::sha256_crypt::hash("pw").unwrap(),
            pwhash::sha512_crypt::hash("pw").unwrap(),
            pwhash::bcrypt::hash_with(
                pwhash::bcrypt::BcryptSetup {
                    cost: Some(4),
                    variant: Some(pwhash::bcrypt::BcryptVariant::V2y),
                    salt: None,
                },
                "pw",
            )
            .unwrap(),
            pwhash::bcrypt::hash_with(
                pwhash::bcrypt::BcryptSetup {
                    cost: Some(4),
                    variant: Some(pwhash::bcrypt::BcryptVariant::V2a),
                    salt: None,
                },
                "pw",
            )
            .unwrap(),
            // Traditional DES crypt (13 characters).
            pwhash::unix_crypt::hash_with("ab", "pw").unwrap(),
        ];
        for hash in &hashes {
            assert!(verify_crypt("pw", hash), "{hash}");
            assert!(!verify_crypt("px", hash), "{hash}");
        }
        for broken in ["", "$6$", "$9$x$y", "plaintext", "$2y$04$short"] {
            assert!(!verify_crypt("pw", broken), "{broken}");
            assert!(!verify_crypt("", broken), "{broken}");
        }
    }

    #[test]
    fn service_users_override_and_fill_in_passwords() {
        let g = global("admin:global-pass,Observer:from-global", false);
        // Own users only: the global password does not open the service.
        let gate = service_gate(&service("users=admin:password"), None, Some(&g)).unwrap();
        assert_eq!(gate.realm(), "go-demoRealm");
        assert!(admits(&gate, &basic("admin", "password")));
        assert!(!admits(&gate, &basic("admin", "global-pass")));
        // A user without password takes the global one (case-insensitive lookup).
        let gate = service_gate(&service("users=observer"), None, Some(&g)).unwrap();
        assert!(admits(&gate, &basic("observer", "from-global")));
        // No users asked for: no service gate.
        assert!(service_gate(&service(""), None, Some(&g)).is_none());
    }

    #[test]
    fn users_secret_supplies_users_and_passwords() {
        let text = format!("observer:{SEED_HASH}\n");
        let s = service("usersSecret=monitoring&usersPassEncrypted=true");
        let gate = service_gate(&s, Some(&text), None).unwrap();
        assert_eq!(gate.user_count(), 1);
        assert!(admits(&gate, &basic("observer", "password")));
        // A listed user without password takes it from the secret, not the global users.
        let s = service("users=OBSERVER,admin&usersSecret=monitoring&usersPassEncrypted=true");
        let g = global("admin:x", false);
        let gate = service_gate(&s, Some(&text), Some(&g)).unwrap();
        assert_eq!(gate.user_count(), 1);
        assert!(admits(&gate, &basic("OBSERVER", "password")));
        assert!(!admits(&gate, &basic("admin", "x")));
    }

    #[test]
    fn unusable_users_fail_closed() {
        let missing = service_gate(&service("usersSecret=monitoring"), None, None).unwrap();
        assert_eq!(missing.user_count(), 0);
        assert!(!admits(&missing, &basic("observer", "password")));
        let empty = service_gate(&service("usersSecret=monitoring"), Some("\n"), None).unwrap();
        assert_eq!(empty.user_count(), 0);
        let nopass = service_gate(&service("users=ghost"), None, None).unwrap();
        assert_eq!(nopass.user_count(), 0);
    }

    #[test]
    fn table_picks_service_then_global_and_honours_ignore() {
        let global = Arc::new(Gate::new(DEFAULT_REALM, &parse_user_list("a:b"), false));
        let own = Arc::new(Gate::new("svcRealm", &parse_user_list("c:d"), false));
        let table = AuthTable::new(Some(global), HashMap::from([("svc".to_string(), own)]));
        assert_eq!(table.gate("svc", false).unwrap().realm(), "svcRealm");
        assert_eq!(table.gate("other", false).unwrap().realm(), DEFAULT_REALM);
        assert!(table.gate("svc", true).is_none());
        assert!(AuthTable::default().gate("svc", false).is_none());
    }

    #[test]
    fn challenge_names_the_realm() {
        let r = challenge("go-demoRealm");
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Basic realm=\"go-demoRealm\""
        );
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html");
        assert_eq!(
            challenge("a\"b").headers()[WWW_AUTHENTICATE],
            "Basic realm=\"ab\""
        );
    }

    #[test]
    fn plain_pairs_compare_both_parts() {
        assert!(plain_matches(
            &basic("my-user", "my-pass"),
            "my-user",
            "my-pass"
        ));
        assert!(!plain_matches(
            &basic("my-user", "my-pass"),
            "my-user",
            "other"
        ));
        assert!(!plain_matches(
            &basic("other", "my-pass"),
            "my-user",
            "my-pass"
        ));
        assert!(!plain_matches(&headers("Basic %%%"), "my-user", "my-pass"));
    }

    #[test]
    fn gate_debug_hides_passwords() {
        let gate = Gate::new("r", &parse_user_list("u:topsecret"), false);
        assert!(!format!("{gate:?}").contains("topsecret"));
    }
}
