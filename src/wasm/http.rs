//! HTTP for the host's `Fetch` and `Stream` outputs: `fetch` with a bearer
//! header, the body read whole, or streamed chunk by chunk (the realtime
//! channel) until the server ends it or the host aborts it.

use crate::host::{HttpRequest, HttpResponse};
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, Headers, ReadableStreamDefaultReader, RequestInit, Response, WorkerGlobalScope,
};

fn init(request: &HttpRequest, signal: Option<&AbortSignal>) -> Result<RequestInit, JsValue> {
    let headers = Headers::new()?;
    if request.body.is_some() {
        headers.set("Content-Type", "application/json")?;
    }
    if let Some(token) = &request.bearer {
        headers.set("Authorization", &format!("Bearer {token}"))?;
    }
    let init = RequestInit::new();
    init.set_method(request.method);
    init.set_headers(&headers);
    init.set_cache(web_sys::RequestCache::NoStore);
    if let Some(body) = &request.body {
        init.set_body(&JsValue::from_str(body));
    }
    if let Some(signal) = signal {
        init.set_signal(Some(signal));
    }
    Ok(init)
}

async fn respond(request: &HttpRequest, signal: Option<&AbortSignal>) -> Result<Response, JsValue> {
    let global: WorkerGlobalScope = js_sys::global().unchecked_into();
    let init = init(request, signal)?;
    JsFuture::from(global.fetch_with_str_and_init(&request.url, &init))
        .await?
        .dyn_into()
}

/// The response with its body as text; `None` when none came.
pub async fn fetch(request: &HttpRequest) -> Option<HttpResponse> {
    let read = async {
        let response = respond(request, None).await?;
        let status = response.status();
        let body = JsFuture::from(response.text()?).await?;
        Ok::<_, JsValue>(HttpResponse {
            status,
            body: body.as_string().unwrap_or_default(),
        })
    };
    read.await.ok()
}

/// Streams the body of a 200 to `chunk` until it ends, fails or `signal`
/// aborts it; any other status ends it at once.
pub async fn stream(request: &HttpRequest, signal: &AbortSignal, mut chunk: impl FnMut(Vec<u8>)) {
    let read = async {
        let response = respond(request, Some(signal)).await?;
        let Some(body) = response.body().filter(|_| response.status() == 200) else {
            return Ok(());
        };
        let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
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
