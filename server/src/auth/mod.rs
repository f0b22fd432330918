//! Bearer tokens: who may read, write or administer the server.
//!
//! The server holds one secret; tokens are minted offline with `cstore token create` (same
//! secret) and carry their own claims, so checking one needs no database and no network:
//! split it, recompute the HMAC-SHA256 over the claims part in constant time, then read the
//! scopes and the expiry. The format is the contract in docs/HTTP_API.md:
//!
//! ```text
//!   cst1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "cst1." + claims part))>
//!   claims = {"sub": "...", "scopes": ["read"], "exp": <unix seconds>,
//!             "collections"?: ["notes", "todos"]}
//! ```
//!
//! A token with `collections` reads and writes only those collections (`403
//! collection_forbidden` elsewhere); over `/v1/replicate` its hello must subscribe to those
//! collections only (the others' operations then travel as hashes), or the session is closed
//! with `collection_forbidden`.
//!
//! Rotation: the server may hold a second, old secret (`--token-secret-old`, optionally until
//! `--token-secret-old-until`): tokens signed with either verify, so clients move to tokens of
//! the new secret at their own pace, and the old one stops working when it is removed or
//! its time is up.
//!
//! The signature is checked before the claims are parsed, so nothing an attacker wrote is
//! interpreted until it is known to come from someone who holds the secret.

mod scope;
mod token;

pub use scope::{InvalidScope, Scope};
pub use token::{Claims, TOKEN_BYTES_MAX, TOKEN_PREFIX, TokenKey, WeakSecret};

use cstore_core::ErrorCode;

/// Why a request was not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("this route needs `Authorization: Bearer <token>`")]
    MissingToken,
    /// The token does not parse or its signature does not verify.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The token was valid but its `exp` has passed.
    #[error("the token expired")]
    TokenExpired,
    /// The token is valid but lacks the scope the route needs.
    #[error("the token lacks the `{needed}` scope")]
    Forbidden {
        /// The scope the route needs.
        needed: Scope,
    },
    /// The token is limited to collections and the request touches another one (or, for
    /// replication, every one).
    #[error("the token is limited to collections {allowed:?}; {what}")]
    CollectionForbidden {
        /// The collections the token may use.
        allowed: Vec<String>,
        /// What the request wanted.
        what: String,
    },
}

impl ErrorCode for AuthError {
    fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokenExpired => "token_expired",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::CollectionForbidden { .. } => "collection_forbidden",
        }
    }
}
