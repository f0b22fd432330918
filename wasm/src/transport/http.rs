//! One HTTP request through the global `fetch`, with a bearer token and a timeout.
//!
//! The replica's HTTP calls (member status, writes, read indexes) all go through here, so
//! each has a bound on how long it may hang: a member that accepts the connection and then
//! says nothing (a stopped process, a black-holed host) costs at most `timeout_ms`, after
//! which the request is aborted and reported as a network failure.

use futures::future::{Either, select};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::websocket::describe;
use crate::time::sleep;

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch(request: &web_sys::Request) -> js_sys::Promise;
}

/// An HTTP answer: status and body text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub text: String,
}

/// Sends `method url` (with `body` as JSON, if any) and reads the whole answer. `Err` is a
/// network failure or the timeout, described.
pub async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    timeout_ms: u64,
) -> Result<Answer, String> {
    let abort = web_sys::AbortController::new().ok();
    let work = Box::pin(send(method, url, token, body, abort.as_ref()));
    let timer = Box::pin(sleep(timeout_ms));
    match select(work, timer).await {
        Either::Left((answer, _)) => answer.map_err(|e| describe(&e, "fetch failed")),
        Either::Right(((), _)) => {
            if let Some(abort) = &abort {
                abort.abort();
            }
            Err(format!("{method} {url}: no answer in {timeout_ms} ms"))
        }
    }
}

async fn send(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    abort: Option<&web_sys::AbortController>,
) -> Result<Answer, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new()?;
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
        headers.set("Content-Type", "application/json")?;
    }
    if let Some(token) = token {
        headers.set("Authorization", &format!("Bearer {token}"))?;
    }
    init.set_headers(&headers);
    if let Some(abort) = abort {
        init.set_signal(Some(&abort.signal()));
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init)?;
    let response = JsFuture::from(fetch(&request)).await?;
    let response: web_sys::Response = response.dyn_into()?;
    let text = JsFuture::from(response.text()?).await?;
    Ok(Answer {
        status: response.status(),
        text: text.as_string().unwrap_or_default(),
    })
}
