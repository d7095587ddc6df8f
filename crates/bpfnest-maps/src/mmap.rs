// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mmap(2)` of a map handle (`bpf_map_mmap` in `kernel/bpf/syscall.c`).
//!
//! A [`MapMmap`] is the userspace counterpart of a `MAP_SHARED` mapping of a map fd: it shares
//! memory with the map (an ARRAY's values with `BPF_F_MMAPABLE`, a RINGBUF's pages), keeps the
//! map alive, and while it is writable it counts as an active writer, so `BPF_MAP_FREEZE` fails
//! with `EBUSY` until it is dropped.

use core::ptr::NonNull;

use crate::bpf_map::{BpfMap, MapRef};
use crate::errno::{Errno, Result};
use crate::primitive::Ordering;
use crate::runtime::MapHandle;
use crate::uapi::*;

/// A shared mapping of a map's memory.
///
/// Invariant: `ptr..ptr+len` lies inside memory the map owns, which lives as long as `map`.
#[derive(Debug)]
pub struct MapMmap {
    map: MapRef,
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is shared memory accessed only through the atomic copies of `storage`;
// the `MapRef` keeps it allocated.
unsafe impl Send for MapMmap {}
// SAFETY: as above.
unsafe impl Sync for MapMmap {}

impl MapHandle {
    /// `mmap(NULL, len, PROT_READ[|PROT_WRITE], shared ? MAP_SHARED : MAP_PRIVATE, fd, offset)`.
    ///
    /// Errors in the kernel's order: `EACCES` when the handle's mode lacks read (or, for a
    /// writable mapping, write) access; `ENOTSUPP` for a type without `map_mmap` or a value with
    /// special fields; `EINVAL` for a private mapping or a read-only handle; for a writable one `EPERM` if frozen and
    /// `EACCES` with `BPF_F_RDONLY_PROG`; then the type's own checks (ARRAY: `EINVAL` without
    /// `BPF_F_MMAPABLE` or past the values; RINGBUF: `EPERM` for a writable mapping beyond the
    /// consumer page, `EINVAL` past the pages). `offset` and `len` must be page-aligned
    /// (`EINVAL`), as mmap(2) requires.
    pub fn mmap(&self, offset: usize, len: usize, writable: bool, shared: bool) -> Result<MapMmap> {
        let mode = self.mode();
        if !mode.can_read() || (writable && shared && !mode.can_write()) {
            return Err(Errno::EACCES);
        }
        let page = PAGE_SIZE as usize;
        if len == 0 || !offset.is_multiple_of(page) {
            return Err(Errno::EINVAL);
        }
        let map: &BpfMap = self.map();
        let has_mmap = matches!(
            map.map_type(),
            BPF_MAP_TYPE_ARRAY
                | BPF_MAP_TYPE_RINGBUF
                | BPF_MAP_TYPE_USER_RINGBUF
                | BPF_MAP_TYPE_ARENA
        );
        if !has_mmap || map.record().is_some_and(|r| !r.is_empty()) {
            return Err(Errno::ENOTSUPP);
        }
        // do_mmap clears VM_SHARED for a file not opened for writing, so a read-only handle
        // cannot be mapped at all (kernel 6.18: EINVAL even for PROT_READ).
        if !shared || !mode.can_write() {
            return Err(Errno::EINVAL);
        }
        let len = len.div_ceil(page) * page;
        {
            let _g = map.freeze_mutex.lock();
            if writable {
                if map.frozen() {
                    return Err(Errno::EPERM);
                }
                if map.map_flags() & BPF_F_RDONLY_PROG != 0 {
                    return Err(Errno::EACCES);
                }
                map.writecnt.fetch_add(1, Ordering::SeqCst);
            }
        }
        let undo = |e: Errno| {
            if writable {
                map.writecnt.fetch_sub(1, Ordering::SeqCst);
            }
            e
        };
        let (base, total) = map.ops().mmap(map).map_err(undo)?;
        if map.map_type() == BPF_MAP_TYPE_RINGBUF && writable && (offset != 0 || len != page) {
            // ringbuf_map_mmap_kern: only the consumer page may be writable.
            return Err(undo(Errno::EPERM));
        }
        let end = offset.checked_add(len).ok_or(Errno::EINVAL).map_err(undo)?;
        if end > total {
            return Err(undo(Errno::EINVAL));
        }
        // SAFETY: offset < end <= total, inside the region the op returned.
        let ptr = unsafe { NonNull::new_unchecked(base.as_ptr().add(offset)) };
        Ok(MapMmap {
            map: map.inc(),
            ptr,
            len,
            writable,
        })
    }
}

impl MapMmap {
    /// Length in bytes (page-rounded, as mmap(2) rounds it).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mmap(2) refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping is writable.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Start of the mapping, for code that shares it with programs (the execution engine).
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Copies `buf.len()` bytes at `offset` out of the mapping; `EFAULT` past its end.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buf.len()).ok_or(Errno::EFAULT)?;
        if end > self.len {
            return Err(Errno::EFAULT);
        }
        // SAFETY: offset..end lies inside the mapping, which the MapRef keeps alive.
        unsafe { crate::storage::copy_from_value(buf, self.ptr.as_ptr().add(offset)) };
        Ok(())
    }

    /// Copies `data` into the mapping at `offset`; `EFAULT` past its end or when the mapping is
    /// read-only (a write to a read-only page faults).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        let end = offset.checked_add(data.len()).ok_or(Errno::EFAULT)?;
        if end > self.len || !self.writable {
            return Err(Errno::EFAULT);
        }
        // SAFETY: offset..end lies inside the writable mapping, kept alive by the MapRef.
        unsafe { crate::storage::copy_to_value(self.ptr.as_ptr().add(offset), data) };
        Ok(())
    }
}

impl Drop for MapMmap {
    fn drop(&mut self) {
        if self.writable {
            // bpf_map_mmap_close: the mapping no longer counts as a writer.
            self.map.writecnt.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
