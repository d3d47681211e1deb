//! HTTP for the host's `Fetch` and `Stream` outputs, through `gloo-net`:
//! a request with a bearer header, the body read whole, or streamed chunk by
//! chunk (the realtime channel) until the server ends it or the host aborts it.

use crate::host::{HttpRequest, HttpResponse};
use ferrydb_protocol::NEXT_COOKIE_HEADER;
use gloo_net::http::{Method, RequestBuilder};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, RequestCache};

fn builder(request: &HttpRequest, signal: Option<&AbortSignal>) -> RequestBuilder {
    let method = if request.method == "GET" {
        Method::GET
    } else {
        Method::POST
    };
    let mut builder = RequestBuilder::new(&request.url)
        .method(method)
        .cache(RequestCache::NoStore)
        .abort_signal(signal);
    if let Some(token) = &request.bearer {
        builder = builder.header("Authorization", &format!("Bearer {token}"));
    }
    if request.body.is_some() {
        builder = builder.header("Content-Type", "application/json");
    }
    builder
}

/// The response with its body as text; `None` when none came.
pub async fn fetch(request: &HttpRequest) -> Option<HttpResponse> {
    let built = match &request.body {
        Some(body) => builder(request, None).body(body.as_str()),
        None => builder(request, None).build(),
    };
    let response = built.ok()?.send().await.ok()?;
    let status = response.status();
    let next_cookie = response.headers().get(NEXT_COOKIE_HEADER);
    // Bytes, not `text()`: a JS string would be turned from UTF-16 back
    // into UTF-8 on its way into the wasm (35 ms of a 100,000-row initial
    // sync's 800 in Chromium); the bytes are copied as they are.
    let bytes = response.binary().await.ok()?;
    // Not UTF-8: read as empty, which the host refuses as a malformed reply.
    let body = String::from_utf8(bytes).unwrap_or_default();
    Some(HttpResponse {
        status,
        body,
        next_cookie,
    })
}

/// Streams the body of a 200 to `chunk` until it ends, fails or `signal`
/// aborts it; any other status ends it at once.
pub async fn stream(request: &HttpRequest, signal: &AbortSignal, mut chunk: impl FnMut(Vec<u8>)) {
    let Ok(response) = builder(request, Some(signal)).send().await else {
        return;
    };
    let Some(body) = response.body().filter(|_| response.status() == 200) else {
        return;
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let read = async {
        loop {
            let next = JsFuture::from(reader.read()).await?;
            if Reflect::get(&next, &"done".into())?.is_truthy() {
                return Ok::<_, JsValue>(());
            }
            let bytes: Uint8Array = Reflect::get(&next, &"value".into())?.unchecked_into();
            chunk(bytes.to_vec());
        }
    };
    let _ = read.await;
}
