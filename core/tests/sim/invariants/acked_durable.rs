//! Every write answered "durable on N replicas" is held durably by at least N replicas, now
//! and forever after: crashes lose only what was never acknowledged, and a replica that
//! diverged is never moved back behind what it held.

use crate::sim::World;

pub fn check(world: &mut World) -> Result<(), String> {
    let holds: Vec<u64> = world
        .replicas
        .iter()
        .map(|node| node.durable_on_chain().0)
        .collect();
    for write in &world.acked {
        let count = holds.iter().filter(|last| **last >= write.lsn.0).count();
        if count < write.replicas {
            return Err(format!(
                "write {} was acknowledged on {} replicas but only {count} hold it durably (durable ends: {holds:?})",
                write.lsn, write.replicas
            ));
        }
    }
    Ok(())
}
