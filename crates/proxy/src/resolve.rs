//! Name resolution shared by the data plane and the control API: entries of `HOSTS_FILE` (when
//! set) first, then the system resolver (`/etc/hosts`, then DNS). Answers are sorted so every
//! worker and every replica sees addresses in the same order.

use std::net::IpAddr;
use std::path::Path;

/// Looks a name up in `HOSTS_FILE` (when set), then through the system resolver.
pub async fn lookup(host: &str, hosts_file: Option<&Path>) -> std::io::Result<Vec<IpAddr>> {
    if let Some(path) = hosts_file {
        let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
        let mut ips = hosts_entries(&text, host);
        if !ips.is_empty() {
            ips.sort();
            ips.dedup();
            return Ok(ips);
        }
    }
    let mut ips: Vec<IpAddr> = tokio::net::lookup_host((host, 0u16))
        .await?
        .map(|a| a.ip())
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// The addresses a hosts-format text gives `host` (`<ip> <name> [<name>…]`, `#` comments).
pub fn hosts_entries(text: &str, host: &str) -> Vec<IpAddr> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let ip: IpAddr = fields.next()?.parse().ok()?;
            fields
                .any(|name| name.eq_ignore_ascii_case(host))
                .then_some(ip)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_lines_are_parsed() {
        let text =
            "# comment\n127.0.0.2 tasks.go-demo go-demo\n127.0.0.3 tasks.go-demo\nbad line\n";
        let ips = hosts_entries(text, "TASKS.go-demo");
        assert_eq!(ips.len(), 2);
        assert_eq!(hosts_entries(text, "go-demo").len(), 1);
        assert!(hosts_entries(text, "other").is_empty());
    }
}
