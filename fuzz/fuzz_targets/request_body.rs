//! Request body parsing (JSON, form, multipart) exactly as the endpoints
//! run it: any body under any of the content types is data or a 4xx error,
//! never a panic. The first byte picks the content type.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use axum::response::IntoResponse as _;
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

const TYPES: [&str; 5] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=b",
    "multipart/form-data; boundary=\"a b\"",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(selector) % TYPES.len()];
    let request = Request::builder()
        .method("POST")
        .uri("/api/token/")
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("request");
    let parsed = runtime().block_on(portcullis_http::parse_body(request, 64 * 1024));
    match parsed {
        Ok(data) => {
            let _ = data.strings(["username", "password"]);
        }
        Err(e) => {
            let status = e.into_response().status();
            assert!(status.is_client_error(), "{status}");
        }
    }
});
