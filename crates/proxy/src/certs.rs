//! The certificate store: every combined PEM bundle (certificate chain plus private key) the
//! proxy serves, hot-swappable, and the SNI resolver TLS handshakes ask.
//!
//! Sources, in DFP's order: every regular file in `CERTS_DIR` (by name), then every file in
//! `SECRETS_DIR` whose lower-cased name starts with `cert-` or `cert_` (by name). Files whose
//! name starts with `.` are skipped (the store writes its temporary files that way).
//! `PREFERRED_CERTIFICATE` globs then reorder them: certificates are bucketed by the first glob
//! matching their file name, buckets in glob order, unmatched certificates last. The first
//! certificate in that order is the **default**: it answers clients without SNI or with a
//! server name no certificate covers.
//!
//! A handshake picks the first certificate (in that order) whose subject CN or DNS SAN equals
//! the server name, else the first whose wildcard (`*.example.com`) covers it, else the default.
//!
//! Changes are atomic: a new [`CertSet`] is built off to the side and swapped in, so handshakes
//! in progress and established connections are untouched. A file that is not a usable bundle is
//! reported (logs and [`CertStore::problems`]) and skipped instead of breaking the others, unlike
//! DFP where one bad file broke the whole configuration. [`CertStore::put`] validates a bundle
//! before it writes anything, and only accepts plain file names, so `certName` cannot leave
//! `CERTS_DIR` (DFP allowed `../` traversal).
//!
//! An I/O error while scanning (a directory that cannot be listed, a file that cannot be read —
//! "too many open files" under descriptor exhaustion, for instance) never replaces what is
//! loaded: the scan is abandoned, the current set stays, and the failure is logged at most once
//! a minute. Only a directory that does not exist counts as "no files".

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The largest certificate file the store reads.
const MAX_FILE: u64 = 1024 * 1024;

/// How often a failing scan is logged.
const SCAN_FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Where certificates come from.
#[derive(Debug, Clone)]
pub struct CertSources {
    /// `CERTS_DIR`: every file is a bundle; `PUT /cert` and `serviceCert` write here.
    pub certs_dir: PathBuf,
    /// `SECRETS_DIR`: files named `cert-*` / `cert_*` are bundles.
    pub secrets_dir: PathBuf,
    /// `PREFERRED_CERTIFICATE` globs.
    pub preferred: Vec<String>,
}

/// Where a certificate was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertOrigin {
    /// A file in `CERTS_DIR`.
    CertsDir,
    /// A Docker secret in `SECRETS_DIR`.
    Secret,
}

impl CertOrigin {
    /// A short name for listings.
    pub fn as_str(self) -> &'static str {
        match self {
            CertOrigin::CertsDir => "certs-dir",
            CertOrigin::Secret => "secret",
        }
    }
}

/// A certificate bundle is unusable or cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `certName` is not a plain file name.
    #[error("certName {name:?} is not allowed: {reason}")]
    Name {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The PEM text could not be read.
    #[error("certificate {name}: not valid PEM: {reason}")]
    Pem {
        /// The bundle's name.
        name: String,
        /// The parser's answer.
        reason: String,
    },
    /// No `CERTIFICATE` block.
    #[error("certificate {name}: no CERTIFICATE block (a combined PEM needs the certificate and its private key)")]
    NoCertificate {
        /// The bundle's name.
        name: String,
    },
    /// No private key block.
    #[error("certificate {name}: no PRIVATE KEY block (a combined PEM needs the certificate and its private key)")]
    NoKey {
        /// The bundle's name.
        name: String,
    },
    /// The leaf certificate is not valid X.509.
    #[error("certificate {name}: the first certificate is not valid X.509: {reason}")]
    X509 {
        /// The bundle's name.
        name: String,
        /// The parser's answer.
        reason: String,
    },
    /// The key type is not supported, or it does not belong to the certificate.
    #[error("certificate {name}: {reason}")]
    Key {
        /// The bundle's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The file is too large.
    #[error("certificate {name}: larger than {MAX_FILE} bytes")]
    TooLarge {
        /// The bundle's name.
        name: String,
    },
    /// Reading or writing the file failed.
    #[error("certificate {name}: {path}: {source}")]
    Io {
        /// The bundle's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
}

/// A parsed, validated bundle.
struct Parsed {
    key: Arc<CertifiedKey>,
    subject: String,
    dns_names: Vec<String>,
    not_before: i64,
    not_after: i64,
    chain_pem: String,
}

/// One loaded certificate, as listings show it (never the private key).
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The file name (DFP's `ProxyServiceName`).
    pub name: String,
    /// Where it came from.
    pub origin: CertOrigin,
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The leaf certificate's subject.
    pub subject: String,
    /// Subject common names and DNS subject alternative names, lower-cased, without duplicates.
    pub dns_names: Vec<String>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// The certificate chain as PEM, without the private key.
    pub chain_pem: String,
    /// This is the default certificate.
    pub default: bool,
}

/// A file the store could not use.
#[derive(Debug, Clone)]
pub struct CertProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

struct Entry {
    info: CertInfo,
    key: Arc<CertifiedKey>,
}

/// One immutable generation of the store.
#[derive(Default)]
struct CertSet {
    entries: Vec<Entry>,
    problems: Vec<CertProblem>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    fingerprint: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

impl CertSet {
    fn find(&self, server_name: &str) -> Option<&Entry> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Some(&self.entries[i]);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).map(|&i| &self.entries[i])
    }

    fn default_entry(&self) -> Option<&Entry> {
        self.entries.first()
    }
}

/// The hot-swappable certificate store. See the module documentation.
pub struct CertStore {
    sources: CertSources,
    current: ArcSwap<CertSet>,
    writes: Mutex<()>,
    /// When a failed scan was last logged, and how many failures went unlogged since.
    scan_failures: Mutex<(Option<Instant>, u64)>,
}

/// A scan that could not read its sources; the loaded set stays.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
struct ScanError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("certs_dir", &self.sources.certs_dir)
            .field("certificates", &self.current.load().entries.len())
            .finish()
    }
}

impl CertStore {
    /// Loads every source. Never fails: unusable files are logged and listed as problems.
    pub fn load(sources: CertSources) -> Arc<CertStore> {
        let store = Arc::new(CertStore {
            sources,
            current: ArcSwap::from_pointee(CertSet::default()),
            writes: Mutex::new(()),
            scan_failures: Mutex::new((None, 0)),
        });
        store.reload();
        store
    }

    /// `CERTS_DIR`.
    pub fn certs_dir(&self) -> &Path {
        &self.sources.certs_dir
    }

    /// True when no usable certificate is loaded.
    pub fn is_empty(&self) -> bool {
        self.current.load().entries.is_empty()
    }

    /// The loaded certificates in preference order (the first is the default).
    pub fn list(&self) -> Vec<CertInfo> {
        self.current
            .load()
            .entries
            .iter()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Files that could not be used at the last scan.
    pub fn problems(&self) -> Vec<CertProblem> {
        self.current.load().problems.clone()
    }

    /// The full bundle (chain and key) of a `CERTS_DIR` certificate, read from disk.
    pub fn bundle(&self, name: &str) -> Result<Vec<u8>, CertError> {
        check_name(name)?;
        let path = self.sources.certs_dir.join(name);
        read_limited(&path).map_err(|source| CertError::Io {
            name: name.to_string(),
            path,
            source,
        })
    }

    /// Validates `pem` and stores it as `CERTS_DIR/<name>`, replacing a file of that name, then
    /// reloads. Nothing is written when the name or the bundle is refused.
    pub fn put(&self, name: &str, pem: &[u8]) -> Result<CertInfo, CertError> {
        check_name(name)?;
        let parsed = parse_bundle(name, pem)?;
        let io = |path: &Path, source| CertError::Io {
            name: name.to_string(),
            path: path.to_path_buf(),
            source,
        };
        {
            let _guard = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            let dir = &self.sources.certs_dir;
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            let target = dir.join(name);
            let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
            write_private(&temp, pem).map_err(|e| io(&temp, e))?;
            if let Err(e) = std::fs::rename(&temp, &target) {
                let _ = std::fs::remove_file(&temp);
                return Err(io(&target, e));
            }
            if let Err(error) = self.rescan() {
                return Err(io(&error.path, error.source));
            }
        }
        tracing::info!(certificate = name, names = ?parsed.dns_names, "certificate stored");
        Ok(self
            .list()
            .into_iter()
            .find(|c| c.name == name && c.origin == CertOrigin::CertsDir)
            .unwrap_or_else(|| CertInfo {
                name: name.to_string(),
                origin: CertOrigin::CertsDir,
                dir: self.sources.certs_dir.clone(),
                subject: parsed.subject,
                dns_names: parsed.dns_names,
                not_before: parsed.not_before,
                not_after: parsed.not_after,
                chain_pem: parsed.chain_pem,
                default: false,
            }))
    }

    /// Scans every source again and swaps the result in.
    /// On an I/O error the loaded set stays.
    pub fn reload(&self) {
        let _guard = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.rescan();
    }

    /// Reloads when a file was added, removed or changed since the last scan. Returns whether
    /// it reloaded.
    /// On an I/O error the loaded set stays (and this returns false).
    pub fn reload_if_changed(&self) -> bool {
        let _guard = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        match fingerprint(&self.sources) {
            Ok(now) if now == self.current.load().fingerprint => false,
            Ok(_) => self.rescan().is_ok(),
            Err(error) => {
                self.scan_failed(&error);
                false
            }
        }
    }

    /// Watches the sources, reloading on change, until the store is dropped elsewhere.
    pub async fn watch(self: Arc<CertStore>, every: Duration) {
        let weak = Arc::downgrade(&self);
        drop(self);
        loop {
            tokio::time::sleep(every).await;
            let Some(store) = weak.upgrade() else { break };
            let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
        }
    }

    /// The SNI resolver handshakes use.
    pub fn resolver(self: &Arc<CertStore>) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver(self.clone()))
    }

    /// Scans every source and swaps the result in, or keeps the loaded set when the sources
    /// cannot be read. The caller holds `writes`.
    fn rescan(&self) -> Result<(), ScanError> {
        match scan(&self.sources) {
            Ok(set) => {
                log_set(&set);
                self.current.store(Arc::new(set));
                Ok(())
            }
            Err(error) => {
                self.scan_failed(&error);
                Err(error)
            }
        }
    }

    /// Logs a failed scan, at most once per [`SCAN_FAILURE_LOG_EVERY`].
    fn scan_failed(&self, error: &ScanError) {
        let mut failures = self.scan_failures.lock().unwrap_or_else(|p| p.into_inner());
        let (last, suppressed) = &mut *failures;
        if last.is_some_and(|at| at.elapsed() < SCAN_FAILURE_LOG_EVERY) {
            *suppressed += 1;
            return;
        }
        let kept = self.current.load().entries.len();
        tracing::warn!(
            %error,
            kept,
            suppressed = *suppressed,
            "certificate scan failed; keeping the loaded certificates"
        );
        *last = Some(Instant::now());
        *suppressed = 0;
    }
}

fn log_set(set: &CertSet) {
    for p in &set.problems {
        tracing::warn!(path = %p.path.display(), reason = %p.reason, "certificate skipped");
    }
    tracing::info!(
        certificates = set.entries.len(),
        default = set
            .entries
            .first()
            .map(|e| e.info.name.as_str())
            .unwrap_or("-"),
        "certificates loaded"
    );
}

/// Picks the certificate for a handshake.
struct Resolver(Arc<CertStore>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.0.current.load();
        let entry = hello
            .server_name()
            .and_then(|name| set.find(name))
            .or_else(|| set.default_entry());
        if entry.is_none() {
            tracing::warn!(
                server_name = hello.server_name().unwrap_or("-"),
                "TLS handshake refused: no certificate is loaded"
            );
        }
        entry.map(|e| e.key.clone())
    }
}

/// Checks that `name` is a plain file name inside `CERTS_DIR`.
pub fn check_name(name: &str) -> Result<(), CertError> {
    let refuse = |reason| {
        Err(CertError::Name {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > 255 {
        return refuse("it is longer than 255 bytes");
    }
    if name.contains(['/', '\\']) {
        return refuse("it must be a file name, without '/' or '\\'");
    }
    if name.contains("..") {
        return refuse("it must not contain '..'");
    }
    if name.starts_with('.') {
        return refuse("it must not start with '.'");
    }
    if name.chars().any(char::is_control) {
        return refuse("it must not contain control characters");
    }
    Ok(())
}

/// Validates a combined PEM bundle without storing it. The error names the problem.
pub fn validate_bundle(name: &str, pem: &[u8]) -> Result<(), CertError> {
    parse_bundle(name, pem).map(|_| ())
}

fn parse_bundle(name: &str, pem: &[u8]) -> Result<Parsed, CertError> {
    let pem_error = |e: rustls_pki_types::pem::Error| CertError::Pem {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(pem_error)?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate {
            name: name.to_string(),
        });
    };
    let key_der = match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => key,
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            return Err(CertError::NoKey {
                name: name.to_string(),
            })
        }
        Err(e) => return Err(pem_error(e)),
    };
    let x509 = |reason: String| CertError::X509 {
        name: name.to_string(),
        reason,
    };
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| x509(e.to_string()))?;
    let subject = cert.subject().to_string();
    let mut dns_names = Vec::new();
    for cn in cert.subject().iter_common_name() {
        // Only a common name that looks like a host name can match a server name.
        if let Ok(text) = cn.as_str() {
            let text = text.trim();
            if text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*'))
            {
                dns_names.push(text.to_ascii_lowercase());
            }
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = general {
                dns_names.push(dns.trim().to_ascii_lowercase());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    dns_names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();

    let key_error = |reason: String| CertError::Key {
        name: name.to_string(),
        reason,
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| key_error(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain.clone(), signer);
    match certified.keys_match() {
        Ok(()) => {}
        // Some key types cannot report their public key; the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(key_error(
                "the private key does not belong to the first certificate".into(),
            ))
        }
    }
    let chain_pem = chain.iter().map(|c| to_pem(c.as_ref())).collect();
    Ok(Parsed {
        key: Arc::new(certified),
        subject,
        dns_names,
        not_before,
        not_after,
        chain_pem,
    })
}

/// PEM text of one DER certificate.
fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes"
        )));
    }
    std::fs::read(path)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The candidate files of every source, in DFP's order. A missing directory has none; any
/// other error listing a directory fails the whole scan.
fn candidates(sources: &CertSources) -> Result<Vec<(PathBuf, String, CertOrigin)>, ScanError> {
    let mut out = Vec::new();
    for (dir, origin) in [
        (&sources.certs_dir, CertOrigin::CertsDir),
        (&sources.secrets_dir, CertOrigin::Secret),
    ] {
        let failed = |source| ScanError {
            path: dir.clone(),
            source,
        };
        let read = match std::fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(e)),
        };
        let entries = read.collect::<Result<Vec<_>, _>>().map_err(failed)?;
        let mut names: Vec<String> = entries
            .into_iter()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter(|n| {
                origin == CertOrigin::CertsDir || {
                    let lower = n.to_ascii_lowercase();
                    lower.starts_with("cert-") || lower.starts_with("cert_")
                }
            })
            .filter(|n| std::fs::metadata(dir.join(n)).is_ok_and(|m| m.is_file()))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| (dir.join(&n), n, origin)));
    }
    let preferred = &sources.preferred;
    let bucket = |name: &str| {
        preferred
            .iter()
            .position(|g| glob_matches(g, name))
            .unwrap_or(preferred.len())
    };
    out.sort_by_key(|(_, name, _)| bucket(name));
    Ok(out)
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn fingerprint(sources: &CertSources) -> Result<Fingerprint, ScanError> {
    Ok(candidates(sources)?
        .into_iter()
        .map(|(path, ..)| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect())
}

/// True for a read error that says something about the machine (descriptors, memory,
/// permissions, the disk) rather than about the file's content or size.
fn is_io_failure(error: &std::io::Error) -> bool {
    !matches!(
        error.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::Other
    )
}

fn scan(sources: &CertSources) -> Result<CertSet, ScanError> {
    let mut set = CertSet {
        fingerprint: fingerprint(sources)?,
        ..CertSet::default()
    };
    for (path, name, origin) in candidates(sources)? {
        let bytes = match read_limited(&path) {
            Err(source) if is_io_failure(&source) => return Err(ScanError { path, source }),
            other => other,
        };
        let parsed = bytes
            .map_err(|source| CertError::Io {
                name: name.clone(),
                path: path.clone(),
                source,
            })
            .and_then(|bytes| parse_bundle(&name, &bytes));
        let parsed = match parsed {
            Ok(p) => p,
            Err(error) => {
                set.problems.push(CertProblem {
                    path,
                    reason: error.to_string(),
                });
                continue;
            }
        };
        let index = set.entries.len();
        for n in &parsed.dns_names {
            match n.strip_prefix("*.") {
                Some(parent) => {
                    set.wildcard.entry(parent.to_string()).or_insert(index);
                }
                None => {
                    set.exact.entry(n.clone()).or_insert(index);
                }
            }
        }
        set.entries.push(Entry {
            info: CertInfo {
                name,
                origin,
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                subject: parsed.subject,
                dns_names: parsed.dns_names,
                not_before: parsed.not_before,
                not_after: parsed.not_after,
                chain_pem: parsed.chain_pem,
                default: index == 0,
            },
            key: parsed.key,
        });
    }
    Ok(set)
}

/// `PREFERRED_CERTIFICATE` glob matching: `*` matches any run of characters, nothing else is
/// special.
fn glob_matches(glob: &str, name: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests;
