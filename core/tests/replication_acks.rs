//! The acknowledgement tracker: durable-on-N watermarks and writes waiting for replicas, which
//! end `Durable` or, at their deadline, `Unknown`, never a false success.

use cstore_core::ErrorCode;
use cstore_core::replication::{AckTracker, Needed, WaitId, WaitOutcome};
use cstore_core::{Lsn, ReplicaId, TimestampMs};

fn t(ms: u64) -> TimestampMs {
    TimestampMs(ms)
}

#[test]
fn durable_on_n_is_the_nth_highest_durable_lsn() {
    let mut acks = AckTracker::new(10);
    assert_eq!(acks.durable_on(1), Lsn::ZERO);
    acks.set_durable(ReplicaId(1), Lsn(7));
    acks.set_durable(ReplicaId(2), Lsn(3));
    acks.set_durable(ReplicaId(3), Lsn(5));
    assert_eq!(
        [
            acks.durable_on(1),
            acks.durable_on(2),
            acks.durable_on(3),
            acks.durable_on(4)
        ],
        [Lsn(7), Lsn(5), Lsn(3), Lsn::ZERO]
    );
    assert!(acks.is_durable(Lsn(5), 2) && !acks.is_durable(Lsn(6), 2));
    acks.remove(ReplicaId(1));
    assert_eq!(acks.durable_on(1), Lsn(5));
    assert_eq!(acks.connected(), 2);
    assert_eq!(acks.durable_lsn(ReplicaId(2)), Some(Lsn(3)));
}

#[test]
fn a_wait_ends_durable_once_enough_replicas_hold_the_lsn() {
    let mut acks = AckTracker::new(10);
    acks.set_durable(ReplicaId(1), Lsn(4));
    let two = acks.wait(Lsn(4), Needed::Replicas(2), t(100)).unwrap();
    let one = acks.wait(Lsn(4), Needed::Replicas(1), t(100)).unwrap();
    assert_eq!(acks.poll(t(1)), [(one, WaitOutcome::Durable)]);
    assert_eq!(acks.waiting(), 1);
    acks.set_durable(ReplicaId(2), Lsn(3));
    assert_eq!(acks.poll(t(2)), []);
    acks.set_durable(ReplicaId(2), Lsn(9));
    assert_eq!(acks.poll(t(3)), [(two, WaitOutcome::Durable)]);
}

#[test]
fn a_wait_past_its_deadline_is_unknown() {
    let mut acks = AckTracker::new(10);
    acks.set_durable(ReplicaId(1), Lsn(1));
    let id = acks.wait(Lsn(2), Needed::Replicas(1), t(50)).unwrap();
    assert_eq!(acks.next_deadline(), Some(t(50)));
    assert_eq!(acks.poll(t(49)), []);
    assert_eq!(acks.poll(t(50)), [(id, WaitOutcome::Unknown)]);
    assert_eq!(acks.next_deadline(), None);
    // A replica that acknowledges later cannot turn it into a success.
    acks.set_durable(ReplicaId(1), Lsn(2));
    assert_eq!(acks.poll(t(51)), []);
}

#[test]
fn all_means_every_replica_connected_when_the_write_was_made() {
    let mut acks = AckTracker::new(10);
    acks.set_durable(ReplicaId(1), Lsn(5));
    acks.set_durable(ReplicaId(2), Lsn(1));
    let all = acks.wait(Lsn(5), Needed::All, t(100)).unwrap();
    // A replica joining later does not raise the bar...
    acks.set_durable(ReplicaId(3), Lsn(0));
    assert_eq!(acks.poll(t(1)), []);
    // ...and any two replicas holding it meet it.
    acks.set_durable(ReplicaId(3), Lsn(5));
    assert_eq!(acks.poll(t(2)), [(all, WaitOutcome::Durable)]);

    let mut none = AckTracker::new(10);
    let id = none.wait(Lsn(5), Needed::All, t(100)).unwrap();
    assert_eq!(none.poll(t(0)), [(id, WaitOutcome::Durable)]);
}

#[test]
fn waiters_are_bounded_and_cancellable() {
    let mut acks = AckTracker::new(2);
    let a = acks.wait(Lsn(1), Needed::Replicas(1), t(10)).unwrap();
    acks.wait(Lsn(1), Needed::Replicas(1), t(10)).unwrap();
    let full = acks.wait(Lsn(1), Needed::Replicas(1), t(10)).unwrap_err();
    assert_eq!(full.code(), "too_many_waiters");
    acks.cancel(a);
    let c = acks.wait(Lsn(1), Needed::Replicas(1), t(10)).unwrap();
    assert_eq!(c, WaitId(2));
    assert_eq!(acks.poll(t(10)).len(), 2);
}
