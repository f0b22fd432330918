//! Bearer tokens: who may read, write or administer the server.
//!
//! The server holds one secret; tokens are minted offline with `cstore token create` (same
//! secret) and carry their own claims, so checking one needs no database and no network:
//! split it, recompute the HMAC-SHA256 over the claims part in constant time, then read the
//! scopes and the expiry. The format is the contract in docs/HTTP_API.md:
//!
//! ```text
//!   cst1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "cst1." + claims part))>
//!   claims = {"sub": "...", "scopes": ["read"], "exp": <unix seconds>}
//! ```
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
}

impl ErrorCode for AuthError {
    fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokenExpired => "token_expired",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }
}
