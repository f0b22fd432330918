//! The accept loop: a permit per connection, hyper's HTTP/1.1 per connection (with upgrades),
//! the connection's deadlines raced against it, and a graceful stop.
//!
//! ```text
//!   loop: accept ─► try permit ──none──► refusal task (bounded): 503 too_many_connections
//!           │           │ permit
//!           │           ▼ (with --tls-cert: the TLS handshake, within the header timeout)
//!           │   spawn connection: select { hyper conn, clock.expiry(), stop → graceful }
//!           └─ stop: close the listener, ask every connection to finish its request, wait
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::Service;
use tracing::{debug, warn};

use super::io::{ConnClock, TrackedIo};
use super::{DeadlineBody, EdgeConfig, Limit, RequestEdge};

/// Most refusals being written at once; past it an excess connection is closed at once.
const REFUSALS_MAX: usize = 64;
/// Bound on writing one refusal and reading what the client sent meanwhile.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a refusal waits for the request head before answering anyway.
const REFUSAL_HEAD_WAIT: Duration = Duration::from_millis(500);
/// Most request bytes read and thrown away before a refused connection is closed (a close
/// with unread bytes sends a reset, which can destroy the answer before it is read).
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 << 10;
/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` with the edge's limits until `stop` completes; then stops
/// accepting, lets every connection finish the request it is handling (idle ones and those
/// still sending a head close at once), and returns when none is left. The caller bounds that
/// wait.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: EdgeConfig,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        app,
        connections: Arc::new(Semaphore::new(config.connections_max)),
        sessions: Arc::new(Semaphore::new(config.replication_sessions_max)),
        refusals: Arc::new(Semaphore::new(REFUSALS_MAX)),
        stopping: watch::channel(false).0,
        live: watch::channel(0usize).0,
        config,
    });
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Every write goes out at once: a replication session's frames would otherwise wait
        // behind Nagle for the peer's delayed TCP ack (up to 40 ms on Linux) whenever the
        // replica has nothing to say, which replicas that acknowledge on request mostly do.
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%addr, %error, "TCP_NODELAY not set");
        }
        match Arc::clone(&shared.connections).try_acquire_owned() {
            Ok(permit) => {
                let shared = Arc::clone(&shared);
                let live = LiveConnection::new(Arc::clone(&shared));
                tokio::spawn(async move {
                    let _live = live;
                    let edge = RequestEdge {
                        connection: Arc::new(permit),
                        sessions: Arc::clone(&shared.sessions),
                        sessions_max: shared.config.replication_sessions_max,
                        bodies: shared.config.bodies,
                    };
                    match shared.config.tls.clone() {
                        None => serve_connection(&shared, stream, addr, edge).await,
                        Some(tls) => {
                            // The handshake is part of the first head: same deadline.
                            let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                            match tokio::time::timeout(shared.config.header_timeout, accept).await {
                                Ok(Ok(stream)) => {
                                    serve_connection(&shared, stream, addr, edge).await
                                }
                                Ok(Err(error)) => debug!(%addr, %error, "TLS handshake failed"),
                                Err(_) => Limit::HeaderTimeout.tripped(),
                            }
                        }
                    }
                });
            }
            Err(_) => {
                Limit::Connections.tripped();
                match Arc::clone(&shared.refusals).try_acquire_owned() {
                    Ok(slot) => {
                        tokio::spawn(async move {
                            refuse(stream).await;
                            drop(slot);
                        });
                    }
                    // Too many refusals in progress: closing at once is the refusal.
                    Err(_) => drop(stream),
                }
            }
        }
    }
    drop(listener);
    shared.stopping.send_replace(true);
    let mut live = shared.live.subscribe();
    let _ = live.wait_for(|n| *n == 0).await;
    Ok(())
}

struct Shared {
    app: Router,
    connections: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    stopping: watch::Sender<bool>,
    live: watch::Sender<usize>,
    config: EdgeConfig,
}

/// One connection counted in `live` until dropped (also when its task panics), so a stop
/// never waits for a connection that is gone.
struct LiveConnection(Arc<Shared>);

impl LiveConnection {
    fn new(shared: Arc<Shared>) -> LiveConnection {
        shared.live.send_modify(|n| *n += 1);
        LiveConnection(shared)
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.live.send_modify(|n| *n -= 1);
    }
}

/// Serves one accepted connection until it closes, a deadline passes, or the server stops.
async fn serve_connection<I>(shared: &Shared, stream: I, addr: SocketAddr, edge: RequestEdge)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let clock = ConnClock::new(config.header_timeout, config.idle_timeout);
    let io = TokioIo::new(TrackedIo::new(stream, Arc::clone(&clock)));
    let service = {
        let clock = Arc::clone(&clock);
        let app = shared.app.clone();
        let body_timeout = config.body_timeout;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            clock.update(|d, _| d.on_request());
            let mut request = request.map(|body| DeadlineBody::new(body, body_timeout));
            request.extensions_mut().insert(ConnectInfo(addr));
            request.extensions_mut().insert(edge.clone());
            let answer = app.clone().call(request);
            let clock = Arc::clone(&clock);
            async move {
                let response = answer.await;
                clock.update(|d, now| d.on_answered(now));
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header timeout is enforced by the connection's clock (which also covers the first
    // head from accept and the idle time between requests), not hyper's.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let connection = http.serve_connection(io, service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let mut stopping = shared.stopping.subscribe();
    let mut graceful = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%addr, %error, "connection ended with an error");
                }
                return;
            }
            limit = clock.expiry() => {
                limit.tripped();
                debug!(%addr, limit = limit.as_str(), "closing the connection");
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !graceful => {
                // A connection that owes us a head (a slowloris among them) or sits idle has
                // nothing to finish: close it now rather than hold the stop for its deadline.
                if !clock.is_in_flight() {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                graceful = true;
            }
        }
    }
}

/// Answers a connection beyond `--max-connections` with `503 too_many_connections` and closes
/// it, within [`REFUSAL_TIMEOUT`]. The request head is read first (for at most
/// [`REFUSAL_HEAD_WAIT`]): an HTTP client that gets an answer before it wrote its request takes
/// it for a broken connection, not for a refusal.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"code":"too_many_connections","message":"the server has its maximum of connections open (--max-connections); retry later"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let refusal = async {
        let mut buf = [0u8; 4096];
        let mut head = Vec::new();
        let read_head = async {
            while head.len() < REFUSAL_DRAIN_BYTES_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n")
            {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(REFUSAL_HEAD_WAIT, read_head).await;
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES_MAX {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refusal).await;
}
