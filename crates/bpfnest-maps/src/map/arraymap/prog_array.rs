// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_PROG_ARRAY` (`prog_array_map_ops` in `kernel/bpf/arraymap.c`): the fd array
//! that tail calls index.
//!
//! Each slot holds a program or nothing. User space stores programs by handle and reads back
//! program ids. The first program ever stored fixes the array's *owner* (program type, JIT
//! state, XDP fragment support); later programs must match it, even after the slots were
//! emptied (`__bpf_prog_map_compatible`; kernel 6.18: after deleting the only XDP program,
//! a socket filter is still refused with EINVAL). When the last user reference goes, every
//! slot is cleared (`prog_array_map_clear`), which is what breaks tail-call loops that only
//! programs keep alive.

use core::ptr::NonNull;
use std::sync::Arc;

use super::{get_next_key, key_index, slot_vec, ArrayGeom, BPF_ARRAY_HEADER_SIZE};
use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::object::BpfProg;
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::registry::AllocCtx;
use crate::uapi::*;

/// What the first stored program fixes (`struct bpf_map_owner`, the part bpfnest models).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProgOwner {
    prog_type: u32,
    jited: bool,
    xdp_has_frags: bool,
}

impl ProgOwner {
    fn of(prog: &dyn BpfProg) -> ProgOwner {
        ProgOwner {
            prog_type: prog.prog_type(),
            jited: prog.jited(),
            xdp_has_frags: prog.xdp_has_frags(),
        }
    }
}

/// One slot: a program or nothing, behind its own lock.
type ProgSlot = parking_lot::Mutex<Option<Arc<dyn BpfProg>>>;

/// A program array.
pub(super) struct ProgArrayMap {
    geom: ArrayGeom,
    /// `alloc_entries` slots; only the first `max_entries` are ever filled. Each lock is
    /// held only to clone or swap the `Arc` (the kernel's `xchg` under `poke_mutex`);
    /// programs leaving a slot are dropped after the lock is released.
    slots: Box<[ProgSlot]>,
    /// Set by the first successful insertion and never cleared (`map->owner`).
    owner: parking_lot::Mutex<Option<ProgOwner>>,
}

/// `prog_array_map_alloc` (`array_map_alloc` with an 8-byte pointer per slot). May assume
/// `fd_array_map_alloc_check` passed.
pub(super) fn prog_array_map_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    let geom = ArrayGeom::new(attr, ctx.caps)?;
    super::area_size(BPF_ARRAY_HEADER_SIZE + geom.alloc_entries * geom.elem_size as u64)?;
    let slots = slot_vec(geom.alloc_entries, || parking_lot::Mutex::new(None))?;
    Ok(Box::new(ProgArrayMap {
        geom,
        slots,
        owner: parking_lot::Mutex::new(None),
    }))
}

/// The program in slot `index` of the program array `map`, for a tail call
/// (`bpf_tail_call`: `None` for an index `>= max_entries` or an empty slot).
///
/// Returns `None` as well if `map` is not a program array. The returned `Arc` keeps the
/// program alive for the caller even if the slot is replaced meanwhile.
pub fn prog_array_get(map: &BpfMap, index: u32) -> Option<Arc<dyn BpfProg>> {
    let pa = map.ops_as::<ProgArrayMap>()?;
    pa.slots.get(pa.geom.slot(index)?)?.lock().clone()
}

impl ProgArrayMap {
    /// `bpf_prog_map_compatible`: the first program becomes the owner; later ones must match.
    fn compatible(&self, prog: &dyn BpfProg) -> bool {
        let mut owner = self.owner.lock();
        match *owner {
            None => {
                *owner = Some(ProgOwner::of(prog));
                true
            }
            Some(o) => o == ProgOwner::of(prog),
        }
    }

    /// `__fd_array_map_delete_elem`: `E2BIG` out of range, `ENOENT` when empty.
    fn delete(&self, key: &[u8]) -> Result<()> {
        let index = key_index(key).ok_or(Errno::EINVAL)?;
        let slot = self.geom.slot(index).ok_or(Errno::E2BIG)?;
        let old = self.slots.get(slot).ok_or(Errno::E2BIG)?.lock().take();
        // `prog_fd_array_put_ptr`: dropped here, outside the slot lock.
        old.map(drop).ok_or(Errno::ENOENT)
    }
}

impl MapOps for ProgArrayMap {
    /// `fd_array_map_lookup_elem`: programs never get a pointer (`ERR_PTR(-EOPNOTSUPP)`; the
    /// verifier allows only `bpf_tail_call` on this type, see [`prog_array_get`]).
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Option<NonNull<u8>> {
        None
    }

    /// No `map_lookup_percpu_elem`.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_fd_array_map_lookup_elem` + `prog_fd_array_sys_lookup_elem`: the program's id;
    /// `ENOENT` for an out-of-range index or an empty slot. Context: syscall.
    fn lookup_elem_sys(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        _flags: u64,
    ) -> Result<()> {
        let slot = self.geom.key_slot(key).ok_or(Errno::ENOENT)?;
        let id = self
            .slots
            .get(slot)
            .and_then(|s| s.lock().as_ref().map(|p| p.id()))
            .ok_or(Errno::ENOENT)?;
        value
            .get_mut(..4)
            .ok_or(Errno::EINVAL)?
            .copy_from_slice(&id.to_ne_bytes());
        Ok(())
    }

    /// `bpf_fd_array_map_update_elem` + `prog_fd_array_get_ptr`, in the kernel's order:
    /// flags other than `BPF_ANY` `EINVAL`, index `E2BIG`, handle `EBADF`/`EINVAL` (not a
    /// program), an extension program or an owner mismatch `EINVAL`.
    /// Context: syscall only (programs cannot update program arrays: `EINVAL`).
    fn update_elem(
        &self,
        _map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        if flags != BPF_ANY {
            return Err(Errno::EINVAL);
        }
        let index = key_index(key).ok_or(Errno::EINVAL)?;
        let slot = self.geom.slot(index).ok_or(Errno::E2BIG)?;
        let ufd = key_index(value).ok_or(Errno::EINVAL)?;
        let files = ctx.files.ok_or(Errno::EINVAL)?;
        let prog = files.prog_get(ufd)?;
        // Extension programs are refused before they could become the owner.
        if prog.is_ext() || !self.compatible(&*prog) {
            return Err(Errno::EINVAL);
        }
        let old = self
            .slots
            .get(slot)
            .ok_or(Errno::E2BIG)?
            .lock()
            .replace(prog);
        drop(old);
        Ok(())
    }

    /// `fd_array_map_delete_elem`. Context: syscall.
    fn delete_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.delete(key)
    }

    /// `array_map_get_next_key` (empty slots are not skipped). Context: syscall.
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

    /// No `map_push_elem` in `prog_array_map_ops`: `ENOTSUPP` (unreachable in the kernel).
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

    /// No `map_lookup_batch` in `prog_array_map_ops`: `ENOTSUPP` (kernel 6.18).
    fn lookup_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_lookup_and_delete_batch`: `ENOTSUPP` (kernel 6.18).
    fn lookup_and_delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_update_batch`: `ENOTSUPP` (kernel 6.18).
    fn update_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_delete_batch`: `ENOTSUPP` (kernel 6.18).
    fn delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_for_each_callback`: the verifier refuses with `ENOTSUPP` ("callback function
    /// not allowed for map").
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_mmap`: `bpf_map_mmap` answers `ENOTSUPP` (kernel 6.18).
    fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_gen_lookup`: tail calls are patched by the verifier, not inlined as lookups.
    fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
        None
    }

    /// `prog_array_map_clear`: with no user reference left, every slot is emptied, so that
    /// programs tail-calling each other through this array can be freed. The kernel defers
    /// this to a workqueue; it is done at once here.
    fn release_uref(&self, _map: &BpfMap) {
        for slot in self.slots.iter() {
            let old = slot.lock().take();
            drop(old);
        }
    }

    /// `array_map_mem_usage` (8 bytes per slot).
    fn mem_usage(&self, _map: &BpfMap) -> u64 {
        self.geom.mem_usage(false)
    }
}
