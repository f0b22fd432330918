//! A client of the write channel (`GET /v1/write`, docs/HTTP_API.md "Write channel"), for the
//! tests and for the load generators (`cstore-load --mode channel`, `cstore-peers`): one
//! WebSocket, transactions sent without waiting, answers read back in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a load client waits for one answer (as the HTTP clients' request timeout).
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How a channel could not be opened, or what ended it.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The upgrade was refused with an HTTP answer (its status and JSON body).
    #[error("refused with {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The JSON body (`Null` when it was not JSON).
        body: Value,
    },
    /// The server closed the channel (its close code and reason; `None` without a frame).
    #[error("closed by the server: {0:?}")]
    Closed(Option<(u16, String)>),
    /// No answer within the wait.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A network or WebSocket error, or an answer that is not JSON.
    #[error("{0}")]
    Other(String),
}

/// One open write channel.
#[derive(Debug)]
pub struct WriteChannel {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WriteChannel {
    /// Opens `ws://{addr}/v1/write{query}` (`query` such as `"?ack=replicas:1"` or `""`), with
    /// a bearer token if given.
    pub async fn open(
        addr: &str,
        query: &str,
        token: Option<&str>,
    ) -> Result<WriteChannel, ChannelError> {
        let url = format!("ws://{addr}/v1/write{query}");
        let mut request = url
            .into_client_request()
            .map_err(|e| ChannelError::Other(e.to_string()))?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| ChannelError::Other(e.to_string()))?;
            request.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(WriteChannel { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .and_then(|bytes| serde_json::from_slice(bytes).ok())
                    .unwrap_or(Value::Null);
                Err(ChannelError::Refused { status, body })
            }
            Err(error) => Err(ChannelError::Other(error.to_string())),
        }
    }

    /// Queues one text message (flushed by [`flush`](Self::flush) or the next
    /// [`send`](Self::send)).
    pub async fn feed_text(&mut self, text: String) -> Result<(), ChannelError> {
        self.socket
            .feed(Message::text(text))
            .await
            .map_err(|e| ChannelError::Other(e.to_string()))
    }

    /// Queues one transaction body.
    pub async fn feed(&mut self, txn: &Value) -> Result<(), ChannelError> {
        self.feed_text(txn.to_string()).await
    }

    /// Sends what was queued.
    pub async fn flush(&mut self) -> Result<(), ChannelError> {
        self.socket
            .flush()
            .await
            .map_err(|e| ChannelError::Other(e.to_string()))
    }

    /// Sends one transaction body now.
    pub async fn send(&mut self, txn: &Value) -> Result<(), ChannelError> {
        self.feed(txn).await?;
        self.flush().await
    }

    /// Sends a binary message (which the server answers as an invalid transaction).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), ChannelError> {
        self.socket
            .send(Message::Binary(Bytes::from(bytes)))
            .await
            .map_err(|e| ChannelError::Other(e.to_string()))
    }

    /// The next answer, waiting at most `wait`.
    pub async fn recv(&mut self, wait: Duration) -> Result<Value, ChannelError> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next())
                .await
                .map_err(|_| ChannelError::Timeout(wait))?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text)
                        .map_err(|e| ChannelError::Other(format!("answer is not JSON: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame
                        .map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()));
                    return Err(ChannelError::Closed(frame));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(_))) => {
                    return Err(ChannelError::Other("a binary answer".into()));
                }
                Some(Err(error)) => return Err(ChannelError::Other(error.to_string())),
                None => return Err(ChannelError::Closed(None)),
            }
        }
    }

    /// Sends what was queued and waits (at most [`ANSWER_WAIT`]) for the next answer:
    /// `Ok(Ok(()))` when its transaction committed, `Ok(Err(answer))` when it was refused,
    /// `Err` when the channel broke.
    pub async fn outcome(&mut self) -> Result<Result<(), String>, ChannelError> {
        self.flush().await?;
        let answer = self.recv(ANSWER_WAIT).await?;
        Ok(match answer.get("lsn") {
            Some(_) => Ok(()),
            None => Err(answer.to_string()),
        })
    }

    /// Keeps up to `window` transactions in flight: sends the texts `next` gives until it gives
    /// `None`, and hands each answer, in order, to `answered` with the time its transaction was
    /// sent and its outcome (`Err` with the answer for a refusal). Returns once everything sent
    /// was answered, or when the channel broke (the oldest transaction in flight gets the
    /// error; the others had no answer).
    pub async fn pipeline(
        &mut self,
        window: usize,
        mut next: impl FnMut() -> Option<String>,
        mut answered: impl FnMut(Instant, Result<(), String>),
    ) {
        assert!(window > 0, "at least one transaction in flight");
        let mut in_flight = VecDeque::with_capacity(window);
        let mut done = false;
        loop {
            while !done && in_flight.len() < window {
                let Some(text) = next() else {
                    done = true;
                    break;
                };
                if let Err(error) = self.feed_text(text).await {
                    answered(Instant::now(), Err(error.to_string()));
                    return;
                }
                in_flight.push_back(Instant::now());
            }
            let Some(sent) = in_flight.pop_front() else {
                return;
            };
            match self.outcome().await {
                Ok(outcome) => answered(sent, outcome),
                Err(error) => {
                    answered(sent, Err(error.to_string()));
                    return;
                }
            }
        }
    }

    /// Closes the channel from this side.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
