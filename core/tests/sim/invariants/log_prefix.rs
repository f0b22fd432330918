//! Every replica's durable log is a prefix of the leader's: the same entries, byte for byte,
//! at the same LSNs, and any snapshot it holds sits on the leader's chain. The chain it is
//! receiving on (its `received` position) is on the leader's chain too. A replica whose store
//! was forked is held to this up to the fork, until a snapshot replaces that store.

use cstore_core::storage::LogStore;
use futures::FutureExt;

use crate::sim::World;

pub fn check(world: &mut World) -> Result<(), String> {
    let leader = &world.leader;
    for (r, node) in world.replicas.iter_mut().enumerate() {
        let received = node.machine.received();
        if node.fork_base.is_none() && !leader.on_chain(received) {
            return Err(format!(
                "replica {r} receives on {received}, off the leader's chain"
            ));
        }
        let store = node
            .durable
            .state()
            .now_or_never()
            .unwrap()
            .expect("store state");
        let last = node.fork_base.unwrap_or(store.last.lsn);
        if last > leader.committed().lsn {
            return Err(format!("replica {r} holds {last} beyond the leader's last"));
        }
        let snapshot = node
            .durable
            .load_snapshot()
            .now_or_never()
            .unwrap()
            .expect("snapshot");
        if let Some(snapshot) = snapshot
            && !leader.on_chain(snapshot.position)
        {
            return Err(format!(
                "replica {r} holds a snapshot at {} off the chain",
                snapshot.position
            ));
        }
        // Only entries not checked before: the store only grows until it is replaced.
        let from = store.first.max(node.store_checked.next());
        let to = last.next();
        let entries = node.durable.read_range(from, to).now_or_never().unwrap();
        for entry in entries.expect("the store reads back") {
            let full = &leader.history[entry.lsn.0 as usize - 1];
            let expected = if node.is_subscribed() {
                &crate::sim::as_received(full)
            } else {
                full
            };
            if entry != *expected {
                return Err(format!(
                    "replica {r} durably holds entry {} ({:?}, ts {}) where the leader has ({:?}, ts {})",
                    entry.lsn, entry.hash, entry.timestamp, expected.hash, expected.timestamp
                ));
            }
        }
        node.store_checked = node.store_checked.max(last);
    }
    Ok(())
}
