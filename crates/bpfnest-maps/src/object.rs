// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The objects a handle can name, and the handle table (the runtime's counterpart of a
//! process's fd table).
//!
//! Handles are small integers allocated lowest-free, like fds, so that byte-level values that
//! carry them (`inner_map_fd`, the 4-byte value of an outer-map update) behave as on Linux: a
//! closed handle gives `EBADF`, a handle naming something that is not a map gives `EINVAL`.
//! Numbers 0–2 are taken at start by non-map objects, as stdin/stdout/stderr are in a process,
//! so a zeroed `inner_map_fd` fails the way it does against the kernel.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::bpf_map::{MapRef, UserRef};
use crate::errno::{Errno, Result};
use crate::record::BtfRecord;
use crate::registry::BtfKind;

/// A loaded program, as far as maps need to know (program arrays hold these).
///
/// Implemented by the execution engine; tests use small fakes.
pub trait BpfProg: Send + Sync + fmt::Debug {
    /// `enum bpf_prog_type`.
    fn prog_type(&self) -> u32;
    /// Program id.
    fn id(&self) -> u32;
    /// Whether the program was JIT-compiled (part of the prog-array owner check).
    fn jited(&self) -> bool;
    /// `BPF_PROG_TYPE_EXT` programs can never be in a program array.
    fn is_ext(&self) -> bool {
        self.prog_type() == 28
    }
    /// XDP programs that handle fragments may only share a program array with their kind.
    fn xdp_has_frags(&self) -> bool {
        false
    }
    /// Whether the program is sleepable.
    fn sleepable(&self) -> bool {
        false
    }
}

/// A loaded BTF object, as far as map creation needs to know (`map_check_btf`).
///
/// Implemented by the BTF crate; tests use small fakes.
pub trait BtfObject: Send + Sync + fmt::Debug {
    /// BTF object id.
    fn id(&self) -> u32;
    /// Kernel (vmlinux/module) BTF cannot describe map types: `EACCES`.
    fn is_kernel(&self) -> bool {
        false
    }
    /// `btf_type_id_size`: resolved size of a sized type, `None` if the id is invalid or unsized.
    fn type_size(&self, type_id: u32) -> Option<u32>;
    /// What kind of type `type_id` is.
    fn type_kind(&self, type_id: u32) -> BtfKind;
    /// `btf_parse_fields` for a value type: its special-field record.
    fn value_record(&self, type_id: u32, value_size: u32) -> Result<Option<BtfRecord>>;
}

/// Access mode of a map handle (`BPF_F_RDONLY`/`BPF_F_WRONLY` at create or open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FMode {
    /// Read and write.
    ReadWrite,
    /// Read only: writes give `EPERM`.
    ReadOnly,
    /// Write only: reads give `EPERM`.
    WriteOnly,
}

impl FMode {
    /// `bpf_get_file_flag`: the mode encoded by `BPF_F_RDONLY`/`BPF_F_WRONLY` in `flags`.
    pub fn from_flags(flags: u32) -> Result<FMode> {
        use crate::uapi::{BPF_F_RDONLY, BPF_F_WRONLY};
        match (flags & BPF_F_RDONLY != 0, flags & BPF_F_WRONLY != 0) {
            (true, true) => Err(Errno::EINVAL),
            (true, false) => Ok(FMode::ReadOnly),
            (false, true) => Ok(FMode::WriteOnly),
            (false, false) => Ok(FMode::ReadWrite),
        }
    }
    /// FMODE_CAN_READ.
    pub fn can_read(self) -> bool {
        self != FMode::WriteOnly
    }
    /// FMODE_CAN_WRITE.
    pub fn can_write(self) -> bool {
        self != FMode::ReadOnly
    }
}

/// What one handle refers to (`struct file` with its `f_op`).
#[derive(Debug)]
pub enum FileObject {
    /// A map, with the handle's access mode.
    Map {
        /// Reference and user reference held by the handle.
        map: UserRef,
        /// Access mode.
        mode: FMode,
    },
    /// A program.
    Prog(Arc<dyn BpfProg>),
    /// A BTF object.
    Btf(Arc<dyn BtfObject>),
    /// Anything else (a regular file, a socket): not a BPF object.
    Other,
}

/// Resolves handle numbers, as `fdget` does in the calling process.
pub trait FileTable: Send + Sync {
    /// The object behind `fd`, or `None` if the handle is not open.
    fn get(&self, fd: u32) -> Option<Arc<FileObject>>;

    /// `bpf_map_get`: a reference to the map behind `fd`; `EBADF` if not open, `EINVAL` if
    /// not a map.
    fn map_get(&self, fd: u32) -> Result<MapRef> {
        match self.get(fd).as_deref() {
            None => Err(Errno::EBADF),
            Some(FileObject::Map { map, .. }) => Ok(map.map_ref().clone()),
            Some(_) => Err(Errno::EINVAL),
        }
    }

    /// `bpf_prog_get`: the program behind `fd`; `EBADF` if not open, `EINVAL` if not a program.
    fn prog_get(&self, fd: u32) -> Result<Arc<dyn BpfProg>> {
        match self.get(fd).as_deref() {
            None => Err(Errno::EBADF),
            Some(FileObject::Prog(p)) => Ok(p.clone()),
            Some(_) => Err(Errno::EINVAL),
        }
    }

    /// `btf_get_by_fd`: `EBADF` if not open, `EINVAL` if not BTF.
    fn btf_get(&self, fd: u32) -> Result<Arc<dyn BtfObject>> {
        match self.get(fd).as_deref() {
            None => Err(Errno::EBADF),
            Some(FileObject::Btf(b)) => Ok(b.clone()),
            Some(_) => Err(Errno::EINVAL),
        }
    }
}

/// A table of handles, allocated lowest-free (`alloc_fd`).
#[derive(Debug, Default)]
pub struct HandleTable {
    slots: parking_lot::Mutex<Vec<Option<Arc<FileObject>>>>,
}

impl HandleTable {
    /// A table whose handles 0, 1 and 2 are taken by non-BPF objects.
    pub fn new() -> HandleTable {
        let t = HandleTable::default();
        for _ in 0..3 {
            t.install(Arc::new(FileObject::Other));
        }
        t
    }

    /// Installs `obj` at the lowest free number and returns it.
    pub fn install(&self, obj: Arc<FileObject>) -> u32 {
        let mut s = self.slots.lock();
        if let Some(i) = s.iter().position(Option::is_none) {
            s[i] = Some(obj);
            i as u32
        } else {
            s.push(Some(obj));
            (s.len() - 1) as u32
        }
    }

    /// Closes `fd` if it still refers to `obj` (so a stale close never closes a reused number).
    pub fn close_if(&self, fd: u32, obj: &Arc<FileObject>) -> bool {
        let mut s = self.slots.lock();
        match s.get_mut(fd as usize) {
            Some(slot @ Some(_)) if Arc::ptr_eq(slot.as_ref().expect("matched Some"), obj) => {
                let old = slot.take();
                drop(s);
                drop(old);
                true
            }
            _ => false,
        }
    }

    /// Closes `fd` whatever it refers to; `EBADF` if it is not open.
    pub fn close(&self, fd: u32) -> Result<()> {
        let old = self
            .slots
            .lock()
            .get_mut(fd as usize)
            .and_then(Option::take);
        old.map(drop).ok_or(Errno::EBADF)
    }

    /// Number of open handles, including 0–2.
    pub fn open_count(&self) -> usize {
        self.slots.lock().iter().filter(|s| s.is_some()).count()
    }
}

impl FileTable for HandleTable {
    fn get(&self, fd: u32) -> Option<Arc<FileObject>> {
        self.slots.lock().get(fd as usize).cloned().flatten()
    }
}

/// What a pin holds: a user reference to its object.
#[derive(Debug)]
pub enum PinnedObject {
    /// A pinned map.
    Map(UserRef),
    /// A pinned program.
    Prog(Arc<dyn BpfProg>),
}

/// A bpffs-like namespace: absolute paths to pinned objects, plus the directories in between.
#[derive(Debug, Default)]
pub struct PinTree {
    entries: BTreeMap<String, PinEntry>,
}

#[derive(Debug)]
enum PinEntry {
    Dir,
    Obj(Arc<PinnedObject>),
}

impl PinTree {
    fn parent(path: &str) -> Option<&str> {
        path.rfind('/')
            .map(|i| if i == 0 { "/" } else { &path[..i] })
    }

    /// Normalises a path: must be absolute, no empty, `.` or `..` components.
    fn check_path(path: &str) -> Result<()> {
        if !path.starts_with('/') || path.len() > 4095 {
            return Err(Errno::EINVAL);
        }
        for comp in path[1..].split('/') {
            if comp.is_empty() || comp == "." || comp == ".." {
                return Err(Errno::EINVAL);
            }
            if comp.len() > 255 {
                return Err(Errno::ENAMETOOLONG);
            }
        }
        Ok(())
    }

    fn dir_exists(&self, dir: &str) -> Result<()> {
        if dir == "/" {
            return Ok(());
        }
        match self.entries.get(dir) {
            Some(PinEntry::Dir) => Ok(()),
            Some(PinEntry::Obj(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// `BPF_OBJ_PIN`: `ENOENT` if the parent directory is missing, `EEXIST` if taken.
    pub fn pin(&mut self, path: &str, obj: PinnedObject) -> Result<()> {
        Self::check_path(path)?;
        self.dir_exists(Self::parent(path).ok_or(Errno::EINVAL)?)?;
        if self.entries.contains_key(path) {
            return Err(Errno::EEXIST);
        }
        self.entries
            .insert(path.to_owned(), PinEntry::Obj(Arc::new(obj)));
        Ok(())
    }

    /// `BPF_OBJ_GET`: the object pinned at `path`.
    pub fn get(&self, path: &str) -> Result<Arc<PinnedObject>> {
        Self::check_path(path)?;
        match self.entries.get(path) {
            Some(PinEntry::Obj(o)) => Ok(o.clone()),
            Some(PinEntry::Dir) => Err(Errno::EINVAL),
            None => Err(Errno::ENOENT),
        }
    }

    /// `unlink`/`rmdir`: removes a pin or an empty directory.
    pub fn unpin(&mut self, path: &str) -> Result<()> {
        Self::check_path(path)?;
        match self.entries.get(path) {
            None => Err(Errno::ENOENT),
            Some(PinEntry::Dir) => {
                let prefix = format!("{path}/");
                if self
                    .entries
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
                {
                    return Err(Errno::ENOTEMPTY);
                }
                self.entries.remove(path);
                Ok(())
            }
            Some(PinEntry::Obj(_)) => {
                self.entries.remove(path);
                Ok(())
            }
        }
    }

    /// `mkdir`.
    pub fn mkdir(&mut self, path: &str) -> Result<()> {
        Self::check_path(path)?;
        self.dir_exists(Self::parent(path).ok_or(Errno::EINVAL)?)?;
        if self.entries.contains_key(path) {
            return Err(Errno::EEXIST);
        }
        self.entries.insert(path.to_owned(), PinEntry::Dir);
        Ok(())
    }

    /// Pinned paths, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, PinEntry::Obj(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }
}
