//! Committed entries are identical on every member that has them: the same LSN has the same
//! hash (which covers the previous hash, the term, the clock and the transaction) everywhere,
//! forever. Entries count as committed on a member when it applied them (its state machine's
//! tail and applied position) or when its log holds them at or below its committed index.

use cstore_core::{LogPosition, Lsn};
use cstore_server::cluster::entry::lsn_of;
use openraft::async_runtime::WatchReceiver;

use crate::sim::disk::lock;
use crate::sim::{Committed, World};

pub fn check(world: &mut World) -> Result<(), String> {
    let mut found: Vec<(u64, LogPosition, Option<u64>, &'static str)> = Vec::new();
    for member in world.members.iter_mut() {
        let id = member.id;
        let Some(up) = member.up.as_mut() else {
            continue;
        };
        // Applied: the state machine's tail, then its applied position.
        let tail = up.local.copy.tail();
        let last = tail.last().lsn;
        if let Ok(entries) = tail.read(up.checked_applied.next().max(tail.first()), last.next()) {
            for entry in entries {
                found.push((id, entry.position(), Some(entry.term.0), "applied"));
            }
        }
        up.checked_applied = last;
        found.push((id, up.local.applied_position(), None, "applied"));

        // Logged at or below the committed index.
        let committed = up
            .raft
            .metrics()
            .borrow_watched()
            .local_committed
            .map_or(Lsn::ZERO, |id| lsn_of(id.index()));
        let mut d = lock(&member.disk);
        let from = d
            .changed_from
            .take()
            .map_or(up.checked_log.next(), |c| c.min(up.checked_log.next()));
        for (lsn, entry) in d.visible.entries.range(from..committed.next()) {
            assert_eq!(*lsn, entry.lsn);
            found.push((id, entry.position(), Some(entry.term.0), "logged"));
        }
        up.checked_log = committed.max(up.checked_log);
    }
    for (member, position, term, how) in found {
        if position.lsn == Lsn::ZERO {
            continue;
        }
        match world.observed.committed.get_mut(&position.lsn) {
            Some(known) if known.position.hash != position.hash => {
                return Err(format!(
                    "committed entry {} differs: member {member} {how} hash {}, member {} had \
                     {}",
                    position.lsn,
                    position.hash.to_hex(),
                    known.seen_on,
                    known.position.hash.to_hex()
                ));
            }
            Some(known) => {
                if known.term.is_none() {
                    known.term = term;
                }
            }
            None => {
                world.observed.committed.insert(
                    position.lsn,
                    Committed {
                        position,
                        term,
                        seen_on: member,
                    },
                );
                world.note(&format!(
                    "{} committed as {} ({how} on {member})",
                    position.lsn,
                    position.hash.to_hex()
                ));
            }
        }
    }
    Ok(())
}
