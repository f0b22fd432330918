//! At most one leader per term. Leaders are seen two ways: a member's Raft says it leads (its
//! metrics), and a committed vote `(term, leader)` reaches some disk (the leader saves it when
//! a quorum granted it; followers save it when they accept the leader). Every such sighting, on
//! every member and across crashes, must name the same leader for a term.

use cstore_server::cluster::types::RaftVote;
use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::vote::RaftLeaderId as _;

use crate::sim::World;

pub fn check(world: &mut World, votes: &[(u64, RaftVote)]) -> Result<(), String> {
    let mut sightings = Vec::new();
    for member in &world.members {
        if let Some(up) = &member.up {
            let metrics = up.raft.metrics();
            let m = metrics.borrow_watched();
            if m.state == ServerState::Leader {
                sightings.push((m.current_term, member.id, "its own metrics"));
            }
        }
    }
    for (_, vote) in votes.iter().filter(|(_, v)| v.is_committed()) {
        sightings.push((
            vote.leader_id().term(),
            *vote.leader_id().node_id(),
            "a committed vote on a disk",
        ));
    }
    for (term, leader, source) in sightings {
        match world.observed.leaders.get(&term) {
            Some((known, seen)) if *known != leader => {
                return Err(format!(
                    "two leaders in term {term}: {known} (seen in {seen}) and {leader} (seen in \
                     {source})"
                ));
            }
            Some(_) => {}
            None => {
                world.observed.leaders.insert(term, (leader, source));
                world.note(&format!("member {leader} leads term {term}"));
            }
        }
    }
    Ok(())
}
