// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_HASH` (`htab_map_ops`), and the element operations the other tables reuse:
//! delete, lookup-and-delete, the syscall-side value copy and `for_each`.

use core::ptr::NonNull;

use super::table::{check_flags, copy_map_value_locked_in, copy_map_value_locked_out, Elem, Htab};
use super::HtabTable;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::record::{copy_map_value_in, copy_map_value_out, BtfRecord};
use crate::syscall::{generic_map_delete_batch, generic_map_update_batch};
use crate::uapi::*;

impl Htab {
    /// Writes key, hash and value into an element the caller owns (`alloc_htab_elem` for the
    /// non-per-CPU types: `copy_map_value`, special fields skipped).
    fn fill(&self, rec: Option<&BtfRecord>, e: Elem, key: &[u8], hash: u32, value: &[u8]) {
        self.init_elem(e, key, hash);
        // SAFETY: the value area holds `round_up(value_size, 8) >= value.len()` bytes, 8-aligned.
        unsafe { copy_map_value_in(rec, self.value_ptr(e), value) };
    }

    /// `htab_map_update_elem`. Context: both.
    ///
    /// `EINVAL` for unknown flags (or `BPF_F_LOCK` without a spin lock), then `EEXIST`/`ENOENT`
    /// from the flags, then `E2BIG` (table full) or `ENOMEM`. Replacing a key links a new
    /// element at the head of the bucket and unlinks the old one, so the key moves to the front
    /// of its bucket; with `BPF_F_LOCK` the value is instead rewritten in place under its lock.
    pub(super) fn update_hash(
        &self,
        map: &BpfMap,
        cpu: u32,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        if flags & !BPF_F_LOCK > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let key = key.get(..self.key_size).ok_or(Errno::EINVAL)?;
        let value = value.get(..self.value_size).ok_or(Errno::EINVAL)?;
        let rec = map.record();
        let hash = self.hash(key);
        let mut lock_off = None;
        if flags & BPF_F_LOCK != 0 {
            let off = rec.and_then(|r| r.spin_lock_off()).ok_or(Errno::EINVAL)?;
            // Without the bucket lock first: the common case updates in place.
            let old = self.lookup_nulls(hash, key);
            check_flags(old.is_some(), flags)?;
            if let Some(old) = old {
                // SAFETY: a live value (read-side section) with its spin lock at `off`.
                unsafe { copy_map_value_locked_in(rec, off, self.value_ptr(old), value) };
                return Ok(());
            }
            lock_off = Some(off);
        }

        let b = self.lock_bucket(hash);
        let old = b.lookup(hash, key);
        check_flags(old.is_some(), flags)?;
        match (old, lock_off) {
            (Some(old), Some(off)) => {
                // Inserted between the two lookups: update in place after all.
                // SAFETY: as above; linked and the bucket is locked.
                unsafe { copy_map_value_locked_in(rec, off, self.value_ptr(old), value) };
            }
            (None, _) => {
                let e = self.alloc_elem()?;
                self.fill(rec, e, key, hash, value);
                b.link_head(e);
            }
            (Some(old), None) if self.is_prealloc() => {
                // The CPU's spare element takes the key; the old element becomes the spare,
                // reusable as soon as it is unlinked (readers may still be looking at it, as
                // on Linux). The slot stays locked until then.
                let mut spare = self.extra_slot(cpu);
                let e = self.elem_at(*spare);
                *spare = self.elem_index(old);
                self.fill(rec, e, key, hash, value);
                b.link_head(e);
                b.unlink(old);
                self.free_fields(rec, old);
                drop(spare);
            }
            (Some(old), None) => {
                let e = self.malloc_elem(true)?;
                self.fill(rec, e, key, hash, value);
                b.link_head(e);
                b.unlink(old);
                drop(b);
                self.free_htab_elem(map, old);
            }
        }
        Ok(())
    }

    /// `htab_map_delete_elem` for the non-LRU types: `ENOENT` if absent; the element is freed
    /// after the bucket lock is dropped. Context: both.
    pub(super) fn delete_elem(&self, map: &BpfMap, key: &[u8]) -> Result<()> {
        let key = key.get(..self.key_size).ok_or(Errno::EINVAL)?;
        let hash = self.hash(key);
        let b = self.lock_bucket(hash);
        let e = b.lookup(hash, key).ok_or(Errno::ENOENT)?;
        b.unlink(e);
        drop(b);
        self.free_htab_elem(map, e);
        Ok(())
    }

    /// Copies one element's value(s) as user space receives them: every CPU's rounded slot for
    /// per-CPU tables (`copy_map_value_long`), else `value_size` bytes, under the value's lock
    /// with `BPF_F_LOCK`; special fields come out zeroed (`check_and_init_map_value`).
    pub(super) fn copy_value_sys(
        &self,
        rec: Option<&BtfRecord>,
        e: Elem,
        out: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if self.kind.is_percpu() {
            let n = self.pcpu_size * self.nr_cpus as usize;
            let out = out.get_mut(..n).ok_or(Errno::EINVAL)?;
            for (cpu, chunk) in out.chunks_exact_mut(self.pcpu_size).enumerate() {
                // SAFETY: each slot is a live, 8-aligned `pcpu_size`-byte value.
                unsafe { copy_map_value_out(rec, chunk, self.pcpu_ptr(e, cpu as u32)) };
            }
            return Ok(());
        }
        let out = out.get_mut(..self.value_size).ok_or(Errno::EINVAL)?;
        match rec
            .and_then(|r| r.spin_lock_off())
            .filter(|_| flags & BPF_F_LOCK != 0)
        {
            // SAFETY: a live value with its spin lock at `off`.
            Some(off) => unsafe { copy_map_value_locked_out(rec, off, out, self.value_ptr(e)) },
            // SAFETY: a live, 8-aligned value of `value_size` bytes.
            None => unsafe { copy_map_value_out(rec, out, self.value_ptr(e)) },
        }
        Ok(())
    }

    /// `bpf_map_copy_value` through a lookup that does not touch LRU state (the plain lookup,
    /// `htab_lru_map_lookup_elem_sys`, `bpf_percpu_hash_copy`). `ENOENT` leaves `value`
    /// untouched. Context: syscall.
    pub(super) fn lookup_sys(
        &self,
        map: &BpfMap,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        let key = key.get(..self.key_size).ok_or(Errno::EINVAL)?;
        let e = self
            .lookup_nulls(self.hash(key), key)
            .ok_or(Errno::ENOENT)?;
        self.copy_value_sys(map.record(), e, value, flags)
    }

    /// `__htab_map_lookup_and_delete_elem`: copies the value out and unlinks the element under
    /// the bucket lock, then hands it to `free` (the type's free path) unlocked.
    /// Context: syscall.
    pub(super) fn lookup_and_delete(
        &self,
        map: &BpfMap,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
        free: impl FnOnce(Elem),
    ) -> Result<()> {
        let key = key.get(..self.key_size).ok_or(Errno::EINVAL)?;
        let hash = self.hash(key);
        let b = self.lock_bucket(hash);
        let e = b.lookup(hash, key).ok_or(Errno::ENOENT)?;
        self.copy_value_sys(map.record(), e, value, flags)?;
        b.unlink(e);
        drop(b);
        free(e);
        Ok(())
    }

    /// `bpf_for_each_hash_elem`: the current CPU's slot for per-CPU tables. Context: program.
    pub(super) fn for_each(&self, cpu: u32, f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool) -> u32 {
        let mut key = vec![0u8; self.key_size];
        self.for_each_linked(|e| {
            self.read_key(e, &mut key);
            let v = if self.kind.is_percpu() {
                self.pcpu_ptr(e, cpu)
            } else {
                self.value_ptr(e)
            };
            NonNull::new(v).is_some_and(|v| f(&key, v))
        })
    }
}

/// The `BPF_MAP_TYPE_HASH` ops table (`htab_map_ops`).
pub struct HtabMap(pub(super) Htab);

impl HtabTable for HtabMap {
    fn table(&self) -> &Htab {
        &self.0
    }
}

impl MapOps for HtabMap {
    htab_common_ops!();

    /// `htab_map_lookup_elem`. Context: program. The value stays valid until the caller's
    /// read-side section ends.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        let key = key.get(..self.0.key_size)?;
        let e = self.0.lookup_nulls(self.0.hash(key), key)?;
        NonNull::new(self.0.value_ptr(e))
    }

    /// No `map_lookup_percpu_elem`: the verifier refuses the helper on a non-per-CPU map.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_map_copy_value` over `htab_map_lookup_elem`. Context: syscall.
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

    /// `htab_map_update_elem`. Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        self.0.update_hash(map, ctx.cpu, key, value, flags)
    }

    /// `htab_map_delete_elem`. Context: both.
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.0.delete_elem(map, key)
    }

    /// `htab_map_lookup_and_delete_elem`. Context: syscall.
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

    /// `htab_map_lookup_batch`. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, _ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        self.0
            .lookup_and_delete_batch(map, args, false, &|e| self.0.free_htab_elem(map, e))
    }

    /// `htab_map_lookup_and_delete_batch`. Context: syscall.
    fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        self.0
            .lookup_and_delete_batch(map, args, true, &|e| self.0.free_htab_elem(map, e))
    }

    /// `bpf_for_each_hash_elem`. Context: program.
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Ok(self.0.for_each(ctx.cpu, f))
    }

    /// `htab_map_free_timers_and_wq`: timers and workqueues are cancelled when the last user
    /// reference goes. bpfnest's values hold no live timers yet (the execution engine will
    /// plug them in), so cancelling is zeroing the fields.
    fn release_uref(&self, map: &BpfMap) {
        self.0.free_timers_and_wq(map);
    }
}
