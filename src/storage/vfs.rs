//! The SQLite VFS `ferrydb-pages`, built on `rsqlite-vfs`: it serves each
//! [`super::PageStore`]'s in-memory file to SQLite. Main database files are
//! looked up by name in a process-wide registry; journals and temporary files
//! live in plain memory buffers and are never persisted (durability comes from
//! the frame log, not from SQLite's journal).
//!
//! The VFS is registered once per process, on first use, as a non-default VFS.
//! Clock, randomness and sleep are delegated to whatever VFS was the default at
//! that moment (`unix` natively, the sqlite-wasm-rs VFS in the browser), so this
//! file needs no platform-specific code.

// Registering a VFS with SQLite and calling the default VFS's clock, randomness
// and sleep are raw FFI calls; rsqlite-vfs wraps everything else safely.
#![allow(unsafe_code)]

use super::error::{Error, Result};
use super::page_store::StoreFile;
use rsqlite_vfs::ffi::sqlite3_vfs;
use rsqlite_vfs::{
    AccessMode, DeviceCharacteristics, FileKind, LockLevel, OpenOptions, OpenRequest, OpenedFile,
    OsCallback, SQLiteIoMethods, SQLiteVfs, SectorSize, SyncOptions, VfsError, VfsErrorCode,
    VfsFile, VfsResult, VfsStore,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The name connections pass to `sqlite3_open_v2`.
pub(super) const VFS_NAME: &str = "ferrydb-pages";

/// Files by name. A Vec, not a `HashMap`: it holds a handful of entries, and
/// each map instantiation costs the wasm several KB.
type Named<T> = Vec<(String, Arc<Mutex<T>>)>;

fn find<'a, T>(files: &'a Named<T>, name: &str) -> Option<&'a Arc<Mutex<T>>> {
    files
        .iter()
        .find(|(file, _)| file == name)
        .map(|(_, file)| file)
}

/// Everything the VFS callbacks share. Lives for the whole process.
struct Registry {
    stores: Mutex<Named<StoreFile>>,
    /// Named non-database files (a rollback journal if a connection ever runs
    /// outside `journal_mode=MEMORY`): memory only.
    aux: Mutex<Named<Vec<u8>>>,
    last_error: Mutex<Option<VfsError>>,
    os: DefaultVfsOs,
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Callbacks cannot unwind into SQLite, and the data stays usable after a
    // panic elsewhere, so a poisoned lock is simply taken over.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn registry() -> Result<&'static Registry> {
    static REGISTRY: OnceLock<Result<&'static Registry, String>> = OnceLock::new();
    let registered = REGISTRY.get_or_init(|| {
        // SAFETY: OnceLock serializes this one registration within the process;
        // nothing else registers a VFS under our name. The registry is leaked, so
        // it outlives every connection and callback.
        unsafe {
            let default = rsqlite_vfs::ffi::sqlite3_vfs_find(std::ptr::null());
            let registry: &'static Registry = Box::leak(Box::new(Registry {
                stores: Mutex::default(),
                aux: Mutex::default(),
                last_error: Mutex::default(),
                os: DefaultVfsOs(default as usize),
            }));
            rsqlite_vfs::register_vfs::<PageIo, PageVfs>(VFS_NAME, registry, false)
                .map(|registration| {
                    registration.into_raw();
                    registry
                })
                .map_err(|error| error.to_string())
        }
    });
    registered.as_ref().copied().map_err(|message| {
        Error::Unavailable(format!("cannot register the page-store VFS: {message}"))
    })
}

pub(super) fn register_file(name: &str, file: Arc<Mutex<StoreFile>>) -> Result<()> {
    let mut stores = guard(&registry()?.stores);
    stores.retain(|(registered, _)| registered != name);
    stores.push((name.to_owned(), file));
    Ok(())
}

pub(super) fn unregister_file(name: &str) {
    if let Ok(registry) = registry() {
        guard(&registry.stores).retain(|(store, _)| store != name);
        // SQLite names a database's companions `<name>-journal`, `<name>-wal`.
        let companions = format!("{name}-");
        guard(&registry.aux).retain(|(aux, _)| !aux.starts_with(&companions));
    }
}

/// Clock, randomness and sleep of the VFS that was the default at registration.
struct DefaultVfsOs(usize);

impl DefaultVfsOs {
    fn vfs(&self) -> Option<&sqlite3_vfs> {
        // SAFETY: a registered VFS is never freed by SQLite, and the pointer was
        // taken from SQLite's own registry (or is null).
        unsafe { (self.0 as *const sqlite3_vfs).as_ref() }
    }
}

impl OsCallback for DefaultVfsOs {
    fn sleep(&self, duration: Duration) {
        if let Some(vfs) = self.vfs() {
            if let Some(sleep) = vfs.xSleep {
                let micros = duration.as_micros().min(i32::MAX as u128) as i32;
                // SAFETY: calling the default VFS's own callback with its own pointer.
                unsafe { sleep(self.0 as *mut sqlite3_vfs, micros) };
            }
        }
    }

    fn random(&self, buf: &mut [u8]) -> usize {
        let Some(random) = self.vfs().and_then(|vfs| vfs.xRandomness) else {
            return 0;
        };
        let len = buf.len().min(i32::MAX as usize) as i32;
        // SAFETY: `buf` is writable for `len` bytes.
        let filled = unsafe { random(self.0 as *mut sqlite3_vfs, len, buf.as_mut_ptr().cast()) };
        usize::try_from(filled).unwrap_or(0).min(buf.len())
    }

    fn epoch_timestamp_in_ms(&self) -> VfsResult<i64> {
        /// Julian day 2440587.5 (the Unix epoch) in milliseconds.
        const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;
        let unavailable = || VfsError::new(VfsErrorCode::Error, "no clock available".into());
        let vfs = self.vfs().ok_or_else(unavailable)?;
        if vfs.iVersion >= 2 {
            if let Some(now) = vfs.xCurrentTimeInt64 {
                let mut julian_ms = 0;
                // SAFETY: `julian_ms` is a valid out-pointer for the call.
                if unsafe { now(self.0 as *mut sqlite3_vfs, &mut julian_ms) } == 0 {
                    return Ok(julian_ms - UNIX_EPOCH_JULIAN_MS);
                }
            }
        }
        let now = vfs.xCurrentTime.ok_or_else(unavailable)?;
        let mut julian_days = 0.0;
        // SAFETY: `julian_days` is a valid out-pointer for the call.
        if unsafe { now(self.0 as *mut sqlite3_vfs, &mut julian_days) } != 0 {
            return Err(unavailable());
        }
        Ok((julian_days * 86_400_000.0) as i64 - UNIX_EPOCH_JULIAN_MS)
    }
}

/// One SQLite file handle.
enum PageFile {
    /// A page store's database file, with this handle's lock level.
    Main {
        id: u64,
        file: Arc<Mutex<StoreFile>>,
        lock: LockLevel,
    },
    /// A journal or temporary file.
    Aux { bytes: Arc<Mutex<Vec<u8>>> },
}

fn io_error(code: VfsErrorCode, message: &'static str) -> VfsError {
    VfsError::new(code, message.into())
}

impl VfsFile for PageFile {
    fn read(&mut self, buf: &mut [u8], offset: u64) -> VfsResult<usize> {
        Ok(match self {
            PageFile::Main { file, .. } => guard(file).read(buf, offset),
            PageFile::Aux { bytes } => {
                let bytes = guard(bytes);
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let count = buf.len().min(bytes.len() - start);
                buf[..count].copy_from_slice(&bytes[start..start + count]);
                count
            }
        })
    }

    fn write(&mut self, buf: &[u8], offset: u64) -> VfsResult<()> {
        match self {
            PageFile::Main { file, .. } => guard(file)
                .write(buf, offset)
                .map_err(|_| io_error(VfsErrorCode::Full, "the page store holds at most 4 GiB"))?,
            PageFile::Aux { bytes } => {
                let mut bytes = guard(bytes);
                let start = usize::try_from(offset)
                    .map_err(|_| io_error(VfsErrorCode::Full, "offset beyond memory"))?;
                let end = start + buf.len();
                if end > bytes.len() {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(buf);
            }
        }
        Ok(())
    }

    fn truncate(&mut self, size: u64) -> VfsResult<()> {
        match self {
            PageFile::Main { file, .. } => guard(file)
                .truncate(size)
                .map_err(|_| io_error(VfsErrorCode::Full, "the page store holds at most 4 GiB"))?,
            PageFile::Aux { bytes } => {
                let size = usize::try_from(size)
                    .map_err(|_| io_error(VfsErrorCode::IoTruncate, "size beyond memory"))?;
                guard(bytes).resize(size, 0);
            }
        }
        Ok(())
    }

    /// Whole pages are written atomically in memory: telling SQLite so keeps
    /// it from journaling and rewriting neighbouring pages of a larger sector.
    fn sector_size(&self) -> SectorSize {
        SectorSize::new(512).expect("valid")
    }

    fn device_characteristics(&self) -> DeviceCharacteristics {
        DeviceCharacteristics::POWERSAFE_OVERWRITE
    }

    /// Memory has nothing to flush; the frame log makes commits durable.
    fn sync(&mut self, _options: SyncOptions) -> VfsResult<()> {
        Ok(())
    }

    fn size(&self) -> VfsResult<u64> {
        Ok(match self {
            PageFile::Main { file, .. } => guard(file).len(),
            PageFile::Aux { bytes } => guard(bytes).len() as u64,
        })
    }

    fn lock(&mut self, level: LockLevel) -> VfsResult<()> {
        match self {
            PageFile::Main { id, file, lock } => guard(file).lock(*id, lock, level).map_err(|_| {
                io_error(
                    VfsErrorCode::Busy,
                    "page store is locked by another connection",
                )
            }),
            PageFile::Aux { .. } => Ok(()),
        }
    }

    fn unlock(&mut self, level: LockLevel) -> VfsResult<()> {
        if let PageFile::Main { file, lock, .. } = self {
            guard(file).unlock(lock, level);
        }
        Ok(())
    }

    fn check_reserved_lock(&self) -> VfsResult<bool> {
        Ok(match self {
            PageFile::Main { file, .. } => guard(file).writer_active(),
            PageFile::Aux { .. } => false,
        })
    }
}

struct PageFiles;

impl VfsStore for PageFiles {
    type File = PageFile;
    type AppData = &'static Registry;

    fn record_error(data: &Self::AppData, error: VfsError) {
        *guard(&data.last_error) = Some(error);
    }

    fn last_error(data: &Self::AppData) -> Option<VfsError> {
        guard(&data.last_error).clone()
    }

    fn open_file(
        data: &Self::AppData,
        request: OpenRequest<'_>,
    ) -> VfsResult<OpenedFile<PageFile>> {
        static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);
        let options = request.options;
        let access = options.access();
        let Some(name) = request.filename.map(|name| name.path()) else {
            let bytes = Arc::default();
            return Ok(OpenedFile {
                file: PageFile::Aux { bytes },
                access,
            });
        };
        if options.kind() == Some(FileKind::MainDb) {
            let file = find(&guard(&data.stores), name).cloned().ok_or_else(|| {
                io_error(
                    VfsErrorCode::CantOpen,
                    "no page store with this name is open",
                )
            })?;
            let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
            let lock = LockLevel::None;
            return Ok(OpenedFile {
                file: PageFile::Main { id, file, lock },
                access,
            });
        }
        let mut aux = guard(&data.aux);
        let bytes = match find(&aux, name) {
            Some(_) if options.exclusive() => {
                return Err(io_error(VfsErrorCode::CantOpen, "file already exists"));
            }
            Some(bytes) => bytes.clone(),
            None if options.create() => {
                let bytes = Arc::default();
                aux.push((name.to_owned(), Arc::clone(&bytes)));
                bytes
            }
            None => return Err(io_error(VfsErrorCode::CantOpen, "file not found")),
        };
        Ok(OpenedFile {
            file: PageFile::Aux { bytes },
            access,
        })
    }

    fn close_file(
        data: &Self::AppData,
        name: Option<&str>,
        mut file: PageFile,
        options: OpenOptions,
    ) -> VfsResult<()> {
        match &mut file {
            PageFile::Main { file, lock, .. } => guard(file).unlock(lock, LockLevel::None),
            PageFile::Aux { bytes } => {
                if let (Some(name), true) = (name, options.delete_on_close()) {
                    guard(&data.aux)
                        .retain(|(aux, current)| aux != name || !Arc::ptr_eq(current, bytes));
                }
            }
        }
        Ok(())
    }

    fn access(data: &Self::AppData, name: &str, _mode: AccessMode) -> VfsResult<bool> {
        Ok(find(&guard(&data.stores), name).is_some() || find(&guard(&data.aux), name).is_some())
    }

    fn full_pathname(_data: &Self::AppData, name: &str) -> VfsResult<String> {
        Ok(name.to_owned())
    }

    fn delete_file(data: &Self::AppData, name: &str, _sync_dir: bool) -> VfsResult<()> {
        guard(&data.aux).retain(|(aux, _)| aux != name);
        Ok(())
    }
}

struct PageIo;

impl SQLiteIoMethods for PageIo {
    type Store = PageFiles;
}

struct PageVfs;

impl SQLiteVfs<PageIo> for PageVfs {
    type Os = DefaultVfsOs;

    fn os<'a>(data: &'a &'static Registry) -> &'a DefaultVfsOs {
        &data.os
    }
}
