//! The extractor that enforces scopes. Each handler names the least scope it needs in its
//! signature (`_: Authorized<NeedsWrite>`) as its first argument, so the check runs before
//! anything else is read from the request and no route can forget it.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri, header};

use super::AppState;
use super::error::ApiError;
use tracing::info;

use crate::auth::{AuthError, Claims, Scope, TokenKey};

/// A scope a route needs, as a type.
pub trait Needed: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Routes a read replica needs besides `/v1/replicate`: status (a follower asks a cluster
/// member which cluster it belongs to and who leads). No documents.
#[derive(Debug)]
pub struct NeedsReplicate;
/// Routes that read: get, find, list collections.
#[derive(Debug)]
pub struct NeedsRead;
/// Routes that write.
#[derive(Debug)]
pub struct NeedsWrite;
/// Administrative routes (`/metrics`).
#[derive(Debug)]
pub struct NeedsAdmin;

impl Needed for NeedsReplicate {
    const SCOPE: Scope = Scope::Replicate;
}
impl Needed for NeedsRead {
    const SCOPE: Scope = Scope::Read;
}
impl Needed for NeedsWrite {
    const SCOPE: Scope = Scope::Write;
}
impl Needed for NeedsAdmin {
    const SCOPE: Scope = Scope::Admin;
}

impl<N> Authorized<N> {
    /// Checks that the token (if any) may use every collection in `collections`.
    pub fn check_collections<'c>(
        &self,
        collections: impl IntoIterator<Item = &'c str>,
    ) -> Result<(), AuthError> {
        let Some(claims) = self.claims.as_ref().filter(|c| c.collections.is_some()) else {
            return Ok(());
        };
        collections
            .into_iter()
            .try_for_each(|c| claims.check_collection(c))
    }

    /// True when the token (if any) may use `collection`.
    pub fn may_use(&self, collection: &str) -> bool {
        self.claims
            .as_ref()
            .is_none_or(|c| c.check_collection(collection).is_ok())
    }
}

/// The collection named by a path under `/v1/c/{collection}`, as sent (not percent-decoded: a
/// name that is not byte-for-byte one of the token's is refused, which fails closed).
fn path_collection(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/c/")?;
    let name = rest.split('/').next().unwrap_or(rest);
    (!name.is_empty()).then_some(name)
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

/// The token of a WebSocket upgrade (`/v1/replicate`, `/v1/write`): from
/// `Authorization: Bearer …` or, because browsers cannot set headers on a WebSocket, from
/// `?token=…`; the header wins when both are given. `None` when neither is.
pub fn socket_token(headers: &HeaderMap, uri: &Uri) -> Result<Option<String>, AuthError> {
    if let Some(token) = bearer_token(headers)? {
        return Ok(Some(token.to_string()));
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| AuthError::InvalidToken("the query string does not parse"))?;
    let mut tokens = pairs.into_iter().filter(|(k, _)| k == "token");
    match (tokens.next(), tokens.next()) {
        (None, _) => Ok(None),
        (Some((_, token)), None) => Ok(Some(token)),
        (Some(_), Some(_)) => Err(AuthError::InvalidToken("`token` given more than once")),
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

impl<N: Needed> Authorized<N> {
    /// Authorizes a WebSocket upgrade for scope `N`, with the token of [`socket_token`]
    /// (`key` is the server's; `None` allows everything). Collections named inside the
    /// messages are checked by their handler, as for a transaction's body.
    pub fn for_socket(
        key: Option<&TokenKey>,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Authorized<N>, AuthError> {
        let Some(key) = key else {
            return Ok(Authorized {
                claims: None,
                needed: PhantomData,
            });
        };
        let token = socket_token(headers, uri)?.ok_or(AuthError::MissingToken)?;
        let now_s = crate::clock::now_ms().0 / 1000;
        let claims = key.verify(&token, now_s)?;
        if !claims.allows(N::SCOPE) {
            return Err(AuthError::Forbidden { needed: N::SCOPE });
        }
        Ok(Authorized {
            claims: Some(claims),
            needed: PhantomData,
        })
    }
}

impl<N: Needed> FromRequestParts<Arc<AppState>> for Authorized<N> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
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
        // A collection in the path is checked here, for every route under `/v1/c/{c}`; the
        // collections inside a transaction's body are checked by its handler.
        if let Some(collection) = path_collection(parts.uri.path()) {
            claims.check_collection(collection)?;
        }
        if N::SCOPE == Scope::Write {
            // Who wrote what: one line per authorized write request, with the token's subject.
            info!(sub = %claims.sub, method = %parts.method, path = %parts.uri.path(), "write request");
        }
        Ok(Authorized {
            claims: Some(claims),
            needed: PhantomData,
        })
    }
}
