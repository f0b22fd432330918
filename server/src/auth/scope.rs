//! Scopes: what a token lets its holder do. They nest: `admin` grants everything, `write`
//! grants `read`, `read` grants `replicate`, so a route names only the least scope it needs.
//! `replicate` alone opens `/v1/replicate` and nothing else: a read replica's token that
//! cannot write, nor read through the HTTP API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A permission carried by a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Open `/v1/replicate` (follow the log) and nothing else.
    Replicate,
    /// Get, find, status, replicate.
    Read,
    /// Every write; implies `read`.
    Write,
    /// Everything, including `/metrics`.
    Admin,
}

/// A scope name that is not `read`, `write` or `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: use replicate, read, write or admin")]
pub struct InvalidScope(pub String);

impl Scope {
    /// True when holding `self` allows what `needed` allows.
    pub fn grants(self, needed: Scope) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Write => matches!(needed, Scope::Replicate | Scope::Read | Scope::Write),
            Scope::Read => matches!(needed, Scope::Replicate | Scope::Read),
            Scope::Replicate => needed == Scope::Replicate,
        }
    }

    /// The name used in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Replicate => "replicate",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = InvalidScope;

    fn from_str(text: &str) -> Result<Scope, InvalidScope> {
        match text {
            "replicate" => Ok(Scope::Replicate),
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            _ => Err(InvalidScope(text.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest() {
        use Scope::*;
        let table = [
            (Replicate, Replicate, true),
            (Replicate, Read, false),
            (Replicate, Write, false),
            (Replicate, Admin, false),
            (Read, Replicate, true),
            (Write, Replicate, true),
            (Admin, Replicate, true),
            (Read, Read, true),
            (Read, Write, false),
            (Read, Admin, false),
            (Write, Read, true),
            (Write, Write, true),
            (Write, Admin, false),
            (Admin, Read, true),
            (Admin, Write, true),
            (Admin, Admin, true),
        ];
        for (held, needed, expected) in table {
            assert_eq!(held.grants(needed), expected, "{held} grants {needed}");
        }
    }

    #[test]
    fn parses_names() {
        for scope in [Scope::Replicate, Scope::Read, Scope::Write, Scope::Admin] {
            assert_eq!(scope.as_str().parse(), Ok(scope));
        }
        assert!("READ".parse::<Scope>().is_err());
        assert!("".parse::<Scope>().is_err());
    }
}
