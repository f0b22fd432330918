//! The extractor that enforces scopes. Each handler names the least scope it needs in its
//! signature (`_: Authorized<NeedsWrite>`) as its first argument, so the check runs before
//! anything else is read from the request and no route can forget it.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::AppState;
use super::error::ApiError;
use crate::auth::{AuthError, Claims, Scope};

/// A scope a route needs, as a type.
pub trait Needed: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Routes that read: get, find, status, list collections.
#[derive(Debug)]
pub struct NeedsRead;
/// Routes that write.
#[derive(Debug)]
pub struct NeedsWrite;
/// Administrative routes (`/metrics`).
#[derive(Debug)]
pub struct NeedsAdmin;

impl Needed for NeedsRead {
    const SCOPE: Scope = Scope::Read;
}
impl Needed for NeedsWrite {
    const SCOPE: Scope = Scope::Write;
}
impl Needed for NeedsAdmin {
    const SCOPE: Scope = Scope::Admin;
}

/// The token of an `Authorization: Bearer …` header: `None` without the header; an error for
/// two headers, a value that is not ASCII, or another scheme. The one place that parses it
/// (routes through [`Authorized`], `/v1/replicate` before its upgrade).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value,
        (Some(_), Some(_)) => {
            return Err(AuthError::InvalidToken(
                "more than one Authorization header",
            ));
        }
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("Authorization is not ASCII"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Err(AuthError::InvalidToken("not a Bearer token")),
    }
}

/// Proof that the request may use a route needing `N`. `claims` is `None` when the server
/// runs without a secret (every request is allowed).
#[derive(Debug)]
pub struct Authorized<N> {
    /// The verified token's claims.
    pub claims: Option<Claims>,
    needed: PhantomData<N>,
}

impl<N: Needed> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = &state.auth else {
            return Ok(Authorized {
                claims: None,
                needed: PhantomData,
            });
        };
        let token = bearer_token(&parts.headers)?.ok_or(AuthError::MissingToken)?;
        let now_s = crate::clock::now_ms().0 / 1000;
        let claims = key.verify(token, now_s)?;
        if !claims.allows(N::SCOPE) {
            return Err(AuthError::Forbidden { needed: N::SCOPE }.into());
        }
        Ok(Authorized {
            claims: Some(claims),
            needed: PhantomData,
        })
    }
}
