//! The replica identity a demo backend reports (`/demo/replica`, `X-Served-By`, request logs): the container hostname.

use std::path::Path;

/// Identity used when neither `HOSTNAME` nor the hostname file yields a value.
pub(crate) const UNKNOWN: &str = "unknown";

/// Resolves the identity of this process: the `HOSTNAME` environment variable, else the first line of `/etc/hostname`,
/// else [`UNKNOWN`]. In a Swarm task both hold the container ID prefix, which is what `docker service ps` shows.
pub(crate) fn identity() -> String {
    resolve(std::env::var("HOSTNAME").ok(), Path::new("/etc/hostname"))
}

/// The resolution rule behind [`identity`], with its inputs injected.
pub(crate) fn resolve(env_hostname: Option<String>, hostname_file: &Path) -> String {
    if let Some(name) = env_hostname.as_deref().and_then(clean) {
        return name;
    }
    if let Ok(contents) = std::fs::read_to_string(hostname_file) {
        if let Some(name) = contents.lines().next().and_then(clean) {
            return name;
        }
    }
    UNKNOWN.to_owned()
}

/// Trims a candidate and rejects it if empty or if it could not travel in a header value or a log line.
fn clean(raw: &str) -> Option<String> {
    let name = raw.trim();
    let printable = name.bytes().all(|b| b.is_ascii_graphic());
    (!name.is_empty() && printable).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(contents: &str) -> (std::path::PathBuf, impl Drop) {
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let path = std::env::temp_dir().join(format!(
            "sluice-demo-hostname-{}-{}",
            std::process::id(),
            contents.len() + contents.bytes().map(usize::from).sum::<usize>()
        ));
        std::fs::write(&path, contents).unwrap();
        (path.clone(), Cleanup(path))
    }

    #[test]
    fn env_wins_over_file() {
        let (path, _guard) = temp_file("from-file\n");
        assert_eq!(resolve(Some("  abc123 ".into()), &path), "abc123");
    }

    #[test]
    fn file_is_used_when_env_is_missing_or_blank() {
        let (path, _guard) = temp_file("node-7\nignored\n");
        assert_eq!(resolve(None, &path), "node-7");
        assert_eq!(resolve(Some("   ".into()), &path), "node-7");
    }

    #[test]
    fn unknown_when_nothing_usable() {
        let missing = Path::new("/nonexistent/sluice-demo/hostname");
        assert_eq!(resolve(None, missing), UNKNOWN);
        assert_eq!(resolve(Some("bad\u{7}name".into()), missing), UNKNOWN);
        let (path, _guard) = temp_file("\n");
        assert_eq!(resolve(None, &path), UNKNOWN);
    }
}
