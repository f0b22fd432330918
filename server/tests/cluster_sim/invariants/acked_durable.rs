//! Nothing acknowledged is lost: a write answered "committed" is durable on a majority of the
//! members, now and after any crash (its entry, with its term and transaction, in their durable
//! log, or covered by their durable snapshot). Crashes lose only what was never acknowledged.

use crate::sim::World;
use crate::sim::disk::lock;

pub fn check(world: &mut World) -> Result<(), String> {
    let n = world.members.len();
    let majority = n / 2 + 1;
    for write in &world.acked {
        let lsn = write.lsn();
        let mut holders = Vec::new();
        for member in &world.members {
            let d = lock(&member.disk);
            let in_log = d.durable.entry(lsn).is_some_and(|e| {
                e.term.0 == write.log_id.committed_leader_id().term && e.txn == write.txn
            });
            let in_snapshot = d
                .snapshot
                .as_ref()
                .is_some_and(|(s, _)| s.position.lsn >= lsn);
            if in_log || in_snapshot {
                holders.push(member.id);
            }
        }
        if holders.len() < majority {
            return Err(format!(
                "write {} acknowledged at {} is durable on {} of {n} members only ({holders:?})",
                write.write,
                write.log_id,
                holders.len()
            ));
        }
    }
    Ok(())
}
