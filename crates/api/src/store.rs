//! The persisted service set: one JSON file under `DATA_DIR`, written atomically (temporary
//! file, fsync, rename) and read once at startup.
//!
//! The file keeps each service's parameters exactly as they were received, so loading replays
//! them through the same parser as the API: a file written by an older Sluice is re-validated
//! by the current rules instead of being trusted.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_core::service::Params;

/// The file name inside `DATA_DIR`.
pub const STATE_FILE: &str = "services.json";
const FORMAT_VERSION: u32 = 1;

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
    /// The file is not a state file Sluice wrote.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved services' parameters (empty when nothing was saved yet).
    pub fn load(&self) -> Result<BTreeMap<String, Params>, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if file.version != FORMAT_VERSION {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("format version {} is not {FORMAT_VERSION}", file.version),
            });
        }
        Ok(file.services)
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
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let write = |p: &Path| -> std::io::Result<()> {
            let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
            let mut f = fs::File::create(p)?;
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
        assert!(store.load().unwrap().is_empty());
        let mut p = Params::new();
        p.insert("serviceName".into(), "go-demo".into());
        p.insert("servicePath".into(), "/demo".into());
        let name = "go-demo".to_string();
        store.save([(&name, &p)]).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.get("go-demo"), Some(&p));
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_set() {
        let dir = tmpdir("corrupt");
        let store = Store::open(&dir).unwrap();
        fs::write(store.path(), b"{not json").unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("services.json"));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let store = Store::open(&tmpdir("version")).unwrap();
        fs::write(store.path(), br#"{"version":99,"services":{}}"#).unwrap();
        assert!(store.load().is_err());
    }
}
