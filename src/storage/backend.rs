//! The storage seam: a flat namespace of whole files. The browser host
//! implements it over OPFS or IndexedDB (asynchronously, around the sans-IO
//! [`FrameLog`]); [`MemoryBackend`] is the in-memory twin for tests, private
//! mode and native use.

use super::error::{Error, Result};
use super::log::{FrameLog, IoOp, IoRequest, LogConfig};
use super::manifest::FileName;
use super::recovery::{recover, Recovered};

/// Whole-file storage. `write` creates or replaces a file with exactly the
/// given bytes; `delete` of a missing file succeeds. A synchronous trait is
/// enough natively; the browser host performs the same four operations with
/// promises and feeds the results to the log.
pub trait StorageBackend {
    fn list(&self) -> Result<Vec<String>>;
    /// `None` if the file does not exist.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Writes `bytes` at offset `at` of the existing file `name` (in place,
    /// where the log's [`IoOp::Append`] is enabled).
    fn append(&mut self, name: &str, at: u64, bytes: &[u8]) -> Result<()>;
    fn delete(&mut self, name: &str) -> Result<()>;
}

/// `file` after writing `bytes` at offset `at` (`None` if `at` is past its end).
pub fn written_at(file: &[u8], at: u64, bytes: &[u8]) -> Option<Vec<u8>> {
    let at = usize::try_from(at).ok().filter(|&at| at <= file.len())?;
    let mut out = file[..at].to_vec();
    out.extend_from_slice(bytes);
    out.extend_from_slice(file.get(at + bytes.len()..).unwrap_or_default());
    Some(out)
}

/// Files in memory: the backend for tests and for private mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryBackend {
    pub files: MemoryFiles,
}

/// Files by name, in name order. A sorted Vec, not a `BTreeMap`: each B-tree
/// instantiation costs the wasm ~5 KB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryFiles {
    sorted: Vec<(String, Vec<u8>)>,
}

impl MemoryFiles {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.sorted
            .binary_search_by(|(file, _)| file.as_str().cmp(name))
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.sorted.iter().map(|(name, _)| name)
    }

    pub fn get(&self, name: &str) -> Option<&Vec<u8>> {
        let i = self.find(name).ok()?;
        Some(&self.sorted[i].1)
    }

    /// Creates or replaces the file `name`.
    pub fn insert(&mut self, name: String, bytes: Vec<u8>) {
        match self.find(&name) {
            Ok(i) => self.sorted[i].1 = bytes,
            Err(i) => self.sorted.insert(i, (name, bytes)),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Vec<u8>> {
        let i = self.find(name).ok()?;
        Some(self.sorted.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.sorted.clear();
    }
}

impl StorageBackend for MemoryBackend {
    fn list(&self) -> Result<Vec<String>> {
        Ok(self.files.keys().cloned().collect())
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files.get(name).cloned())
    }

    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.files.insert(name.to_owned(), bytes.to_vec());
        Ok(())
    }

    fn append(&mut self, name: &str, at: u64, bytes: &[u8]) -> Result<()> {
        let file = self.files.get(name).map(Vec::as_slice).unwrap_or_default();
        let written = written_at(file, at, bytes).ok_or_else(|| {
            Error::Unavailable(format!("append to {name} at {at}: the file is shorter"))
        })?;
        self.files.insert(name.to_owned(), written);
        Ok(())
    }

    fn delete(&mut self, name: &str) -> Result<()> {
        self.files.remove(name);
        Ok(())
    }
}

/// Reads every file of ours from `backend` and recovers from them.
pub fn open_backend(backend: &dyn StorageBackend, config: LogConfig) -> Result<Recovered> {
    let mut files = Vec::new();
    for name in backend.list()? {
        if FileName::parse(&name).is_none() {
            continue;
        }
        if let Some(bytes) = backend.read(&name)? {
            files.push((name, bytes));
        }
    }
    recover(files, config)
}

/// Performs one request on a synchronous backend.
pub fn perform(backend: &mut dyn StorageBackend, request: &IoRequest) -> Result<()> {
    match &request.op {
        IoOp::Write { name, bytes } => backend.write(name, bytes),
        IoOp::Append { name, at, bytes } => backend.append(name, *at, bytes),
        IoOp::Delete { name } => backend.delete(name),
    }
}

impl FrameLog {
    /// Performs every request the log has, one at a time, until it has none
    /// (everything durable, checkpoint finished) or a failure stalls it.
    pub fn run_io(&mut self, backend: &mut dyn StorageBackend) {
        while let Some(request) = self.next_io() {
            let result = perform(backend, &request);
            self.io_done(request.id, result);
        }
    }
}
