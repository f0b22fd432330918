//! What a benchmark client writes to, and how one durable single-document write is sent there.
//!
//! Every system gets the same payload bytes for write `n` ([`payload`]): a small JSON document
//! of about 100 bytes. cstore receives it as the document (`POST /v1/c/bench`, or an insert
//! transaction on its write channel `GET /v1/write`), etcd as the
//! value of key `bench/<n>` through its JSON gateway (`POST /v3/kv/put`, base64 fields), redis
//! as the value of `SET bench:<n>`, PostgreSQL as the `jsonb` column of a row with primary key
//! `bench:<n>` (`INSERT`). Each write is answered only once the system holds it durably: cstore
//! after its group-committed `fdatasync`, etcd after its raft WAL `fdatasync`, redis
//! (`appendfsync always`) after the `fdatasync` of its event-loop pass, PostgreSQL
//! (`synchronous_commit = on`) after its commit record's WAL flush.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use tokio_postgres::types::Type;

use super::http1::Http1Connection;
use super::postgres::INSERT_SQL;
use super::resp::RespConnection;
use crate::write_channel::WriteChannel;

/// A system under test.
#[derive(Clone, Debug)]
pub enum Target {
    /// A cstore server: `POST {url}/v1/c/bench[?ack=...]`.
    Cstore {
        /// Base URL.
        url: String,
        /// The `ack` policy, if not the default (`local`).
        ack: Option<String>,
    },
    /// A cstore server's write channel: one WebSocket per client (`ws://{addr}/v1/write`),
    /// one insert transaction per write.
    CstoreChannel {
        /// `host:port`.
        addr: String,
    },
    /// An etcd member's JSON gateway: `POST {url}/v3/kv/put`.
    Etcd {
        /// Client URL of the member written to.
        url: String,
    },
    /// A redis server, spoken to in RESP.
    Redis {
        /// Its address.
        addr: SocketAddr,
    },
    /// A PostgreSQL server with the `bench` table (see `super::postgres`).
    Postgres {
        /// How to connect (boxed: far larger than the other variants).
        config: Box<tokio_postgres::Config>,
    },
}

impl Target {
    /// Opens what one client needs: a connection of its own (HTTP ones connect at the first
    /// write, and again after a failed or cancelled one).
    pub async fn writer(&self) -> Result<Writer, String> {
        Ok(match self {
            Target::Cstore { url, ack } => Writer::Cstore(HttpWriter::new(
                url,
                &match ack {
                    Some(ack) => format!("/v1/c/bench?ack={ack}"),
                    None => "/v1/c/bench".into(),
                },
            )?),
            Target::CstoreChannel { addr } => Writer::CstoreChannel(Box::new(
                WriteChannel::open(addr, "", None)
                    .await
                    .map_err(|e| format!("opening the write channel at {addr}: {e}"))?,
            )),
            Target::Etcd { url } => Writer::Etcd(HttpWriter::new(url, "/v3/kv/put")?),
            Target::Redis { addr } => Writer::Redis(
                RespConnection::connect(*addr)
                    .await
                    .map_err(|e| format!("connecting to redis at {addr}: {e}"))?,
            ),
            Target::Postgres { config } => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| format!("connecting to postgres: {}", error_chain(&e)))?;
                // The connection's task ends when the client is dropped.
                tokio::spawn(connection);
                let insert = client
                    .prepare_typed(INSERT_SQL, &[Type::TEXT, Type::TEXT])
                    .await
                    .map_err(|e| format!("preparing the insert: {}", error_chain(&e)))?;
                Writer::Postgres { client, insert }
            }
        })
    }
}

/// One client's way of sending a write to its [`Target`].
#[derive(Debug)]
pub enum Writer {
    /// cstore over HTTP/1.1.
    Cstore(HttpWriter),
    /// cstore over this client's own write channel (boxed: a WebSocket's buffers are large).
    CstoreChannel(Box<WriteChannel>),
    /// etcd's JSON gateway over HTTP/1.1.
    Etcd(HttpWriter),
    /// redis over this client's own connection.
    Redis(RespConnection),
    /// PostgreSQL over this client's own connection.
    Postgres {
        /// The connection.
        client: tokio_postgres::Client,
        /// [`INSERT_SQL`], prepared on it.
        insert: tokio_postgres::Statement,
    },
}

impl Writer {
    /// Sends write `n` and waits for its acknowledgement.
    pub async fn write(&mut self, n: u64) -> Result<(), String> {
        let doc = payload(n);
        match self {
            Writer::Cstore(http) => http.post(&doc).await,
            Writer::CstoreChannel(channel) => {
                channel
                    .feed_text(channel_insert(&doc))
                    .await
                    .map_err(|e| e.to_string())?;
                channel.outcome().await.map_err(|e| e.to_string())?
            }
            Writer::Etcd(http) => {
                let body = json!({
                    "key": BASE64.encode(format!("bench/{n:012}")),
                    "value": BASE64.encode(&doc),
                });
                http.post(&serde_json::to_vec(&body).expect("a Value serializes"))
                    .await
            }
            Writer::Redis(connection) => {
                connection
                    .set(format!("bench:{n:012}").as_bytes(), &doc)
                    .await
            }
            Writer::Postgres { client, insert } => {
                let id = format!("bench:{n:012}");
                let doc = std::str::from_utf8(&doc).expect("the payload is ASCII JSON");
                match client.execute(insert, &[&id, &doc]).await {
                    Ok(1) => Ok(()),
                    Ok(rows) => Err(format!("the insert wrote {rows} rows")),
                    Err(e) => Err(error_chain(&e)),
                }
            }
        }
    }
}

/// The document of write `n`: about 100 bytes of JSON, the same bytes for every system.
pub fn payload(n: u64) -> Vec<u8> {
    const CITIES: [&str; 8] = [
        "Lyon", "Oslo", "Porto", "Kyoto", "Lima", "Accra", "Perth", "Quito",
    ];
    let city = CITIES[usize::try_from(n % 8).expect("below 8")];
    format!(
        r#"{{"user":"user-{n:010}","city":"{city}","age":{},"active":{},"note":"lorem ipsum dolor sit"}}"#,
        18 + n % 60,
        !n.is_multiple_of(3)
    )
    .into_bytes()
}

/// The write channel's transaction inserting `doc` (payload bytes) into `bench`.
pub fn channel_insert(doc: &[u8]) -> String {
    let doc = std::str::from_utf8(doc).expect("the payload is ASCII JSON");
    format!(r#"{{"ops":[{{"op":"insert","collection":"bench","doc":{doc}}}]}}"#)
}

/// One client's HTTP/1.1 `POST`s to one path of one server, over a connection of its own
/// ([`Http1Connection`]), made at the first write and again after a failed or cancelled one.
#[derive(Debug)]
pub struct HttpWriter {
    addr: SocketAddr,
    path: String,
    connection: Option<Http1Connection>,
}

impl HttpWriter {
    /// For `http://host:port` (a loopback address; no TLS) and a path with its query.
    pub fn new(base_url: &str, path: &str) -> Result<HttpWriter, String> {
        let authority = base_url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base_url}: the benchmark client speaks plain http:// only"))?;
        let authority = authority.split('/').next().unwrap_or(authority);
        let addr = authority
            .parse()
            .map_err(|e| format!("{base_url}: not an ip:port address ({e})"))?;
        Ok(HttpWriter {
            addr,
            path: path.into(),
            connection: None,
        })
    }

    /// `POST`s `body`; Ok on a 2xx answer, else the status and the answer's body.
    pub async fn post(&mut self, body: &[u8]) -> Result<(), String> {
        if !self
            .connection
            .as_ref()
            .is_some_and(Http1Connection::is_usable)
        {
            let connection = Http1Connection::connect(self.addr)
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
            self.connection = Some(connection);
        }
        let connection = self.connection.as_mut().expect("connected above");
        let answer = connection.post_json(&self.path, body).await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(format!(
                "{}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ))
        }
    }
}

/// An error with its sources, one `: ` apart (reqwest's own message omits the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_small_json_and_varies_with_n() {
        let a = payload(1);
        let b = payload(2);
        assert_ne!(a, b);
        for doc in [&a, &b, &payload(u64::MAX)] {
            let value: serde_json::Value = serde_json::from_slice(doc).expect("valid JSON");
            assert!(value.is_object());
            assert!((80..=130).contains(&doc.len()), "{} bytes", doc.len());
        }
    }
}
