//! `cstore cluster …`: the operator's commands, run against any member over HTTP.
//!
//! `status` asks every member it learns of (from the one named by `--server`) for its own
//! `/v1/status` and prints one row per member; the changes (`transfer`, `add`, `remove`) are
//! POSTs to `/v1/cluster/…`, which a member that does not lead forwards to the leader.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{ClusterArgs, ClusterCommand};

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The member could not be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The member answered with an error.
    #[error("{url} answered {status}: {code}: {message}")]
    Refused {
        /// What was asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The stable error code.
        code: String,
        /// The message.
        message: String,
    },
    /// The server is not a cluster member.
    #[error("{0} is not a cluster member (its role is {1})")]
    NotClustered(String, String),
}

impl AdminError {
    /// The process exit code: 2 for a refusal of the request, 1 when nothing answered.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Unreachable { .. } => 1,
            _ => 2,
        }
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a blocking HTTP client builds")
}

fn call(
    client: &reqwest::blocking::Client,
    token: Option<&str>,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, AdminError> {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let unreachable = |e: reqwest::Error| AdminError::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let answer = request.send().map_err(unreachable)?;
    let status = answer.status().as_u16();
    let value: Value = answer.json().map_err(unreachable)?;
    if status >= 300 {
        let error = &value["error"];
        return Err(AdminError::Refused {
            url: url.to_string(),
            status,
            code: error["code"].as_str().unwrap_or("unknown").to_string(),
            message: error["message"].as_str().unwrap_or("").to_string(),
        });
    }
    Ok(value)
}

/// Runs a `cstore cluster` command and returns what to print.
pub fn run(args: &ClusterArgs) -> Result<String, AdminError> {
    let client = client();
    let base = args.server.trim_end_matches('/');
    let token = args.token.as_deref();
    let post = |route: &str, body: Value| {
        call(
            &client,
            token,
            reqwest::Method::POST,
            &format!("{base}/v1/cluster/{route}"),
            Some(body),
        )
    };
    match &args.command {
        ClusterCommand::Status => status(&client, token, base),
        ClusterCommand::Transfer { to } => {
            let answer = post("transfer", json!({"to": to}))?;
            Ok(format!("node {} leads now\n", answer["leader_id"]))
        }
        ClusterCommand::Add { id, url } => {
            post("add", json!({"id": id, "url": url}))?;
            Ok(format!("node {id} ({url}) is a voter now\n"))
        }
        ClusterCommand::Remove { id } => {
            post("remove", json!({"id": id}))?;
            Ok(format!("node {id} is no longer a member\n"))
        }
    }
}

fn status(
    client: &reqwest::blocking::Client,
    token: Option<&str>,
    base: &str,
) -> Result<String, AdminError> {
    let first = call(
        client,
        token,
        reqwest::Method::GET,
        &format!("{base}/v1/status"),
        None,
    )?;
    let Some(members) = first["members"].as_array() else {
        return Err(AdminError::NotClustered(
            base.to_string(),
            first["role"].as_str().unwrap_or("unknown").to_string(),
        ));
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<4} {:<28} {:<8} {:<10} {:>6} {:>10} {:>10} {:>10}  leader",
        "id", "url", "kind", "role", "term", "last", "committed", "applied"
    );
    for member in members {
        let url = member["url"].as_str().unwrap_or("");
        let id = member["id"].as_u64().unwrap_or(0);
        let kind = member["kind"].as_str().unwrap_or("");
        match call(
            client,
            token,
            reqwest::Method::GET,
            &format!("{url}/v1/status"),
            None,
        ) {
            Ok(s) => {
                let field = |name: &str| match &s[name] {
                    Value::String(text) => text.clone(),
                    Value::Null => "-".to_string(),
                    other => other.to_string(),
                };
                let _ = writeln!(
                    out,
                    "{id:<4} {url:<28} {kind:<8} {:<10} {:>6} {:>10} {:>10} {:>10}  {}",
                    field("role"),
                    field("term"),
                    field("last_lsn"),
                    field("committed_lsn"),
                    field("applied_lsn"),
                    field("leader_id"),
                );
            }
            Err(_) => {
                let _ = writeln!(out, "{id:<4} {url:<28} {kind:<8} {:<10}", "down");
            }
        }
    }
    Ok(out)
}
