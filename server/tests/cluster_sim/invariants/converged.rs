//! After healing, every member converges: one leader that all follow, in one term, and every
//! member has applied the leader's whole log, reaching the same `(lsn, hash)` and the same state.

use cstore_core::LogPosition;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

use crate::sim::World;

/// The converged position, or why the members have not converged yet.
pub fn check(world: &World) -> Result<LogPosition, String> {
    let mut views = Vec::new();
    for member in &world.members {
        let Some(up) = &member.up else {
            return Err(format!("member {} is down", member.id));
        };
        let m = up.raft.metrics().borrow_watched().clone();
        views.push((member.id, m, up.local.applied_position()));
    }
    let leaders: Vec<u64> = views
        .iter()
        .filter(|(_, m, _)| m.state == ServerState::Leader)
        .map(|(id, _, _)| *id)
        .collect();
    let [leader] = leaders[..] else {
        let states: Vec<String> = views
            .iter()
            .map(|(id, m, applied)| {
                format!(
                    "{id}: {:?} term {} vote {} last {:?} committed {:?} applied {applied}",
                    m.state,
                    m.current_term,
                    m.vote,
                    m.last_log_index,
                    m.local_committed.map(|c| c.index())
                )
            })
            .collect();
        return Err(format!("members {leaders:?} lead ({})", states.join("; ")));
    };
    let (_, lm, position) = views
        .iter()
        .find(|(id, _, _)| *id == leader)
        .expect("the leader");
    let (term, last) = (lm.current_term, lm.last_log_index);
    for (id, m, applied) in &views {
        if m.current_leader != Some(leader) || m.current_term != term {
            return Err(format!(
                "member {id} follows {:?} in term {}, not {leader} in {term}",
                m.current_leader, m.current_term
            ));
        }
        if m.last_applied.map(|l| l.index()) != last || applied != position {
            return Err(format!(
                "member {id} applied {applied} (index {:?}); the leader's log ends at {last:?}",
                m.last_applied.map(|l| l.index())
            ));
        }
    }
    let states: Vec<_> = world
        .members
        .iter()
        .map(|member| {
            let up = member.up.as_ref().expect("up");
            up.local.copy.read(|state| state.state_hash())
        })
        .collect();
    if states.iter().any(|s| *s != states[0]) {
        return Err(format!(
            "every member applied {position}, but their states differ"
        ));
    }
    Ok(*position)
}
