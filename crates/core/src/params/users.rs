//! Users: `users` and `usersSecret`.

use super::value::Val;
use super::ParamError;
use crate::service::User;

pub(super) fn parse_users(v: &Val<'_>) -> Result<Vec<User>, ParamError> {
    let redacted = |reason: &str| ParamError::Invalid {
        param: v.key.clone(),
        value: "<redacted>".to_string(),
        reason: reason.to_string(),
    };
    let mut users = Vec::new();
    for entry in v
        .value
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (name, password) = match entry.split_once(':') {
            Some((name, password)) => (name.trim(), Some(password.trim())),
            None => (entry, None),
        };
        if name.is_empty() {
            return Err(redacted("a user entry has no name"));
        }
        users.push(User {
            name: name.to_string(),
            password: password.filter(|p| !p.is_empty()).map(str::to_string),
        });
    }
    if users.is_empty() {
        return Err(redacted("no user in the list"));
    }
    Ok(users)
}

pub(super) fn parse_users_secret(v: &Val<'_>) -> Result<String, ParamError> {
    let name = v.value.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(v.invalid("a secret name may only contain letters, digits, '.', '_' and '-'"));
    }
    Ok(name.to_string())
}
