//! The demo app's files at `/`: served without a token, and without shadowing the API's
//! JSON errors for unknown paths.

use axum::http::{Method, StatusCode};

use super::{Harness, SECRET};
use crate::auth::TokenKey;

/// A temporary demo directory with an index page, a script and a wasm file.
struct DemoDir(std::path::PathBuf);

impl DemoDir {
    fn new(tag: &str) -> DemoDir {
        let dir = std::env::temp_dir().join(format!("cstore-demo-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(
            dir.join("index.html"),
            "<!doctype html><title>demo board</title>",
        )
        .unwrap();
        std::fs::write(dir.join("app.js"), "console.log('demo');").unwrap();
        std::fs::write(dir.join("pkg/m.wasm"), b"\0asm\x01\0\0\0").unwrap();
        DemoDir(dir)
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn serves_the_demo_files_and_keeps_api_errors() {
    let dir = DemoDir::new("files");
    let h = Harness::with_demo(dir.0.clone()).await;

    let index = h.call(Method::GET, "/", None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.body.contains("demo board"), "{}", index.body);
    assert!(
        index.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(index.headers["cache-control"], "no-cache");

    let script = h.call(Method::GET, "/app.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    // instantiateStreaming needs this exact type.
    let wasm = h.call(Method::GET, "/pkg/m.wasm", None).await;
    assert_eq!(wasm.headers["content-type"], "application/wasm");

    // The API is untouched, and paths that are neither routes nor files answer as before.
    assert_eq!(
        h.call(Method::GET, "/v1/health", None).await.status,
        StatusCode::OK
    );
    h.call(Method::GET, "/v1/nothing", None)
        .await
        .assert_error(404, "route_not_found");
    h.call(Method::GET, "/missing.js", None)
        .await
        .assert_error(404, "route_not_found");
    h.call(Method::POST, "/app.js", Some("{}"))
        .await
        .assert_error(404, "route_not_found");
    h.call(Method::GET, "/../Cargo.toml", None)
        .await
        .assert_error(404, "route_not_found");
}

#[tokio::test]
async fn the_demo_needs_no_token() {
    let dir = DemoDir::new("auth");
    let key = TokenKey::new(SECRET).unwrap();
    let h = Harness::build_with(Some(key), Some(dir.0.clone())).await;
    assert_eq!(h.call(Method::GET, "/", None).await.status, StatusCode::OK);
    assert_eq!(
        h.call(Method::GET, "/app.js", None).await.status,
        StatusCode::OK
    );
    h.call(Method::GET, "/v1/status", None)
        .await
        .assert_error(401, "missing_token");
}
