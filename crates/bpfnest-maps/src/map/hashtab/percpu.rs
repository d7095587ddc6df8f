// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_PERCPU_HASH` (`htab_percpu_map_ops`), and the per-CPU value copies the LRU
//! per-CPU table shares.
//!
//! Each element carries one `round_up(value_size, 8)` slot per possible CPU. User space reads
//! and writes every slot, rounded size included (`copy_map_value_long`), so padding bytes
//! written by a syscall come back from a lookup. A program reads and writes `value_size` bytes
//! of its own CPU's slot; a program inserting a key zeroes the other CPUs' values
//! (`pcpu_init_value`), padding excluded.

use core::ptr::NonNull;

use super::table::{check_flags, zero_map_value, Elem, Htab};
use super::HtabTable;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::record::{copy_map_value_in, BtfRecord};
use crate::syscall::{generic_map_delete_batch, generic_map_update_batch};
use crate::uapi::*;

impl Htab {
    /// The part of an update's value that will be read: every CPU's slot from user space
    /// (`onallcpus`), one `value_size` value from a program.
    pub(super) fn pcpu_value<'v>(&self, value: &'v [u8], onallcpus: bool) -> Result<&'v [u8]> {
        let need = if onallcpus {
            self.pcpu_size * self.nr_cpus as usize
        } else {
            self.value_size
        };
        value.get(..need).ok_or(Errno::EINVAL)
    }

    /// `pcpu_copy_value`: rewrites a linked element's values in place.
    pub(super) fn pcpu_copy_value(
        &self,
        rec: Option<&BtfRecord>,
        e: Elem,
        cpu: u32,
        value: &[u8],
        onallcpus: bool,
    ) {
        if onallcpus {
            for (c, chunk) in value.chunks_exact(self.pcpu_size).enumerate() {
                // SAFETY: each slot is a live, 8-aligned `pcpu_size`-byte value.
                unsafe { copy_map_value_in(rec, self.pcpu_ptr(e, c as u32), chunk) };
            }
        } else {
            // SAFETY: as above; `value` has `value_size <= pcpu_size` bytes.
            unsafe { copy_map_value_in(rec, self.pcpu_ptr(e, cpu), value) };
        }
    }

    /// `pcpu_init_value`: the values of a new element. From a program, the current CPU gets
    /// the value and every other CPU a zeroed value, so a program can rely on what other CPUs
    /// start from. Only `value_size` bytes are written either way: the padding of a reused
    /// preallocated element keeps what it held (kernel 6.18), and special fields are left alone.
    pub(super) fn pcpu_init_value(
        &self,
        rec: Option<&BtfRecord>,
        e: Elem,
        cpu: u32,
        value: &[u8],
        onallcpus: bool,
    ) {
        if onallcpus {
            return self.pcpu_copy_value(rec, e, cpu, value, true);
        }
        let cur = cpu % self.nr_cpus;
        for c in 0..self.nr_cpus {
            let slot = self.pcpu_ptr(e, c);
            if c == cur {
                // SAFETY: a live, 8-aligned slot of `pcpu_size >= value.len()` bytes.
                unsafe { copy_map_value_in(rec, slot, value) };
            } else {
                // SAFETY: as above.
                unsafe { zero_map_value(rec, slot, self.value_size) };
            }
        }
    }

    /// `htab_map_update_elem_in_place` for `PERCPU_HASH`: an existing key is updated in place
    /// (so it keeps its position), a new key gets an element at the head of its bucket.
    /// `EINVAL` for flags above `BPF_EXIST` (`BPF_F_LOCK` included), then `EEXIST`/`ENOENT`,
    /// then `E2BIG`/`ENOMEM`. Context: both (`onallcpus` from the syscall).
    fn update_percpu(
        &self,
        map: &BpfMap,
        cpu: u32,
        key: &[u8],
        value: &[u8],
        flags: u64,
        onallcpus: bool,
    ) -> Result<()> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let key = key.get(..self.key_size).ok_or(Errno::EINVAL)?;
        let value = self.pcpu_value(value, onallcpus)?;
        let rec = map.record();
        let hash = self.hash(key);
        let b = self.lock_bucket(hash);
        let old = b.lookup(hash, key);
        check_flags(old.is_some(), flags)?;
        if let Some(old) = old {
            self.pcpu_copy_value(rec, old, cpu, value, onallcpus);
        } else {
            let e = self.alloc_elem()?;
            self.init_elem(e, key, hash);
            self.pcpu_init_value(rec, e, cpu, value, onallcpus);
            b.link_head(e);
        }
        Ok(())
    }

    /// The slot of `cpu` for a lookup, or `None` past the possible CPUs
    /// (`htab_percpu_map_lookup_percpu_elem`: `cpu >= nr_cpu_ids`).
    pub(super) fn percpu_slot(&self, e: Elem, cpu: u32) -> Option<NonNull<u8>> {
        if cpu >= self.nr_cpus {
            return None;
        }
        NonNull::new(self.pcpu_ptr(e, cpu))
    }
}

/// The `BPF_MAP_TYPE_PERCPU_HASH` ops table (`htab_percpu_map_ops`).
pub struct PercpuHtabMap(pub(super) Htab);

impl HtabTable for PercpuHtabMap {
    fn table(&self) -> &Htab {
        &self.0
    }
}

impl MapOps for PercpuHtabMap {
    htab_common_ops!();

    /// `htab_percpu_map_lookup_elem`: the current CPU's value. Context: program.
    fn lookup_elem(&self, _map: &BpfMap, ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        let key = key.get(..self.0.key_size)?;
        let e = self.0.lookup_nulls(self.0.hash(key), key)?;
        NonNull::new(self.0.pcpu_ptr(e, ctx.cpu))
    }

    /// `htab_percpu_map_lookup_percpu_elem`. Context: program.
    fn lookup_percpu_elem(&self, _map: &BpfMap, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        if cpu >= self.0.nr_cpus {
            return None;
        }
        let key = key.get(..self.0.key_size)?;
        let e = self.0.lookup_nulls(self.0.hash(key), key)?;
        self.0.percpu_slot(e, cpu)
    }

    /// `bpf_percpu_hash_copy`: every CPU's slot. Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        self.0.lookup_sys(map, key, value, flags)
    }

    /// `htab_percpu_map_update_elem` (program, this CPU) / `bpf_percpu_hash_update` (syscall,
    /// every CPU). Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        self.0
            .update_percpu(map, ctx.cpu, key, value, flags, ctx.files.is_some())
    }

    /// `htab_map_delete_elem`. Context: both.
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.0.delete_elem(map, key)
    }

    /// `htab_percpu_map_lookup_and_delete_elem`. Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        let key = key.ok_or(Errno::EINVAL)?;
        self.0
            .lookup_and_delete(map, key, value, flags, |e| self.0.free_htab_elem(map, e))
    }

    /// `htab_percpu_map_lookup_batch`. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, _ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        self.0
            .lookup_and_delete_batch(map, args, false, &|e| self.0.free_htab_elem(map, e))
    }

    /// `htab_percpu_map_lookup_and_delete_batch`. Context: syscall.
    fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        self.0
            .lookup_and_delete_batch(map, args, true, &|e| self.0.free_htab_elem(map, e))
    }

    /// `bpf_for_each_hash_elem`: the current CPU's values. Context: program.
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Ok(self.0.for_each(ctx.cpu, f))
    }
}
