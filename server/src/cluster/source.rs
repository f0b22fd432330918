//! A cluster member as a replication source: read replicas and browsers stream the member's
//! applied entries (committed, so never truncated by a new leader) from any member.
//!
//! The member's [`Local`] copy keeps the rules of [`CommittedCopy`], so the one
//! [`LocalSource`](crate::local::LocalSource) serves it like a leader's or a follower's copy
//! (`Node::replicator` builds it with the member's current term).
//!
//! The same hash chain runs on every member, so a replica that reconnects to another member
//! after a leader change resumes from its own `(lsn, hash)` without downloading again.

use futures::future::BoxFuture;
use tokio::sync::watch;

use cstore_core::{Lsn, Snapshot};

use super::state_machine::Local;
use crate::local::CommittedCopy;
use crate::replicate::LogTail;

impl CommittedCopy for Local {
    fn tail(&self) -> &LogTail {
        self.copy.tail()
    }

    fn applied(&self) -> watch::Receiver<Lsn> {
        self.copy.applied()
    }

    fn snapshot(&self) -> BoxFuture<'_, Snapshot> {
        Box::pin(self.copy.snapshot())
    }
}
