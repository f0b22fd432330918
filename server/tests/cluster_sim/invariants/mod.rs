//! The properties that must hold after every step, one file each, and the two that hold at the
//! end (`converged`, `acked_kept`). Each returns a message naming the members, the term or the
//! LSN when it does not hold.

pub mod acked_durable;
pub mod acked_kept;
pub mod committed_identical;
pub mod converged;
pub mod one_leader_per_term;
pub mod one_vote_per_term;

use cstore_server::cluster::types::RaftVote;
use openraft::async_runtime::WatchReceiver;

use super::World;
use super::disk::lock;

pub fn check(world: &mut World) -> Result<(), String> {
    let checked = |name: &str| !world.options.unchecked.contains(&name);
    let (leaders, votes, acked) = (
        checked("one_leader_per_term"),
        checked("one_vote_per_term"),
        checked("acked_durable"),
    );
    running(world)?;
    let new_votes = new_votes(world);
    if leaders {
        one_leader_per_term::check(world, &new_votes)?;
    }
    if votes {
        one_vote_per_term::check(world, &new_votes)?;
    }
    committed_identical::check(world)?;
    if acked {
        acked_durable::check(world)?;
    }
    Ok(())
}

/// No running member stopped on its own (openraft stops on a storage error or a broken
/// assertion of its own).
fn running(world: &World) -> Result<(), String> {
    for member in &world.members {
        if let Some(up) = &member.up
            && let Err(fatal) = &up.raft.metrics().borrow_watched().running_state
        {
            return Err(format!("member {} stopped: {fatal}", member.id));
        }
    }
    Ok(())
}

/// The votes each member saved since the last look, with the member's id.
fn new_votes(world: &mut World) -> Vec<(u64, RaftVote)> {
    let mut votes = Vec::new();
    for member in &world.members {
        let d = lock(&member.disk);
        let checked = world.observed.votes_checked.entry(member.id).or_default();
        votes.extend(d.votes_saved[*checked..].iter().map(|v| (member.id, *v)));
        *checked = d.votes_saved.len();
    }
    votes
}
