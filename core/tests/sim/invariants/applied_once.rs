//! No entry is applied twice, none is skipped, and no apply fails: since a replica's state was
//! last built (from its store, or from a snapshot), the LSNs it applied run one by one from
//! where it was built.

use cstore_core::Lsn;

use crate::sim::World;

pub fn check(world: &mut World) -> Result<(), String> {
    for (r, node) in world.replicas.iter_mut().enumerate() {
        if let Some(error) = &node.apply_error {
            return Err(format!("replica {r}: {error}"));
        }
        for (i, lsn) in node.applied.iter().enumerate().skip(node.applied_checked) {
            let expected = Lsn(node.applied_base.0 + i as u64 + 1);
            if *lsn != expected {
                return Err(format!(
                    "replica {r} applied entry {lsn} where {expected} was next (applied twice or skipped)"
                ));
            }
        }
        node.applied_checked = node.applied.len();
    }
    Ok(())
}
