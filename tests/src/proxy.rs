//! A TCP proxy in front of each cluster member, so a test can cut, and heal, the links
//! between members, one way or both, while clients still reach every member.
//!
//! ```text
//!  member j (listens on 127.0.1.j, and connects from that IP) ──► proxy of member i (127.0.0.1:Qi)
//!     ──► member i (127.0.1.i:Pi)
//!  the proxy knows the sender of a connection by its source IP: 127.0.1.j is member j, any
//!  other address a client; a cut link j → i refuses new connections from j and closes the
//!  live ones, so j's requests to i (and their answers) are lost until the link heals.
//! ```
//!
//! The cluster's URLs are the proxies', so all Raft traffic and forwarded writes go through
//! them. Threads only; every thread stops when the proxy is dropped.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::HarnessError;

/// The loopback IP member `node_id` listens on and connects from.
pub fn member_ip(node_id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, node_id as u8))
}

/// A free port on member `node_id`'s IP.
pub fn member_addr(node_id: u64) -> Result<SocketAddr, HarnessError> {
    let listener = TcpListener::bind((member_ip(node_id), 0))
        .map_err(|e| HarnessError::io("binding a member address", e))?;
    listener
        .local_addr()
        .map_err(|e| HarnessError::io("reading the bound port", e))
}

/// The member a connection comes from, by its source IP; `None` for a client.
fn sender(addr: SocketAddr) -> Option<u64> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.octets()[..3] == [127, 0, 1] => Some(u64::from(ip.octets()[3])),
        _ => None,
    }
}

/// Which links are cut: `(from, to)` by node id.
#[derive(Debug, Default)]
struct Links {
    cut: Mutex<HashSet<(u64, u64)>>,
    /// Live connections: (from, to, the two sockets), closed when their link is cut.
    live: Mutex<Vec<(u64, u64, TcpStream)>>,
    /// Links armed to be cut once this many more bytes went through them (from → to).
    budgets: Mutex<HashMap<(u64, u64), u64>>,
}

impl Links {
    fn cut(&self, from: u64, to: u64) {
        self.cut.lock().expect("poisoned").insert((from, to));
        let mut live = self.live.lock().expect("poisoned");
        live.retain(|(f, t, stream)| {
            if (*f, *t) == (from, to) {
                let _ = stream.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }

    /// How many of `n` bytes from → to may pass; cuts the link when its budget runs out.
    fn pass(&self, from: u64, to: u64, n: usize) -> usize {
        let mut budgets = self.budgets.lock().expect("poisoned");
        let Some(budget) = budgets.get_mut(&(from, to)) else {
            return n;
        };
        if (n as u64) < *budget {
            *budget -= n as u64;
            return n;
        }
        let allowed = *budget as usize;
        budgets.remove(&(from, to));
        drop(budgets);
        self.cut(from, to);
        allowed
    }
}

/// Proxies for every member of a cluster, sharing one set of cut links.
#[derive(Debug)]
pub struct Proxies {
    links: Arc<Links>,
    /// The proxies' addresses, by member index (node id − 1).
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxies {
    /// Starts one proxy per member: proxy `i` on a free 127.0.0.1 port forwards to
    /// `targets[i]` (member `i + 1`).
    pub fn start(targets: &[SocketAddr]) -> Result<Proxies, HarnessError> {
        let links = Arc::new(Links::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0")
                .map_err(|e| HarnessError::io("binding a proxy", e))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| HarnessError::io("proxy nonblocking", e))?;
            addrs.push(
                listener
                    .local_addr()
                    .map_err(|e| HarnessError::io("proxy address", e))?,
            );
            let (links, stop, target) = (Arc::clone(&links), Arc::clone(&stop), *target);
            let to = i as u64 + 1;
            threads.push(std::thread::spawn(move || {
                accept_loop(listener, target, to, &links, &stop)
            }));
        }
        Ok(Proxies {
            links,
            addrs,
            stop,
            threads,
        })
    }

    /// Cuts the link from member `from` to member `to` (one way).
    pub fn cut(&self, from: u64, to: u64) {
        self.links.cut(from, to);
    }

    /// Cuts the link from member `from` to member `to` once `bytes` more bytes went from
    /// `from` to `to` (a transfer cut part-way, wherever its requests happen to fall).
    pub fn cut_after_bytes(&self, from: u64, to: u64, bytes: u64) {
        self.links
            .budgets
            .lock()
            .expect("poisoned")
            .insert((from, to), bytes);
    }

    /// True while the link from `from` to `to` is cut.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.links
            .cut
            .lock()
            .expect("poisoned")
            .contains(&(from, to))
    }

    /// Cuts every link between `node` and the other `members` (both ways).
    pub fn isolate(&self, node: u64, members: u64) {
        for other in (1..=members).filter(|o| *o != node) {
            self.cut(node, other);
            self.cut(other, node);
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.links.cut.lock().expect("poisoned").clear();
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, _, stream) in self.links.live.lock().expect("poisoned").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    to: u64,
    links: &Arc<Links>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        let from = sender(peer);
        if let Some(from) = from
            && links.cut.lock().expect("poisoned").contains(&(from, to))
        {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nonblocking(false);
        if let Some(from) = from
            && let (Ok(a), Ok(b)) = (client.try_clone(), upstream.try_clone())
        {
            let mut live = links.live.lock().expect("poisoned");
            live.retain(|(_, _, s)| s.peer_addr().is_ok());
            live.push((from, to, a));
            live.push((from, to, b));
        }
        let counted = from.map(|from| (Arc::clone(links), from, to));
        pump_both(client, upstream, counted);
    }
}

/// Copies bytes both ways until either side closes; the bytes a member sends count against
/// its link's budget (`counted`), if the link has one.
fn pump_both(client: TcpStream, upstream: TcpStream, counted: Option<(Arc<Links>, u64, u64)>) {
    let (Ok(client_read), Ok(upstream_read)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    std::thread::spawn(move || pump(client_read, upstream, counted));
    std::thread::spawn(move || pump(upstream_read, client, None));
}

fn pump(mut from: TcpStream, mut to: TcpStream, counted: Option<(Arc<Links>, u64, u64)>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let allowed = counted
                    .as_ref()
                    .map_or(n, |(links, f, t)| links.pass(*f, *t, n));
                if to.write_all(&buf[..allowed]).is_err() || allowed < n {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
