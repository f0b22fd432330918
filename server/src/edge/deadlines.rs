//! The timers of one HTTP connection, as a machine you feed: what the connection did and when
//! in, the next deadline (and which limit it enforces) out. No clock is read here.
//!
//! ```text
//!   accept ──► AwaitingHead{since: accept} ──(head parsed)──► InFlight ──(answer ready)──┐
//!                 ▲   │ header_timeout                       no deadline here:          │
//!                 │   ▼                                      the body timeout and the   │
//!                 │  close                                   handler's own bounds       │
//!                 │                                                                     ▼
//!                 └──(first byte of the next head)── Idle{since: last byte} ◄───────────┘
//!                                                       │ idle_timeout (keep-alive, or an
//!                                                       ▼  answer the client stopped reading)
//!                                                      close
//! ```
//!
//! A new connection owes its first head within the header timeout from accept (a client that
//! connects and sends nothing is a slowloris too). Between requests a kept-alive connection
//! may stay silent for the idle timeout; once the first byte of the next head arrives, the
//! rest of it is due within the header timeout. While a request is being handled nothing here
//! closes the connection: a handler may legitimately wait (a `min_lsn` read, `?ack=` up to
//! 60 s), and its body has its own deadline.

use std::time::{Duration, Instant};

use super::Limit;

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head since this instant.
    AwaitingHead { since: Instant },
    /// This many requests are being handled (HTTP/1.1 handles one at a time; pipelined
    /// requests are read one after another).
    InFlight { requests: u32 },
    /// Between requests; `since` is the last byte read or written.
    Idle { since: Instant },
}

/// The timers of one connection.
#[derive(Clone, Debug)]
pub struct ConnDeadlines {
    header_timeout: Duration,
    idle_timeout: Duration,
    phase: Phase,
}

impl ConnDeadlines {
    /// A connection accepted at `now`: its first head is due within `header_timeout`.
    pub fn new(now: Instant, header_timeout: Duration, idle_timeout: Duration) -> ConnDeadlines {
        ConnDeadlines {
            header_timeout,
            idle_timeout,
            phase: Phase::AwaitingHead { since: now },
        }
    }

    /// `bytes` (> 0) were read from the socket at `now`.
    pub fn on_read(&mut self, now: Instant) {
        if let Phase::Idle { .. } = self.phase {
            // The first byte of the next head: the head is now due.
            self.phase = Phase::AwaitingHead { since: now };
        }
    }

    /// Bytes were written to the socket at `now` (an answer going out).
    pub fn on_write(&mut self, now: Instant) {
        if let Phase::Idle { since } = &mut self.phase {
            *since = now.max(*since);
        }
    }

    /// A whole request head was parsed; the request is being handled.
    pub fn on_request(&mut self) {
        self.phase = match self.phase {
            Phase::InFlight { requests } => Phase::InFlight {
                requests: requests + 1,
            },
            _ => Phase::InFlight { requests: 1 },
        };
    }

    /// A request's handler answered at `now` (its body may still be going out).
    pub fn on_answered(&mut self, now: Instant) {
        self.phase = match self.phase {
            Phase::InFlight { requests } if requests > 1 => Phase::InFlight {
                requests: requests - 1,
            },
            _ => Phase::Idle { since: now },
        };
    }

    /// True while a request is being handled (a stop lets it finish; other connections close).
    pub fn is_in_flight(&self) -> bool {
        matches!(self.phase, Phase::InFlight { .. })
    }

    /// The next deadline and the limit it enforces; `None` while a request is handled.
    pub fn deadline(&self) -> Option<(Instant, Limit)> {
        match self.phase {
            Phase::AwaitingHead { since } => {
                Some((since + self.header_timeout, Limit::HeaderTimeout))
            }
            Phase::Idle { since } => Some((since + self.idle_timeout, Limit::IdleTimeout)),
            Phase::InFlight { .. } => None,
        }
    }

    /// The limit whose deadline passed at `now`, if one did: the connection must close.
    pub fn expired(&self, now: Instant) -> Option<Limit> {
        self.deadline()
            .filter(|(at, _)| now >= *at)
            .map(|(_, limit)| limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_silent_new_connection_owes_its_head_from_accept() {
        let t0 = Instant::now();
        let d = ConnDeadlines::new(t0, HEADER, IDLE);
        assert_eq!(d.expired(at(t0, 9)), None);
        assert_eq!(d.expired(at(t0, 10)), Some(Limit::HeaderTimeout));
    }

    #[test]
    fn bytes_of_a_partial_head_do_not_extend_its_deadline() {
        let t0 = Instant::now();
        let mut d = ConnDeadlines::new(t0, HEADER, IDLE);
        for s in 1..10 {
            d.on_read(at(t0, s));
        }
        assert_eq!(d.expired(at(t0, 10)), Some(Limit::HeaderTimeout));
    }

    #[test]
    fn a_request_in_flight_has_no_deadline_here() {
        let t0 = Instant::now();
        let mut d = ConnDeadlines::new(t0, HEADER, IDLE);
        d.on_read(at(t0, 1));
        d.on_request();
        assert!(d.is_in_flight());
        assert_eq!(d.deadline(), None);
        assert_eq!(d.expired(at(t0, 3600)), None);
    }

    #[test]
    fn keep_alive_idles_for_the_idle_timeout_then_the_next_head_is_due() {
        let t0 = Instant::now();
        let mut d = ConnDeadlines::new(t0, HEADER, IDLE);
        d.on_request();
        d.on_answered(at(t0, 1));
        d.on_write(at(t0, 2));
        assert_eq!(d.deadline(), Some((at(t0, 62), Limit::IdleTimeout)));
        assert_eq!(d.expired(at(t0, 61)), None);
        // The next head starts: it is due within the header timeout of its first byte.
        d.on_read(at(t0, 30));
        assert_eq!(d.deadline(), Some((at(t0, 40), Limit::HeaderTimeout)));
        d.on_request();
        d.on_answered(at(t0, 41));
        assert_eq!(d.expired(at(t0, 101)), Some(Limit::IdleTimeout));
    }

    #[test]
    fn pipelined_requests_stay_in_flight_until_the_last_answer() {
        let t0 = Instant::now();
        let mut d = ConnDeadlines::new(t0, HEADER, IDLE);
        d.on_request();
        d.on_request();
        d.on_answered(at(t0, 1));
        assert_eq!(d.deadline(), None);
        d.on_answered(at(t0, 2));
        assert_eq!(d.deadline(), Some((at(t0, 62), Limit::IdleTimeout)));
    }
}
