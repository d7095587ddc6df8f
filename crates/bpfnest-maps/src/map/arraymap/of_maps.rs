// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_ARRAY_OF_MAPS` (`array_of_maps_map_ops` in `kernel/bpf/arraymap.c`, with the
//! glue of `kernel/bpf/map_in_map.c`).
//!
//! Each slot is an `AtomicPtr<BpfMap>`: null, or an inner map whose one `refcnt` reference
//! the slot owns ([`MapRef::into_raw`]). The slot array has `alloc_entries` entries, so the
//! inlined lookup (`InlineLookup::ArrayOfMaps`) can mask the index after its bounds check.
//!
//! * **Insert/replace** (syscall): the handle is resolved and checked against the template
//!   ([`fd_get_ptr`]), then swapped in. A map that was there is released with `need_defer`:
//!   it is freed only after the grace periods the outer map's programs need.
//! * **Program lookup**: an Acquire load of the slot inside the caller's RCU read-side
//!   section; the pointer stays valid until that section ends (see
//!   [`array_of_maps_lookup`] for the typed form).
//! * **Outer map freed** (`Drop`): no program can hold the outer map any more, so every slot's
//!   reference is dropped at once, without deferral (spec §4.4).

use core::ptr::{self, NonNull};

use super::{get_next_key, key_index, slot_vec, ArrayGeom, BPF_ARRAY_HEADER_SIZE};
use crate::attr::MapAttr;
use crate::bpf_map::{BpfMap, MapMeta, MapRef};
use crate::errno::{Errno, Result};
use crate::map::map_in_map::{fd_get_ptr, fd_put_ptr, fd_sys_lookup_elem, meta_alloc};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::primitive::{AtomicPtr, Ordering};
use crate::rcu::RcuGuard;
use crate::registry::AllocCtx;
use crate::syscall::{generic_map_lookup_batch, generic_map_update_batch};
use crate::uapi::*;

/// An array of maps.
pub(super) struct ArrayOfMaps {
    geom: ArrayGeom,
    /// The template's description (`inner_map_meta`); lives exactly as long as this map.
    meta: MapMeta,
    /// `alloc_entries` slots; a non-null slot owns one `refcnt` of the map it points to.
    /// Only the first `max_entries` slots are ever non-null.
    slots: Box<[AtomicPtr<BpfMap>]>,
}

/// `array_of_map_alloc`: the meta first, so that its errors (EBADF, EINVAL, ENOTSUPP) win
/// over the array's (kernel 6.18: 2^31 + 1 entries with a closed template handle gives
/// EBADF, not E2BIG); then the slots. May assume `fd_array_map_alloc_check` passed.
pub(super) fn array_of_map_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    let meta = meta_alloc(ctx.files, attr.inner_map_fd)?;
    let geom = ArrayGeom::new(attr, ctx.caps)?;
    super::area_size(BPF_ARRAY_HEADER_SIZE + geom.alloc_entries * geom.elem_size as u64)?;
    let slots = slot_vec(geom.alloc_entries, || AtomicPtr::new(ptr::null_mut()))?;
    Ok(Box::new(ArrayOfMaps { geom, meta, slots }))
}

/// The inner map in slot `index` of the array of maps `map`, as a program's
/// `bpf_map_lookup_elem` sees it: `None` for an index `>= max_entries` or an empty slot.
///
/// The reference lives as long as `guard`: a read-side section of `map`'s normal RCU flavour
/// (non-sleepable programs), or of its tasks-trace flavour while a sleepable program uses `map`
/// ([`BpfMap::inc_sleepable`], done when such a program is loaded, before it first runs). An
/// inner map removed from its slot is freed only after a grace period of every flavour that
/// may hold it. Returns `None` as well if `map` is not an array of maps or `guard` is of a
/// flavour that does not protect it ([`BpfMap::guard_protects_inner`]).
pub fn array_of_maps_lookup<'g>(
    map: &'g BpfMap,
    guard: &'g RcuGuard<'_>,
    index: u32,
) -> Option<&'g BpfMap> {
    if !map.guard_protects_inner(guard) {
        return None;
    }
    let aom = map.ops_as::<ArrayOfMaps>()?;
    let p = aom.load(index)?;
    // SAFETY: the slot owned a reference when we loaded it inside `guard`'s section. A map
    // leaving a slot is put with `need_defer`, so whenever its last reference drops, the
    // free waits for a normal grace period begun after that drop, and also for a tasks-trace
    // one if the sleepable count was raised when it left; `guard_protects_inner` admitted
    // only guards of a flavour waited for.
    Some(unsafe { &*p })
}

impl ArrayOfMaps {
    /// The inner map pointer in slot `index` (null filtered out).
    #[inline]
    fn load(&self, index: u32) -> Option<*const BpfMap> {
        let slot = self.slots.get(self.geom.slot(index)?)?;
        // Acquire: pairs with the AcqRel swap in `update_elem`, so a reader that sees the
        // pointer sees the inner map as it was when it was inserted.
        let p = slot.load(Ordering::Acquire);
        (!p.is_null()).then_some(p as *const BpfMap)
    }
}

impl MapOps for ArrayOfMaps {
    /// `array_of_map_lookup_elem`: the inner `BpfMap`, valid until the caller's read-side
    /// section ends. Context: program.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        NonNull::new(self.load(key_index(key)?)? as *mut u8)
    }

    /// No `map_lookup_percpu_elem`.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_fd_array_map_lookup_elem` + `bpf_map_fd_sys_lookup_elem`: the inner map's id;
    /// `ENOENT` for an out-of-range index or an empty slot (kernel 6.18). Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        // An outer map has no record, so the syscall layer refused BPF_F_LOCK already.
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        let index = key_index(key).ok_or(Errno::ENOENT)?;
        let out = value.get_mut(..4).ok_or(Errno::EINVAL)?;
        // The kernel function takes rcu_read_lock itself; so does this, rather than rely on
        // every caller of a safe method being inside a section.
        map.with_read_lock(|| {
            let p = self.load(index).ok_or(Errno::ENOENT)?;
            // SAFETY: loaded inside this read-side section; see `array_of_maps_lookup`.
            let inner = unsafe { &*p };
            out.copy_from_slice(&fd_sys_lookup_elem(inner).to_ne_bytes());
            Ok(())
        })
    }

    /// `bpf_fd_array_map_update_elem` + `bpf_map_fd_get_ptr`, in the kernel's order: flags
    /// other than `BPF_ANY` `EINVAL`, index `E2BIG`, then the handle and the template check
    /// (`EBADF`, `EINVAL`, `ENOTSUPP`); the old inner map, if any, is put with `need_defer`.
    /// Context: syscall only (programs cannot update outer maps: `EINVAL`).
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        if flags != BPF_ANY {
            return Err(Errno::EINVAL);
        }
        let index = key_index(key).ok_or(Errno::EINVAL)?;
        let slot = self
            .geom
            .slot(index)
            .and_then(|s| self.slots.get(s))
            .ok_or(Errno::E2BIG)?;
        let ufd = key_index(value).ok_or(Errno::EINVAL)?;
        let files = ctx.files.ok_or(Errno::EINVAL)?;
        let inner = fd_get_ptr(map, files, ufd)?;
        // AcqRel: the Release half pairs with the Acquire load in `load`, publishing the new
        // pointer; the Acquire half pairs with the Release half of the swap that stored the
        // old pointer, whose reference this thread now owns.
        let old = slot.swap(inner.into_raw() as *mut BpfMap, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: a non-null slot value came from `MapRef::into_raw` and the swap gave its
            // ownership to this thread alone.
            fd_put_ptr(map, unsafe { MapRef::from_raw(old) }, true);
        }
        Ok(())
    }

    /// `fd_array_map_delete_elem`: `E2BIG` out of range, `ENOENT` for an empty slot;
    /// otherwise the slot is cleared and the inner map put with `need_defer`.
    /// Context: syscall.
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        let index = key_index(key).ok_or(Errno::EINVAL)?;
        let slot = self
            .geom
            .slot(index)
            .and_then(|s| self.slots.get(s))
            .ok_or(Errno::E2BIG)?;
        // AcqRel: as in `update_elem` (the null store needs no Release, but xchg is one op).
        let old = slot.swap(ptr::null_mut(), Ordering::AcqRel);
        if old.is_null() {
            return Err(Errno::ENOENT);
        }
        // SAFETY: as in `update_elem`.
        fd_put_ptr(map, unsafe { MapRef::from_raw(old) }, true);
        Ok(())
    }

    /// `array_map_get_next_key`: empty slots are not skipped (kernel 6.18). Context: syscall.
    fn get_next_key(&self, _map: &BpfMap, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        get_next_key(&self.geom, key, next_key)
    }

    /// No `map_lookup_and_delete_elem`: `ENOTSUPP` (kernel 6.18). Context: syscall.
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

    /// No `map_push_elem` in `array_of_maps_map_ops`: `ENOTSUPP` (unreachable in the kernel).
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

    /// `generic_map_lookup_batch`: empty slots answer `ENOENT` and are skipped; values are
    /// inner map ids. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_lookup_batch(map, ctx, args)
    }

    /// No `map_lookup_and_delete_batch`: `ENOTSUPP` before any flag is looked at
    /// (kernel 6.18).
    fn lookup_and_delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `generic_map_update_batch`: each element through `update_elem` (values are handles).
    /// Context: syscall.
    fn update_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_update_batch(map, ctx, args)
    }

    /// No `map_delete_batch`: `ENOTSUPP`, also with `BPF_F_LOCK` (kernel 6.18).
    fn delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_for_each_callback`: the verifier refuses with `ENOTSUPP` ("callback function
    /// not allowed for map", spec row 77).
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_mmap`: `bpf_map_mmap` answers `ENOTSUPP` (kernel 6.18, spec row 71).
    fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        Err(Errno::ENOTSUPP)
    }

    /// `array_of_map_gen_lookup`: bounds check, mask (unless the outer map's creator could
    /// bypass it), load of the slot pointer. The slots are `AtomicPtr`s, laid out as plain
    /// pointers outside loom.
    fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
        Some(InlineLookup::ArrayOfMaps {
            slots: NonNull::new(self.slots.as_ptr() as *mut u8)?,
            max_entries: self.geom.max_entries,
            index_mask: self.geom.inline_mask(),
        })
    }

    /// The template (`map->inner_map_meta`).
    fn inner_map_meta(&self) -> Option<&MapMeta> {
        Some(&self.meta)
    }

    /// `array_map_mem_usage` (8 bytes per slot).
    fn mem_usage(&self, _map: &BpfMap) -> u64 {
        self.geom.mem_usage(false)
    }
}

impl Drop for ArrayOfMaps {
    /// `array_of_map_free` → `bpf_fd_array_map_clear(map, need_defer = false)`: this runs
    /// when the outer map's last reference is gone, so no program can be reading a slot.
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            // Acquire: pairs with the Release half of the swap that stored the pointer.
            let p = slot.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: the slot owned this reference (`into_raw` in `update_elem`).
                drop(unsafe { MapRef::from_raw(p) });
            }
        }
    }
}
