//! What the statistics page shows about ACME certificates (`docs/acme.md`): per certificate a
//! service asks for, whether it is valid (and until when), being ordered, or failing (the last
//! error and the next attempt).
//!
//! The control API's ACME module is the one writer: it compiles [`AcmeNotices`] once per tick
//! (and around each order) and publishes them in an [`AcmeNoticeCell`]; the page only loads the
//! cell. The proxy crate knows nothing of ACME orders: the notices are plain text and times
//! already formatted (RFC 3339, UTC).

use std::fmt::Write as _;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

/// The longest error text shown; longer ones are cut (the log has the whole text).
pub const MAX_ERROR_CHARS: usize = 400;

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertState {
    /// Served, and covers every name asked for.
    Valid,
    /// An order is in progress.
    Ordering,
    /// The last attempt failed; the current certificate (if any) keeps serving.
    Failing,
    /// Not obtained yet: no attempt has finished.
    Pending,
}

impl CertState {
    /// The word shown (and the CSS class).
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Ordering => "ordering",
            CertState::Failing => "failing",
            CertState::Pending => "pending",
        }
    }
}

/// One certificate asked for with `acmeDomain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertNotice {
    /// The certificate's name in `CERTS_DIR` (`acme-<first domain>`).
    pub name: String,
    /// The names it covers.
    pub domains: Vec<String>,
    /// Where it stands.
    pub state: CertState,
    /// When the certificate this replica serves expires (RFC 3339), if it has one.
    pub valid_until: Option<String>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The last attempt's error (the CA's problem or the local cause; never a key).
    pub last_error: Option<String>,
    /// The next attempt (RFC 3339): the retry after a failure, else the renewal time.
    pub next_attempt: Option<String>,
}

/// Who orders, as this replica sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "address")]
pub enum Orderer {
    /// Not known yet (no service asks for a certificate, or the replicas are being probed).
    #[default]
    Unknown,
    /// This replica.
    This,
    /// The replica at this address; the failures and next attempts are the ones it reported.
    Peer(String),
}

/// Everything the page shows about ACME.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AcmeNotices {
    /// Who orders the certificates.
    pub orderer: Orderer,
    /// One entry per certificate, in name order.
    pub certificates: Vec<CertNotice>,
}

/// Where the current [`AcmeNotices`] are published.
#[derive(Debug, Default)]
pub struct AcmeNoticeCell {
    current: ArcSwap<AcmeNotices>,
}

impl AcmeNoticeCell {
    /// A cell holding no certificate.
    pub fn new() -> Arc<AcmeNoticeCell> {
        Arc::new(AcmeNoticeCell::default())
    }

    /// Replaces the notices.
    pub fn publish(&self, notices: AcmeNotices) {
        self.current.store(Arc::new(notices));
    }

    /// The current notices.
    pub fn load(&self) -> Arc<AcmeNotices> {
        self.current.load_full()
    }
}

/// An error text as shown: one line, at most [`MAX_ERROR_CHARS`] characters.
pub fn error_text(error: &str) -> String {
    let line: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= MAX_ERROR_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_ERROR_CHARS).collect();
    cut.push('…');
    cut
}

/// The dashboard's ACME rows (`escape` HTML-escapes a value), in the markup its script
/// renders too; empty without certificates.
pub fn rows(notices: &AcmeNotices, escape: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let by = match &notices.orderer {
        Orderer::Unknown => "-".to_owned(),
        Orderer::This => "this replica".to_owned(),
        Orderer::Peer(address) => escape(address),
    };
    for c in &notices.certificates {
        let state = c.state.as_str();
        let shown = match (c.state, &c.valid_until) {
            (CertState::Valid, Some(until)) => format!("valid until {}", escape(until)),
            (CertState::Failing, _) => format!(
                "failing ({} attempt{})",
                c.failures,
                if c.failures == 1 { "" } else { "s" }
            ),
            _ => state.to_owned(),
        };
        let serving = match (c.state, &c.valid_until) {
            (CertState::Valid, _) | (_, None) => String::new(),
            (_, Some(until)) => format!(
                "<br><small>serving the current one, valid until {}</small>",
                escape(until)
            ),
        };
        let error = c.last_error.as_deref().map_or_else(
            || "<td class=\"zero\">none</td>".to_owned(),
            |e| format!("<td class=\"err acme-error\">{}</td>", escape(e)),
        );
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "<tr class=\"acme\" data-name=\"{name}\" data-state=\"{state}\"><td>{name}</td>\
             <td>{domains}</td><td><span class=\"acme-state {state}\">{shown}</span>{serving}</td>\
             {error}<td>{next}</td><td>{by}</td></tr>",
            name = escape(&c.name),
            domains = escape(&c.domains.join(", ")),
            next = c
                .next_attempt
                .as_deref()
                .map_or_else(|| "-".to_owned(), &escape),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;")
    }

    fn notice(state: CertState) -> CertNotice {
        CertNotice {
            name: "acme-app.example.com".into(),
            domains: vec!["app.example.com".into(), "www.example.com".into()],
            state,
            valid_until: None,
            failures: 0,
            last_error: None,
            next_attempt: None,
        }
    }

    #[test]
    fn the_cell_holds_what_was_published_last() {
        let cell = AcmeNoticeCell::new();
        assert!(cell.load().certificates.is_empty());
        let notices = AcmeNotices {
            orderer: Orderer::This,
            certificates: vec![notice(CertState::Pending)],
        };
        cell.publish(notices.clone());
        assert_eq!(*cell.load(), notices);
    }

    #[test]
    fn each_state_renders_with_its_error_and_next_attempt() {
        let valid = CertNotice {
            valid_until: Some("2026-03-01T00:00:00Z".into()),
            next_attempt: Some("2026-01-30T00:00:00Z".into()),
            ..notice(CertState::Valid)
        };
        let failing = CertNotice {
            name: "acme-<b>".into(),
            valid_until: Some("2026-03-01T00:00:00Z".into()),
            failures: 3,
            last_error: Some("ACME: connection refused <script>".into()),
            next_attempt: Some("2026-01-30T00:01:20Z".into()),
            ..notice(CertState::Failing)
        };
        let notices = AcmeNotices {
            orderer: Orderer::Peer("10.0.1.5".into()),
            certificates: vec![valid, failing, notice(CertState::Ordering)],
        };
        let html = rows(&notices, escape);
        assert_eq!(html.lines().count(), 3, "{html}");
        assert!(html
            .contains("<span class=\"acme-state valid\">valid until 2026-03-01T00:00:00Z</span>"));
        assert!(html.contains("<td>app.example.com, www.example.com</td>"));
        assert!(html.contains("<td>2026-01-30T00:00:00Z</td><td>10.0.1.5</td>"));
        assert!(html.contains("data-name=\"acme-&lt;b>\" data-state=\"failing\""));
        assert!(html.contains("failing (3 attempts)"));
        assert!(html.contains("serving the current one, valid until 2026-03-01T00:00:00Z"));
        assert!(
            html.contains("<td class=\"err acme-error\">ACME: connection refused &lt;script></td>")
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("<span class=\"acme-state ordering\">ordering</span>"));
        assert!(rows(&AcmeNotices::default(), escape).is_empty());
    }

    #[test]
    fn errors_are_one_bounded_line() {
        assert_eq!(error_text("a\nb"), "a b");
        let long = "x".repeat(MAX_ERROR_CHARS + 10);
        let cut = error_text(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn notices_serialize_for_the_json_form() {
        let notices = AcmeNotices {
            orderer: Orderer::Peer("10.0.1.5".into()),
            certificates: vec![notice(CertState::Failing)],
        };
        let json = serde_json::to_value(&notices).unwrap();
        assert_eq!(json["orderer"]["kind"], "peer");
        assert_eq!(json["orderer"]["address"], "10.0.1.5");
        assert_eq!(json["certificates"][0]["state"], "failing");
        assert_eq!(
            json["certificates"][0]["last_error"],
            serde_json::Value::Null
        );
    }
}
