//! Acknowledgement policies: when a write may be reported as done.

use std::fmt;
use std::str::FromStr;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckPolicy {
    /// Once durable on the leader.
    #[default]
    Local,
    /// Once durable on the leader and on this many replicas.
    Replicas(u32),
    /// Once durable on the leader and on every connected replica.
    All,
}

/// An `ack` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ack policy {0:?}: use `local`, `replicas:N` (N >= 1) or `all`")]
pub struct InvalidAck(pub String);

impl FromStr for AckPolicy {
    type Err = InvalidAck;

    fn from_str(text: &str) -> Result<AckPolicy, InvalidAck> {
        match text {
            "local" => Ok(AckPolicy::Local),
            "all" => Ok(AckPolicy::All),
            _ => text
                .strip_prefix("replicas:")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n >= 1)
                .map(AckPolicy::Replicas)
                .ok_or_else(|| InvalidAck(text.to_string())),
        }
    }
}

impl fmt::Display for AckPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckPolicy::Local => f.write_str("local"),
            AckPolicy::Replicas(n) => write!(f, "replicas:{n}"),
            AckPolicy::All => f.write_str("all"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("local".parse(), Ok(AckPolicy::Local));
        assert_eq!("all".parse(), Ok(AckPolicy::All));
        assert_eq!("replicas:2".parse(), Ok(AckPolicy::Replicas(2)));
        for bad in [
            "",
            "replicas:",
            "replicas:0",
            "replicas:-1",
            "LOCAL",
            "some",
        ] {
            assert!(bad.parse::<AckPolicy>().is_err(), "{bad}");
        }
        assert_eq!(AckPolicy::Replicas(3).to_string(), "replicas:3");
    }
}
