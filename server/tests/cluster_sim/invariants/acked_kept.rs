//! After healing, every acknowledged write is in the converged committed log: at or below its
//! last LSN, with the term it was acknowledged in (a log id names one entry, by Raft's log
//! matching; the committed history has one hash per LSN, by `committed_identical`).

use crate::sim::World;

pub fn check(world: &World) -> Result<(), String> {
    let last = world.report.final_position.lsn;
    for write in &world.acked {
        let lsn = write.lsn();
        if lsn > last {
            return Err(format!(
                "write {} acknowledged at {} is past the converged log's end {last}",
                write.write, write.log_id
            ));
        }
        let term = write.log_id.committed_leader_id().term;
        match world.observed.committed.get(&lsn).and_then(|c| c.term) {
            Some(t) if t != term => {
                return Err(format!(
                    "write {} acknowledged at {} was replaced: {lsn} committed in term {t}",
                    write.write, write.log_id
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
