// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`MapOps`]: one table of operations per map type, modelled on the kernel's `struct bpf_map_ops`.
//!
//! Keys and values are byte slices of exactly the sizes the syscall layer computed; update
//! flags are the raw `u64` user space passed. Methods that can fail have no default body: every
//! map type states its errno for every operation, citing the kernel function it mirrors
//! (STYLE.md: "the errno is the API").
//!
//! Two contexts, as in the kernel:
//! * **syscall**: called by [`crate::syscall`] after the generic checks of `kernel/bpf/syscall.c`
//!   (attr flags, handle mode, frozen, `BPF_F_LOCK` without a spin lock), inside a read-side
//!   section of the normal RCU flavour where the kernel holds `rcu_read_lock`.
//! * **program**: called by the execution engine on behalf of a running program, inside that
//!   run's read-side section. Returned value pointers stay valid until the section ends.

use core::ptr::NonNull;

use crate::bpf_map::BpfMap;
use crate::errno::Result;
use crate::object::FileTable;

/// Per-call context.
#[derive(Clone, Copy)]
pub struct OpCtx<'a> {
    /// The CPU the caller runs on: selects per-CPU slots and LRU free lists.
    pub cpu: u32,
    /// The caller's handle table, for fd-holding maps (`map_fd_get_ptr`). Programs have none.
    pub files: Option<&'a dyn FileTable>,
}

impl core::fmt::Debug for OpCtx<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpCtx")
            .field("cpu", &self.cpu)
            .field("files", &self.files.is_some())
            .finish()
    }
}

/// In/out arguments of the batch commands (`attr->batch`).
///
/// For `LOOKUP*` batches `keys`/`values` are outputs; for `UPDATE`/`DELETE` they are inputs.
/// `count` is the number of elements requested on entry and processed on return, also on
/// error (the kernel writes it back in both cases). `in_batch`/`out_batch` are opaque
/// positions whose size is the map's choice (a key for generic batches, a `u32` bucket index
/// for hash tables).
#[derive(Debug)]
pub struct BatchArgs<'a> {
    /// Where to resume, or `None` to start at the beginning.
    pub in_batch: Option<&'a [u8]>,
    /// Receives the position to pass as `in_batch` next time.
    pub out_batch: &'a mut [u8],
    /// `count` keys of `key_size` bytes.
    pub keys: &'a mut [u8],
    /// `count` values of the syscall value size (per-CPU: `round_up(value_size, 8) * ncpus`).
    pub values: &'a mut [u8],
    /// Requested on entry; processed on return.
    pub count: u32,
    /// `BPF_F_LOCK` or 0; anything else is the map's to refuse.
    pub elem_flags: u64,
    /// `batch.flags`.
    pub flags: u64,
}

/// What an inlined `bpf_map_lookup_elem` may compile to (`map_gen_lookup`).
///
/// The execution engine uses this to replace the helper call by direct address arithmetic;
/// a map that returns `None` is called through [`MapOps::lookup_elem`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum InlineLookup {
    /// `value = base + (index & index_mask) * elem_size` if `index < max_entries`.
    Array {
        /// Start of the values.
        base: NonNull<u8>,
        /// `round_up(value_size, 8)`.
        elem_size: u32,
        /// Bound checked before the access.
        max_entries: u32,
        /// Spectre-v1 mask (all ones when the creator may bypass it).
        index_mask: u32,
    },
    /// `slot = slots[index & index_mask]` if `index < max_entries`; the slot holds an inner
    /// map pointer or null.
    ArrayOfMaps {
        /// Start of the slot array (`*const BpfMap` per slot).
        slots: NonNull<u8>,
        /// Bound checked before the access.
        max_entries: u32,
        /// Spectre-v1 mask.
        index_mask: u32,
    },
}

/// The operations of one map type (`struct bpf_map_ops`).
///
/// `map` is the generic header the kernel reaches through `container_of`; `self` is the
/// type's private state.
pub trait MapOps: core::any::Any + Send + Sync {
    /// `map_lookup_elem` from a program: pointer to the value (the current CPU's copy for
    /// per-CPU maps; the inner `BpfMap` for map-in-map), or `None`.
    /// Context: program. Valid until the caller's read-side section ends.
    fn lookup_elem(&self, map: &BpfMap, ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>>;

    /// `map_lookup_percpu_elem`: the value slot of `cpu`. Context: program.
    fn lookup_percpu_elem(&self, map: &BpfMap, key: &[u8], cpu: u32) -> Option<NonNull<u8>>;

    /// `bpf_map_copy_value` for this type: copies the value for `key` into `value` (syscall
    /// value size). `flags` is 0 or `BPF_F_LOCK` (already checked against the record).
    /// Context: syscall.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()>;

    /// `map_update_elem` / `bpf_map_update_value` for this type. `value` has the syscall value
    /// size when `ctx.files` is set, `value_size` otherwise. Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()>;

    /// `map_delete_elem`. Context: both.
    fn delete_elem(&self, map: &BpfMap, ctx: &OpCtx<'_>, key: &[u8]) -> Result<()>;

    /// `map_get_next_key`: the key after `key` (the first when `None`). Context: syscall.
    fn get_next_key(&self, map: &BpfMap, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()>;

    /// `map_lookup_and_delete_elem` (hash types); queue/stack pop with `key == None`.
    /// Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()>;

    /// `map_push_elem` (queue, stack, bloom filter). Context: both.
    fn push_elem(&self, map: &BpfMap, value: &[u8], flags: u64) -> Result<()>;

    /// `map_pop_elem`. Context: program (syscall pops go through `lookup_and_delete_elem`).
    fn pop_elem(&self, map: &BpfMap, value: &mut [u8]) -> Result<()>;

    /// `map_peek_elem`; for bloom filters, a membership test of `value`. Context: both.
    fn peek_elem(&self, map: &BpfMap, value: &mut [u8]) -> Result<()>;

    /// `map_lookup_batch`. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()>;

    /// `map_lookup_and_delete_batch`. Context: syscall.
    fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        args: &mut BatchArgs<'_>,
    ) -> Result<()>;

    /// `map_update_batch`. Context: syscall.
    fn update_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()>;

    /// `map_delete_batch`. Context: syscall.
    fn delete_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()>;

    /// `map_for_each_callback`: calls `f(key, value)` per element until it returns `true`
    /// (stop); returns the number of elements visited. Context: program.
    fn for_each_callback(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32>;

    /// `map_mmap`: the region user space may map, as (start, length). Context: syscall.
    fn mmap(&self, map: &BpfMap) -> Result<(NonNull<u8>, usize)>;

    /// `map_gen_lookup`: how a lookup may be inlined, if at all.
    fn gen_lookup(&self, map: &BpfMap) -> Option<InlineLookup>;

    /// `map_release_uref`: the last user reference (handle or pin) is gone. Arrays and hashes
    /// cancel timers and workqueues here; program arrays clear their slots.
    fn release_uref(&self, map: &BpfMap) {
        let _ = map;
    }

    /// `map->max_entries` when the type's alloc changed it from the attribute (a per-CPU LRU
    /// rounds it up to a multiple of the CPU count); `None` keeps `attr.max_entries`.
    fn max_entries(&self) -> Option<u32> {
        None
    }

    /// The inner-map template, for outer maps (`map->inner_map_meta`).
    fn inner_map_meta(&self) -> Option<&crate::bpf_map::MapMeta> {
        None
    }

    /// `map_mem_usage`: bytes charged to the map.
    fn mem_usage(&self, map: &BpfMap) -> u64;
}
