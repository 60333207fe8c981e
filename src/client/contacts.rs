//! Contacts' keys, pinned as MEGA's own clients pin them (`MEGA-BACKUPS-TRUST.md` §3): the
//! authrings in the key manager (`^!keys` tags 32 and 33) record each contact's Ed25519
//! signing key and Cu25519 encryption key the first time this account sees them (trust on
//! first use: Ed25519 as SEEN; Cu25519 as SIGNATURE, only once its signature by that Ed25519
//! key verified). Before a share key is encrypted to a contact, both keys they present now
//! must be the recorded ones: a changed key refuses the share ([`Error::KeyChanged`]) — we
//! never re-pin on our own, not even a Cu25519 key properly signed by the pinned Ed25519 key
//! — until the user, having compared fingerprints with the contact, confirms it with
//! [`Client::verify_contact`], which records the current keys as verified (Ed25519
//! FINGERPRINT, as the SDK records a verification). Records other clients wrote are kept.
//!
//! Contact requests (`MEGA-KEYS-SHARES-VERSIONS.md` §3.4): invite (`upc`), cancel, answer
//! (`upca`: accept, decline, ignore) and remove a contact (`ur2`); the requests not yet
//! answered are kept in the tree (from `f` and the `opc`/`ipc`/`upco`/`upci` packets).

use ed25519_dalek::{Signature, VerifyingKey};

use super::{Client, Error, Result};
use crate::api::commands::{AnswerInvitation, InviteContact, InviteReply, RawUser, RemoveContact};
use crate::api::{ApiError, ErrorCode};
use crate::crypto::authring::{self, AuthRing, Check, Method};
use crate::crypto::b64;
use crate::crypto::keymgr::tag;
use crate::tree::ContactRequest;

/// A contact's public keys as the server presents them now.
#[derive(Debug, Clone)]
pub struct PeerKeys {
    pub ed25519: [u8; 32],
    /// Present, and its signature by `ed25519` verified; `None` for a user without one.
    pub cu25519: Option<[u8; 32]>,
}

/// How far this account trusts a contact's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The user confirmed the fingerprint (`verify`), and the keys are the recorded ones.
    Verified,
    /// Recorded on first sight, unchanged since.
    Seen,
    /// Not recorded yet (recorded when first used).
    New,
    /// A key differs from the one recorded: nothing is shared with them until confirmed.
    Changed,
    /// The user has no Ed25519 key (an account from before 2022): nothing to pin.
    NoKeys,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Verified => "verified",
            Trust::Seen => "seen",
            Trust::New => "new",
            Trust::Changed => "CHANGED",
            Trust::NoKeys => "no keys",
        }
    }
}

/// A contact as `megacmd contacts` lists it.
#[derive(Debug, Clone)]
pub struct Contact {
    pub user: String,
    pub email: Option<String>,
    /// The Ed25519 fingerprint in the form MEGA's apps show credentials.
    pub fingerprint: Option<String>,
    pub trust: Trust,
}

/// A user handle as authrings store it (8 raw bytes).
fn user_bytes(user: &str) -> Result<[u8; 8]> {
    b64::decode(user, "user handle")
        .map_err(ApiError::from)?
        .try_into()
        .map_err(|_| Error::Protocol(format!("{user}: not a user handle")))
}

fn ring_error(e: crate::crypto::CryptoError) -> Error {
    Error::Protocol(format!("an authring in the key manager is unreadable: {e}"))
}

impl Client {
    /// A user's public keys, the Cu25519 one checked against its signature by the Ed25519
    /// one (`+sigCu255`: `ts ‖ Ed25519("keyauth" ‖ ts ‖ key)`). `None` for a user without an
    /// Ed25519 key; an error if a Cu25519 key is there but its signature does not verify.
    pub(super) async fn peer_keys(&self, user: &str) -> Result<Option<PeerKeys>> {
        let Some(ed) = self.peer_attr(user, "+puEd255").await? else {
            return Ok(None);
        };
        let bad = |what: &str| Error::Protocol(format!("{}: {what}", self.user_label(user)));
        let ed: [u8; 32] = ed
            .try_into()
            .map_err(|_| bad("its Ed25519 key is malformed"))?;
        let Some(cu) = self.peer_attr(user, "+puCu255").await? else {
            return Ok(Some(PeerKeys {
                ed25519: ed,
                cu25519: None,
            }));
        };
        let unsigned = || bad("its Cu25519 key does not carry a valid signature; not using it");
        let cu: [u8; 32] = cu.try_into().map_err(|_| unsigned())?;
        let sig = self
            .peer_attr(user, "+sigCu255")
            .await?
            .ok_or_else(unsigned)?;
        if sig.len() < 72 {
            return Err(unsigned());
        }
        let vk = VerifyingKey::from_bytes(&ed).map_err(|_| unsigned())?;
        let signature = Signature::from_slice(&sig[8..72]).map_err(|_| unsigned())?;
        let mut msg = b"keyauth".to_vec();
        msg.extend(&sig[..8]);
        msg.extend(cu);
        vk.verify_strict(&msg, &signature).map_err(|_| unsigned())?;
        Ok(Some(PeerKeys {
            ed25519: ed,
            cu25519: Some(cu),
        }))
    }

    /// "e-mail" or the user handle, for messages.
    fn user_label(&self, user: &str) -> String {
        self.read_tree()
            .email_of(user)
            .map_or_else(|| user.to_string(), str::to_string)
    }

    /// The two authrings as the key manager holds them now (empty without one).
    async fn authrings(&self) -> Result<(AuthRing, AuthRing)> {
        let Some((c, _)) = self.read_keys().await? else {
            return Ok(Default::default());
        };
        Ok((
            c.authring(tag::AUTHRING_ED25519).map_err(ring_error)?,
            c.authring(tag::AUTHRING_CU25519).map_err(ring_error)?,
        ))
    }

    /// Compares the keys a user presents with the authrings: what it finds, and whether a
    /// first sight has to be recorded.
    fn judge(&self, uh: &[u8; 8], keys: &PeerKeys, rings: &(AuthRing, AuthRing)) -> Trust {
        let ed = rings.0.check(uh, &keys.ed25519);
        let cu = keys.cu25519.map(|cu| rings.1.check(uh, &cu));
        match (ed, cu) {
            (Check::Changed, _) | (_, Some(Check::Changed)) => Trust::Changed,
            (Check::New, _) | (_, Some(Check::New)) => Trust::New,
            (Check::Same(Method::Fingerprint), Some(Check::Same(Method::Signature))) => {
                Trust::Verified
            }
            _ => Trust::Seen,
        }
    }

    /// Records keys seen for the first time (trust on first use), never replacing a record.
    async fn record_first_sight(&self, uh: [u8; 8], keys: &PeerKeys) -> Result<()> {
        let keys = keys.clone();
        self.commit_keys("recording a contact's keys", move |c| {
            let (Ok(mut ed), Ok(mut cu)) = (
                c.authring(tag::AUTHRING_ED25519),
                c.authring(tag::AUTHRING_CU25519),
            ) else {
                return false; // unreadable rings are never rewritten
            };
            if ed.get(&uh).is_none() {
                ed.set(uh, &keys.ed25519, Method::Seen);
            }
            if let Some(k) = keys.cu25519 {
                if cu.get(&uh).is_none() {
                    cu.set(uh, &k, Method::Signature);
                }
            }
            let a = c.set_authring(tag::AUTHRING_ED25519, &ed);
            let b = c.set_authring(tag::AUTHRING_CU25519, &cu);
            a || b
        })
        .await
    }

    /// The Cu25519 key to encrypt a share key to `user` with: its signature verified, and
    /// both of the user's keys the ones this account recorded (recorded now on first
    /// sight). `None` for a user without Cu25519 keys; [`Error::KeyChanged`] if a key is not
    /// the recorded one.
    pub(super) async fn trusted_cu25519(&self, user: &str) -> Result<Option<[u8; 32]>> {
        let Some(keys) = self.peer_keys(user).await? else {
            return Ok(None);
        };
        let Some(cu) = keys.cu25519 else {
            return Ok(None);
        };
        if !self.has_key_manager() {
            return Ok(Some(cu));
        }
        let uh = user_bytes(user)?;
        let rings = self.authrings().await?;
        match self.judge(&uh, &keys, &rings) {
            Trust::Changed => Err(Error::KeyChanged {
                who: self.user_label(user),
            }),
            Trust::New => {
                self.record_first_sight(uh, &keys).await?;
                // Another client may have recorded different keys meanwhile.
                let rings = self.authrings().await?;
                match self.judge(&uh, &keys, &rings) {
                    Trust::Changed => Err(Error::KeyChanged {
                        who: self.user_label(user),
                    }),
                    _ => Ok(Some(cu)),
                }
            }
            Trust::Verified | Trust::Seen | Trust::NoKeys => Ok(Some(cu)),
        }
    }

    /// The users this account knows (contacts and the people it shares with, not those
    /// removed as contacts), each with the fingerprint of their Ed25519 key and how far it
    /// is trusted; first sights are recorded.
    pub async fn contacts(&self) -> Result<Vec<Contact>> {
        let mut users: Vec<(String, Option<String>)> = self.view(|t| {
            t.users()
                .filter(|(h, _)| **h != self.session.user && !t.is_hidden(h))
                .map(|(h, m)| (h.clone(), Some(m.clone())))
                .collect()
        });
        users.sort_by(|a, b| a.1.cmp(&b.1));
        let mut out = Vec::with_capacity(users.len());
        for (user, email) in users {
            let keys = self.peer_keys(&user).await;
            let (fingerprint, trust) = match keys {
                Ok(Some(k)) => {
                    let uh = user_bytes(&user)?;
                    let mut trust = self.judge(&uh, &k, &self.authrings().await?);
                    if trust == Trust::New && self.has_key_manager() {
                        self.record_first_sight(uh, &k).await?;
                        trust = self.judge(&uh, &k, &self.authrings().await?);
                    }
                    (
                        Some(authring::show(&authring::fingerprint(&k.ed25519))),
                        trust,
                    )
                }
                Ok(None) => (None, Trust::NoKeys),
                // A Cu25519 key whose signature fails is as bad as a changed one.
                Err(Error::Protocol(_)) => (None, Trust::Changed),
                Err(e) => return Err(e),
            };
            out.push(Contact {
                user,
                email,
                fingerprint,
                trust,
            });
        }
        Ok(out)
    }

    /// The user confirmed, by comparing fingerprints with them, that `who` (e-mail or
    /// handle) holds the keys the server presents now: records them as verified (Ed25519 as
    /// FINGERPRINT, Cu25519 as SIGNATURE), replacing records of changed keys. Returns the
    /// fingerprint verified.
    pub async fn verify_contact(&self, who: &str) -> Result<String> {
        if !self.has_key_manager() {
            return Err(Error::Protocol(
                "verifying contacts needs MEGA's key manager (^!keys) on this account".into(),
            ));
        }
        let user = self.user_handle(who).await?;
        let keys = self
            .peer_keys(&user)
            .await?
            .ok_or_else(|| Error::Protocol(format!("{who}: has no keys to verify")))?;
        let cu = keys.cu25519.ok_or_else(|| {
            Error::Protocol(format!("{who}: has no signed Cu25519 key to verify"))
        })?;
        let uh = user_bytes(&user)?;
        let ed = keys.ed25519;
        self.commit_keys("verifying a contact", move |c| {
            let (Ok(mut er), Ok(mut cr)) = (
                c.authring(tag::AUTHRING_ED25519),
                c.authring(tag::AUTHRING_CU25519),
            ) else {
                return false;
            };
            er.set(uh, &ed, Method::Fingerprint);
            cr.set(uh, &cu, Method::Signature);
            let a = c.set_authring(tag::AUTHRING_ED25519, &er);
            let b = c.set_authring(tag::AUTHRING_CU25519, &cr);
            a || b
        })
        .await?;
        // The commit gives up on unreadable rings rather than rewrite them: say so.
        let rings = self.authrings().await?;
        if self.judge(&uh, &keys, &rings) != Trust::Verified {
            return Err(Error::Protocol(format!(
                "{who}: the verification could not be recorded"
            )));
        }
        Ok(authring::show(&authring::fingerprint(&ed)))
    }
}

/// How an invitation received is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Decline,
    Ignore,
}

impl Client {
    /// Contact requests not answered yet, sent and received, oldest first.
    pub fn requests(&self) -> Vec<ContactRequest> {
        let mut r: Vec<ContactRequest> = self.view(|t| t.requests().cloned().collect());
        r.sort_by(|a, b| (a.ts, &a.email).cmp(&(b.ts, &b.email)));
        r
    }

    /// Invites `email` to be a contact (`upc`), with an optional message; they see it in
    /// MEGA's apps (and an e-mail from MEGA).
    pub async fn invite(&self, email: &str, msg: Option<&str>) -> Result<ContactRequest> {
        let email = email.trim().to_lowercase();
        let reply = self
            .api
            .run(&InviteContact {
                u: &email,
                aa: "a",
                msg,
            })
            .await
            .map_err(|e| match e {
                ApiError::Mega(ErrorCode::Exists) => Error::AlreadyExists {
                    what: format!("{email}: already a contact, or already invited"),
                },
                e => e.into(),
            })?;
        let id = match reply {
            InviteReply::Request(r) => r.p,
            InviteReply::Done(_) => None,
        }
        .ok_or_else(|| Error::Protocol("`upc` reply without the request's handle".into()))?;
        let now = crate::local::time::now();
        let msg = msg.unwrap_or_default();
        self.store.edit(
            |_| {},
            |t| t.learn_request(&id, Some(&email), true, msg, now, false),
        );
        Ok(ContactRequest {
            id,
            email,
            outgoing: true,
            msg: msg.to_string(),
            ts: now,
        })
    }

    /// The unanswered request sent to or received from `email`.
    fn request_with(&self, email: &str, outgoing: bool) -> Result<ContactRequest> {
        let email = email.trim().to_lowercase();
        self.requests()
            .into_iter()
            .find(|r| r.outgoing == outgoing && r.email.to_lowercase() == email)
            .ok_or_else(|| Error::NotFound {
                what: format!(
                    "{email}: no invitation {} them",
                    if outgoing { "sent to" } else { "from" }
                ),
            })
    }

    /// Cancels the invitation sent to `email`.
    pub async fn cancel_invite(&self, email: &str) -> Result<()> {
        let r = self.request_with(email, true)?;
        self.api
            .run(&InviteContact {
                u: &r.email,
                aa: "d",
                msg: None,
            })
            .await?;
        self.store
            .edit(|_| {}, |t| t.learn_request(&r.id, None, true, "", 0, true));
        Ok(())
    }

    /// Answers the invitation received from `email` (`upca`); accepted, they become a
    /// contact.
    pub async fn answer_invitation(&self, email: &str, answer: Answer) -> Result<()> {
        let r = self.request_with(email, false)?;
        let aa = match answer {
            Answer::Accept => "a",
            Answer::Decline => "d",
            Answer::Ignore => "i",
        };
        self.api.run(&AnswerInvitation { p: &r.id, aa }).await?;
        self.store
            .edit(|_| {}, |t| t.learn_request(&r.id, None, false, "", 0, true));
        Ok(())
    }

    /// Removes `email` from the contacts (`ur2`); shares stay as they are.
    pub async fn remove_contact(&self, email: &str) -> Result<()> {
        let user = self.user_handle(email).await?;
        self.api
            .run(&RemoveContact { u: &user, l: 0 })
            .await
            .map_err(|e| match e {
                ApiError::Mega(ErrorCode::NotFound) => Error::NotFound {
                    what: format!("{email}: not a contact"),
                },
                e => e.into(),
            })?;
        let hide = [RawUser {
            u: Some(user),
            m: None,
            c: Some(0),
        }];
        self.store.edit(|_| {}, |t| t.learn_users(&hide));
        Ok(())
    }
}
