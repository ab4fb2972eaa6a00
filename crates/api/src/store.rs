//! The persisted service set: one JSON file under `DATA_DIR`, written atomically (temporary
//! file, fsync, rename, fsync of the directory) and read once at startup.
//!
//! The file holds passwords (`users`) and private keys (`serviceCert`), so it and its temporary
//! file are created readable by the owner only (mode 0600), and an existing file with a wider
//! mode is tightened when the store is opened.
//!
//! A damaged file never stops the proxy ([`Store::recover`]): a file that cannot be parsed at
//! all is moved aside as `services.json.damaged-<unix time>` and the proxy starts without it;
//! entries that are not parameter maps are dropped one by one.
//!
//! The file keeps each service's parameters exactly as they were received, so loading replays
//! them through the same parser as the API: a file written by an older Sluice is re-validated
//! by the current rules instead of being trusted.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sluice_core::service::Params;

/// The file name inside `DATA_DIR`.
pub const STATE_FILE: &str = "services.json";
const FORMAT_VERSION: u32 = 1;
/// The mode of the state file and its temporary file: owner read/write only.
pub const STATE_MODE: u32 = 0o600;

/// Reading or writing the state file failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory could not be created or written.
    #[error("cannot use DATA_DIR {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize)]
struct StateFile {
    version: u32,
    services: BTreeMap<String, Params>,
}

/// The state file of one `DATA_DIR`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Uses `dir`, creating it if needed (and checking that it can be written).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let probe = dir.join(".sluice-write-test");
        fs::write(&probe, b"").map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let _ = fs::remove_file(probe);
        let store = Store {
            dir: dir.to_path_buf(),
        };
        for path in [store.path(), store.tmp_path()] {
            tighten(&path).map_err(|source| StoreError::Write { path, source })?;
        }
        Ok(store)
    }

    fn tmp_path(&self) -> PathBuf {
        self.dir.join(format!("{STATE_FILE}.tmp"))
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved services for startup, never failing on a damaged file: a file that is not a
    /// state file at all (empty, truncated, not JSON, another format version) is moved aside as
    /// `services.json.damaged-<unix time>` and nothing is loaded from it; entries that are not
    /// maps of strings are dropped and named in [`Recovered::dropped`]. Only a file that
    /// exists but cannot be read (or moved aside) is an error: starting empty would then
    /// overwrite services that may be intact.
    pub fn recover(&self) -> Result<Recovered, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovered::default()),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        match lenient_parse(&bytes) {
            Ok((services, dropped)) => Ok(Recovered {
                services,
                dropped,
                damaged: None,
            }),
            Err(reason) => {
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = self.dir.join(format!("{STATE_FILE}.damaged-{unix}"));
                fs::rename(&path, &aside).map_err(|source| StoreError::Write {
                    path: aside.clone(),
                    source,
                })?;
                Ok(Recovered {
                    damaged: Some(Damaged { aside, reason }),
                    ..Recovered::default()
                })
            }
        }
    }

    /// Replaces the saved set atomically: readers see the old file or the new one, never a mix.
    pub fn save<'a>(
        &self,
        services: impl IntoIterator<Item = (&'a String, &'a Params)>,
    ) -> Result<(), StoreError> {
        let file = StateFile {
            version: FORMAT_VERSION,
            services: services
                .into_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let path = self.path();
        let tmp = self.tmp_path();
        let write = |p: &Path| -> std::io::Result<()> {
            let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(STATE_MODE)
                .open(p)?;
            // The mode applies on creation only: tighten a temporary file left by an older run.
            f.set_permissions(fs::Permissions::from_mode(STATE_MODE))?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        write(&tmp).map_err(|source| StoreError::Write {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &path).map_err(|source| StoreError::Write {
            path: path.clone(),
            source,
        })?;
        // Make the rename itself durable: until the directory is synced, a crash may bring
        // the old file back.
        fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| StoreError::Write {
                path: self.dir.clone(),
                source,
            })
    }
}

/// What [`Store::recover`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The entries that are parameter maps (still to be validated as services).
    pub services: BTreeMap<String, Params>,
    /// Entries dropped because they are not parameter maps: name and reason.
    pub dropped: Vec<(String, String)>,
    /// The file was not a state file and was moved aside.
    pub damaged: Option<Damaged>,
}

/// A state file that could not be parsed, moved aside.
#[derive(Debug)]
pub struct Damaged {
    /// Where it is now.
    pub aside: PathBuf,
    /// Why it could not be parsed.
    pub reason: Damage,
}

/// Why a state file is not one.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// Not JSON (empty, truncated, garbage).
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// JSON, but not an object with a `version` and a `services` object.
    #[error("not a Sluice state file (no version and services object)")]
    Shape,
    /// Written in another format version.
    #[error("format version {0} is not {FORMAT_VERSION}")]
    Version(u64),
}

/// The entries of a state file, and the entries dropped (name, reason).
type Entries = (BTreeMap<String, Params>, Vec<(String, String)>);

/// Parses a state file entry by entry: an error only when the file as a whole is not one.
fn lenient_parse(bytes: &[u8]) -> Result<Entries, Damage> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(bytes).map_err(Damage::Json)?;
    let Value::Object(mut top) = value else {
        return Err(Damage::Shape);
    };
    match top.get("version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => return Err(Damage::Version(v)),
        None => return Err(Damage::Shape),
    }
    let Some(Value::Object(entries)) = top.remove("services") else {
        return Err(Damage::Shape);
    };
    let mut services = BTreeMap::new();
    let mut dropped = Vec::new();
    for (name, entry) in entries {
        match serde_json::from_value::<Params>(entry) {
            Ok(params) => {
                services.insert(name, params);
            }
            Err(_) => dropped.push((name, "not a map of parameter names to strings".into())),
        }
    }
    Ok((services, dropped))
}

/// Sets `path` to [`STATE_MODE`] when it exists with a wider mode.
fn tighten(path: &Path) -> std::io::Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o777 != STATE_MODE => {
            fs::set_permissions(path, fs::Permissions::from_mode(STATE_MODE))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn save_then_load_round_trips() {
        let store = Store::open(&tmpdir("rt")).unwrap();
        assert!(store.recover().unwrap().services.is_empty());
        let mut p = Params::new();
        p.insert("serviceName".into(), "go-demo".into());
        p.insert("servicePath".into(), "/demo".into());
        let name = "go-demo".to_string();
        store.save([(&name, &p)]).unwrap();
        let back = store.recover().unwrap().services;
        assert_eq!(back.get("go-demo"), Some(&p));
    }

    #[test]
    fn the_file_and_its_temporary_file_are_owner_only() {
        let dir = tmpdir("mode");
        let store = Store::open(&dir).unwrap();
        let name = "svc".to_string();
        store.save([(&name, &Params::new())]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path()), 0o600);
        // Files left with a wider mode are tightened on open, the temporary one on write too.
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(store.tmp_path(), b"").unwrap();
        fs::set_permissions(store.tmp_path(), fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&store.tmp_path()), 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damaged_files_are_moved_aside_and_bad_entries_dropped() {
        let dir = tmpdir("recover");
        let store = Store::open(&dir).unwrap();
        assert!(store.recover().unwrap().services.is_empty());
        for damaged in [
            &b""[..],
            b"{\"version\":1,\"serv",
            b"[]",
            br#"{"version":9,"services":{}}"#,
        ] {
            fs::write(store.path(), damaged).unwrap();
            let found = store.recover().unwrap();
            let aside = found.damaged.expect("damaged").aside;
            assert!(!store.path().exists());
            assert_eq!(fs::read(&aside).unwrap(), damaged);
            assert!(aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("services.json.damaged-"));
            fs::remove_file(aside).unwrap();
        }
        fs::write(
            store.path(),
            br#"{"version":1,"services":{"good":{"serviceName":"good"},"bad":{"port":1}}}"#,
        )
        .unwrap();
        let found = store.recover().unwrap();
        assert!(found.damaged.is_none());
        assert_eq!(found.services.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(found.dropped.len(), 1);
        assert_eq!(found.dropped[0].0, "bad");
        fs::remove_dir_all(dir).unwrap();
    }
}
