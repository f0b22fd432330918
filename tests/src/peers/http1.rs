//! A minimal HTTP/1.1 client for the write benchmarks: one keep-alive connection, one request in
//! flight, like [`super::resp::RespConnection`] for redis. Each HTTP target (cstore, etcd's JSON
//! gateway) gets the same lean last hop as redis, so the generator's own cost does not decide
//! the rows: at 42K inserts/s a pooled `reqwest` client took 0.69 of a core beside the server's
//! 0.87, this client 0.44 beside 1.08 at 48K/s (docs/bench/single-node-insert-profile.md, "the
//! load generator").
//!
//! ```text
//!   post(body) ─► "POST {path} HTTP/1.1" + Host, Content-Type, Content-Length ─► write_all
//!              ◄─ read until the head ends (≤ HEAD_BYTES_MAX) ─► httparse: status, headers
//!              ◄─ read Content-Length body bytes (≤ BODY_BYTES_MAX) ─► Ok(status, body)
//! ```
//!
//! Only what the benchmarks receive is spoken: answers framed by `Content-Length`. A chunked or
//! unframed answer, a head or body past its bound, a torn answer or `Connection: close` is an
//! error naming what was wrong; the connection is unusable after any error.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head accepted, in bytes.
pub const HEAD_BYTES_MAX: usize = 16 << 10;
/// Largest response body accepted, in bytes (the benchmarks' answers are under 1 KiB).
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Most response headers parsed.
const HEADERS_MAX: usize = 32;

/// One answer: its status code and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// One keep-alive connection to an HTTP/1.1 server.
#[derive(Debug)]
pub struct Http1Connection {
    stream: TcpStream,
    /// `host:port`, sent as `Host`.
    host: String,
    request: Vec<u8>,
    /// Bytes read and not yet consumed (the start of the buffer is the next answer).
    buffer: Vec<u8>,
    /// Set while an exchange runs, cleared when it ends well: still set after an error or a
    /// cancelled exchange (a timeout dropped its future), when the stream's place is unknown.
    busy: bool,
}

impl Http1Connection {
    /// Connects (TCP_NODELAY on).
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Http1Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http1Connection {
            stream,
            host: addr.to_string(),
            request: Vec::with_capacity(512),
            buffer: Vec::with_capacity(4096),
            busy: false,
        })
    }

    /// False once an exchange failed or was cancelled: connect again.
    pub fn is_usable(&self) -> bool {
        !self.busy
    }

    /// `POST path` with a JSON body; the answer, whatever its status.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Answer, String> {
        if self.busy {
            return Err("an earlier exchange on this connection failed or was cancelled".into());
        }
        self.busy = true;
        let answer = self.exchange(path, body).await?;
        self.busy = false;
        Ok(answer)
    }

    async fn exchange(&mut self, path: &str, body: &[u8]) -> Result<Answer, String> {
        self.request.clear();
        encode_post(&mut self.request, &self.host, path, body);
        self.stream
            .write_all(&self.request)
            .await
            .map_err(|e| format!("writing the request: {e}"))?;
        let (status, length, head_len) = loop {
            if let Some(head) = parse_head(&self.buffer)? {
                break head;
            }
            if self.buffer.len() >= HEAD_BYTES_MAX {
                return Err(format!("response head longer than {HEAD_BYTES_MAX} bytes"));
            }
            self.read_more().await?;
        };
        let end = head_len + length;
        while self.buffer.len() < end {
            self.read_more().await?;
        }
        let body = self.buffer[head_len..end].to_vec();
        self.buffer.drain(..end);
        Ok(Answer { status, body })
    }

    async fn read_more(&mut self) -> Result<(), String> {
        let start = self.buffer.len();
        self.buffer.resize(start + 4096, 0);
        let read = self.stream.read(&mut self.buffer[start..]).await;
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                self.buffer.truncate(start);
                return Err(format!("reading the answer: {e}"));
            }
        };
        self.buffer.truncate(start + read);
        if read == 0 {
            return Err(if start == 0 {
                "the server closed the connection".into()
            } else {
                format!("the server closed the connection {start} bytes into an answer")
            });
        }
        Ok(())
    }
}

/// Appends a `POST` of a JSON body.
pub fn encode_post(out: &mut Vec<u8>, host: &str, path: &str, body: &[u8]) {
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// Reads a response head at the start of `bytes`: `None` while it is incomplete, else its
/// status, its body's length and the head's length. Errors for answers this client does not
/// speak (see the module docs).
pub fn parse_head(bytes: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = response.code.expect("a complete head has a status");
    if response.version != Some(1) {
        return Err("not an HTTP/1.1 answer".into());
    }
    let mut length = None;
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("");
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err("two different Content-Length headers".into());
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("Transfer-Encoding {value:?} is not spoken here"));
        } else if header.name.eq_ignore_ascii_case("connection")
            && value.trim().eq_ignore_ascii_case("close")
        {
            return Err("the server closes the connection after this answer".into());
        }
    }
    let length = length.ok_or("an answer without Content-Length")?;
    if length > BODY_BYTES_MAX {
        return Err(format!(
            "a body of {length} bytes (at most {BODY_BYTES_MAX})"
        ));
    }
    Ok(Some((status, length, head_len)))
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn encodes_a_post_with_its_length() {
        let mut out = Vec::new();
        encode_post(&mut out, "127.0.0.1:80", "/v1/c/bench", b"{\"a\":1}");
        assert_eq!(
            out,
            b"POST /v1/c/bench HTTP/1.1\r\nHost: 127.0.0.1:80\r\nContent-Type: application/json\r\n\
              Content-Length: 7\r\n\r\n{\"a\":1}"
        );
    }

    #[test]
    fn reads_heads_and_refuses_what_it_does_not_speak() {
        let ok = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_head(ok), Ok(Some((201, 2, ok.len() - 2))));
        // Every prefix of a head is incomplete, not an error.
        for cut in 0..ok.len() - 2 {
            assert_eq!(parse_head(&ok[..cut]), Ok(None), "cut at {cut}");
        }
        for (bad, why) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], "without Content-Length"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "two different",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                "Transfer-Encoding",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                "closes the connection",
            ),
            (
                b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
                "not an HTTP/1.1",
            ),
            (
                b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
                "malformed",
            ),
            (b"\x00\xffgarbage\r\n\r\n", "malformed"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",
                "a body of",
            ),
        ] {
            let error = parse_head(bad).expect_err(why);
            assert!(error.contains(why), "{error:?} should say {why:?}");
        }
    }

    /// A one-connection server answering each request with the next canned bytes.
    async fn canned(answers: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buffer = vec![0u8; 4096];
            for answer in answers {
                // Each request fits one read here (small, on loopback).
                if socket.read(&mut buffer).await.unwrap_or(0) == 0 {
                    return;
                }
                // Written in two pieces, so the client must join reads.
                let half = answer.len() / 2;
                let _ = socket.write_all(&answer[..half]).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let _ = socket.write_all(&answer[half..]).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn posts_over_one_connection_and_stops_at_a_torn_answer() {
        let addr = canned(vec![
            b"HTTP/1.1 201 Created\r\ncontent-length: 8\r\n\r\n{\"id\":1}",
            b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 201 Created\r\ncontent-length: 50\r\n\r\n{\"id\"",
        ])
        .await;
        let mut connection = Http1Connection::connect(addr).await.expect("connect");
        let first = connection.post_json("/x", b"{}").await.expect("first");
        assert_eq!(
            first,
            Answer {
                status: 201,
                body: b"{\"id\":1}".to_vec()
            }
        );
        let second = connection.post_json("/x", b"{}").await.expect("second");
        assert_eq!(second.status, 409);
        let torn = connection.post_json("/x", b"{}").await.expect_err("torn");
        assert!(torn.contains("closed the connection"), "{torn}");
        let after = connection.post_json("/x", b"{}").await.expect_err("broken");
        assert!(after.contains("failed or was cancelled"), "{after}");
        assert!(!connection.is_usable());
    }
}
