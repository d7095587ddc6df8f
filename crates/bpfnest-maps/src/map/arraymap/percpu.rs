// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_PERCPU_ARRAY` (`percpu_array_map_ops` in `kernel/bpf/arraymap.c`).
//!
//! One `elem_size` slot per possible CPU and entry, in one zeroed [`Slab`], entry-major:
//! the kernel's `pptrs[index]` per-CPU block is row `index` here. Programs see the slot of
//! the CPU they run on (`this_cpu_ptr`); user space exchanges all CPUs at once, each value
//! rounded up to 8 bytes (`bpf_percpu_array_copy`, `bpf_percpu_array_update`).

use core::ptr::NonNull;

use super::{
    area_alloc, get_next_key, key_index, obj_free_fields, ArrayGeom, BPF_ARRAY_HEADER_SIZE,
};
use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::record::{copy_map_value_in, copy_map_value_out};
use crate::registry::AllocCtx;
use crate::storage::Slab;
use crate::syscall::{generic_map_lookup_batch, generic_map_update_batch};
use crate::uapi::*;

/// A per-CPU array map.
pub(super) struct PercpuArrayMap {
    geom: ArrayGeom,
    /// Number of possible CPUs the map was created for (`num_possible_cpus()`), >= 1.
    nr_cpus: u32,
    /// `max_entries * nr_cpus * elem_size` zeroed bytes; the slot of (index, cpu) starts at
    /// `(index * nr_cpus + cpu) * elem_size`.
    values: Slab,
}

/// `array_map_alloc` for PERCPU_ARRAY (with `bpf_array_alloc_percpu`). May assume
/// `array_map_alloc_check` passed.
///
/// Only `max_entries` rows are allocated, as the kernel allocates per-CPU memory only for
/// real entries (the masked index of an in-range index is the index itself).
pub(super) fn percpu_array_map_alloc(
    attr: &MapAttr,
    ctx: &AllocCtx<'_>,
) -> Result<Box<dyn MapOps>> {
    let geom = ArrayGeom::new(attr, ctx.caps)?;
    let nr_cpus = ctx.nr_cpus.max(1);
    let bytes = (geom.max_entries as u64)
        .checked_mul(nr_cpus as u64)
        .and_then(|n| n.checked_mul(geom.elem_size as u64))
        .ok_or(Errno::ENOMEM)?;
    // The kernel's pointer table (rounded entries) plus the per-CPU blocks.
    let kernel_size = (BPF_ARRAY_HEADER_SIZE + geom.alloc_entries * 8)
        .checked_add(bytes)
        .ok_or(Errno::ENOMEM)?;
    let values = area_alloc(kernel_size, bytes, 8)?;
    Ok(Box::new(PercpuArrayMap {
        geom,
        nr_cpus,
        values,
    }))
}

impl PercpuArrayMap {
    /// Address of the value of `cpu` in `slot`, or `None` for a CPU the map does not have.
    #[inline]
    fn elem(&self, slot: usize, cpu: u32) -> Option<*mut u8> {
        if cpu >= self.nr_cpus {
            return None;
        }
        let row = slot * self.nr_cpus as usize + cpu as usize;
        // SAFETY: slot < max_entries (ArrayGeom::slot) and cpu < nr_cpus, so the slot lies
        // inside `values`.
        Some(unsafe { self.values.as_ptr().add(row * self.geom.elem_size as usize) })
    }

    /// The syscall-side value size: every CPU's value rounded up to 8 bytes.
    fn sys_size(&self) -> usize {
        self.geom.elem_size as usize * self.nr_cpus as usize
    }
}

impl MapOps for PercpuArrayMap {
    /// `percpu_array_map_lookup_elem`: the running CPU's value. Context: program.
    fn lookup_elem(&self, _map: &BpfMap, ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        NonNull::new(self.elem(self.geom.key_slot(key)?, ctx.cpu)?)
    }

    /// `percpu_array_map_lookup_percpu_elem`: `None` for a CPU beyond the possible ones,
    /// then for an out-of-range index. Context: program.
    fn lookup_percpu_elem(&self, _map: &BpfMap, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        if cpu >= self.nr_cpus {
            return None;
        }
        NonNull::new(self.elem(self.geom.key_slot(key)?, cpu)?)
    }

    /// `bpf_percpu_array_copy`: `ENOENT` out of range; otherwise every CPU's value, each in
    /// `round_up(value_size, 8)` bytes with special fields zeroed. Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        // BPF_F_LOCK needs a spin lock, which per-CPU arrays cannot hold; the syscall layer
        // refuses it first.
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let slot = self.geom.key_slot(key).ok_or(Errno::ENOENT)?;
        if value.len() != self.sys_size() {
            return Err(Errno::EINVAL);
        }
        let es = self.geom.elem_size as usize;
        for (cpu, out) in (0..self.nr_cpus).zip(value.chunks_exact_mut(es)) {
            let src = self.elem(slot, cpu).ok_or(Errno::EINVAL)?;
            // SAFETY: `src` is one CPU's `elem_size`-byte slot in the slab, 8-aligned
            // (`copy_map_value_long` then `check_and_init_map_value`).
            unsafe { copy_map_value_out(map.record(), out, src) };
        }
        Ok(())
    }

    /// From user space (`ctx.files` set): `bpf_percpu_array_update`, which writes every
    /// CPU's value: flags above `BPF_EXIST` `EINVAL`, index `E2BIG`, `BPF_NOEXIST` `EEXIST`.
    /// From a program: `array_map_update_elem` on the running CPU's value only.
    /// Both release owning special fields after the copy. Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        let rec = map.record();
        if ctx.files.is_some() {
            if flags > BPF_EXIST {
                return Err(Errno::EINVAL);
            }
            let index = key_index(key).ok_or(Errno::EINVAL)?;
            let slot = self.geom.slot(index).ok_or(Errno::E2BIG)?;
            if flags == BPF_NOEXIST {
                return Err(Errno::EEXIST);
            }
            if value.len() != self.sys_size() {
                return Err(Errno::EINVAL);
            }
            let es = self.geom.elem_size as usize;
            for (cpu, src) in (0..self.nr_cpus).zip(value.chunks_exact(es)) {
                let dst = self.elem(slot, cpu).ok_or(Errno::EINVAL)?;
                // SAFETY: `dst` is one CPU's `elem_size`-byte slot, 8-aligned
                // (`copy_map_value_long`); the rounding bytes are user data as in the kernel.
                unsafe {
                    copy_map_value_in(rec, dst, src);
                    obj_free_fields(rec, dst);
                }
            }
            return Ok(());
        }
        if (flags & !BPF_F_LOCK) > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let index = key_index(key).ok_or(Errno::EINVAL)?;
        let slot = self.geom.slot(index).ok_or(Errno::E2BIG)?;
        if flags & BPF_NOEXIST != 0 {
            return Err(Errno::EEXIST);
        }
        // No per-CPU value can hold a spin lock.
        if flags & BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let src = value
            .get(..map.value_size() as usize)
            .ok_or(Errno::EINVAL)?;
        let dst = self.elem(slot, ctx.cpu).ok_or(Errno::EINVAL)?;
        // SAFETY: `dst` is the running CPU's slot of `elem_size >= value_size` bytes.
        unsafe {
            copy_map_value_in(rec, dst, src);
            obj_free_fields(rec, dst);
        }
        Ok(())
    }

    /// `array_map_delete_elem`: `EINVAL`. Context: both.
    fn delete_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// `array_map_get_next_key`. Context: syscall.
    fn get_next_key(&self, _map: &BpfMap, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        get_next_key(&self.geom, key, next_key)
    }

    /// No `map_lookup_and_delete_elem`: `ENOTSUPP` (syscall.c's default). Context: syscall.
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

    /// No `map_push_elem` in `percpu_array_map_ops`: `ENOTSUPP` (unreachable in the kernel).
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

    /// `generic_map_lookup_batch` (values in the per-CPU syscall layout). Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_lookup_batch(map, ctx, args)
    }

    /// No `map_lookup_and_delete_batch`: `ENOTSUPP` from `BPF_DO_BATCH` (kernel 6.18).
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

    /// No `map_delete_batch`: `ENOTSUPP` from `BPF_DO_BATCH` (kernel 6.18).
    fn delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `bpf_for_each_array_elem` on the running CPU's values. Context: program.
    fn for_each_callback(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        if ctx.cpu >= self.nr_cpus {
            return Err(Errno::EINVAL);
        }
        let mut num_elems = 0;
        for i in 0..map.max_entries() {
            let Some(val) = self
                .geom
                .slot(i)
                .and_then(|s| self.elem(s, ctx.cpu))
                .and_then(NonNull::new)
            else {
                break;
            };
            num_elems += 1;
            if f(&i.to_ne_bytes(), val) {
                break;
            }
        }
        Ok(num_elems)
    }

    /// No `map_mmap` in `percpu_array_map_ops`: `bpf_map_mmap` answers `ENOTSUPP`
    /// (kernel 6.18). Context: syscall.
    fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        Err(Errno::ENOTSUPP)
    }

    /// `percpu_array_map_gen_lookup` needs per-CPU address arithmetic, which
    /// [`InlineLookup`] cannot express: the helper path runs instead (same results).
    fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
        None
    }

    /// `array_map_mem_usage` for a per-CPU array: header, pointer table, every CPU's values.
    fn mem_usage(&self, map: &BpfMap) -> u64 {
        let entries = map.max_entries() as u64;
        BPF_ARRAY_HEADER_SIZE
            + entries * 8
            + entries * self.geom.elem_size as u64 * self.nr_cpus as u64
    }
}
