//! The writer's batches, in headless Chromium against the in-browser leader: a queue of
//! offline writes goes out in one request; a request that fails as a whole keeps every write
//! queued; in a batch answered item by item, committed writes leave the queue, a refused one
//! is rolled back and reported, one whose answer was lost (but which committed) is counted
//! once, and one the server did not write while it committed later ones is reported (it can
//! never commit under its origin seq). Every write ends on the leader exactly once.
//!
//! Run: `CHROMEDRIVER=$(command -v chromedriver) cargo test -p cstore-wasm
//! --target wasm32-unknown-unknown --test replica_batches`.

mod support;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use cstore_core::Txn;
use cstore_core::query::FindQuery;
use cstore_wasm::replica::network::set_online;
use cstore_wasm::replica::sender::{BatchOutcome, TxnOutcome, TxnSender};
use cstore_wasm::replica::{Parts, ReplicaHandle};
use cstore_wasm::transport::loopback::{LoopbackLeader, LoopbackTransport};
use serde_json::json;
use support::{Profile, recorder, wait_until};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// What the scripted sender does with one write of a batch.
#[derive(Clone, Copy, Debug)]
enum Item {
    /// Commit it on the leader and answer as the leader does.
    Send,
    /// Commit it, but answer `504 ack_unknown` (the answer was lost).
    CommitAnswerLost,
    /// Refuse it (a 4xx) without committing.
    Refuse,
    /// Answer `503 not_leader` without committing (while later writes do commit).
    NotWritten,
}

/// The answer to one whole request.
#[derive(Clone, Debug)]
enum Script {
    /// The request fails as a whole (network, 5xx on the request).
    WholeFailure,
    /// Item by item (items past the list are `Send`).
    Items(Vec<Item>),
}

/// A sender that answers batches from a script, over the loopback leader.
#[derive(Clone)]
struct Scripted {
    leader: LoopbackLeader,
    script: Rc<RefCell<VecDeque<Script>>>,
    /// The seqs of each request, in order.
    requests: Rc<RefCell<Vec<Vec<u64>>>>,
}

impl TxnSender for Scripted {
    async fn send(&self, client: &str, seq: u64, txn: &Txn) -> TxnOutcome {
        self.requests.borrow_mut().push(vec![seq]);
        self.leader.send(client, seq, txn).await
    }

    async fn send_batch(&self, client: &str, writes: &[(u64, Txn)]) -> BatchOutcome {
        self.requests
            .borrow_mut()
            .push(writes.iter().map(|(seq, _)| *seq).collect());
        let items = match self.script.borrow_mut().pop_front() {
            Some(Script::WholeFailure) => {
                return BatchOutcome::Retry {
                    code: "network_error".into(),
                    message: "scripted failure of the whole request".into(),
                };
            }
            Some(Script::Items(items)) => items,
            None => Vec::new(),
        };
        let mut outcomes = Vec::new();
        for (at, (seq, txn)) in writes.iter().enumerate() {
            let outcome = match items.get(at).copied().unwrap_or(Item::Send) {
                Item::Send => self.leader.send(client, *seq, txn).await,
                Item::CommitAnswerLost => {
                    let committed = self.leader.send(client, *seq, txn).await;
                    assert!(matches!(committed, TxnOutcome::Committed { .. }));
                    TxnOutcome::Retry {
                        code: "ack_unknown".into(),
                        message: "scripted: committed, answer lost".into(),
                    }
                }
                Item::Refuse => TxnOutcome::Rejected {
                    code: "forbidden".into(),
                    message: "scripted refusal".into(),
                },
                Item::NotWritten => TxnOutcome::Retry {
                    code: "not_leader".into(),
                    message: "scripted: not written".into(),
                },
            };
            outcomes.push(outcome);
        }
        BatchOutcome::Each(outcomes)
    }
}

#[wasm_bindgen_test]
async fn a_queue_goes_out_in_batches_and_each_write_lands_once() {
    let leader = LoopbackLeader::new();
    let script = Rc::new(RefCell::new(VecDeque::from([
        Script::WholeFailure,
        Script::Items(vec![
            Item::Send,
            Item::Send,
            Item::CommitAnswerLost,
            Item::Send,
            Item::Refuse,
            Item::Send,
            Item::NotWritten,
        ]),
    ])));
    let sender = Scripted {
        leader: leader.clone(),
        script,
        requests: Rc::default(),
    };
    let profile = Profile::default();
    let replica = ReplicaHandle::open(Parts {
        store: profile.store.clone(),
        transport: LoopbackTransport::new(&leader),
        pending: profile.pending.clone(),
        sender: sender.clone(),
    })
    .await
    .expect("replica opens");
    let rejected = recorder();
    {
        let rejected = rejected.clone();
        replica.on_rejected(Rc::new(move |r| rejected.borrow_mut().push(r.clone())));
    }
    wait_until("connected", 10_000, || replica.status().connected).await;

    // Ten writes made offline wait in the queue.
    set_online(replica.shared(), false);
    for i in 0..10 {
        replica
            .insert("notes", json!({"_id": format!("w{i}"), "n": i}))
            .await
            .unwrap();
    }
    assert_eq!(replica.status().pending_writes, 10);
    assert!(sender.requests.borrow().is_empty(), "nothing sent offline");

    set_online(replica.shared(), true);
    wait_until("drained", 20_000, || replica.status().pending_writes == 0).await;
    replica.flush().await;

    let requests = sender.requests.borrow().clone();
    let all: Vec<u64> = (1..=10).collect();
    assert_eq!(requests[0], all, "the whole queue in one request");
    assert_eq!(
        requests[1], all,
        "a failed request keeps every write queued"
    );
    // The write whose answer was lost (w2, seq 3) is confirmed by the replicated log (its
    // origin record) before the writer's backoff ends; if not, it alone is sent again and
    // answered as a duplicate.
    assert!(
        requests[2..].is_empty() || requests[2..] == [vec![3]],
        "{requests:?}"
    );

    // The refused write (w4, seq 5) is rolled back and reported, and so is w6 (seq 7): it was
    // not written but later writes of the client were, so it can never commit under its seq.
    // The others are on the leader once each (w2 once, its lost answer notwithstanding).
    let rejected = rejected.borrow().clone();
    let codes: Vec<(u64, &str)> = rejected.iter().map(|r| (r.seq, r.code.as_str())).collect();
    assert_eq!(codes, [(5, "forbidden"), (7, "not_committed")]);
    let state = leader.state();
    let notes = state.collection("notes").expect("notes on the leader");
    let mut on_leader: Vec<String> = notes.scan().map(|d| d.doc.id()).collect();
    on_leader.sort();
    let expected: Vec<String> = (0..10)
        .filter(|&i| i != 4 && i != 6)
        .map(|i| format!("w{i}"))
        .collect();
    assert_eq!(on_leader, expected);
    assert_eq!(state.origin(replica.client_id()).unwrap().seq, 10);
    support::caught_up(&replica, &leader).await;
    let local = replica.find("notes", &FindQuery::all()).unwrap();
    assert_eq!(local.len(), 8);
    assert_eq!(replica.status().rebootstraps, 0);
    replica.close().await;
}
