//! Where the replica's files live. By default the frame log goes to IndexedDB
//! and checkpoint segments to OPFS ("hybrid"): measured here, a durable
//! IndexedDB put takes ~2 ms while creating a new OPFS file takes ~7 ms, and
//! OPFS reads large files back fastest. Either alone works too (forced by
//! option, or when the other is missing), and memory where neither works
//! (private modes). The choice is reported to the app, never made silently.

use super::idb::IdbDirectory;
use super::io_error::IoError;
use super::opfs::OpfsDirectory;
use crate::storage::{self, IoOp, IoRequest, LogConfig, MemoryBackend, StorageBackend};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;

/// A log file written in place takes group commits until it holds this many
/// bytes: each costs one new file (~3 ms) in place of ~0.2 ms appends, and
/// a checkpoint (16 MiB of log by default) starts a new one anyway.
const APPEND_LIMIT: u64 = 4 << 20;

/// The log's directory and everything else's (the same one unless hybrid).
pub struct Files {
    log: Dir,
    rest: Dir,
    /// An IndexedDB connection kept open only for its `close` event, which
    /// says the site's data is being cleared (a fenced worker's OPFS-only files).
    sentinel: Option<IdbDirectory>,
}

/// One directory of files, in one of the browser's stores.
#[derive(Clone)]
enum Dir {
    Opfs(Rc<OpfsDirectory>),
    IndexedDb(Rc<IdbDirectory>),
    Memory(Rc<RefCell<MemoryBackend>>),
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
    pub fn parse(s: &str) -> Option<Choice> {
        Some(match s {
            "auto" => Choice::Auto,
            "opfs" => Choice::Opfs,
            "indexeddb" => Choice::IndexedDb,
            "memory" => Choice::Memory,
            _ => return None,
        })
    }

    /// The choice that opens `backend` again (after `deleteDatabase`).
    pub fn of_backend(backend: &str) -> Choice {
        match backend {
            "indexeddb+opfs" => Choice::Auto,
            "opfs" | "opfs-sync" => Choice::Opfs,
            "indexeddb" => Choice::IndexedDb,
            _ => Choice::Memory,
        }
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
    fn one(dir: Dir) -> Files {
        Files {
            log: dir.clone(),
            rest: dir,
            sentinel: None,
        }
    }

    /// A leader tab's worker (`fenced`) keeps everything in OPFS and takes
    /// the next fencing epoch there (see `storage::fence`).
    pub async fn open_fenced(choice: Choice, path: &[&str]) -> (Files, Vec<IoError>) {
        let (mut files, mut failures) = Files::open(choice, path).await;
        if let Dir::Opfs(dir) = &files.log {
            if let Err(e) = dir.claim_epoch().await {
                failures.push(e);
            }
            dir.write_logs_in_place().await;
            files.sentinel = IdbDirectory::open(path).await.ok();
        }
        (files, failures)
    }

    /// Opens the first backend that works, in the order the choice allows. The
    /// errors of the ones that did not are returned too, for the status.
    pub async fn open(choice: Choice, path: &[&str]) -> (Files, Vec<IoError>) {
        let mut failures = Vec::new();
        let auto = choice == Choice::Auto;
        if auto && opfs_writable() {
            let both =
                futures::future::join(IdbDirectory::open(path), OpfsDirectory::open(path)).await;
            match both {
                (Ok(idb), Ok(opfs)) => {
                    let (log, rest) = (Dir::IndexedDb(Rc::new(idb)), Dir::Opfs(Rc::new(opfs)));
                    let sentinel = None;
                    return (
                        Files {
                            log,
                            rest,
                            sentinel,
                        },
                        failures,
                    );
                }
                (Err(e), _) | (_, Err(e)) => failures.push(e),
            }
        }
        if (auto || choice == Choice::Opfs) && opfs_writable() {
            match OpfsDirectory::open(path).await {
                Ok(dir) => return (Files::one(Dir::Opfs(Rc::new(dir))), failures),
                Err(e) => failures.push(e),
            }
        }
        if auto || choice == Choice::IndexedDb {
            match IdbDirectory::open(path).await {
                Ok(dir) => return (Files::one(Dir::IndexedDb(Rc::new(dir))), failures),
                Err(e) => failures.push(e),
            }
        }
        (Files::one(Dir::Memory(Rc::default())), failures)
    }

    /// The fencing epoch this worker claimed (0: none).
    pub fn epoch(&self) -> u64 {
        match &self.log {
            Dir::Opfs(dir) => dir.epoch(),
            _ => 0,
        }
    }

    /// False once a newer leader tab's worker has claimed the files (only
    /// a worker that writes its log in place asks the epoch file: its
    /// appends are not fenced one by one, `OpfsDirectory::write_in_place`).
    pub async fn still_leads(&self) -> bool {
        match &self.log {
            Dir::Opfs(dir) if dir.writes_logs_in_place() => !dir.superseded().await,
            _ => true,
        }
    }

    /// How the frame log writes here (`storage::LogConfig`).
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            epoch: self.epoch(),
            append_limit: match &self.log {
                Dir::Opfs(dir) if dir.writes_logs_in_place() => APPEND_LIMIT,
                _ => 0,
            },
            ..LogConfig::default()
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match (&self.log, &self.rest) {
            (Dir::IndexedDb(_), Dir::Opfs(_)) => "indexeddb+opfs",
            (Dir::Opfs(dir), _) if dir.writes_logs_in_place() => "opfs-sync",
            (Dir::Opfs(_), _) => "opfs",
            (Dir::IndexedDb(_), _) => "indexeddb",
            (Dir::Memory(_), _) => "memory",
        }
    }

    fn hybrid(&self) -> bool {
        self.backend_name() == "indexeddb+opfs"
    }

    /// Every file with its bytes: what recovery starts from. Both stores of
    /// the hybrid at once: opening waits for the slower, not the sum.
    pub async fn read_all(&self) -> Result<Vec<(String, Vec<u8>)>, storage::Error> {
        if !self.hybrid() {
            return self.log.read_all().await;
        }
        let (mut files, mut segments) =
            futures::future::try_join(self.log.read_all(), self.rest.read_all()).await?;
        files.append(&mut segments);
        Ok(files)
    }

    /// Latency-critical small files (one per group commit) go to the log's directory.
    pub async fn perform(&self, request: &IoRequest) -> Result<(), storage::Error> {
        let (IoOp::Write { name, .. } | IoOp::Append { name, .. } | IoOp::Delete { name }) =
            &request.op;
        let dir = if name.starts_with("log.") {
            &self.log
        } else {
            &self.rest
        };
        dir.perform(request).await
    }

    /// Calls `on_close` if the browser closes the IndexedDB connection under
    /// us (the files are being deleted). OPFS gives no such signal: its
    /// next write finds the directory gone (`storage::Error::from_browser`).
    pub fn on_forced_close(&self, on_close: &js_sys::Function) {
        if let Dir::IndexedDb(idb) = &self.log {
            idb.on_forced_close(on_close);
        }
        if let Some(idb) = &self.sentinel {
            idb.on_forced_close(on_close);
        }
    }

    /// Removes every file of this database (`deleteDatabase`). Closes the
    /// IndexedDB connection first: these files must not be used afterwards.
    pub async fn remove_all(&self, path: &[&str]) -> Result<(), storage::Error> {
        self.log.remove_all(path).await?;
        if self.hybrid() {
            self.rest.remove_all(path).await?;
        }
        Ok(())
    }
}

impl Dir {
    async fn read_all(&self) -> Result<Vec<(String, Vec<u8>)>, storage::Error> {
        let mut files = Vec::new();
        for name in self.list().await? {
            let bytes = self.read(&name).await?;
            files.push((name, bytes));
        }
        Ok(files)
    }

    async fn list(&self) -> Result<Vec<String>, storage::Error> {
        match self {
            Dir::Opfs(dir) => dir.list().await.map_err(to_storage),
            Dir::IndexedDb(dir) => dir.list().await.map_err(to_storage),
            Dir::Memory(mem) => mem.borrow().list(),
        }
    }

    async fn read(&self, name: &str) -> Result<Vec<u8>, storage::Error> {
        match self {
            Dir::Opfs(dir) => dir.read(name).await.map_err(to_storage),
            Dir::IndexedDb(dir) => dir.read(name).await.map_err(to_storage),
            Dir::Memory(mem) => Ok(mem.borrow().read(name)?.unwrap_or_default()),
        }
    }

    async fn perform(&self, request: &IoRequest) -> Result<(), storage::Error> {
        let result = match (&request.op, self) {
            (_, Dir::Memory(mem)) => return storage::perform(&mut *mem.borrow_mut(), request),
            (IoOp::Write { name, bytes }, Dir::Opfs(dir)) => dir.write(name, bytes).await,
            (IoOp::Append { name, at, bytes }, Dir::Opfs(dir)) => dir.append(name, *at, bytes),
            (IoOp::Delete { name }, Dir::Opfs(dir)) => dir.delete(name).await,
            (IoOp::Write { name, bytes }, Dir::IndexedDb(dir)) => dir.write(name, bytes).await,
            (IoOp::Delete { name }, Dir::IndexedDb(dir)) => dir.delete(name).await,
            // The log asks for appends only where `log_config` allows them.
            (IoOp::Append { .. }, Dir::IndexedDb(_)) => {
                return Err(storage::Error::Unavailable(
                    "IndexedDB cannot append in place".into(),
                ));
            }
        };
        result.map_err(to_storage)
    }

    async fn remove_all(&self, path: &[&str]) -> Result<(), storage::Error> {
        match self {
            Dir::Opfs(dir) => OpfsDirectory::remove_all(path, dir)
                .await
                .map_err(to_storage),
            Dir::IndexedDb(idb) => {
                idb.close();
                IdbDirectory::remove_all(path).await.map_err(to_storage)
            }
            Dir::Memory(mem) => {
                mem.borrow_mut().files.clear();
                Ok(())
            }
        }
    }
}

fn to_storage(e: IoError) -> storage::Error {
    e.to_storage()
}

/// For logging a failed backend while falling back to the next.
pub fn describe(e: &IoError) -> JsValue {
    JsValue::from_str(&e.message())
}
