// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The array family. Mirrors `kernel/bpf/arraymap.c` (v6.18): `BPF_MAP_TYPE_ARRAY`,
//! `BPF_MAP_TYPE_PERCPU_ARRAY`, `BPF_MAP_TYPE_PROG_ARRAY` and `BPF_MAP_TYPE_ARRAY_OF_MAPS`,
//! one ops table each, sharing the creation checks and the index arithmetic.
//!
//! # Layout
//!
//! Every member of the family is a `struct bpf_array`: a fixed header followed by
//! `alloc_entries` slots of `elem_size` bytes (`round_up(value_size, 8)`).
//!
//! ```text
//!  ArrayGeom { max_entries, elem_size, index_mask, alloc_entries, bypass_spec_v1 }
//!
//!  ARRAY            values: Slab   [elem 0][elem 1]...[elem alloc_entries-1]
//!                   (page-aligned, page-rounded with BPF_F_MMAPABLE: the mmap'able area)
//!  PERCPU_ARRAY     values: Slab   [e0 cpu0][e0 cpu1]..[e0 cpuN-1][e1 cpu0]...   (max_entries rows)
//!  PROG_ARRAY       slots: [Mutex<Option<Arc<dyn BpfProg>>>; alloc_entries]
//!  ARRAY_OF_MAPS    slots: [AtomicPtr<BpfMap>; alloc_entries]   (each non-null slot owns one refcnt)
//! ```
//!
//! `index_mask` is the next power of two above `max_entries`, minus one. When the creator
//! may not bypass Spectre-v1 mitigations (no CAP_PERFMON/CAP_SYS_ADMIN), the allocation is
//! rounded up to `index_mask + 1` slots, so that an index masked after the bounds check
//! (what the inlined lookups of [`crate::InlineLookup`] do) stays inside the allocation even
//! under speculation. Every access checks `index < max_entries` first; the mask then never
//! changes an in-range index.
//!
//! # Concurrency
//!
//! * ARRAY/PERCPU_ARRAY values are shared with running programs without locks, as in the
//!   kernel: every copy goes through [`crate::storage`]'s relaxed word copies, and
//!   `BPF_F_LOCK` takes the value's own `bpf_spin_lock` ([`ValueLock`](crate::record::ValueLock)).
//! * ARRAY_OF_MAPS slots are swapped atomically (the kernel's `xchg`); programs read them with
//!   an Acquire load inside an RCU read-side section. A map removed from a slot is released
//!   with `need_defer` (see [`crate::map::map_in_map::fd_put_ptr`]), so it outlives every
//!   section that could have loaded it.
//! * PROG_ARRAY slots are guarded by a small mutex each; tail calls clone the `Arc` out
//!   ([`prog_array_get`]), so a program replaced mid-tail-call stays alive for its caller.
//!
//! # Deviations from the kernel
//!
//! * `value_size` is bounded by `INT_MAX` (E2BIG), not `KMALLOC_MAX_SIZE`: 6.18 accepts a
//!   4 MiB + 8 value (probed). Allocations above total RAM fail with `ENOMEM`, which is
//!   vmalloc's rule; below it, only a real allocation failure gives `ENOMEM`.
//! * Timers, workqueues and task_work have no engine yet: "cancelling" them on the last user
//!   reference, on update and on free resets the field to zero (see
//!   `free_internal_structs`); the execution engine will plug real timers in there.
//! * PERCPU_ARRAY has no inlined lookup ([`crate::InlineLookup`] has no per-CPU shape); the
//!   helper path gives the same results and always bounds-checks the real map (spec §3.5.4).
//! * The program-array owner check compares program type, JIT state and XDP fragment
//!   support; `expected_attach_type`, `kprobe_override` and the "extended by freplace"
//!   (`EBUSY`) state are not modelled by [`BpfProg`](crate::object::BpfProg).

mod array;
mod of_maps;
mod percpu;
mod prog_array;

pub use of_maps::array_of_maps_lookup;
pub use prog_array::prog_array_get;

use crate::attr::MapAttr;
use crate::bpf_map::{BpfMap, MapMeta};
use crate::errno::{Errno, Result};
use crate::map::map_in_map::{array_index_mask, meta_equal};
use crate::record::{BtfFieldKind, BtfRecord};
use crate::registry::{AllocCtx, BtfKind, Caps, MapTypeOps};
use crate::storage::Slab;
use crate::uapi::*;

/// `BPF_F_ACCESS_MASK`: the file-mode and program-access flags.
pub const BPF_F_ACCESS_MASK: u32 =
    BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG;

/// `ARRAY_CREATE_FLAG_MASK`: every flag some member of the family accepts.
pub const ARRAY_CREATE_FLAG_MASK: u32 =
    BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_ACCESS_MASK | BPF_F_PRESERVE_ELEMS | BPF_F_INNER_MAP;

/// `PCPU_MIN_UNIT_SIZE`: the per-CPU allocator's unit, which bounds one per-CPU value.
pub const PCPU_MIN_UNIT_SIZE: u64 = 32 << 10;

/// `sizeof(struct bpf_array)` on x86_64 6.18 (kernel 6.18: a 4-entry ARRAY of 8-byte values
/// reports memlock 344 = 312 + 4 * 8). Only `mem_usage` and the allocation-size rule see it.
pub const BPF_ARRAY_HEADER_SIZE: u64 = 312;

/// `INT_MAX`: the largest `value_size` (`round_up` must not overflow).
const INT_MAX: u64 = i32::MAX as u64;

const fn page_align(x: u64) -> u64 {
    x.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// The geometry every member of the family shares (`struct bpf_array`'s header fields).
#[derive(Clone, Copy, Debug)]
pub(super) struct ArrayGeom {
    /// `map.max_entries` as created: the bound every access checks first.
    max_entries: u32,
    /// `round_up(value_size, 8)`: the stride between slots.
    elem_size: u32,
    /// Next power of two above `max_entries`, minus one; applied after the bounds check.
    index_mask: u32,
    /// Slots allocated: `max_entries` when `bypass_spec_v1`, else `index_mask + 1`, so
    /// `index & index_mask` is always inside the allocation.
    alloc_entries: u64,
    /// Whether the creator could bypass Spectre-v1 masking (`bpf_bypass_spec_v1`).
    bypass_spec_v1: bool,
}

impl ArrayGeom {
    /// The geometry half of `array_map_alloc`. May assume `array_map_alloc_check` passed.
    ///
    /// `E2BIG` when rounding `max_entries` up to a power of two overflows `u32` (only
    /// without the Spectre-v1 bypass: kernel 6.18 gives E2BIG for 2^31 + 1 entries to a
    /// creator without CAP_PERFMON/CAP_SYS_ADMIN).
    fn new(attr: &MapAttr, caps: Caps) -> Result<ArrayGeom> {
        // value_size <= INT_MAX (alloc_check), so the rounded size fits in u32.
        let elem_size =
            u32::try_from(round_up8(attr.value_size as u64)).map_err(|_| Errno::E2BIG)?;
        let index_mask = array_index_mask(attr.max_entries);
        let bypass_spec_v1 = caps.bypass_spec_v1();
        let mut alloc_entries = attr.max_entries;
        if !bypass_spec_v1 {
            // Same u32 arithmetic as the kernel: a mask of all ones wraps to 0.
            alloc_entries = index_mask.wrapping_add(1);
            if alloc_entries < attr.max_entries {
                return Err(Errno::E2BIG);
            }
        }
        Ok(ArrayGeom {
            max_entries: attr.max_entries,
            elem_size,
            index_mask,
            alloc_entries: alloc_entries as u64,
            bypass_spec_v1,
        })
    }

    /// The slot of `index`, or `None` when it is out of range (`index >= max_entries`).
    #[inline]
    fn slot(&self, index: u32) -> Option<usize> {
        (index < self.max_entries).then_some((index & self.index_mask) as usize)
    }

    /// The slot of the index `key` holds; `None` for an out-of-range index or a key that is
    /// not 4 bytes (the syscall layer never passes one).
    #[inline]
    fn key_slot(&self, key: &[u8]) -> Option<usize> {
        self.slot(key_index(key)?)
    }

    /// The mask an inlined lookup applies: all ones when the creator may bypass masking.
    fn inline_mask(&self) -> u32 {
        if self.bypass_spec_v1 {
            u32::MAX
        } else {
            self.index_mask
        }
    }

    /// `array_map_mem_usage` for the non-per-CPU members (`map->max_entries`, not the
    /// rounded allocation: kernel 6.18 reports 352 for 5 entries of 8 bytes with masking).
    fn mem_usage(&self, mmapable: bool) -> u64 {
        let values = self.max_entries as u64 * self.elem_size as u64;
        if mmapable {
            page_align(BPF_ARRAY_HEADER_SIZE) + page_align(values)
        } else {
            BPF_ARRAY_HEADER_SIZE + values
        }
    }
}

/// The array index a key holds (keys are `u32` in host order).
#[inline]
fn key_index(key: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(key.get(..4)?.try_into().ok()?))
}

/// `bpf_map_area_alloc`'s size rule: vmalloc refuses a request of more pages than the
/// machine has RAM (kernel 6.18 on a 23 GiB machine: a 16 GiB ARRAY is created, a 32 GiB
/// one fails with ENOMEM). Returns the size as `usize`.
fn area_size(size: u64) -> Result<usize> {
    // SAFETY: sysconf has no preconditions; it only reads system information.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    if pages > 0 && size / PAGE_SIZE > pages as u64 {
        return Err(Errno::ENOMEM);
    }
    usize::try_from(size).map_err(|_| Errno::ENOMEM)
}

/// Zeroed value memory of `size` bytes (at least one) for a map whose kernel allocation,
/// header included, is `kernel_size` bytes.
fn area_alloc(kernel_size: u64, size: u64, align: usize) -> Result<Slab> {
    area_size(kernel_size)?;
    Slab::new_zeroed(area_size(size)?, align)
}

/// A vector of `n` slots built by `f`, or `ENOMEM` if the allocation fails (never aborts).
fn slot_vec<T>(n: u64, f: impl FnMut() -> T) -> Result<Box<[T]>> {
    let n = usize::try_from(n).map_err(|_| Errno::ENOMEM)?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
    v.extend(core::iter::repeat_with(f).take(n));
    Ok(v.into_boxed_slice())
}

/// `bpf_obj_free_fields`, as far as value memory shows it: the fields that own something
/// (timer, workqueue, task_work, kptrs, list and rbtree roots) are released, which leaves
/// them zero. Locks, refcounts and nodes are left alone, as the kernel does.
///
/// # Safety
/// `value` must be valid for writes of the record's extent and 8-byte aligned.
unsafe fn obj_free_fields(rec: Option<&BtfRecord>, value: *mut u8) {
    let Some(rec) = rec else { return };
    for f in rec.fields() {
        let owning = matches!(
            f.kind,
            BtfFieldKind::Timer
                | BtfFieldKind::Workqueue
                | BtfFieldKind::TaskWork
                | BtfFieldKind::Kptr { .. }
                | BtfFieldKind::ListHead { .. }
                | BtfFieldKind::RbRoot { .. }
        );
        if owning {
            // SAFETY: the field lies inside the value (BtfRecord invariant); the caller
            // guarantees the value is writable.
            unsafe {
                crate::storage::zero_value(value.add(f.offset as usize), f.kind.size() as usize)
            };
        }
    }
}

/// Whether the record has a field `free_internal_structs` resets.
fn has_internal_structs(rec: Option<&BtfRecord>) -> bool {
    rec.is_some_and(|r| {
        r.has(|k| {
            matches!(
                k,
                BtfFieldKind::Timer | BtfFieldKind::Workqueue | BtfFieldKind::TaskWork
            )
        })
    })
}

/// The hook `array_map_free_internal_structs` runs per value when the last user reference
/// is gone: cancels and frees the value's timer, workqueue and task_work
/// (`bpf_obj_free_timer`, `bpf_obj_free_workqueue`, `bpf_obj_free_task_work`).
///
/// bpfnest has no timer engine yet, so cancelling is resetting the field to zero, which is
/// what a program then observes (an uninitialised timer). The execution engine will replace
/// this with real cancellation; other special fields are deliberately left alone.
///
/// # Safety
/// As [`obj_free_fields`].
unsafe fn free_internal_structs(rec: &BtfRecord, value: *mut u8) {
    for f in rec.fields() {
        if matches!(
            f.kind,
            BtfFieldKind::Timer | BtfFieldKind::Workqueue | BtfFieldKind::TaskWork
        ) {
            // SAFETY: the field lies inside the value; the caller guarantees it is writable.
            unsafe {
                crate::storage::zero_value(value.add(f.offset as usize), f.kind.size() as usize)
            };
        }
    }
}

/// `array_map_get_next_key`: a missing or out-of-range key restarts at 0; the last index
/// ends the walk with `ENOENT`. Slots are never "absent" (also for fd arrays).
/// Context: syscall.
fn get_next_key(geom: &ArrayGeom, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
    let index = match key {
        Some(k) => key_index(k).ok_or(Errno::EINVAL)?,
        None => u32::MAX,
    };
    let next = next_key.get_mut(..4).ok_or(Errno::EINVAL)?;
    if index >= geom.max_entries {
        next.copy_from_slice(&0u32.to_ne_bytes());
        return Ok(());
    }
    if index == geom.max_entries - 1 {
        return Err(Errno::ENOENT);
    }
    next.copy_from_slice(&(index + 1).to_ne_bytes());
    Ok(())
}

/// `bpf_map_flags_access_ok`: a map cannot be both read-only and write-only for programs.
fn flags_access_ok(flags: u32) -> bool {
    flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
}

/// `array_map_alloc_check`, in the kernel's order. Context: syscall (map create).
///
/// kernel 6.18: `EINVAL` for zero entries, a key other than 4 bytes, a zero value, a flag
/// outside [`ARRAY_CREATE_FLAG_MASK`], RDONLY_PROG with WRONLY_PROG, a NUMA node on a per-CPU
/// array; `EINVAL` for MMAPABLE/INNER_MAP on anything but ARRAY and PRESERVE_ELEMS on anything
/// but PERF_EVENT_ARRAY; `E2BIG` for `value_size > INT_MAX` and for a per-CPU value above
/// [`PCPU_MIN_UNIT_SIZE`].
pub(crate) fn array_map_alloc_check(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<()> {
    let percpu = attr.map_type == BPF_MAP_TYPE_PERCPU_ARRAY;
    // bpf_map_attr_numa_node: the node counts only with BPF_F_NUMA_NODE.
    let numa_node = if attr.map_flags & BPF_F_NUMA_NODE != 0 {
        attr.numa_node
    } else {
        NUMA_NO_NODE
    };
    if attr.max_entries == 0
        || attr.key_size != 4
        || attr.value_size == 0
        || attr.map_flags & !ARRAY_CREATE_FLAG_MASK != 0
        || !flags_access_ok(attr.map_flags)
        || (percpu && numa_node != NUMA_NO_NODE)
    {
        return Err(Errno::EINVAL);
    }
    if attr.map_type != BPF_MAP_TYPE_ARRAY
        && attr.map_flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP) != 0
    {
        return Err(Errno::EINVAL);
    }
    if attr.map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY && attr.map_flags & BPF_F_PRESERVE_ELEMS != 0
    {
        return Err(Errno::EINVAL);
    }
    // Avoids overflow in round_up(value_size, 8).
    if attr.value_size as u64 > INT_MAX {
        return Err(Errno::E2BIG);
    }
    if percpu && round_up8(attr.value_size as u64) > PCPU_MIN_UNIT_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

/// `fd_array_map_alloc_check` (PROG_ARRAY, ARRAY_OF_MAPS): the value is a handle number, and
/// program access flags are refused, before the generic array check.
pub(crate) fn fd_array_map_alloc_check(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<()> {
    if attr.value_size != 4 {
        return Err(Errno::EINVAL);
    }
    if attr.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != 0 {
        return Err(Errno::EINVAL);
    }
    array_map_alloc_check(attr, ctx)
}

/// `array_map_check_btf` (ARRAY, PERCPU_ARRAY): a key-less BTF description is allowed only
/// for the one-entry ARRAY holding a `DATASEC` (global data); otherwise the key must be a
/// 32-bit integer.
pub(crate) fn array_map_check_btf(attr: &MapAttr, key: BtfKind, value: BtfKind) -> Result<()> {
    if key == BtfKind::Void {
        if attr.map_type != BPF_MAP_TYPE_ARRAY || attr.max_entries != 1 {
            return Err(Errno::EINVAL);
        }
        if value != BtfKind::Datasec {
            return Err(Errno::EINVAL);
        }
        return Ok(());
    }
    if key != BtfKind::Int32 {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `map_check_no_btf` (ARRAY_OF_MAPS): outer maps take no BTF description.
pub(crate) fn map_check_no_btf(_attr: &MapAttr, _key: BtfKind, _value: BtfKind) -> Result<()> {
    Err(Errno::ENOTSUPP)
}

/// `array_map_meta_equal`: the generic test, plus equal `max_entries` unless the template
/// was created with `BPF_F_INNER_MAP` (then the candidate has it too: flags are compared).
///
/// PERCPU_ARRAY's table uses the generic `bpf_map_meta_equal` instead, which is why a
/// per-CPU array of another size is accepted (kernel 6.18, spec §1.5).
pub fn array_map_meta_equal(meta: &MapMeta, map: &BpfMap) -> bool {
    if !meta_equal(meta, map) {
        return false;
    }
    meta.map_flags & BPF_F_INNER_MAP != 0 || meta.max_entries == map.max_entries()
}

/// `array_map_ops`: BPF_MAP_TYPE_ARRAY.
pub static ARRAY_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_ARRAY,
    alloc_check: Some(array_map_alloc_check),
    alloc: array::array_map_alloc,
    meta_equal: Some(array_map_meta_equal),
    check_btf: Some(array_map_check_btf),
    unprivileged: true,
};

/// `percpu_array_map_ops`: BPF_MAP_TYPE_PERCPU_ARRAY.
pub static PERCPU_ARRAY_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
    alloc_check: Some(array_map_alloc_check),
    alloc: percpu::percpu_array_map_alloc,
    // The generic test: max_entries is not compared (see `array_map_meta_equal`).
    meta_equal: Some(meta_equal),
    check_btf: Some(array_map_check_btf),
    unprivileged: true,
};

/// `prog_array_map_ops`: BPF_MAP_TYPE_PROG_ARRAY. No `map_meta_equal` (the owner binding is
/// dynamic, so it can never be a template: ENOTSUPP) and no `map_check_btf`.
pub static PROG_ARRAY_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_PROG_ARRAY,
    alloc_check: Some(fd_array_map_alloc_check),
    alloc: prog_array::prog_array_map_alloc,
    meta_equal: None,
    check_btf: None,
    unprivileged: true,
};

/// `array_of_maps_map_ops`: BPF_MAP_TYPE_ARRAY_OF_MAPS. No `map_meta_equal`: an outer map is
/// never a template (`bpf_map_meta_alloc` refuses it with EINVAL first, as it has a meta).
pub static ARRAY_OF_MAPS_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
    alloc_check: Some(fd_array_map_alloc_check),
    alloc: of_maps::array_of_map_alloc,
    meta_equal: None,
    check_btf: Some(map_check_no_btf),
    unprivileged: true,
};

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;
    use crate::object::HandleTable;
    use crate::rcu::Rcu;

    fn check(attr: &MapAttr) -> Result<()> {
        let rcu = Rcu::new();
        let files = HandleTable::new();
        let ctx = AllocCtx {
            nr_cpus: 4,
            caps: Caps::ROOT,
            rcu: &rcu,
            files: &files,
        };
        let ops = crate::registry::find(attr.map_type).expect("array family type");
        (ops.alloc_check.expect("array family has alloc_check"))(attr, &ctx)
    }

    #[test]
    fn alloc_check_order_and_errnos() {
        let a = |t, v| MapAttr::new(t, 4, v, 4);
        assert_eq!(check(&a(BPF_MAP_TYPE_ARRAY, 8)), Ok(()));
        // Zero entries with a bad flag: one EINVAL either way, from the first condition.
        assert_eq!(
            check(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 0).flags(BPF_F_NO_PREALLOC)),
            Err(Errno::EINVAL)
        );
        // value_size == 0 wins over the size limit.
        assert_eq!(
            check(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 8, 0, 4)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check(&a(BPF_MAP_TYPE_ARRAY, 0x8000_0000)),
            Err(Errno::E2BIG)
        );
        assert_eq!(check(&a(BPF_MAP_TYPE_ARRAY, 0x7fff_ffff)), Ok(()));
        // A bad flag is reported before the size limit.
        assert_eq!(
            check(&a(BPF_MAP_TYPE_ARRAY, 0x8000_0000).flags(BPF_F_ZERO_SEED)),
            Err(Errno::EINVAL)
        );
        assert_eq!(check(&a(BPF_MAP_TYPE_PERCPU_ARRAY, 32768)), Ok(()));
        assert_eq!(
            check(&a(BPF_MAP_TYPE_PERCPU_ARRAY, 32769)),
            Err(Errno::E2BIG)
        );
        // PRESERVE_ELEMS before the per-CPU size limit.
        assert_eq!(
            check(&a(BPF_MAP_TYPE_PERCPU_ARRAY, 32769).flags(BPF_F_PRESERVE_ELEMS)),
            Err(Errno::EINVAL)
        );
        // fd arrays: value size, then program flags, then the array check.
        assert_eq!(
            check(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 8, 8, 0)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check(&a(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4).flags(BPF_F_RDONLY_PROG)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check(&a(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4).flags(BPF_F_NUMA_NODE)),
            Ok(())
        );
    }

    #[test]
    fn geometry_rounds_only_without_bypass() {
        let attr = MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 5, 5);
        let g = ArrayGeom::new(&attr, Caps::ROOT).unwrap();
        assert_eq!(
            (g.elem_size, g.index_mask, g.alloc_entries, g.inline_mask()),
            (8, 7, 5, u32::MAX)
        );
        let bpf_only = Caps {
            bpf: true,
            ..Caps::NONE
        };
        let g = ArrayGeom::new(&attr, bpf_only).unwrap();
        assert_eq!((g.alloc_entries, g.inline_mask()), (8, 7));
        assert_eq!(g.slot(4), Some(4));
        assert_eq!(g.slot(5), None);
        assert_eq!(g.mem_usage(false), BPF_ARRAY_HEADER_SIZE + 40);
        let huge = MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 0x8000_0001);
        assert_eq!(ArrayGeom::new(&huge, bpf_only).unwrap_err(), Errno::E2BIG);
        let pow2 = MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 1, 0x8000_0000);
        assert_eq!(
            ArrayGeom::new(&pow2, bpf_only).unwrap().alloc_entries,
            0x8000_0000
        );
        assert_eq!(
            ArrayGeom::new(&huge, Caps::ROOT).unwrap().alloc_entries,
            0x8000_0001
        );
    }

    #[test]
    fn next_key_walk() {
        let g = ArrayGeom::new(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 3), Caps::ROOT).unwrap();
        let mut n = [9u8; 4];
        assert_eq!(get_next_key(&g, None, &mut n), Ok(()));
        assert_eq!(n, 0u32.to_ne_bytes());
        assert_eq!(get_next_key(&g, Some(&1u32.to_ne_bytes()), &mut n), Ok(()));
        assert_eq!(n, 2u32.to_ne_bytes());
        assert_eq!(
            get_next_key(&g, Some(&2u32.to_ne_bytes()), &mut n),
            Err(Errno::ENOENT)
        );
        assert_eq!(get_next_key(&g, Some(&7u32.to_ne_bytes()), &mut n), Ok(()));
        assert_eq!(n, 0u32.to_ne_bytes());
        assert_eq!(get_next_key(&g, Some(&[1, 2]), &mut n), Err(Errno::EINVAL));
    }

    #[test]
    fn check_btf_rules() {
        let one = MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
        assert_eq!(
            array_map_check_btf(&one, BtfKind::Void, BtfKind::Datasec),
            Ok(())
        );
        assert_eq!(
            array_map_check_btf(&one, BtfKind::Void, BtfKind::Struct),
            Err(Errno::EINVAL)
        );
        let two = MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2);
        assert_eq!(
            array_map_check_btf(&two, BtfKind::Void, BtfKind::Datasec),
            Err(Errno::EINVAL)
        );
        let pcpu = MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1);
        assert_eq!(
            array_map_check_btf(&pcpu, BtfKind::Void, BtfKind::Datasec),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            array_map_check_btf(&two, BtfKind::Int, BtfKind::Struct),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            array_map_check_btf(&two, BtfKind::Int32, BtfKind::Int),
            Ok(())
        );
        assert_eq!(
            map_check_no_btf(&two, BtfKind::Int32, BtfKind::Int),
            Err(Errno::ENOTSUPP)
        );
    }

    #[test]
    fn area_rule_refuses_more_than_ram() {
        assert_eq!(area_size(1 << 62).unwrap_err(), Errno::ENOMEM);
        assert_eq!(area_size(4096), Ok(4096));
    }
}
