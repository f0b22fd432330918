//! A linearizability checker for histories of reads and writes on per-key registers.
//!
//! A cluster test records what its clients saw (each operation with the times it was sent and
//! answered) and then asks whether one total order of those operations, consistent with real
//! time, explains every read. Acknowledged writes must appear in that order; writes whose answer
//! was lost may appear at any point after they were sent, or not at all; refused writes must not
//! appear. Keys are independent registers, so each key is checked on its own (P-compositionality)
//! and the search stays small.
//!
//! The search is Wing–Gong with Lowe's memoization, as in porcupine: depth-first, it picks a
//! next operation among those invoked before every pending operation completed, applies it to
//! the register and remembers each (set of linearized operations, register value) it has seen,
//! so no state is explored twice. A per-key bound on states turns a pathological history into
//! [`Verdict::Inconclusive`] instead of a hung test.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// States explored per key before giving up, so a pathological history cannot hang a test.
const STATE_LIMIT: usize = 1_000_000;

/// One client operation on one key, with the interval in which it took effect (if it did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The register the operation addressed.
    pub key: String,
    /// What was asked: a write of a value, or a read.
    pub kind: OpKind,
    /// When the request was about to be sent, from [`History::now_ns`].
    pub invoke_ns: u64,
    /// When the answer arrived; ignored for [`Outcome::Unknown`], whose effect has no deadline.
    pub complete_ns: u64,
    /// What the client learned.
    pub outcome: Outcome,
}

/// What an operation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Set the register to this value. Distinct values make violations easy to read and let
    /// the checker skip unobserved lost writes, but the model does not require them.
    Write(u64),
    /// Return the register's value.
    Read,
}

/// What the client learned about an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A write was acknowledged, so it took effect between invoke and completion.
    Ok,
    /// A read answered with this value (`None`: the key was absent).
    Read(Option<u64>),
    /// A write was refused (a 4xx-style answer), so it never took effect and is ignored.
    Failed,
    /// A write got no answer (timeout, connection error), so it may have taken effect at any
    /// time after invoke, or never. A read with this outcome tells nothing and is ignored.
    Unknown,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history has a legal order consistent with real time.
    Linearizable,
    /// No legal order exists for `key`; `ops` is that key's whole history sorted by invoke
    /// time, so a failing test can print what to look at.
    Violation {
        /// The first key (in sorted order) found not linearizable.
        key: String,
        /// That key's recorded operations, sorted by invoke time.
        ops: Vec<Op>,
    },
    /// The search for `key` hit its state bound; no other key was found in violation.
    Inconclusive {
        /// The first key (in sorted order) whose search gave up.
        key: String,
    },
}

/// Checks `history` key by key and reports the first violation, else the first key the search
/// gave up on, else [`Verdict::Linearizable`].
///
/// # Panics
///
/// On a malformed operation (a read with [`Outcome::Ok`], a write with [`Outcome::Read`], or
/// a completed operation that completed before it was invoked): that is a bug in the test
/// recording it, and a silent verdict over it would be meaningless.
pub fn check(history: &[Op]) -> Verdict {
    check_bounded(history, STATE_LIMIT)
}

fn check_bounded(history: &[Op], limit: usize) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut inconclusive = None;
    for (key, ops) in by_key {
        let (definite, unknown) = prepare(&ops);
        match Search::new(&definite, &unknown).run(limit) {
            Some(true) => {}
            Some(false) => {
                let mut ops: Vec<Op> = ops.into_iter().cloned().collect();
                ops.sort_by_key(|op| op.invoke_ns);
                return Verdict::Violation {
                    key: key.to_owned(),
                    ops,
                };
            }
            None => {
                inconclusive.get_or_insert_with(|| key.to_owned());
            }
        }
    }
    match inconclusive {
        Some(key) => Verdict::Inconclusive { key },
        None => Verdict::Linearizable,
    }
}

/// A shared, thread-safe recorder of [`Op`]s with a clock that starts at its creation; clones
/// share both, so every client thread stamps times on the same scale.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Default for History {
    fn default() -> History {
        History::new()
    }
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        History {
            start: Instant::now(),
            ops: Arc::default(),
        }
    }

    /// Nanoseconds since this history was created, from a monotonic clock. Take it just before
    /// sending a request and just after its answer, so the interval covers the real effect.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends a finished operation.
    pub fn record(&self, op: Op) {
        self.lock().push(op);
    }

    /// A copy of the operations recorded so far, in recording order.
    pub fn ops(&self) -> Vec<Op> {
        self.lock().clone()
    }

    // A client thread that panicked mid-test must not hide the history from the checker.
    fn lock(&self) -> MutexGuard<'_, Vec<Op>> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} [{}..", self.key, self.invoke_ns)?;
        match self.outcome {
            Outcome::Unknown => write!(f, "?]")?,
            _ => write!(f, "{}]", self.complete_ns)?,
        }
        match (self.kind, self.outcome) {
            (OpKind::Write(value), Outcome::Ok) => write!(f, " write {value}: ok"),
            (OpKind::Write(value), Outcome::Failed) => write!(f, " write {value}: failed"),
            (OpKind::Write(value), Outcome::Unknown) => write!(f, " write {value}: unknown"),
            (OpKind::Read, Outcome::Read(Some(value))) => write!(f, " read: {value}"),
            (OpKind::Read, Outcome::Read(None)) => write!(f, " read: absent"),
            (kind, outcome) => write!(f, " {kind:?}: {outcome:?} (malformed)"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::Violation { key, ops } => {
                write!(f, "key {key:?} is not linearizable; its history:")?;
                ops.iter().try_for_each(|op| write!(f, "\n  {op}"))
            }
            Verdict::Inconclusive { key } => {
                write!(f, "gave up on key {key:?} after {STATE_LIMIT} states")
            }
        }
    }
}

/// An operation as the search sees it: an interval and its effect on the register.
#[derive(Debug, Clone, Copy)]
struct Entry {
    invoke: u64,
    complete: u64,
    effect: Effect,
}

#[derive(Debug, Clone, Copy)]
enum Effect {
    Write(u64),
    Read(Option<u64>),
}

/// Splits one key's ops into those that must be linearized (acknowledged writes, reads) and
/// lost writes that may be, each sorted by invoke time. Refused writes and unanswered reads are
/// dropped. So is a lost write whose value no read returned: no read can sit between it and the
/// next write, so removing it from any legal order leaves a legal order, and keeping it would
/// only multiply the states to search.
fn prepare(ops: &[&Op]) -> (Vec<Entry>, Vec<Entry>) {
    let (mut definite, mut unknown) = (Vec::new(), Vec::new());
    for op in ops {
        let (invoke, complete) = (op.invoke_ns, op.complete_ns);
        let effect = match (op.kind, op.outcome) {
            (_, Outcome::Failed) | (OpKind::Read, Outcome::Unknown) => continue,
            (OpKind::Write(value), Outcome::Unknown) => {
                unknown.push(Entry {
                    invoke,
                    complete: u64::MAX,
                    effect: Effect::Write(value),
                });
                continue;
            }
            (OpKind::Write(value), Outcome::Ok) => Effect::Write(value),
            (OpKind::Read, Outcome::Read(seen)) => Effect::Read(seen),
            (kind, outcome) => panic!("malformed op on {:?}: {kind:?} with {outcome:?}", op.key),
        };
        assert!(
            invoke <= complete,
            "op completed before it was invoked: {op}"
        );
        definite.push(Entry {
            invoke,
            complete,
            effect,
        });
    }
    let read_values: HashSet<u64> = definite
        .iter()
        .filter_map(|entry| match entry.effect {
            Effect::Read(seen) => seen,
            Effect::Write(_) => None,
        })
        .collect();
    unknown.retain(|entry| matches!(entry.effect, Effect::Write(v) if read_values.contains(&v)));
    definite.sort_by_key(|entry| entry.invoke);
    unknown.sort_by_key(|entry| entry.invoke);
    (definite, unknown)
}

/// The depth-first search over one key. Candidates are numbered `0..definite.len()` for
/// definite entries and `definite.len()..` for lost writes.
struct Search<'a> {
    definite: &'a [Entry],
    unknown: &'a [Entry],
    definite_done: Vec<u64>,
    unknown_done: Vec<u64>,
    definite_left: usize,
    value: Option<u64>,
}

/// One level of the search: the candidates at that state, the next one to try and the one
/// currently applied (with the register value to restore when it is undone).
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    applied: Option<(usize, Option<u64>)>,
}

impl<'a> Search<'a> {
    fn new(definite: &'a [Entry], unknown: &'a [Entry]) -> Search<'a> {
        Search {
            definite,
            unknown,
            definite_done: vec![0; definite.len().div_ceil(64)],
            unknown_done: vec![0; unknown.len().div_ceil(64)],
            definite_left: definite.len(),
            value: None,
        }
    }

    /// `Some(true)` if a legal order exists, `Some(false)` if none does, `None` if more than
    /// `limit` states were needed to tell.
    fn run(mut self, limit: usize) -> Option<bool> {
        if self.definite_left == 0 {
            return Some(true);
        }
        let mut seen = HashSet::new();
        let mut stack = vec![self.frame()];
        while let Some(frame) = stack.last_mut() {
            if let Some((candidate, previous)) = frame.applied.take() {
                self.toggle(candidate);
                self.value = previous;
            }
            let Some(&candidate) = frame.candidates.get(frame.next) else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            let value = match self.entry(candidate).effect {
                Effect::Write(written) => Some(written),
                Effect::Read(read) if read == self.value => self.value,
                Effect::Read(_) => continue,
            };
            frame.applied = Some((candidate, self.value));
            self.toggle(candidate);
            self.value = value;
            // Lost writes still pending may simply never have happened.
            if self.definite_left == 0 {
                return Some(true);
            }
            if !seen.insert(self.memo_key()) {
                continue;
            }
            if seen.len() > limit {
                return None;
            }
            stack.push(self.frame());
        }
        Some(false)
    }

    fn entry(&self, candidate: usize) -> Entry {
        match candidate.checked_sub(self.definite.len()) {
            None => self.definite[candidate],
            Some(j) => self.unknown[j],
        }
    }

    fn toggle(&mut self, candidate: usize) {
        match candidate.checked_sub(self.definite.len()) {
            None => {
                self.definite_done[candidate / 64] ^= 1 << (candidate % 64);
                if is_set(&self.definite_done, candidate) {
                    self.definite_left -= 1;
                } else {
                    self.definite_left += 1;
                }
            }
            Some(j) => self.unknown_done[j / 64] ^= 1 << (j % 64),
        }
    }

    /// The ops that may come next: those invoked no later than every pending op's completion.
    /// Entries are sorted by invoke and complete after they are invoked, so a scan from the
    /// first pending definite entry can stop at the first one invoked after that minimum.
    fn frame(&self) -> Frame {
        let first = self
            .definite_done
            .iter()
            .position(|word| *word != u64::MAX)
            .map_or(self.definite.len(), |i| {
                i * 64 + self.definite_done[i].trailing_ones() as usize
            });
        let mut min_complete = u64::MAX;
        let mut candidates = Vec::new();
        for (i, entry) in self.definite.iter().enumerate().skip(first) {
            if entry.invoke > min_complete {
                break;
            }
            if !is_set(&self.definite_done, i) {
                min_complete = min_complete.min(entry.complete);
                candidates.push(i);
            }
        }
        for (j, entry) in self.unknown.iter().enumerate() {
            if entry.invoke > min_complete {
                break;
            }
            if !is_set(&self.unknown_done, j) {
                candidates.push(self.definite.len() + j);
            }
        }
        Frame {
            candidates,
            next: 0,
            applied: None,
        }
    }

    /// The state as a compact key: linearized definite entries form a done prefix and a short
    /// window after it, so only the words between are stored, after the count of full words.
    fn memo_key(&self) -> (Vec<u64>, Option<u64>) {
        let done = &self.definite_done;
        let skip = done.iter().take_while(|word| **word == u64::MAX).count();
        let end = done
            .iter()
            .rposition(|word| *word != 0)
            .map_or(skip, |i| (i + 1).max(skip));
        let mut key = Vec::with_capacity(1 + end - skip + self.unknown_done.len());
        key.push(skip as u64);
        key.extend_from_slice(&done[skip..end]);
        key.extend_from_slice(&self.unknown_done);
        (key, self.value)
    }
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use super::*;

    fn op(key: &str, kind: OpKind, invoke_ns: u64, complete_ns: u64, outcome: Outcome) -> Op {
        let key = key.to_owned();
        Op {
            key,
            kind,
            invoke_ns,
            complete_ns,
            outcome,
        }
    }

    /// An acknowledged write to key "a"; the helpers below are on "a" too.
    fn w(value: u64, invoke: u64, complete: u64) -> Op {
        op("a", OpKind::Write(value), invoke, complete, Outcome::Ok)
    }

    fn lost(value: u64, invoke: u64, complete: u64) -> Op {
        op(
            "a",
            OpKind::Write(value),
            invoke,
            complete,
            Outcome::Unknown,
        )
    }

    fn refused(value: u64, invoke: u64, complete: u64) -> Op {
        op("a", OpKind::Write(value), invoke, complete, Outcome::Failed)
    }

    fn r(seen: Option<u64>, invoke: u64, complete: u64) -> Op {
        op("a", OpKind::Read, invoke, complete, Outcome::Read(seen))
    }

    fn on(key: &str, op: Op) -> Op {
        Op {
            key: key.to_owned(),
            ..op
        }
    }

    fn ok(history: &[Op]) -> bool {
        check(history) == Verdict::Linearizable
    }

    /// The key reported in violation, after checking the report holds only that key's ops.
    fn violation(history: &[Op]) -> Option<String> {
        let Verdict::Violation { key, ops } = check(history) else {
            return None;
        };
        assert!(ops.iter().all(|op| op.key == key), "{ops:?}");
        Some(key)
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        assert!(ok(&[
            r(None, 0, 1),
            w(1, 2, 3),
            r(Some(1), 4, 5),
            w(2, 6, 7),
            r(Some(2), 8, 9)
        ]));
        assert!(ok(&[]));
    }

    #[test]
    fn a_read_after_overlapping_writes_may_see_either_but_not_flip_back() {
        assert!(ok(&[w(1, 0, 10), w(2, 5, 15), r(Some(1), 20, 21)]));
        assert!(ok(&[w(1, 0, 10), w(2, 5, 15), r(Some(2), 20, 21)]));
        let flip = [
            w(1, 0, 10),
            w(2, 5, 15),
            r(Some(2), 20, 21),
            r(Some(1), 22, 23),
        ];
        assert_eq!(violation(&flip).as_deref(), Some("a"));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_a_violation() {
        assert!(
            ok(&[w(1, 0, 1), w(2, 2, 10), r(Some(1), 5, 6)]),
            "overlapping: may be old"
        );
        assert!(violation(&[w(1, 0, 1), w(2, 2, 3), r(Some(1), 4, 5)]).is_some());
        assert!(violation(&[w(1, 0, 1), r(None, 2, 3)]).is_some());
    }

    #[test]
    fn a_read_of_a_value_never_written_is_a_violation() {
        assert!(violation(&[w(1, 0, 1), r(Some(7), 2, 3)]).is_some());
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never_but_once_and_not_before_it_was_sent() {
        assert!(ok(&[
            w(1, 0, 1),
            lost(2, 10, 20),
            r(Some(1), 30, 31),
            r(Some(2), 40, 41)
        ]));
        assert!(ok(&[
            w(1, 0, 1),
            lost(2, 10, 20),
            r(Some(1), 30, 31),
            r(Some(1), 40, 41)
        ]));
        let twice = [
            w(1, 0, 1),
            lost(2, 10, 20),
            r(Some(2), 30, 31),
            r(Some(1), 40, 41),
        ];
        assert!(violation(&twice).is_some());
        assert!(violation(&[w(1, 0, 1), r(Some(2), 2, 3), lost(2, 10, 20)]).is_some());
    }

    #[test]
    fn a_read_of_a_refused_write_is_a_violation() {
        assert!(ok(&[w(1, 0, 1), refused(2, 2, 3), r(Some(1), 4, 5)]));
        assert!(violation(&[w(1, 0, 1), refused(2, 2, 3), r(Some(2), 4, 5)]).is_some());
    }

    #[test]
    fn keys_are_independent_registers() {
        let mut history = vec![w(1, 0, 1), on("b", w(2, 2, 3)), r(Some(1), 4, 5)];
        history.push(on("b", r(Some(2), 4, 5)));
        assert!(ok(&history));
        history.push(on("b", r(Some(1), 6, 7)));
        assert_eq!(violation(&history).as_deref(), Some("b"));
    }

    #[test]
    fn the_search_gives_up_beyond_its_state_bound_unless_another_key_fails() {
        let mut history = vec![w(0, 0, 1)];
        history.extend((1..=12).map(|value| w(value, 2, 3)));
        history.push(r(Some(0), 4, 5));
        let gave_up = Verdict::Inconclusive { key: "a".into() };
        assert_eq!(check_bounded(&history, 100), gave_up);
        assert_eq!(violation(&history).as_deref(), Some("a"));
        history.push(on("b", r(Some(9), 0, 1)));
        let verdict = check_bounded(&history, 100);
        assert!(
            matches!(&verdict, Verdict::Violation { key, .. } if key == "b"),
            "{verdict}"
        );
    }

    /// A tiny xorshift, so the generated history is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// 8 sequential clients × 250 ops over 20 keys on a correct register: every op takes
    /// effect at a random point of its interval (a lost write at any time after it was sent, or
    /// never; a refused one never) and a read returns the value at that point.
    fn simulated_history() -> Vec<Op> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut planned, mut next_value) = (Vec::new(), 0);
        for _client in 0..8 {
            let mut now = rng.below(1_000);
            for _ in 0..250 {
                // Skewed, so low keys are hot: k0 gets ~350 ops with up to 5 overlapping.
                let spread = rng.below(20) + 1;
                let key = format!("k{}", rng.below(spread));
                let invoke = now + rng.below(1_000);
                let roll = rng.below(100);
                next_value += 1;
                let (kind, outcome) = match roll {
                    0..50 => (OpKind::Read, Outcome::Read(None)),
                    50..85 => (OpKind::Write(next_value), Outcome::Ok),
                    85..92 => (OpKind::Write(next_value), Outcome::Failed),
                    _ => (OpKind::Write(next_value), Outcome::Unknown),
                };
                let at = invoke + rng.below(5_000);
                let (effect, complete) = match outcome {
                    Outcome::Failed => (None, at),
                    Outcome::Unknown => {
                        // The client gives up at +10µs; the write may land later, or never.
                        let late = invoke + rng.below(40_000);
                        (roll.is_multiple_of(2).then_some(late), invoke + 10_000)
                    }
                    _ => (Some(at), at + rng.below(5_000)),
                };
                now = complete;
                planned.push((effect, op(&key, kind, invoke, complete, outcome)));
            }
        }
        planned.sort_by_key(|(effect, _)| *effect);
        let mut register = HashMap::new();
        for (_, op) in planned.iter_mut().filter(|(effect, _)| effect.is_some()) {
            match op.kind {
                OpKind::Write(value) => drop(register.insert(op.key.clone(), value)),
                OpKind::Read => op.outcome = Outcome::Read(register.get(&op.key).copied()),
            }
        }
        planned.into_iter().map(|(_, op)| op).collect()
    }

    fn written(op: &Op) -> Option<u64> {
        match op.kind {
            OpKind::Write(value) => Some(value),
            OpKind::Read => None,
        }
    }

    #[test]
    fn a_generated_concurrent_history_passes_quickly() {
        let history = simulated_history();
        assert_eq!(history.len(), 2_000);
        let seen = |op: &Op| {
            history
                .iter()
                .any(|r| r.outcome == Outcome::Read(written(op)))
        };
        let lost_seen = history
            .iter()
            .filter(|op| op.outcome == Outcome::Unknown && seen(op));
        assert!(lost_seen.count() > 0, "some lost writes took effect");
        let started = Instant::now();
        let verdict = check(&history);
        let elapsed = started.elapsed();
        assert_eq!(verdict, Verdict::Linearizable, "{verdict}");
        assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    }

    #[test]
    fn a_generated_history_with_one_stale_read_is_caught() {
        let mut history = simulated_history();
        let acked: Vec<&Op> = history
            .iter()
            .filter(|op| op.outcome == Outcome::Ok)
            .collect();
        // A read after two acknowledged writes to its key, one completed before the other was
        // sent: the older value is stale under every order.
        let (index, stale) = (history.iter().enumerate())
            .filter(|(_, op)| op.kind == OpKind::Read)
            .find_map(|(i, read)| {
                let before = |w: &&&Op| w.key == read.key && w.complete_ns < read.invoke_ns;
                let older = acked.iter().filter(before).min_by_key(|w| w.complete_ns)?;
                let newer = acked
                    .iter()
                    .filter(before)
                    .any(|w| w.invoke_ns > older.complete_ns);
                newer.then(|| (i, written(older)))
            })
            .expect("the generated history has a read to corrupt");
        history[index].outcome = Outcome::Read(stale);
        let started = Instant::now();
        assert_eq!(violation(&history), Some(history[index].key.clone()));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_history_is_shared_by_clones_across_threads() {
        fn shareable<T: Clone + Send + Sync>() {}
        shareable::<History>();
        let history = History::new();
        std::thread::scope(|scope| {
            for client in 0..4 {
                let history = history.clone();
                scope.spawn(move || {
                    let invoke = history.now_ns();
                    history.record(lost(client, invoke, history.now_ns()));
                });
            }
        });
        let ops = history.ops();
        assert_eq!(ops.len(), 4);
        assert!(ops.iter().all(|op| op.invoke_ns <= op.complete_ns));
        assert!(ok(&ops));
    }

    #[test]
    #[should_panic(expected = "malformed")]
    fn a_malformed_op_panics() {
        check(&[op("a", OpKind::Read, 0, 1, Outcome::Ok)]);
    }
}
