// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_ARRAY` (`array_map_ops` in `kernel/bpf/arraymap.c`).
//!
//! Values live in one zeroed [`Slab`] of `alloc_entries * elem_size` bytes. Programs get
//! pointers into it; user space copies in and out with `copy_map_value` semantics (special
//! fields skipped, and zeroed in what user space reads). `BPF_F_MMAPABLE` makes the slab
//! page-aligned and page-rounded, and [`MapOps::mmap`] hands it out.

use core::ptr::NonNull;

use super::{
    area_alloc, free_internal_structs, get_next_key, has_internal_structs, obj_free_fields,
    page_align, ArrayGeom, BPF_ARRAY_HEADER_SIZE,
};
use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::record::{copy_map_value_in, copy_map_value_out, ValueLock};
use crate::registry::AllocCtx;
use crate::storage::Slab;
use crate::syscall::{generic_map_lookup_batch, generic_map_update_batch};
use crate::uapi::*;

/// A plain array map (`struct bpf_array` with its `value[]` area).
pub(super) struct ArrayMap {
    geom: ArrayGeom,
    /// `alloc_entries * elem_size` zeroed bytes (page-rounded with `BPF_F_MMAPABLE`); value
    /// `i` starts at `i * elem_size` and is 8-byte aligned.
    values: Slab,
    /// Created with `BPF_F_MMAPABLE`: `values` is page-aligned and may be mapped.
    mmapable: bool,
}

/// `array_map_alloc` for ARRAY. May assume `array_map_alloc_check` passed.
///
/// `E2BIG` if rounding the entries up to a power of two overflows (no Spectre-v1 bypass);
/// `ENOMEM` if the allocation is larger than the machine's RAM or fails.
pub(super) fn array_map_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    let geom = ArrayGeom::new(attr, ctx.caps)?;
    let mmapable = attr.map_flags & BPF_F_MMAPABLE != 0;
    // Cannot overflow: < 2^32 entries of < 2^31 bytes.
    let bytes = geom.alloc_entries * geom.elem_size as u64;
    let values = if mmapable {
        // The kernel places `value[]` on a page boundary so the mapping starts there.
        let size = page_align(bytes);
        area_alloc(
            page_align(BPF_ARRAY_HEADER_SIZE) + size,
            size,
            PAGE_SIZE as usize,
        )?
    } else {
        area_alloc(BPF_ARRAY_HEADER_SIZE + bytes, bytes, 8)?
    };
    Ok(Box::new(ArrayMap {
        geom,
        values,
        mmapable,
    }))
}

impl ArrayMap {
    /// Address of the value in `slot` (from [`ArrayGeom::slot`], hence inside the slab).
    #[inline]
    fn elem(&self, slot: usize) -> *mut u8 {
        // SAFETY: slot < alloc_entries, so the offset is inside `values`.
        unsafe {
            self.values
                .as_ptr()
                .add(slot * self.geom.elem_size as usize)
        }
    }
}

impl MapOps for ArrayMap {
    /// `array_map_lookup_elem`. Context: both.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        NonNull::new(self.elem(self.geom.key_slot(key)?))
    }

    /// No `map_lookup_percpu_elem` in `array_map_ops`: the verifier refuses the helper.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_map_copy_value` on an array: `ENOENT` out of range, else a copy with special
    /// fields zeroed, under the value's spin lock with `BPF_F_LOCK`
    /// (`copy_map_value_locked(.., lock_src = true)`). Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        let slot = self.geom.key_slot(key).ok_or(Errno::ENOENT)?;
        if value.len() != map.value_size() as usize {
            return Err(Errno::EINVAL);
        }
        let src = self.elem(slot);
        let rec = map.record();
        if flags & BPF_F_LOCK != 0 {
            let off = rec.and_then(|r| r.spin_lock_off()).ok_or(Errno::EINVAL)?;
            // SAFETY: the lock lies inside the value (record invariant), 4-byte aligned in an
            // 8-aligned value, and is only accessed atomically (copies skip it).
            let lock = unsafe { ValueLock::from_ptr(src.add(off as usize)) };
            lock.lock();
            // SAFETY: `src` is a value of `value_size` bytes in the slab, 8-aligned.
            unsafe { copy_map_value_out(rec, value, src) };
            lock.unlock();
        } else {
            // SAFETY: as above.
            unsafe { copy_map_value_out(rec, value, src) };
        }
        Ok(())
    }

    /// `array_map_update_elem`, in the kernel's order: unknown flags `EINVAL`, index
    /// `E2BIG`, `BPF_NOEXIST` `EEXIST` (every element exists), `BPF_F_LOCK` without a lock
    /// `EINVAL`; then the copy (under the lock with `BPF_F_LOCK`) and `bpf_obj_free_fields`.
    /// Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        if (flags & !BPF_F_LOCK) > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let index = super::key_index(key).ok_or(Errno::EINVAL)?;
        let slot = self.geom.slot(index).ok_or(Errno::E2BIG)?;
        if flags & BPF_NOEXIST != 0 {
            return Err(Errno::EEXIST);
        }
        let rec = map.record();
        let lock_off = rec.and_then(|r| r.spin_lock_off());
        if flags & BPF_F_LOCK != 0 && lock_off.is_none() {
            return Err(Errno::EINVAL);
        }
        if value.len() != map.value_size() as usize {
            return Err(Errno::EINVAL);
        }
        let dst = self.elem(slot);
        match lock_off {
            Some(off) if flags & BPF_F_LOCK != 0 => {
                // SAFETY: as in `lookup_elem_sys` (`copy_map_value_locked(.., lock_src = false)`).
                let lock = unsafe { ValueLock::from_ptr(dst.add(off as usize)) };
                lock.lock();
                // SAFETY: `dst` is a value of `value.len()` bytes in the slab, 8-aligned.
                unsafe { copy_map_value_in(rec, dst, value) };
                lock.unlock();
            }
            // SAFETY: as above.
            _ => unsafe { copy_map_value_in(rec, dst, value) },
        }
        // SAFETY: as above.
        unsafe { obj_free_fields(rec, dst) };
        Ok(())
    }

    /// `array_map_delete_elem`: array elements cannot be deleted. Context: both.
    fn delete_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// `array_map_get_next_key`. Context: syscall.
    fn get_next_key(&self, _map: &BpfMap, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        get_next_key(&self.geom, key, next_key)
    }

    /// No `map_lookup_and_delete_elem`: `map_lookup_and_delete_elem` in syscall.c answers
    /// `ENOTSUPP` for arrays. Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        _: &BpfMap,
        _: &OpCtx<'_>,
        _: Option<&[u8]>,
        _: &mut [u8],
        _: u64,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_push_elem` in `array_map_ops` (the verifier refuses the helper; the syscall
    /// never pushes to arrays): `ENOTSUPP`, the kernel's answer for a missing op.
    fn push_elem(&self, _map: &BpfMap, _value: &[u8], _flags: u64) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_pop_elem`: as `push_elem`.
    fn pop_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_peek_elem`: as `push_elem`.
    fn peek_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `generic_map_lookup_batch`. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_lookup_batch(map, ctx, args)
    }

    /// No `map_lookup_and_delete_batch`: `BPF_DO_BATCH` answers `ENOTSUPP` (kernel 6.18).
    fn lookup_and_delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `generic_map_update_batch`. Context: syscall.
    fn update_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_update_batch(map, ctx, args)
    }

    /// No `map_delete_batch`: `BPF_DO_BATCH` answers `ENOTSUPP` (kernel 6.18).
    fn delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `bpf_for_each_array_elem`: every index in order, stopping after the callback asks to.
    /// Context: program.
    fn for_each_callback(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        let mut num_elems = 0;
        for i in 0..map.max_entries() {
            let Some(val) = self.geom.slot(i).and_then(|s| NonNull::new(self.elem(s))) else {
                break;
            };
            num_elems += 1;
            if f(&i.to_ne_bytes(), val) {
                break;
            }
        }
        Ok(num_elems)
    }

    /// `bpf_map_mmap` + `array_map_mmap`: `ENOTSUPP` for a value with special fields (checked
    /// by the syscall before the op, repeated here), `EINVAL` without `BPF_F_MMAPABLE`; else
    /// the value area, `PAGE_ALIGN(max_entries * elem_size)` bytes. Context: syscall.
    fn mmap(&self, map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        if map.record().is_some_and(|r| !r.is_empty()) {
            return Err(Errno::ENOTSUPP);
        }
        if !self.mmapable {
            return Err(Errno::EINVAL);
        }
        let len = page_align(self.geom.max_entries as u64 * self.geom.elem_size as u64);
        let start = NonNull::new(self.values.as_ptr()).ok_or(Errno::ENOMEM)?;
        // The slab holds alloc_entries >= max_entries elements, page-rounded.
        Ok((start, usize::try_from(len).map_err(|_| Errno::ENOMEM)?))
    }

    /// `array_map_gen_lookup`; declines for `BPF_F_INNER_MAP` arrays, whose real size is only
    /// known at run time (the call then goes to `array_map_lookup_elem`).
    fn gen_lookup(&self, map: &BpfMap) -> Option<InlineLookup> {
        if map.map_flags() & BPF_F_INNER_MAP != 0 {
            return None;
        }
        Some(InlineLookup::Array {
            base: NonNull::new(self.values.as_ptr())?,
            elem_size: self.geom.elem_size,
            max_entries: self.geom.max_entries,
            index_mask: self.geom.inline_mask(),
        })
    }

    /// `array_map_free_internal_structs`: the last user reference is gone, so timers and
    /// workqueues are cancelled in every value (other special fields stay).
    fn release_uref(&self, map: &BpfMap) {
        let Some(rec) = map.record().filter(|r| has_internal_structs(Some(r))) else {
            return;
        };
        for i in 0..map.max_entries() {
            if let Some(slot) = self.geom.slot(i) {
                // SAFETY: a value inside the slab, 8-aligned.
                unsafe { free_internal_structs(rec, self.elem(slot)) };
            }
        }
    }

    /// `array_map_mem_usage`.
    fn mem_usage(&self, _map: &BpfMap) -> u64 {
        self.geom.mem_usage(self.mmapable)
    }
}
