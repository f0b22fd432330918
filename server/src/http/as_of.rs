//! `?as_of_lsn=N`: reads of the state right after entry N, rebuilt from the retained log
//! (`backup::state_at`), for `GET /v1/c/{c}/{id}` and `find` (query string or body).
//!
//! N must be applied (and durable) here, else `lsn_ahead` (400); the log before the newest
//! snapshot is gone, so an N below it answers `lsn_compacted` (410). A read with `min_lsn`
//! and `as_of_lsn` waits for `min_lsn` first.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use cstore_core::Lsn;
use cstore_core::state::State;

use super::AppState;
use super::error::ApiError;
use super::params::single_u64;
use crate::backup::{AsOfError, state_at};
use crate::node::ReadFloor;

/// `?as_of_lsn=N`, when given.
#[derive(Debug, Clone, Copy)]
pub struct AsOfLsn(pub Option<Lsn>);

impl<S: Send + Sync> FromRequestParts<S> for AsOfLsn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(AsOfLsn(single_u64(&parts.uri, "as_of_lsn")?.map(Lsn)))
    }
}

/// The state right after entry `lsn`, once `floor` is met.
pub async fn state_as_of(app: &AppState, floor: ReadFloor, lsn: Lsn) -> Result<State, ApiError> {
    let applied = app.node.read(floor, |state| state.applied().lsn).await?;
    if lsn > applied {
        return Err(AsOfError::Ahead { lsn, applied }.into());
    }
    let dir = app.data_dir.clone().ok_or(AsOfError::Unavailable)?;
    Ok(state_at(dir, lsn).await?)
}
