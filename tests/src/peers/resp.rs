//! A minimal RESP2 client for redis: one connection, one command in flight, so a redis client
//! in the benchmark is closed-loop exactly like an HTTP client (no pipelining).
//!
//! Only what the benchmark sends is spoken: `SET key value` and `PING`, both answered by a
//! single-line reply (`+OK`, `+PONG`, or `-ERR ...`). A reply line is bounded, so a confused
//! peer cannot make the client buffer without limit.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest single-line reply accepted, in bytes.
const REPLY_BYTES_MAX: usize = 4096;

/// One connection to a redis server.
#[derive(Debug)]
pub struct RespConnection {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    reply: Vec<u8>,
}

impl RespConnection {
    /// Connects (TCP_NODELAY on).
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RespConnection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RespConnection {
            stream: BufReader::new(stream),
            request: Vec::with_capacity(256),
            reply: Vec::with_capacity(64),
        })
    }

    /// `SET key value`; Ok when redis answers `+OK`.
    pub async fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.command(&[b"SET", key, value]).await?;
        self.expect_simple(b"+OK")
    }

    /// `PING`; Ok when redis answers `+PONG`.
    pub async fn ping(&mut self) -> Result<(), String> {
        self.command(&[b"PING"]).await?;
        self.expect_simple(b"+PONG")
    }

    async fn command(&mut self, parts: &[&[u8]]) -> Result<(), String> {
        self.request.clear();
        encode_command(&mut self.request, parts);
        self.stream
            .get_mut()
            .write_all(&self.request)
            .await
            .map_err(|e| format!("writing to redis: {e}"))?;
        self.reply.clear();
        // `take` bounds the line; a reply without '\n' within the bound is an error below.
        let limit = u64::try_from(REPLY_BYTES_MAX).expect("small");
        let read = (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut self.reply)
            .await
            .map_err(|e| format!("reading from redis: {e}"))?;
        if read == 0 {
            return Err("redis closed the connection".into());
        }
        if !self.reply.ends_with(b"\r\n") {
            return Err(format!(
                "reply line longer than {REPLY_BYTES_MAX} bytes or torn"
            ));
        }
        Ok(())
    }

    fn expect_simple(&self, want: &[u8]) -> Result<(), String> {
        let line = &self.reply[..self.reply.len() - 2];
        if line == want {
            Ok(())
        } else {
            Err(format!("redis answered {}", String::from_utf8_lossy(line)))
        }
    }
}

/// Appends `parts` as a RESP array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_set_as_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k1", b"{\"a\":1}"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$7\r\n{\"a\":1}\r\n");
    }
}
