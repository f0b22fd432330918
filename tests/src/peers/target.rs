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
    /// Opens what one client needs (redis: its own connection; HTTP: the shared pool).
    pub async fn writer(&self, http: &reqwest::Client) -> Result<Writer, String> {
        Ok(match self {
            Target::Cstore { url, ack } => Writer::Cstore {
                http: http.clone(),
                url: match ack {
                    Some(ack) => format!("{url}/v1/c/bench?ack={ack}"),
                    None => format!("{url}/v1/c/bench"),
                },
            },
            Target::CstoreChannel { addr } => Writer::CstoreChannel(Box::new(
                WriteChannel::open(addr, "", None)
                    .await
                    .map_err(|e| format!("opening the write channel at {addr}: {e}"))?,
            )),
            Target::Etcd { url } => Writer::Etcd {
                http: http.clone(),
                url: format!("{url}/v3/kv/put"),
            },
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
    Cstore {
        /// The shared keep-alive pool.
        http: reqwest::Client,
        /// The full insert URL.
        url: String,
    },
    /// cstore over this client's own write channel (boxed: a WebSocket's buffers are large).
    CstoreChannel(Box<WriteChannel>),
    /// etcd's JSON gateway over HTTP/1.1.
    Etcd {
        /// The shared keep-alive pool.
        http: reqwest::Client,
        /// The full put URL.
        url: String,
    },
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
            Writer::Cstore { http, url } => post(http, url, doc).await,
            Writer::CstoreChannel(channel) => {
                channel
                    .feed_text(channel_insert(&doc))
                    .await
                    .map_err(|e| e.to_string())?;
                channel.outcome().await.map_err(|e| e.to_string())?
            }
            Writer::Etcd { http, url } => {
                let body = json!({
                    "key": BASE64.encode(format!("bench/{n:012}")),
                    "value": BASE64.encode(&doc),
                });
                post(
                    http,
                    url,
                    serde_json::to_vec(&body).expect("a Value serializes"),
                )
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

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), String> {
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    match response.bytes().await {
        Ok(_) if status.is_success() => Ok(()),
        Ok(bytes) => Err(format!("{status}: {}", String::from_utf8_lossy(&bytes))),
        Err(e) => Err(format!("reading the body: {e}")),
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
