//! The replica's local data: the state the leader's log built, with this client's pending
//! writes shown on top (core's [`Overlay`]).
//!
//! Reads must show a tab its own writes at once, offline or not, yet only the leader's
//! entries may move the log state. Core's overlay does both on one [`State`]: pending writes
//! are applied tentatively; before confirmed entries (or a snapshot) apply, they come off,
//! and afterwards the ones the state's origin records do not yet confirm go back on (a
//! rebase). A pending write that no longer applies stays queued but hidden: the leader, the
//! authority, accepts or rejects it.
//!
//! ```text
//!  leader entries ──► overlay.rebase(state, apply entries) ──► state + pending[k..n]
//!  local write ─────► overlay.push(state, seq, txn) ─────────► shown at once, queued
//! ```
//!
//! This type adds what the driver needs around the overlay: which collections a change
//! touched (for watches) and which pending writes the leader already answered (so the
//! writer does not send them again while their entry is on its way).

use cstore_core::state::{Overlay, PendingWrite, Rejection, State};
use cstore_core::{LogEntry, LogPosition, Lsn, Snapshot, Txn};

/// What a change touched: the names of collections whose documents may differ, sorted and
/// without duplicates. A sorted vector rather than a `BTreeSet<String>`: a change touches a
/// few collections, and no other code in the browser module needs that set type (about 5 KB
/// of wasm).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched(Vec<String>);

impl Touched {
    /// Nothing touched.
    pub fn new() -> Touched {
        Touched::default()
    }

    /// Adds `name`; false if it was there already.
    pub fn insert(&mut self, name: String) -> bool {
        match self.0.binary_search(&name) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, name);
                true
            }
        }
    }

    /// Whether `name` was touched.
    pub fn contains(&self, name: &str) -> bool {
        self.0.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }

    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Extend<String> for Touched {
    fn extend<I: IntoIterator<Item = String>>(&mut self, names: I) {
        for name in names {
            self.insert(name);
        }
    }
}

impl IntoIterator for Touched {
    type Item = String;
    type IntoIter = std::vec::IntoIter<String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The set of `names`.
fn touched(names: impl IntoIterator<Item = String>) -> Touched {
    let mut touched = Touched::new();
    touched.extend(names);
    touched
}

/// The log state with this client's pending writes on top.
#[derive(Debug, Default)]
pub struct LocalState {
    state: State,
    overlay: Overlay,
    /// Pending writes the leader committed (seq → LSN), until their entry arrives; sorted by
    /// seq. A vector rather than a map: answers come in seq order (so an insert is a push),
    /// and one map type less is about 8 KB less wasm.
    committed: Vec<(u64, Lsn)>,
}

impl LocalState {
    /// Local data starting from `state`, for `client`, nothing pending.
    pub fn new(state: State, client: &str) -> LocalState {
        LocalState {
            state,
            overlay: Overlay::new(client),
            committed: Vec::new(),
        }
    }

    /// The state reads see: the log state plus the pending writes that apply.
    pub fn current(&self) -> &State {
        &self.state
    }

    /// The last log entry applied (pending writes do not move it).
    pub fn applied(&self) -> LogPosition {
        self.state.applied()
    }

    /// A snapshot of the log state (pending writes lifted off for it, then put back).
    pub fn snapshot(&mut self) -> Snapshot {
        let (snapshot, _hidden) = self
            .overlay
            .rebase(&mut self.state, |state| state.snapshot());
        snapshot
    }

    /// Documents held, over all collections.
    pub fn doc_count(&self) -> usize {
        self.state.collections().map(|(_, c)| c.len()).sum()
    }

    /// The writes not yet confirmed, in order.
    pub fn pending(&self) -> impl Iterator<Item = &PendingWrite> {
        self.overlay.pending()
    }

    /// The pending writes the leader has not answered yet, in order: what to send next.
    pub fn unsent(&self) -> impl Iterator<Item = &PendingWrite> {
        self.overlay
            .pending()
            .filter(|w| self.committed_at(w.seq).is_err())
    }

    /// How many writes wait for confirmation.
    pub fn pending_count(&self) -> usize {
        self.overlay.len()
    }

    /// Replaces the log state (a snapshot was installed, or the local data was discarded)
    /// and shows the pending writes over it again.
    pub fn replace_confirmed(&mut self, state: State) -> Touched {
        let mut touched = collections_of(&self.state);
        let ((), _hidden) = self
            .overlay
            .rebase(&mut self.state, |current| *current = state);
        touched.extend(collections_of(&self.state));
        self.prune();
        touched
    }

    /// Applies confirmed entries in order, under the pending writes. On a rejection (the
    /// local state disagrees with the leader's log: it is corrupt) returns the entry's LSN
    /// and why; the entries before it stay applied.
    pub fn apply_confirmed(&mut self, entries: &[LogEntry]) -> Result<Touched, (Lsn, Rejection)> {
        let mut touched = self.pending_collections();
        let (result, _hidden) = self.overlay.rebase(&mut self.state, |state| {
            for entry in entries {
                match state.apply(entry) {
                    Ok(applied) => {
                        touched.extend(entry.txn.ops.iter().map(|op| op.collection().to_owned()));
                        touched.extend(applied.expired.into_iter().map(|(c, _)| c));
                    }
                    Err(rejection) => return Err((entry.lsn, rejection)),
                }
            }
            Ok(())
        });
        self.prune();
        result.map(|()| touched)
    }

    /// Shows a new local write at once and queues it. A write that does not apply locally is
    /// refused (nothing changes) and not queued.
    pub fn apply_local(&mut self, seq: u64, txn: Txn) -> Result<Touched, Rejection> {
        let touched = touched(txn.ops.iter().map(|op| op.collection().to_owned()));
        self.overlay.push(&mut self.state, seq, txn)?;
        Ok(touched)
    }

    /// Puts back writes loaded from the durable queue (after a reload) and shows them.
    pub fn restore_pending(&mut self, writes: Vec<PendingWrite>) -> Touched {
        let _hidden = self.overlay.reload(&mut self.state, writes);
        self.prune();
        self.pending_collections()
    }

    /// The leader committed write `seq` at `lsn`; it leaves the queue when that entry is
    /// applied here.
    pub fn mark_committed(&mut self, seq: u64, lsn: Lsn) {
        match self.committed_at(seq) {
            Ok(at) => self.committed[at].1 = lsn,
            Err(at) => self.committed.insert(at, (seq, lsn)),
        }
    }

    /// Where `seq` is in `committed` (`Err`: where it would go).
    fn committed_at(&self, seq: u64) -> Result<usize, usize> {
        self.committed.binary_search_by_key(&seq, |(seq, _)| *seq)
    }

    /// The leader refused write `seq`: it leaves the queue and the view.
    pub fn reject(&mut self, seq: u64) -> Option<(PendingWrite, Touched)> {
        let mut touched = self.pending_collections();
        let (write, _hidden) = self.overlay.reject(&mut self.state, seq);
        if let Ok(at) = self.committed_at(seq) {
            self.committed.remove(at);
        }
        let write = write?;
        touched.extend(collections_of(&self.state));
        Some((write, touched))
    }

    fn pending_collections(&self) -> Touched {
        touched(
            self.overlay
                .pending()
                .flat_map(|w| w.txn.ops.iter().map(|op| op.collection().to_owned())),
        )
    }

    /// Forgets answers for writes that are no longer pending.
    fn prune(&mut self) {
        // Both are sorted by seq (no set type for the seqs: each is a few KB of wasm).
        let mut pending = self.overlay.pending().map(|w| w.seq).peekable();
        self.committed.retain(|&(seq, _)| {
            while pending.next_if(|&p| p < seq).is_some() {}
            pending.peek() == Some(&seq)
        });
    }
}

fn collections_of(state: &State) -> Touched {
    touched(state.collections().map(|(name, _)| name.to_owned()))
}
