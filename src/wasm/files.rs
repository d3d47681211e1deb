//! Where the replica's files live. By default the frame log goes to IndexedDB
//! and checkpoint segments to OPFS ("hybrid"): measured here, a durable
//! IndexedDB put takes ~2 ms while creating a new OPFS file takes ~7 ms, and
//! OPFS reads large files back fastest. Either alone works too (forced by
//! option, or when the other is missing), and memory where neither works
//! (private modes). The choice is reported to the app, never made silently.

use super::idb::IdbDirectory;
use super::io_error::IoError;
use super::opfs::OpfsDirectory;
use crate::storage::{self, IoOp, IoRequest, MemoryBackend, StorageBackend};
use std::cell::RefCell;
use wasm_bindgen::JsValue;

pub enum Files {
    /// Log files in IndexedDB, everything else (segments, manifests) in OPFS.
    Hybrid(IdbDirectory, OpfsDirectory),
    Opfs(OpfsDirectory),
    IndexedDb(IdbDirectory),
    Memory(RefCell<MemoryBackend>),
}

/// Latency-critical small files: one per group commit.
fn is_log(name: &str) -> bool {
    name.starts_with("log.")
}

/// What the app asked for in `open({ storage })`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Opfs,
    IndexedDb,
    Memory,
}

impl Choice {
    /// The choice that opens `backend` again (after `deleteDatabase`).
    pub fn of_backend(backend: &str) -> Choice {
        match backend {
            "indexeddb+opfs" => Choice::Auto,
            "opfs" => Choice::Opfs,
            "indexeddb" => Choice::IndexedDb,
            _ => Choice::Memory,
        }
    }

    pub fn parse(s: &str) -> Option<Choice> {
        Some(match s {
            "auto" => Choice::Auto,
            "opfs" => Choice::Opfs,
            "indexeddb" => Choice::IndexedDb,
            "memory" => Choice::Memory,
            _ => return None,
        })
    }
}

/// Async OPFS writes exist (Chromium, Firefox, Safari 26+).
fn opfs_writable() -> bool {
    let global = js_sys::global();
    let Ok(handle) = js_sys::Reflect::get(&global, &"FileSystemFileHandle".into()) else {
        return false;
    };
    js_sys::Reflect::get(&handle, &"prototype".into())
        .and_then(|proto| js_sys::Reflect::has(&proto, &"createWritable".into()))
        .unwrap_or(false)
}

impl Files {
    /// Opens the first backend that works, in the order the choice allows. The
    /// errors of the ones that did not are returned too, for the status.
    pub async fn open(choice: Choice, path: &[&str]) -> (Files, Vec<IoError>) {
        let mut failures = Vec::new();
        if choice == Choice::Auto && opfs_writable() {
            match (
                IdbDirectory::open(path).await,
                OpfsDirectory::open(path).await,
            ) {
                (Ok(idb), Ok(opfs)) => return (Files::Hybrid(idb, opfs), failures),
                (Err(e), _) | (_, Err(e)) => failures.push(e),
            }
        }
        if matches!(choice, Choice::Auto | Choice::Opfs) && opfs_writable() {
            match OpfsDirectory::open(path).await {
                Ok(dir) => return (Files::Opfs(dir), failures),
                Err(e) => failures.push(e),
            }
        }
        if matches!(choice, Choice::Auto | Choice::IndexedDb) {
            match IdbDirectory::open(path).await {
                Ok(dir) => return (Files::IndexedDb(dir), failures),
                Err(e) => failures.push(e),
            }
        }
        (Files::Memory(RefCell::default()), failures)
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Files::Hybrid(..) => "indexeddb+opfs",
            Files::Opfs(_) => "opfs",
            Files::IndexedDb(_) => "indexeddb",
            Files::Memory(_) => "memory",
        }
    }

    /// Every file with its bytes: what recovery starts from.
    pub async fn read_all(&self) -> Result<Vec<(String, Vec<u8>)>, storage::Error> {
        match self {
            Files::Hybrid(idb, opfs) => {
                // Both stores at once: opening waits for the slower, not the sum.
                let (mut files, mut segments) =
                    futures::future::try_join(read_dir(idb), read_dir(opfs)).await?;
                files.append(&mut segments);
                Ok(files)
            }
            Files::Opfs(dir) => read_dir(dir).await,
            Files::IndexedDb(dir) => read_dir(dir).await,
            Files::Memory(mem) => {
                let mem = mem.borrow();
                let mut files = Vec::new();
                for name in mem.list()? {
                    if let Some(bytes) = mem.read(&name)? {
                        files.push((name, bytes));
                    }
                }
                Ok(files)
            }
        }
    }

    pub async fn perform(&self, request: &IoRequest) -> Result<(), storage::Error> {
        match (&request.op, self) {
            (IoOp::Write { name, bytes }, Files::Hybrid(idb, _)) if is_log(name) => {
                idb.write(name, bytes).await.map_err(to_storage)
            }
            (IoOp::Delete { name }, Files::Hybrid(idb, _)) if is_log(name) => {
                idb.delete(name).await.map_err(to_storage)
            }
            (IoOp::Write { name, bytes }, Files::Hybrid(_, opfs)) => {
                opfs.write(name, bytes).await.map_err(to_storage)
            }
            (IoOp::Delete { name }, Files::Hybrid(_, opfs)) => {
                opfs.delete(name).await.map_err(to_storage)
            }
            (IoOp::Write { name, bytes }, Files::Opfs(dir)) => {
                dir.write(name, bytes).await.map_err(to_storage)
            }
            (IoOp::Delete { name }, Files::Opfs(dir)) => dir.delete(name).await.map_err(to_storage),
            (IoOp::Write { name, bytes }, Files::IndexedDb(dir)) => {
                dir.write(name, bytes).await.map_err(to_storage)
            }
            (IoOp::Delete { name }, Files::IndexedDb(dir)) => {
                dir.delete(name).await.map_err(to_storage)
            }
            (_, Files::Memory(mem)) => storage::perform(&mut *mem.borrow_mut(), request),
        }
    }

    /// Calls `on_close` if the browser closes the IndexedDB connection under
    /// us (the files are being deleted). OPFS gives no such signal: its
    /// next write finds the directory gone (`IoError::is_cleared`).
    pub fn on_forced_close(&self, on_close: &js_sys::Function) {
        if let Files::Hybrid(idb, _) | Files::IndexedDb(idb) = self {
            idb.on_forced_close(on_close);
        }
    }

    /// Removes every file of this database (`deleteDatabase`). Closes the
    /// IndexedDB connection first: these files must not be used afterwards.
    pub async fn remove_all(&self, path: &[&str]) -> Result<(), storage::Error> {
        match self {
            Files::Hybrid(idb, _) => {
                idb.close();
                IdbDirectory::remove_all(path).await.map_err(to_storage)?;
                OpfsDirectory::remove_all(path).await.map_err(to_storage)
            }
            Files::Opfs(_) => OpfsDirectory::remove_all(path).await.map_err(to_storage),
            Files::IndexedDb(idb) => {
                idb.close();
                IdbDirectory::remove_all(path).await.map_err(to_storage)
            }
            Files::Memory(mem) => {
                mem.borrow_mut().files.clear();
                Ok(())
            }
        }
    }
}

/// What reading a whole directory needs from OPFS and IndexedDB alike.
trait Directory {
    async fn list(&self) -> Result<Vec<String>, IoError>;
    async fn read(&self, name: &str) -> Result<Vec<u8>, IoError>;
}

impl Directory for OpfsDirectory {
    async fn list(&self) -> Result<Vec<String>, IoError> {
        OpfsDirectory::list(self).await
    }
    async fn read(&self, name: &str) -> Result<Vec<u8>, IoError> {
        OpfsDirectory::read(self, name).await
    }
}

impl Directory for IdbDirectory {
    async fn list(&self) -> Result<Vec<String>, IoError> {
        IdbDirectory::list(self).await
    }
    async fn read(&self, name: &str) -> Result<Vec<u8>, IoError> {
        IdbDirectory::read(self, name).await
    }
}

async fn read_dir(dir: &impl Directory) -> Result<Vec<(String, Vec<u8>)>, storage::Error> {
    let mut files = Vec::new();
    for name in dir.list().await.map_err(to_storage)? {
        let bytes = dir.read(&name).await.map_err(to_storage)?;
        files.push((name, bytes));
    }
    Ok(files)
}

pub fn to_storage(e: IoError) -> storage::Error {
    if e.is_quota() {
        storage::Error::Quota(e.message())
    } else if e.is_cleared() {
        storage::Error::Cleared(e.message())
    } else {
        storage::Error::Unavailable(e.message())
    }
}

/// For logging a failed backend while falling back to the next.
pub fn describe(e: &IoError) -> JsValue {
    JsValue::from_str(&e.message())
}
