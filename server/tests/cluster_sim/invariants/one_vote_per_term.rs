//! A member grants its vote to at most one candidate per term, across crashes: the vote is
//! durable before the grant leaves the member. (A committed vote is not a grant: it is the
//! member learning who won, which `one_leader_per_term` checks.)

use cstore_server::cluster::types::RaftVote;
use openraft::vote::RaftLeaderId as _;

use crate::sim::World;

pub fn check(world: &mut World, votes: &[(u64, RaftVote)]) -> Result<(), String> {
    for (member, vote) in votes.iter().filter(|(_, v)| !v.is_committed()) {
        let term = vote.leader_id().term();
        let candidate = *vote.leader_id().node_id();
        match world.observed.votes.get(&(*member, term)) {
            Some(earlier) if *earlier != candidate => {
                return Err(format!(
                    "member {member} voted twice in term {term}: for {earlier}, then for \
                     {candidate}"
                ));
            }
            Some(_) => {}
            None => {
                world.observed.votes.insert((*member, term), candidate);
            }
        }
    }
    Ok(())
}
