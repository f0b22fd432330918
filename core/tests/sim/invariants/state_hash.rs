//! A replica's state at LSN L is the leader's state at L: same applied position on the chain,
//! same state hash. Checked whenever a replica's applied position moved.

use crate::sim::World;

pub fn check(world: &mut World) -> Result<(), String> {
    let leader = &world.leader;
    for (r, node) in world.replicas.iter_mut().enumerate() {
        if node.state_forked {
            continue;
        }
        let applied = node.state.applied();
        if node.state_checked == Some(applied) {
            continue;
        }
        if !leader.on_chain(applied) {
            return Err(format!(
                "replica {r} applied {applied}, off the leader's chain"
            ));
        }
        let expected = leader.expected_hash(node, applied.lsn);
        let actual = node.state.state_hash();
        if actual != expected {
            return Err(format!(
                "replica {r} state at {applied} hashes to {actual:?}, the leader's to {expected:?}"
            ));
        }
        node.state_checked = Some(applied);
    }
    Ok(())
}
