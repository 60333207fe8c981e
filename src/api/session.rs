//! Login (`us0` → v1 or v2 key derivation → `us`), two-factor authentication, session ids from
//! `csid` (RSA) or `tsid`, saving a session (sid + master key) to a 0600 file and resuming from
//! it without the password, and logout (`sml`). `MEGA-PROTOCOL.md` §4.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::commands::{GetUser, Login, LoginReply, Logout, PreLogin};
use super::{ApiClient, ApiError, ErrorCode};
use crate::crypto::rsa::RsaPrivateKey;
use crate::crypto::{b64, kdf, CryptoError, Key128, MasterKey};

/// A session id (base64url of 43 bytes). `Debug` is redacted: it grants account access.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(s: String) -> Self {
        SessionId(s)
    }

    /// The raw value, for the `sid=` query parameter and the session file only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub sid: SessionId,
    pub master_key: MasterKey,
    /// Own user handle (11 characters).
    pub user: String,
    pub email: String,
    /// The account's RSA key, for RSA-wrapped share and node keys.
    pub rsa: Option<Arc<RsaPrivateKey>>,
}

/// Why logging in or using the session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("wrong e-mail or password")]
    WrongPassword,
    #[error("a two-factor authentication code is required")]
    MfaRequired,
    #[error("the two-factor authentication code was not accepted")]
    MfaRejected,
    #[error("{}", super::error::blocked_message(.0))]
    Blocked(Option<super::BlockReason>),
    #[error("the session is no longer valid; log in again")]
    SessionExpired,
    #[error("not logged in")]
    NotLoggedIn,
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unsupported account version {0}")]
    UnsupportedVersion(i64),
    #[error("the login reply could not be decrypted: {0}")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("session file {path}: {msg}")]
    SessionFile { path: PathBuf, msg: String },
}

/// Password-derived values for one login, kept so that a 2FA retry does not re-run the KDF.
pub struct PreparedLogin {
    email: String,
    pwkey: Key128,
    uh: String,
}

impl std::fmt::Debug for PreparedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedLogin")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

fn field<'a>(v: &'a Option<String>, k: &str) -> Result<&'a str, ApiError> {
    v.as_deref()
        .ok_or_else(|| ApiError::BadResponse(format!("login reply lacks `{k}`")))
}

/// `us0` and the key derivation (v1: prepare_key + stringhash, v2: PBKDF2-SHA512).
pub async fn prepare_login(
    api: &ApiClient,
    email: &str,
    password: &str,
) -> Result<PreparedLogin, LoginError> {
    let email = email.trim().to_lowercase();
    let pre = api.run(&PreLogin { user: &email }).await?;
    let version = pre.v.unwrap_or(1);
    let password = password.as_bytes().to_vec();
    let (pwkey, uh) = match version {
        1 => {
            let email2 = email.clone();
            tokio::task::spawn_blocking(move || {
                let pk = kdf::prepare_key(&password);
                let uh = b64::encode(&kdf::stringhash(email2.as_bytes(), &pk));
                (pk, uh)
            })
            .await
            .map_err(|e| ApiError::BadResponse(e.to_string()))?
        }
        2 => {
            let salt = b64::decode(field(&pre.s, "s")?, "salt")?;
            if salt.is_empty() {
                return Err(ApiError::BadResponse("empty v2 salt".into()).into());
            }
            tokio::task::spawn_blocking(move || {
                let (pk, auth) = kdf::derive_v2(&password, &salt);
                (pk, b64::encode(&auth))
            })
            .await
            .map_err(|e| ApiError::BadResponse(e.to_string()))?
        }
        v => return Err(LoginError::UnsupportedVersion(v)),
    };
    Ok(PreparedLogin { email, pwkey, uh })
}

impl PreparedLogin {
    /// Sends `us` (with the 2FA code if given) and decrypts the session.
    pub async fn login(&self, api: &ApiClient, mfa: Option<&str>) -> Result<Session, LoginError> {
        let sek = b64::encode(&Key128::random().0);
        let cmd = Login {
            user: &self.email,
            uh: &self.uh,
            sek: &sek,
            mfa: mfa.map(str::trim),
        };
        let reply = match api.run(&cmd).await {
            Ok(r) => r,
            Err(ApiError::Mega(ErrorCode::NotFound)) => return Err(AuthError::WrongPassword.into()),
            Err(ApiError::Mega(ErrorCode::MfaRequired)) => {
                return Err(if mfa.is_some() {
                    AuthError::MfaRejected
                } else {
                    AuthError::MfaRequired
                }
                .into())
            }
            Err(ApiError::Mega(ErrorCode::Blocked)) => return Err(AuthError::Blocked(None).into()),
            Err(ApiError::Blocked(r)) => return Err(AuthError::Blocked(r).into()),
            Err(e) => return Err(e.into()),
        };
        let k = b64::decode(&reply.k, "k")?;
        let mk = self.pwkey.unwrap_key(&k, "master key")?;
        let mk = Key128(
            <[u8; 16]>::try_from(&mk[..16]).expect("invariant: unwrap_key returns >= 16 bytes"),
        );
        let (sid, rsa) = decrypt_sid(&reply, &mk)?;
        api.set_sid(Some(sid.clone()));
        // Only the official SDK needs the user handle in the login reply; `ug` gives it too.
        let user = match reply.u {
            Some(u) => u,
            None => api.run(&GetUser { v: 1 }).await?.u,
        };
        Ok(Session {
            sid,
            master_key: MasterKey(mk),
            user,
            email: self.email.clone(),
            rsa,
        })
    }
}

/// Logs in with e-mail and password (and a 2FA code if the account needs one).
pub async fn login(
    api: &ApiClient,
    email: &str,
    password: &str,
    mfa: Option<&str>,
) -> Result<Session, LoginError> {
    prepare_login(api, email, password)
        .await?
        .login(api, mfa)
        .await
}

fn decrypt_privk(privk: &str, mk: &Key128) -> Result<RsaPrivateKey, CryptoError> {
    let blob = mk.unwrap_key(&b64::decode(privk, "privk")?, "privk")?;
    RsaPrivateKey::from_blob(&blob)
}

/// The session id from a `us` reply: `tsid` (checked against the master key) or `csid`
/// (RSA-decrypted with the private key).
fn decrypt_sid(
    reply: &LoginReply,
    mk: &Key128,
) -> Result<(SessionId, Option<Arc<RsaPrivateKey>>), LoginError> {
    let rsa = match reply.privk.as_deref() {
        Some(p) => Some(Arc::new(decrypt_privk(p, mk)?)),
        None => None,
    };
    if let Some(tsid) = reply.tsid.as_deref() {
        let raw = b64::decode(tsid, "tsid")?;
        if raw.len() != 43 {
            return Err(CryptoError::Length {
                what: "tsid",
                got: raw.len(),
                expected: "43",
            }
            .into());
        }
        let check = mk.wrap(&raw[..16]);
        if check[..] != raw[27..43] {
            return Err(AuthError::WrongPassword.into());
        }
        return Ok((SessionId(tsid.to_string()), rsa));
    }
    let csid = b64::decode(field(&reply.csid, "csid")?, "csid")?;
    let key = rsa
        .as_ref()
        .ok_or_else(|| ApiError::BadResponse("login reply has csid but no privk".into()))?;
    let sid = key.decrypt_sid(&csid)?;
    Ok((SessionId(b64::encode(&sid)), rsa))
}

/// Resumes a saved session without the password: sets the sid and checks it with `ug`, which
/// also returns the RSA key (decrypted with the saved master key, which proves that key).
pub async fn resume(api: &ApiClient, saved: &SavedSession) -> Result<Session, LoginError> {
    let mk = saved.master_key()?;
    let sid = SessionId(saved.sid.clone());
    api.set_sid(Some(sid.clone()));
    let ug = match api.run(&GetUser { v: 1 }).await {
        Ok(v) => v,
        Err(e) => {
            api.set_sid(None);
            return Err(e.into());
        }
    };
    let user = ug.u;
    if user != saved.user {
        api.set_sid(None);
        return Err(ApiError::BadResponse("session belongs to another account".into()).into());
    }
    let rsa = match ug.privk.as_deref() {
        Some(p) => Some(Arc::new(decrypt_privk(p, &mk.0).map_err(|_| {
            LoginError::SessionFile {
                path: PathBuf::new(),
                msg: "the saved master key does not match the account".into(),
            }
        })?)),
        None => None,
    };
    Ok(Session {
        sid,
        master_key: mk,
        user,
        email: saved.email.clone(),
        rsa,
    })
}

/// Ends the session on the server (`sml`) and forgets the sid.
pub async fn logout(api: &ApiClient) -> Result<(), ApiError> {
    let r = api.run(&Logout {}).await;
    api.set_sid(None);
    match r {
        Ok(_) | Err(ApiError::SessionLost) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a session file holds. The file is written 0600 and refused if others can read it.
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedSession {
    pub version: u32,
    pub api_url: String,
    pub email: String,
    pub user: String,
    pub sid: String,
    /// Base64url master key.
    pub master_key: String,
}

impl std::fmt::Debug for SavedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedSession")
            .field("api_url", &self.api_url)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl SavedSession {
    pub fn from_session(s: &Session, api_url: &str) -> Self {
        SavedSession {
            version: 1,
            api_url: api_url.to_string(),
            email: s.email.clone(),
            user: s.user.clone(),
            sid: s.sid.expose().to_string(),
            master_key: b64::encode(&s.master_key.0 .0),
        }
    }

    fn master_key(&self) -> Result<MasterKey, LoginError> {
        Ok(MasterKey(Key128(b64::decode_array::<16>(
            &self.master_key,
            "master key",
        )?)))
    }

    /// Writes the file atomically with mode 0600 (its directory is created 0700).
    pub fn save(&self, path: &Path) -> Result<(), LoginError> {
        let err = |msg: String| LoginError::SessionFile {
            path: path.to_path_buf(),
            msg,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(e.to_string()))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(e.to_string()))?;
        // The mode given to open() is masked by the umask; make sure.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
        f.write_all(&text)
            .and_then(|_| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Reads a session file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, LoginError> {
        let err = |msg: String| LoginError::SessionFile {
            path: path.to_path_buf(),
            msg,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(
                "is readable by other users; refusing to use it (chmod 600 it)".into(),
            ));
        }
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let s: SavedSession =
            serde_json::from_slice(&text).map_err(|_| err("is not a valid session file".into()))?;
        if s.version != 1 {
            return Err(err(format!(
                "unsupported session file version {}",
                s.version
            )));
        }
        Ok(s)
    }

    /// Deletes the file (after logout).
    pub fn remove(path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tsid example of MEGA-PROTOCOL.md §12.10 (not in the vectors file).
    #[test]
    fn tsid_is_checked_against_master_key() {
        let mk = Key128(
            hex::decode("0000006d0000006f000000630000006b")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let tsid = "AAECAwQFBgcICQoLDA0OD2pDZjJQYzBwTENVI_OgZE5pBFmYNL2LU3Et2Q";
        let reply: LoginReply =
            serde_json::from_value(serde_json::json!({"k": "", "tsid": tsid})).unwrap();
        let (sid, rsa) = decrypt_sid(&reply, &mk).unwrap();
        assert_eq!(sid.expose(), tsid);
        assert!(rsa.is_none());
        let wrong = Key128([1; 16]);
        assert!(matches!(
            decrypt_sid(&reply, &wrong),
            Err(LoginError::Auth(AuthError::WrongPassword))
        ));
    }

    #[test]
    fn session_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/session.json");
        let s = SavedSession {
            version: 1,
            api_url: "http://127.0.0.1:1/".into(),
            email: "a@b".into(),
            user: "AAAAAAAAAAA".into(),
            sid: "sid".into(),
            master_key: b64::encode(&[3; 16]),
        };
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = SavedSession::load(&path).unwrap();
        assert_eq!(back.sid, "sid");
        assert!(!format!("{back:?}").contains("sid\""));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SavedSession::load(&path),
            Err(LoginError::SessionFile { .. })
        ));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let sid = SessionId::new("supersecretsid".into());
        assert!(!format!("{sid:?}").contains("supersecret"));
        let k = Key128([9; 16]);
        assert!(!format!("{k:?}").contains('9'));
    }
}
