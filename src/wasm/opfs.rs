//! The OPFS edge of durable storage: whole files in one directory per database,
//! through the async API (a SharedWorker has no sync access handles). Only
//! whole-file operations are needed: the frame log never rewrites a file.

use super::io_error::IoError;
use crate::storage::fence::{self, Epoch};
use js_sys::{AsyncIterator, Uint8Array};
use std::cell::Cell;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemWritableFileStream, WorkerGlobalScope,
};

pub struct OpfsDirectory {
    dir: FileSystemDirectoryHandle,
    /// A leader tab's worker: its fencing epoch (`storage::fence`).
    epoch: Cell<Option<Epoch>>,
}

async fn call(name: &'static str, promise: js_sys::Promise) -> Result<JsValue, IoError> {
    JsFuture::from(promise)
        .await
        .map_err(|e| IoError::new(name, e))
}

impl OpfsDirectory {
    /// Opens (creating as needed) `ferrydb/<path...>` under the origin's OPFS root.
    pub async fn open(path: &[&str]) -> Result<Self, IoError> {
        let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
        let storage = scope.navigator().storage();
        let mut dir: FileSystemDirectoryHandle = call("getDirectory", storage.get_directory())
            .await?
            .unchecked_into();
        let create = FileSystemGetDirectoryOptions::new();
        create.set_create(true);
        for part in std::iter::once(&"ferrydb").chain(path) {
            dir = call(
                "getDirectoryHandle",
                dir.get_directory_handle_with_options(part, &create),
            )
            .await?
            .unchecked_into();
        }
        Ok(OpfsDirectory {
            dir,
            epoch: Cell::new(None),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.get().map_or(0, |e| e.0)
    }

    /// Takes the next fencing epoch: from now on an older leader's worker
    /// publishes no file here.
    pub async fn claim_epoch(&self) -> Result<(), IoError> {
        let stored = self.read(fence::FILE).await.unwrap_or_default();
        let epoch = Epoch::after(&stored);
        self.write(fence::FILE, &epoch.bytes()).await?;
        self.epoch.set(Some(epoch));
        Ok(())
    }

    /// Every file name in the directory.
    pub async fn list(&self) -> Result<Vec<String>, IoError> {
        let keys: AsyncIterator = self.dir.keys();
        let mut names = Vec::new();
        loop {
            let step = call(
                "keys().next",
                keys.next().map_err(|e| IoError::new("keys().next", e))?,
            )
            .await?;
            let done = js_sys::Reflect::get(&step, &"done".into())
                .map_err(|e| IoError::new("keys().next", e))?;
            if done.is_truthy() {
                return Ok(names);
            }
            let value = js_sys::Reflect::get(&step, &"value".into())
                .map_err(|e| IoError::new("keys().next", e))?;
            if let Some(name) = value.as_string() {
                names.push(name);
            }
        }
    }

    pub async fn read(&self, name: &str) -> Result<Vec<u8>, IoError> {
        let handle: FileSystemFileHandle = call("getFileHandle", self.dir.get_file_handle(name))
            .await?
            .unchecked_into();
        let file: web_sys::File = call("getFile", handle.get_file()).await?.unchecked_into();
        let buffer = call("File.arrayBuffer", file.array_buffer()).await?;
        Ok(Uint8Array::new(&buffer).to_vec())
    }

    /// Writes a whole new file. `close()` is what makes it visible and durable.
    pub async fn write(&self, name: &str, bytes: &[u8]) -> Result<(), IoError> {
        let create = FileSystemGetFileOptions::new();
        create.set_create(true);
        let handle: FileSystemFileHandle = call(
            "getFileHandle",
            self.dir.get_file_handle_with_options(name, &create),
        )
        .await?
        .unchecked_into();
        let stream: FileSystemWritableFileStream = call("createWritable", handle.create_writable())
            .await?
            .unchecked_into();
        let data = Uint8Array::from(bytes);
        let written = stream
            .write_with_js_u8_array(&data)
            .map_err(|e| IoError::new("write", e))?;
        let mut done = call("write", written).await.map(|_| ());
        if let (Ok(()), Some(epoch)) = (&done, self.epoch.get()) {
            // Checked last, just before `close()` publishes the file.
            let stored = self.read(fence::FILE).await.unwrap_or_default();
            if !epoch.admits(&stored) {
                done = Err(IoError::new(
                    "close",
                    JsValue::from_str("fenced: another tab leads now"),
                ));
            }
        }
        if let Err(e) = done {
            // Abort so the partial file is discarded rather than published.
            let _ = JsFuture::from(stream.abort()).await;
            return Err(e);
        }
        call("close", stream.close()).await?;
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), IoError> {
        match call("removeEntry", self.dir.remove_entry(name)).await {
            Err(e) if e.dom_name() == "NotFoundError" => Ok(()),
            // A file an old leader, frozen, is still writing: it publishes
            // nothing once it wakes (fenced), and this leader writes the
            // name over when it gets there.
            Err(e)
                if self.epoch.get().is_some() && e.dom_name() == "NoModificationAllowedError" =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Removes the whole directory of a database, for `deleteDatabase`.
    pub async fn remove_all(path: &[&str]) -> Result<(), IoError> {
        let Some((last, parents)) = path.split_last() else {
            return Ok(());
        };
        let parent = OpfsDirectory::open(parents).await?;
        let options = web_sys::FileSystemRemoveOptions::new();
        options.set_recursive(true);
        match call(
            "removeEntry",
            parent.dir.remove_entry_with_options(last, &options),
        )
        .await
        {
            Err(e) if e.dom_name() == "NotFoundError" => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Asks the browser not to evict this origin's storage under pressure.
pub async fn request_persistence() -> bool {
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
    match scope.navigator().storage().persist() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .map(|v| v.is_truthy())
            .unwrap_or(false),
        Err(_) => false,
    }
}
