//! Credentials as configured: basic-auth user lists (`USERS`, the `dfp_users_<name>` secret
//! files, the `users` parameter's format) and single name/password pairs (the statistics page,
//! the control API).
//!
//! Parsing only: callers hand in the text (from a variable or a file they read) and get typed
//! values back. Passwords never appear in `Debug` output.

use std::fmt;

use crate::service::User;

/// One name and password, e.g. `STATS_USER`/`STATS_PASS` or `API_USER`/`API_PASS`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password, in plain text.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a user list: entries separated by `,` or newlines, each `name:password` where the
/// password is everything after the **first** `:`. Whitespace around entries, names and
/// passwords is trimmed. Entries without a name are skipped; an entry without `:` (or with an
/// empty password) yields a user without password, which the caller either fills in or drops.
pub fn parse_user_list(text: &str) -> Vec<User> {
    text.split([',', '\n'])
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .filter_map(|entry| {
            let (name, password) = match entry.split_once(':') {
                Some((name, password)) => (name.trim(), Some(password.trim())),
                None => (entry, None),
            };
            (!name.is_empty()).then(|| User {
                name: name.to_string(),
                password: password.filter(|p| !p.is_empty()).map(str::to_string),
            })
        })
        .collect()
}

/// The password of the first user named `name` (ASCII case-insensitively) that has one. This
/// is how a `users` entry without password takes it from a secret file or the global users.
pub fn password_for<'a>(users: &'a [User], name: &str) -> Option<&'a str> {
    users
        .iter()
        .filter(|u| u.name.eq_ignore_ascii_case(name))
        .find_map(|u| u.password.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_on_commas_and_newlines_and_the_first_colon() {
        let users = parse_user_list(" my-user:my-pass ,\nother:p:a:ss\r\n,nopass, :x,blank:\n");
        let pairs: Vec<(&str, Option<&str>)> = users
            .iter()
            .map(|u| (u.name.as_str(), u.password.as_deref()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("my-user", Some("my-pass")),
                ("other", Some("p:a:ss")),
                ("nopass", None),
                ("blank", None),
            ]
        );
    }

    #[test]
    fn hashes_keep_their_dollar_signs() {
        let hash = "$6$F2eJJA.G$BfoxX38MoNS10tywEzQZVDZOAjJn9wyTZJecYg.CymjwE8Rgm7xJn0KG3faT36GZbOtrsu4ba.vhsnHrPCNAa0";
        let users = parse_user_list(&format!("observer:{hash}\n"));
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].password.as_deref(), Some(hash));
    }

    #[test]
    fn password_lookup_ignores_case_and_skips_users_without_one() {
        let users = parse_user_list("Admin,admin:first,ADMIN:second");
        assert_eq!(password_for(&users, "aDmIn"), Some("first"));
        assert_eq!(password_for(&users, "nobody"), None);
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = Credentials {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", parse_user_list("a:hunter2")).contains("hunter2"));
    }
}
