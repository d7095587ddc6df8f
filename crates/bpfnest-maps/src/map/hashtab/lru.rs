// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_LRU_HASH` (`htab_lru_map_ops`) and `BPF_MAP_TYPE_LRU_PERCPU_HASH`
//! (`htab_lru_percpu_map_ops`): preallocated tables whose free elements come from a
//! [`BpfLru`], which evicts the least recently used keys when it runs dry.
//!
//! Lock order, as in the kernel: LRU list locks, then a bucket lock (the LRU calls back into
//! [`LruOwner::del_from_htab`] with its locks held). So every `pop_free`/`push_free` happens
//! with no bucket lock held: an update pops its element *before* locking the bucket, and
//! elements are pushed back only after unlocking. Setting the reference bit takes no lock.
//!
//! Program lookups set the element's reference bit; syscall lookups do not
//! (`htab_lru_map_lookup_elem_sys`, `bpf_percpu_hash_copy`), so a user-space walk does not
//! disturb eviction. The syscall side runs on `ctx.cpu` (the runtime's `syscall_cpu`), which
//! picks the local (common LRU) or per-CPU (`BPF_F_NO_COMMON_LRU`) free list.

use core::ptr::NonNull;

use super::table::{check_flags, Elem, Htab};
use super::HtabTable;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::map::lru_list::{BpfLru, LruOwner, NodeId};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::record::copy_map_value_in;
use crate::syscall::{generic_map_delete_batch, generic_map_update_batch};
use crate::uapi::*;

/// A preallocated table and the LRU that owns its free elements.
pub(super) struct LruHtab {
    pub(super) htab: Htab,
    pub(super) lru: BpfLru,
}

/// The table side of an eviction, for one `pop_free` call (it needs the map's record).
struct Evictor<'a> {
    h: &'a LruHtab,
    map: &'a BpfMap,
}

impl LruOwner for Evictor<'_> {
    /// `htab_lru_map_delete_node`: unlinks the element if it is still linked (it may have
    /// been deleted, or popped and not linked yet), then releases its special fields.
    fn del_from_htab(&self, node: NodeId) -> bool {
        let h = &self.h.htab;
        let e = h.elem_at(node);
        let b = h.lock_bucket(self.h.lru.node_hash(node));
        let removed = b.unlink(e);
        drop(b);
        if removed {
            h.free_fields(self.map.record(), e);
        }
        removed
    }
}

impl LruHtab {
    /// `prealloc_lru_pop`: a free element holding `key`, possibly evicting another key.
    fn pop(&self, map: &BpfMap, cpu: u32, key: &[u8], hash: u32) -> Option<Elem> {
        let node = self.lru.pop_free(&Evictor { h: self, map }, cpu, hash)?;
        let e = self.htab.elem_at(node);
        self.htab.init_elem(e, key, hash);
        Some(e)
    }

    /// `htab_lru_push_free`: releases special fields and gives the element back to the LRU.
    fn push_free(&self, map: &BpfMap, e: Elem) {
        self.htab.free_fields(map.record(), e);
        self.lru.push_free(self.htab.elem_index(e));
    }

    /// `bpf_lru_node_set_ref`.
    fn mark(&self, e: Elem) {
        self.lru.mark_ref(self.htab.elem_index(e));
    }

    /// `__htab_lru_map_lookup_elem` with `mark = true`: the program-side lookup.
    fn lookup_mark(&self, key: &[u8]) -> Option<Elem> {
        let key = key.get(..self.htab.key_size)?;
        let e = self.htab.lookup_nulls(self.htab.hash(key), key)?;
        self.mark(e);
        Some(e)
    }

    /// `htab_lru_map_update_elem`. Context: both.
    ///
    /// `EINVAL` for flags above `BPF_EXIST`; the element is taken from the LRU before the
    /// bucket is locked (`ENOMEM` if the LRU has none); `EEXIST`/`ENOENT` then give it back.
    /// Replacing a key links the new element at the head of the bucket with its reference bit
    /// set and returns the old one to the LRU.
    fn update(&self, map: &BpfMap, cpu: u32, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let h = &self.htab;
        let key = key.get(..h.key_size).ok_or(Errno::EINVAL)?;
        let value = value.get(..h.value_size).ok_or(Errno::EINVAL)?;
        let rec = map.record();
        let hash = h.hash(key);
        let e = self.pop(map, cpu, key, hash).ok_or(Errno::ENOMEM)?;
        // SAFETY: the element is ours until linked; its value area is `round_up(value_size,
        // 8)` bytes, 8-aligned.
        unsafe { copy_map_value_in(rec, h.value_ptr(e), value) };

        let b = h.lock_bucket(hash);
        let old = b.lookup(hash, key);
        if let Err(err) = check_flags(old.is_some(), flags) {
            drop(b);
            self.push_free(map, e);
            return Err(err);
        }
        b.link_head(e);
        if let Some(old) = old {
            self.mark(e);
            b.unlink(old);
        }
        drop(b);
        if let Some(old) = old {
            self.push_free(map, old);
        }
        Ok(())
    }

    /// `__htab_lru_percpu_map_update_elem`. Context: both (`onallcpus` from the syscall).
    ///
    /// Unlike the plain LRU, an existing key is updated in place (reference bit set), and
    /// `BPF_EXIST` takes no element from the LRU at all.
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
        let h = &self.htab;
        let key = key.get(..h.key_size).ok_or(Errno::EINVAL)?;
        let value = h.pcpu_value(value, onallcpus)?;
        let rec = map.record();
        let hash = h.hash(key);
        let mut fresh = None;
        if flags != BPF_EXIST {
            fresh = Some(self.pop(map, cpu, key, hash).ok_or(Errno::ENOMEM)?);
        }

        let b = h.lock_bucket(hash);
        let old = b.lookup(hash, key);
        let r = check_flags(old.is_some(), flags);
        if r.is_ok() {
            if let Some(old) = old {
                self.mark(old);
                h.pcpu_copy_value(rec, old, cpu, value, onallcpus);
            } else if let Some(e) = fresh.take() {
                h.pcpu_init_value(rec, e, cpu, value, onallcpus);
                b.link_head(e);
            }
        }
        drop(b);
        if let Some(e) = fresh {
            // Unused: straight back to the LRU (no special fields were written).
            self.lru.push_free(h.elem_index(e));
        }
        r
    }

    /// `htab_lru_map_delete_elem`: `ENOENT` if absent; the element goes back to the LRU after
    /// the bucket is unlocked. Context: both.
    fn delete(&self, map: &BpfMap, key: &[u8]) -> Result<()> {
        let h = &self.htab;
        let key = key.get(..h.key_size).ok_or(Errno::EINVAL)?;
        let hash = h.hash(key);
        let b = h.lock_bucket(hash);
        let e = b.lookup(hash, key).ok_or(Errno::ENOENT)?;
        b.unlink(e);
        drop(b);
        self.push_free(map, e);
        Ok(())
    }

    fn lookup_and_delete(
        &self,
        map: &BpfMap,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        let key = key.ok_or(Errno::EINVAL)?;
        self.htab
            .lookup_and_delete(map, key, value, flags, |e| self.push_free(map, e))
    }

    fn batch(&self, map: &BpfMap, args: &mut BatchArgs<'_>, do_delete: bool) -> Result<()> {
        self.htab
            .lookup_and_delete_batch(map, args, do_delete, &|e| self.push_free(map, e))
    }
}

/// The `BPF_MAP_TYPE_LRU_HASH` ops table (`htab_lru_map_ops`).
pub struct LruHtabMap(pub(super) LruHtab);

/// The `BPF_MAP_TYPE_LRU_PERCPU_HASH` ops table (`htab_lru_percpu_map_ops`).
pub struct LruPercpuHtabMap(pub(super) LruHtab);

impl HtabTable for LruHtabMap {
    fn table(&self) -> &Htab {
        &self.0.htab
    }
}

impl HtabTable for LruPercpuHtabMap {
    fn table(&self) -> &Htab {
        &self.0.htab
    }
}

impl MapOps for LruHtabMap {
    /// A per-CPU LRU's rounded element count (`htab->map.max_entries = roundup(..)`).
    fn max_entries(&self) -> Option<u32> {
        Some(self.0.htab.max_entries)
    }

    htab_common_ops!();

    /// `htab_lru_map_lookup_elem`: sets the reference bit. Context: program.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        let e = self.0.lookup_mark(key)?;
        NonNull::new(self.0.htab.value_ptr(e))
    }

    /// No `map_lookup_percpu_elem`: the verifier refuses the helper on a non-per-CPU map.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `htab_lru_map_lookup_elem_sys`: no reference bit. Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        self.0.htab.lookup_sys(map, key, value, flags)
    }

    /// `htab_lru_map_update_elem`. Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        self.0.update(map, ctx.cpu, key, value, flags)
    }

    /// `htab_lru_map_delete_elem`. Context: both.
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.0.delete(map, key)
    }

    /// `htab_lru_map_lookup_and_delete_elem`. Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        self.0.lookup_and_delete(map, key, value, flags)
    }

    /// `htab_lru_map_lookup_batch`: no reference bits. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, _ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        self.0.batch(map, args, false)
    }

    /// `htab_lru_map_lookup_and_delete_batch`. Context: syscall.
    fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        self.0.batch(map, args, true)
    }

    /// `bpf_for_each_hash_elem` (no reference bits). Context: program.
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Ok(self.0.htab.for_each(ctx.cpu, f))
    }

    /// `htab_map_free_timers_and_wq`; see `HtabMap::release_uref`.
    fn release_uref(&self, map: &BpfMap) {
        self.0.htab.free_timers_and_wq(map);
    }
}

impl MapOps for LruPercpuHtabMap {
    /// A per-CPU LRU's rounded element count (`htab->map.max_entries = roundup(..)`).
    fn max_entries(&self) -> Option<u32> {
        Some(self.0.htab.max_entries)
    }

    htab_common_ops!();

    /// `htab_lru_percpu_map_lookup_elem`: the current CPU's value; sets the reference bit.
    /// Context: program.
    fn lookup_elem(&self, _map: &BpfMap, ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        let e = self.0.lookup_mark(key)?;
        NonNull::new(self.0.htab.pcpu_ptr(e, ctx.cpu))
    }

    /// `htab_lru_percpu_map_lookup_percpu_elem`: sets the reference bit. Context: program.
    fn lookup_percpu_elem(&self, _map: &BpfMap, key: &[u8], cpu: u32) -> Option<NonNull<u8>> {
        if cpu >= self.0.htab.nr_cpus {
            return None;
        }
        let e = self.0.lookup_mark(key)?;
        self.0.htab.percpu_slot(e, cpu)
    }

    /// `bpf_percpu_hash_copy`: every CPU's slot, no reference bit. Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        self.0.htab.lookup_sys(map, key, value, flags)
    }

    /// `htab_lru_percpu_map_update_elem` / `bpf_percpu_hash_update`. Context: both.
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

    /// `htab_lru_map_delete_elem`. Context: both.
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.0.delete(map, key)
    }

    /// `htab_lru_percpu_map_lookup_and_delete_elem`. Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        self.0.lookup_and_delete(map, key, value, flags)
    }

    /// `htab_lru_percpu_map_lookup_batch`. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, _ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        self.0.batch(map, args, false)
    }

    /// `htab_lru_percpu_map_lookup_and_delete_batch`. Context: syscall.
    fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        self.0.batch(map, args, true)
    }

    /// `bpf_for_each_hash_elem`: the current CPU's values. Context: program.
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Ok(self.0.htab.for_each(ctx.cpu, f))
    }
}

/// Builds the LRU over a freshly allocated preallocated table (`bpf_lru_init` +
/// `bpf_lru_populate`).
pub(super) fn lru_table(htab: Htab, percpu_lru: bool) -> LruHtab {
    let lru = BpfLru::new(percpu_lru, htab.nr_cpus, htab.max_entries);
    LruHtab { htab, lru }
}
