//! Minting and verifying `cst1` tokens. See the module docs of `auth` for the format.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AuthError, Scope};

/// The version tag every token starts with.
pub const TOKEN_PREFIX: &str = "cst1";
/// Longest token accepted. Real tokens are ~150 bytes; the bound stops a huge header from
/// being base64-decoded and hashed.
pub const TOKEN_BYTES_MAX: usize = 4096;

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was minted for (informational; shows up in logs).
    pub sub: String,
    /// What the holder may do.
    pub scopes: Vec<Scope>,
    /// Expiry, in seconds since the Unix epoch: the token is refused from this second on.
    pub exp: u64,
    /// When present, the only collections the holder may read or write (absent: all). Left
    /// out of the JSON when absent, so tokens without it are what they always were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
}

impl Claims {
    /// True when one of the scopes grants `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.scopes.iter().any(|s| s.grants(needed))
    }

    /// Checks that the holder may use `collection`.
    pub fn check_collection(&self, collection: &str) -> Result<(), AuthError> {
        match &self.collections {
            Some(allowed) if !allowed.iter().any(|c| c == collection) => {
                Err(AuthError::CollectionForbidden {
                    allowed: allowed.clone(),
                    what: format!("the request uses collection {collection:?}"),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A secret that cannot sign tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the auth secret must not be empty")]
pub struct WeakSecret;

/// The server's signing key: mints and verifies tokens. It may also hold an old key (secret
/// rotation), which verifies tokens until its end but never signs.
#[derive(Clone)]
pub struct TokenKey {
    mac: Hmac<Sha256>,
    old: Option<OldKey>,
}

/// The previous secret during a rotation.
#[derive(Clone)]
struct OldKey {
    mac: Hmac<Sha256>,
    /// Unix seconds from which tokens of the old secret are refused; `None`: while configured.
    until_s: Option<u64>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from the shared secret (its UTF-8 bytes).
    pub fn new(secret: &str) -> Result<TokenKey, WeakSecret> {
        Ok(TokenKey {
            mac: hmac_key(secret)?,
            old: None,
        })
    }

    /// Also accepts tokens signed with `old_secret` (the secret being rotated out), until
    /// `until_s` (Unix seconds) if given. New tokens are still minted with the new secret.
    pub fn with_old_secret(
        mut self,
        old_secret: &str,
        until_s: Option<u64>,
    ) -> Result<TokenKey, WeakSecret> {
        self.old = Some(OldKey {
            mac: hmac_key(old_secret)?,
            until_s,
        });
        Ok(self)
    }

    /// Signs `claims` into a token.
    pub fn mint(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let signed = format!("{TOKEN_PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let signature = self.sign(&signed).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Checks the signature, then the claims and the expiry against `now_s` (Unix seconds).
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::InvalidToken("too long"));
        }
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or(AuthError::InvalidToken("not a cst1 token"))?;
        let (prefix, claims_part) = signed
            .split_once('.')
            .ok_or(AuthError::InvalidToken("not a cst1 token"))?;
        if prefix != TOKEN_PREFIX {
            return Err(AuthError::InvalidToken("not a cst1 token"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::InvalidToken("signature is not base64url"))?;
        let current = self.sign(signed).verify_slice(&signature).is_ok();
        // During a rotation, the old secret's tokens verify until its end.
        let old = !current
            && self.old.as_ref().is_some_and(|old| {
                old.until_s.is_none_or(|until| now_s < until) && {
                    let mut mac = old.mac.clone();
                    mac.update(signed.as_bytes());
                    mac.verify_slice(&signature).is_ok()
                }
            });
        if !current && !old {
            return Err(AuthError::InvalidToken("bad signature"));
        }
        // Signed by a holder of the secret from here on; a parse failure is a minting bug or
        // a token from an incompatible version.
        let json = URL_SAFE_NO_PAD
            .decode(claims_part)
            .map_err(|_| AuthError::InvalidToken("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|_| AuthError::InvalidToken("claims do not parse"))?;
        if now_s >= claims.exp {
            return Err(AuthError::TokenExpired);
        }
        Ok(claims)
    }

    /// True when an old secret is configured.
    pub fn has_old_secret(&self) -> bool {
        self.old.is_some()
    }

    fn sign(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac
    }
}

fn hmac_key(secret: &str) -> Result<Hmac<Sha256>, WeakSecret> {
    if secret.is_empty() {
        return Err(WeakSecret);
    }
    Ok(Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cstore_core::ErrorCode;

    const NOW: u64 = 1_800_000_000;

    fn key() -> TokenKey {
        TokenKey::new("test secret").unwrap()
    }

    fn claims(scopes: &[Scope]) -> Claims {
        Claims {
            sub: "alice".into(),
            scopes: scopes.to_vec(),
            exp: NOW + 60,
            collections: None,
        }
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_string).collect()
    }

    #[test]
    fn round_trip() {
        let c = claims(&[Scope::Read, Scope::Write]);
        let token = key().mint(&c);
        assert!(token.starts_with("cst1."));
        assert_eq!(parts(&token).len(), 3);
        assert_eq!(key().verify(&token, NOW), Ok(c));
    }

    #[test]
    fn claims_are_the_documented_json() {
        let token = key().mint(&claims(&[Scope::Admin]));
        let json = URL_SAFE_NO_PAD.decode(&parts(&token)[1]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"sub": "alice", "scopes": ["admin"], "exp": NOW + 60})
        );
    }

    #[test]
    fn another_secret_is_a_forged_signature() {
        let forged = TokenKey::new("other secret")
            .unwrap()
            .mint(&claims(&[Scope::Admin]));
        assert_eq!(
            key().verify(&forged, NOW),
            Err(AuthError::InvalidToken("bad signature"))
        );
    }

    #[test]
    fn tampered_claims_fail_the_signature() {
        let token = key().mint(&claims(&[Scope::Read]));
        let p = parts(&token);
        let mut upgraded = claims(&[Scope::Admin]);
        upgraded.exp = NOW + 1_000_000;
        let claims_part = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&upgraded).unwrap());
        let tampered = format!("{}.{claims_part}.{}", p[0], p[2]);
        assert_eq!(
            key().verify(&tampered, NOW),
            Err(AuthError::InvalidToken("bad signature"))
        );
        // A flipped bit in the signature too.
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            key().verify(&flipped, NOW),
            Err(AuthError::InvalidToken("bad signature"))
        );
    }

    #[test]
    fn expired_from_exp_on() {
        let token = key().mint(&claims(&[Scope::Read]));
        assert!(key().verify(&token, NOW + 59).is_ok());
        assert_eq!(key().verify(&token, NOW + 60), Err(AuthError::TokenExpired));
        assert_eq!(
            key().verify(&token, NOW + 10_000),
            Err(AuthError::TokenExpired)
        );
    }

    #[test]
    fn scopes_decide_what_is_allowed() {
        assert!(claims(&[Scope::Read]).allows(Scope::Read));
        assert!(!claims(&[Scope::Read]).allows(Scope::Write));
        assert!(claims(&[Scope::Write]).allows(Scope::Read));
        assert!(!claims(&[Scope::Write]).allows(Scope::Admin));
        assert!(claims(&[Scope::Admin]).allows(Scope::Write));
        assert!(!claims(&[]).allows(Scope::Read));
    }

    #[test]
    fn malformed_tokens_are_invalid() {
        let good = key().mint(&claims(&[Scope::Read]));
        let p = parts(&good);
        let long = "a".repeat(TOKEN_BYTES_MAX + 1);
        let cases = [
            String::new(),
            "cst1".into(),
            "cst1.abc".into(),
            format!("cst2.{}.{}", p[1], p[2]),
            format!("{}.{}.!!", p[0], p[1]),
            format!("{}.{}", p[1], p[2]),
            format!("{good}.extra"),
            long,
        ];
        for bad in cases {
            let got = key().verify(&bad, NOW);
            assert!(
                matches!(got, Err(AuthError::InvalidToken(_))),
                "{bad:?}: {got:?}"
            );
        }
    }

    #[test]
    fn signed_garbage_claims_are_invalid() {
        // Signed with the right key but not claims: refused, not a panic.
        let k = key();
        for claims_json in [
            &b"not json"[..],
            br#"{"sub":"a","scopes":["root"],"exp":1}"#,
        ] {
            let signed = format!("cst1.{}", URL_SAFE_NO_PAD.encode(claims_json));
            let sig = k.sign(&signed).finalize().into_bytes();
            let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
            assert_eq!(
                k.verify(&token, NOW),
                Err(AuthError::InvalidToken("claims do not parse"))
            );
        }
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(TokenKey::new("").unwrap_err(), WeakSecret);
        assert_eq!(key().with_old_secret("", None).unwrap_err(), WeakSecret);
    }

    #[test]
    fn an_old_secret_verifies_until_its_end_and_never_signs() {
        let old = TokenKey::new("old secret").unwrap();
        let old_token = old.mint(&claims(&[Scope::Read]));
        assert_eq!(
            key().verify(&old_token, NOW),
            Err(AuthError::InvalidToken("bad signature"))
        );
        let rotating = key().with_old_secret("old secret", Some(NOW + 10)).unwrap();
        assert!(rotating.has_old_secret());
        assert_eq!(rotating.verify(&old_token, NOW), Ok(claims(&[Scope::Read])));
        assert_eq!(
            rotating.verify(&old_token, NOW + 10),
            Err(AuthError::InvalidToken("bad signature")),
            "refused from its end on"
        );
        // New tokens: the new secret, which the old key alone does not accept.
        let new_token = rotating.mint(&claims(&[Scope::Read]));
        assert!(key().verify(&new_token, NOW + 20).is_ok());
        assert!(old.verify(&new_token, NOW).is_err());
        // Without an end, the old secret works for as long as it is configured; a third
        // secret never does.
        let open_ended = key().with_old_secret("old secret", None).unwrap();
        assert!(open_ended.verify(&old_token, NOW).is_ok());
        let stranger = TokenKey::new("another")
            .unwrap()
            .mint(&claims(&[Scope::Read]));
        assert!(open_ended.verify(&stranger, NOW).is_err());
        // The expiry of the token itself still holds.
        assert_eq!(
            open_ended.verify(&old_token, NOW + 60),
            Err(AuthError::TokenExpired)
        );
    }

    #[test]
    fn collection_limits() {
        let mut limited = claims(&[Scope::Write]);
        limited.collections = Some(vec!["notes".into(), "todos".into()]);
        let token = key().mint(&limited);
        let verified = key().verify(&token, NOW).unwrap();
        assert_eq!(verified, limited);
        assert!(verified.check_collection("notes").is_ok());
        assert_eq!(
            verified.check_collection("secrets").unwrap_err().code(),
            "collection_forbidden"
        );
        // Unlimited tokens: every collection.
        assert!(claims(&[Scope::Read]).check_collection("secrets").is_ok());
        assert!(!claims(&[Scope::Replicate]).allows(Scope::Read));
        // A plain token's JSON has no `collections` key at all.
        let json = serde_json::to_value(claims(&[Scope::Read])).unwrap();
        assert!(json.get("collections").is_none());
    }
}
