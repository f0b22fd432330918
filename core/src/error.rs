//! Error codes shared by every layer.
//!
//! Each layer has its own `thiserror` enum; every variant maps to a stable, lowercase,
//! snake_case code that reaches the user unchanged (in HTTP error bodies, in JS `Error.code`).
//! Codes are part of the public contract: add new ones, never rename or reuse old ones.

/// An error that carries a stable code for the outside world.
pub trait ErrorCode {
    /// The stable code, e.g. `"unique_violation"`.
    fn code(&self) -> &'static str;
}
