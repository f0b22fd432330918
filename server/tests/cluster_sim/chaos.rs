//! The schedule's chaos: crashes (one member, or a power cut of a majority or all), partitions
//! (an isolated member, a one-way or two-way cut link, a minority split off), wall-clock jumps,
//! leaps of the monotonic clock, leadership transfers, client writes; and the healing at the
//! end.

use std::time::Duration;

use super::World;
use super::network::Faults;

impl World {
    pub(super) async fn chaos(&mut self) {
        let now = self.now_ms();
        for m in 0..self.members.len() {
            if self.members[m].up.is_none() && self.members[m].restart_at_ms <= now {
                self.restart(m).await;
            }
        }
        if self.rng.chance(self.knobs.write) {
            for _ in 0..self.rng.range(1, 3) {
                self.write();
            }
        }
        if self.rng.chance(self.knobs.crash) {
            let up = self.up_members();
            if !up.is_empty() {
                let down_ms = self.rng.range(20, self.knobs.down_ms_max);
                if self.rng.chance(0.25) {
                    // A power cut: a majority, or everyone, at once.
                    let n = self.members.len();
                    let count = self.rng.range(n as u64 / 2 + 1, n as u64) as usize;
                    let first = self.rng.below(n as u64) as usize;
                    self.note(&format!("power cut on {count} members"));
                    for m in (0..count).map(|i| (first + i) % n) {
                        if self.members[m].up.is_some() {
                            self.crash(m, down_ms);
                        }
                    }
                } else {
                    let m = self.rng.pick(&up);
                    self.crash(m, down_ms);
                }
            }
        }
        if self.rng.chance(self.knobs.partition) {
            self.partition();
        }
        if self.rng.chance(self.knobs.clock_jump) {
            let m = self.rng.below(self.members.len() as u64) as usize;
            let jump = self.rng.range(1, 120_000) as i64 - 60_000;
            self.members[m].wall_offset_ms += jump;
            self.report.clock_jumps += 1;
            let id = self.members[m].id;
            self.note(&format!("wall clock of {id} jumps {jump} ms"));
        }
        if self.rng.chance(self.knobs.world_jump) {
            let leap = self.rng.range(100, 1_500);
            self.report.world_jumps += 1;
            self.note(&format!("the monotonic clock leaps {leap} ms"));
            tokio::time::advance(Duration::from_millis(leap)).await;
        }
        if self.rng.chance(self.knobs.transfer) {
            self.transfer().await;
        }
    }

    async fn restart(&mut self, m: usize) {
        let id = self.members[m].id;
        self.note(&format!("member {id} restarts"));
        self.start(m).await;
    }

    fn crash(&mut self, m: usize, down_ms: u64) {
        let id = self.members[m].id;
        self.report.crashes += 1;
        self.note(&format!("member {id} crashes for {down_ms} ms"));
        self.members[m].crash(&self.net);
        self.members[m].restart_at_ms = self.now_ms() + down_ms;
    }

    fn partition(&mut self) {
        let ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
        let a = self.rng.pick(&ids);
        let b = loop {
            let b = self.rng.pick(&ids);
            if b != a {
                break b;
            }
        };
        let event = match self.rng.below(6) {
            0 => {
                for &other in ids.iter().filter(|o| **o != a) {
                    self.net.cut(a, other);
                    self.net.cut(other, a);
                }
                format!("member {a} is isolated")
            }
            1 => {
                self.net.cut(a, b);
                format!("link {a} → {b} is cut (one way)")
            }
            2 => {
                self.net.cut(a, b);
                self.net.cut(b, a);
                format!("link {a} ↔ {b} is cut")
            }
            3 => {
                // A minority on one side, the rest on the other.
                let minority: Vec<u64> = ids
                    .iter()
                    .copied()
                    .filter(|id| *id == a || (ids.len() > 3 && *id == b))
                    .collect();
                for &x in &minority {
                    for &y in ids.iter().filter(|y| !minority.contains(y)) {
                        self.net.cut(x, y);
                        self.net.cut(y, x);
                    }
                }
                format!("{minority:?} split from the rest")
            }
            _ => {
                self.net.heal();
                "the network heals".to_string()
            }
        };
        self.report.partitions += 1;
        self.note(&event);
    }

    async fn transfer(&mut self) {
        let leaders = self.believed_leaders();
        let Some(&l) = leaders.first() else {
            return;
        };
        let ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
        let to = self.rng.pick(&ids);
        let from = self.members[l].id;
        if to == from {
            return;
        }
        self.report.transfers += 1;
        self.note(&format!("leader {from} hands over to {to}"));
        let raft = self.members[l].up.as_ref().expect("up").raft.clone();
        let _ = raft.trigger().transfer_leader(to).await;
    }

    /// Ends the chaos: every link works, the wire only delays, every member is up.
    pub(super) async fn heal(&mut self) {
        self.note("heal");
        self.net.heal();
        self.net.set_faults(Faults {
            delay_ms_max: self.faults.delay_ms_max,
            ..Faults::default()
        });
        for m in 0..self.members.len() {
            if self.members[m].up.is_none() {
                self.restart(m).await;
            }
        }
    }
}
