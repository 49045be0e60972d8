//! Secrets of users: argon2id password hashes, random tokens kept as their SHA-256, and the
//! user and token verbs the CLI and the admin API share.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::access::{Role, check_user};
use crate::store::{API_TOKEN, Store, StoreError};

/// What a user or token verb refuses.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user `{0}`")]
    NoUser(String),
    #[error("a user `{0}` exists already")]
    Taken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The shortest password taken.
pub const MIN_PASSWORD: usize = 10;
/// The longest password taken, in bytes (a login with a longer one fails at once).
pub const MAX_PASSWORD: usize = 1024;

fn random<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| IdentityError::Invalid(format!("the system gave no randomness: {e}")))?;
    Ok(b)
}

/// An argon2id hash (PHC string) of `password`, with a random salt.
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    if password.chars().count() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(IdentityError::Invalid(format!(
            "a password has at least {MIN_PASSWORD} characters and at most {MAX_PASSWORD} bytes"
        )));
    }
    let salt = SaltString::encode_b64(&random::<16>()?).map_err(|e| IdentityError::Invalid(format!("salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Invalid(format!("hashing the password: {e}")))
}

/// Whether `password` matches the PHC string `hash` (in constant time).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user is unknown, so that a login takes as long either way.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("not a password of anyone").unwrap_or_default());
    &DECOY
}

/// A new secret with `prefix` (`act_` for tokens, `acs_` for sessions) and the SHA-256 kept of it.
pub fn new_secret(prefix: &str) -> Result<(String, String), IdentityError> {
    let secret = format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?));
    let hash = secret_hash(&secret);
    Ok((secret, hash))
}

/// The SHA-256 (hex) a token or session is kept and looked up by.
pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The role named `name`, or an error that lists them.
pub fn role(name: &str) -> Result<Role, IdentityError> {
    Role::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        IdentityError::Invalid(format!("role `{name}`: write {}", names.join(", ")))
    })
}

/// A valid user name: letters, digits and `-_.@`, at most 64.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// Adds user `name`, with a password if given; returns its id.
pub async fn add_user(
    store: &Store,
    name: &str,
    role: Role,
    customers: &[String],
    password: Option<&str>,
    known_customers: &[&str],
    now: DateTime<Utc>,
) -> Result<i64, IdentityError> {
    if !valid_name(name) {
        return Err(IdentityError::Invalid(format!(
            "user name `{name}`: write letters, digits, `-`, `_`, `.` or `@`, at most 64"
        )));
    }
    check_user(role, customers).map_err(IdentityError::Invalid)?;
    if let Some(c) = customers.iter().find(|c| !known_customers.contains(&c.as_str())) {
        return Err(IdentityError::Invalid(format!("no customer `{c}` in the config")));
    }
    let hash = password.map(hash_password).transpose()?;
    store.add_user(name, role, customers, hash.as_deref(), now).await?.ok_or_else(|| IdentityError::Taken(name.into()))
}

/// The shortest secret taken from outside (`token create --secret-stdin`).
pub const MIN_GIVEN_SECRET: usize = 32;

/// A new API token of user `user`, valid until `expires_at`: the secret (shown once) and its
/// id. The secret is made here unless one is `given` (from a secret manager).
pub async fn create_token(
    store: &Store,
    user: &str,
    name: &str,
    given: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(String, i64), IdentityError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid("a token's name has 1 to 100 characters, none of them control".into()));
    }
    let u = store.user(user).await?.ok_or_else(|| IdentityError::NoUser(user.into()))?;
    if u.disabled {
        return Err(IdentityError::Invalid(format!("user `{user}` is disabled")));
    }
    let (secret, hash) = match given {
        Some(g) if g.chars().count() < MIN_GIVEN_SECRET || g.chars().any(char::is_whitespace) => {
            return Err(IdentityError::Invalid(format!(
                "a given secret has at least {MIN_GIVEN_SECRET} characters and no spaces"
            )));
        }
        Some(g) => {
            let h = secret_hash(&g);
            (g, h)
        }
        None => new_secret("act_")?,
    };
    let id = store.add_token(u.id, API_TOKEN, name, &hash, now, expires_at).await?;
    Ok((secret, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn secrets_are_random_and_kept_as_their_hash() {
        let (a, ha) = new_secret("act_").unwrap();
        let (b, _) = new_secret("act_").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("act_") && a.len() > 40);
        assert_eq!(secret_hash(&a), ha);
        assert_eq!(ha.len(), 64);
        assert!(!ha.contains(&a[4..]));
    }
}
