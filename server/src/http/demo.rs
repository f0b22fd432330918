//! `GET /` and every path no API route claims: the demo app's static files, or the placeholder
//! page when no demo is built.
//!
//! The demo (web/demo, built into `web/dist/demo` by `web/scripts/build.sh`) is a plain
//! directory of HTML, JavaScript and the wasm module, so the server hands it out with
//! tower-http's `ServeDir` and adds nothing of its own. It sits in the router's fallback: a
//! path that is neither an API route nor a file answers the API's JSON `route_not_found`,
//! exactly as it did before the demo existed, and the files need no token (they hold no data;
//! a browser cannot send a bearer header when it navigates; docs/HTTP_API.md says so for `/`).
//!
//! ```text
//!  request ─► API route? ─yes─► handler
//!               │ no
//!               ▼
//!        demo dir set? ─yes─► file under it? ─yes─► the file (Cache-Control: no-cache)
//!               │ no                │ no
//!               ▼                   ▼
//!        "/" ─► placeholder   JSON 404 route_not_found (also for POST etc. on a file)
//! ```

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::Request;
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use super::error::ApiError;
use super::info;

/// Where the demo is looked for when neither `--demo-dir` nor `CSTORE_DEMO_DIR` is given,
/// relative to the working directory (the repository root for `scripts/run.sh`).
pub const DEFAULT_DEMO_DIR: &str = "web/dist/demo";

/// The service behind every path that no API route claims.
pub type Site = BoxCloneSyncService<Request, Response, Infallible>;

/// Why a demo directory given explicitly cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DemoDirError {
    /// The directory has no `index.html` (not built, or the wrong directory).
    #[error(
        "--demo-dir {dir} has no index.html: build the demo with web/scripts/build.sh, or leave \
         --demo-dir out to serve the placeholder page"
    )]
    NoIndex {
        /// The directory given.
        dir: String,
    },
}

/// The demo directory to serve: `given` (which must hold an `index.html`), else
/// [`DEFAULT_DEMO_DIR`] when it holds one, else `None` (the placeholder page).
pub fn resolve_dir(given: Option<&Path>) -> Result<Option<PathBuf>, DemoDirError> {
    match given {
        Some(dir) if dir.join("index.html").is_file() => Ok(Some(dir.to_path_buf())),
        Some(dir) => Err(DemoDirError::NoIndex {
            dir: dir.display().to_string(),
        }),
        None => {
            let default = Path::new(DEFAULT_DEMO_DIR);
            Ok(default
                .join("index.html")
                .is_file()
                .then(|| default.to_path_buf()))
        }
    }
}

/// The fallback service: the files of `demo_dir`, or the placeholder at `/` without one.
pub fn site(demo_dir: Option<&Path>) -> Site {
    let not_found = route_not_found.into_service();
    match demo_dir {
        Some(dir) => {
            let files = ServeDir::new(dir)
                .append_index_html_on_directories(true)
                .call_fallback_on_method_not_allowed(true)
                .fallback(not_found);
            // The demo is rebuilt in place during development: make the browser revalidate
            // (ServeDir answers 304 to If-Modified-Since, so this costs a round trip, not a
            // download).
            let files = SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            )
            .layer(files);
            let files = ServiceExt::<Request>::map_response(files, IntoResponse::into_response);
            BoxCloneSyncService::new(files)
        }
        None => {
            let router = Router::new()
                .route("/", get(info::index))
                .fallback(route_not_found);
            BoxCloneSyncService::new(router)
        }
    }
}

/// The API's JSON 404, for any method.
async fn route_not_found(request: Request) -> ApiError {
    ApiError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_dir_without_index_is_refused() {
        let dir = std::env::temp_dir().join(format!("cstore-demo-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            resolve_dir(Some(&dir)),
            Err(DemoDirError::NoIndex { .. })
        ));
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        assert_eq!(resolve_dir(Some(&dir)).unwrap(), Some(dir.clone()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
