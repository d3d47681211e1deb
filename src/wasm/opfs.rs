//! The OPFS edge of durable storage: whole files in one directory per database,
//! through the async API (a SharedWorker has no sync access handles). A
//! leader tab's dedicated worker writes log files through a sync access
//! handle instead and keeps the newest open, so the log's next group commit
//! appends in place (`IoOp::Append`): measured in Chromium, a durable append
//! takes ~0.2 ms where a new file takes ~3 ms either way.

use super::io_error::IoError;
use crate::storage::fence::{self, Epoch};
use js_sys::{AsyncIterator, Uint8Array};
use std::cell::{Cell, RefCell};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
    FileSystemWritableFileStream, WorkerGlobalScope,
};

pub struct OpfsDirectory {
    dir: FileSystemDirectoryHandle,
    /// A leader tab's worker: its fencing epoch (`storage::fence`).
    epoch: Cell<Option<Epoch>>,
    /// Log files are written through sync access handles (a dedicated worker).
    in_place: Cell<bool>,
    /// The log file last written in place, open for the next append. A sync
    /// handle locks its file: nobody else can write or delete it meanwhile.
    log_handle: RefCell<Option<(String, FileSystemSyncAccessHandle)>>,
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
            in_place: Cell::new(false),
            log_handle: RefCell::new(None),
        })
    }

    /// Writes log files in place from now on, if this worker can: sync
    /// access handles exist only in dedicated workers, and WebKitGTK has
    /// the API but refuses every handle (`NotSupportedError`), so one is
    /// opened to find out. On a file of its own: WebKitGTK refuses every
    /// later write to a path it refused a handle for (`InvalidStateError`).
    pub async fn write_logs_in_place(&self) {
        let global = js_sys::global();
        if !js_sys::Reflect::has(&global, &"FileSystemSyncAccessHandle".into()).unwrap_or(false) {
            return;
        }
        let Ok(handle) = self.create_file("sync-handle-probe").await else {
            return;
        };
        if let Ok(access) = call("createSyncAccessHandle", handle.create_sync_access_handle()).await
        {
            access
                .unchecked_into::<FileSystemSyncAccessHandle>()
                .close();
            self.in_place.set(true);
        }
    }

    pub fn writes_logs_in_place(&self) -> bool {
        self.in_place.get()
    }

    /// The epoch file's bytes now (none if it is gone).
    async fn stored_epoch(&self) -> Vec<u8> {
        self.read(fence::FILE).await.unwrap_or_default()
    }

    /// Whether a newer leader's worker has claimed this directory.
    pub async fn superseded(&self) -> bool {
        match self.epoch.get() {
            Some(epoch) => epoch.superseded(&self.stored_epoch().await),
            None => false,
        }
    }

    /// Whether this leader may still write here: the epoch file names it.
    async fn fenced(&self) -> Result<(), IoError> {
        match self.epoch.get() {
            Some(epoch) if !epoch.admits(&self.stored_epoch().await) => Err(IoError::new(
                "fence",
                JsValue::from_str("fenced: another tab leads now"),
            )),
            _ => Ok(()),
        }
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

    /// The file `name`, created if missing.
    async fn create_file(&self, name: &str) -> Result<FileSystemFileHandle, IoError> {
        let create = FileSystemGetFileOptions::new();
        create.set_create(true);
        let handle = call(
            "getFileHandle",
            self.dir.get_file_handle_with_options(name, &create),
        )
        .await?;
        Ok(handle.unchecked_into())
    }

    /// Writes a whole new log file through a sync access handle and keeps it
    /// open for appends (closing the one before). The fence is checked once
    /// the handle is open: a woken old leader writes nothing new, and what it
    /// may still append to a file it holds, recovery does not keep (a newer
    /// epoch's files end it, `storage::recovery`).
    async fn write_in_place(&self, name: &str, bytes: &[u8]) -> Result<(), IoError> {
        let handle = self.create_file(name).await?;
        let access: FileSystemSyncAccessHandle =
            call("createSyncAccessHandle", handle.create_sync_access_handle())
                .await?
                .unchecked_into();
        // Truncated too: a rewrite after a failure may find a longer file.
        let written = self.fenced().await.and_then(|()| {
            access
                .truncate_with_f64(bytes.len() as f64)
                .map_err(|e| IoError::new("truncate", e))?;
            write_at(&access, 0, bytes)
        });
        if written.is_err() {
            access.close();
            return written;
        }
        if let Some((_, old)) = self.log_handle.replace(Some((name.to_owned(), access))) {
            old.close();
        }
        Ok(())
    }

    /// Writes `bytes` at `at` in the log file open for appends.
    pub fn append(&self, name: &str, at: u64, bytes: &[u8]) -> Result<(), IoError> {
        match &*self.log_handle.borrow() {
            Some((open, access)) if open == name => write_at(access, at, bytes),
            _ => Err(IoError::new(
                "append",
                JsValue::from_str("the log file is not open for appends"),
            )),
        }
    }

    /// Closes the log file open for appends, if it is `name` (or any).
    fn release(&self, name: Option<&str>) {
        let mut held = self.log_handle.borrow_mut();
        if held
            .as_ref()
            .is_some_and(|(open, _)| name.is_none_or(|n| n == open))
        {
            if let Some((_, access)) = held.take() {
                access.close();
            }
        }
    }

    /// Writes a whole new file. `close()` is what makes it visible and durable.
    pub async fn write(&self, name: &str, bytes: &[u8]) -> Result<(), IoError> {
        if self.in_place.get() && name.starts_with("log.") {
            return self.write_in_place(name, bytes).await;
        }
        let handle = self.create_file(name).await?;
        let stream: FileSystemWritableFileStream = call("createWritable", handle.create_writable())
            .await?
            .unchecked_into();
        let data = Uint8Array::from(bytes);
        let written = stream
            .write_with_js_u8_array(&data)
            .map_err(|e| IoError::new("write", e))?;
        let mut done = call("write", written).await.map(|_| ());
        if done.is_ok() {
            // Checked last, just before `close()` publishes the file.
            done = self.fenced().await;
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
        self.release(Some(name));
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
    /// `open`: this worker's directory there, whose open file must close first.
    pub async fn remove_all(path: &[&str], open: &OpfsDirectory) -> Result<(), IoError> {
        open.release(None);
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

/// Writes and flushes `bytes` at offset `at` through a sync access handle.
fn write_at(access: &FileSystemSyncAccessHandle, at: u64, bytes: &[u8]) -> Result<(), IoError> {
    let options = FileSystemReadWriteOptions::new();
    options.set_at(at as f64);
    let written = access
        .write_with_u8_array_and_options(bytes, &options)
        .map_err(|e| IoError::new("write", e))?;
    if written as usize != bytes.len() {
        return Err(IoError::new(
            "write",
            JsValue::from_str("the file system wrote only part of the bytes"),
        ));
    }
    access.flush().map_err(|e| IoError::new("flush", e))
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
