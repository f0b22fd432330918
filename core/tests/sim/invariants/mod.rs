//! The properties that must hold after every step, one file each. Each returns a message
//! naming the replica and the LSN when it does not hold.

mod acked_durable;
mod applied_once;
mod log_prefix;
mod state_hash;

use super::World;

pub fn check(world: &mut World) -> Result<(), String> {
    log_prefix::check(world)?;
    applied_once::check(world)?;
    state_hash::check(world)?;
    acked_durable::check(world)?;
    Ok(())
}
