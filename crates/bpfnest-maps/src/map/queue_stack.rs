// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_QUEUE` and `BPF_MAP_TYPE_STACK`. Mirrors `kernel/bpf/queue_stack_maps.c`
//! (v6.18).
//!
//! # Layout
//! One ring of `size = max_entries + 1` value slots; one slot always stays free so that
//! `head == tail` means empty and `head + 1 == tail` (mod `size`) means full:
//!
//! ```text
//!   elements: [ slot 0 | slot 1 | ... | slot size-1 ]   (value_size bytes each)
//!                 ^tail (oldest)        ^head (next push)
//!   queue pop/peek: slot tail, then tail += 1
//!   stack pop/peek: slot head - 1, then head -= 1
//!   push:           slot head, then head += 1; when full with BPF_EXIST, tail += 1 first
//!                   (the oldest element is overwritten, for queues and stacks alike)
//! ```
//!
//! # Locking
//! `head`, `tail` and every slot are only touched with the ring lock held. No pointer
//! into a slot ever escapes (`lookup_elem` returns NULL), so slots need no RCU protection and
//! the element memory is freed with the map.
//!
//! The kernel's lock is a resilient queued spinlock (`raw_res_spin_lock_irqsave`, 6.15+): it
//! spins, but gives up on a detected deadlock or after `RES_DEF_TIMEOUT` (a quarter second),
//! and then push, pop and peek fail with `EBUSY`, from a program and from the syscall alike.
//! Here the lock is a mutex acquired with the same timeout; a deadlock (a thread re-entering
//! while it holds the lock) cannot happen, because nothing runs under the lock but copies.
//!
//! # Deviations
//! * `max_entries + 1` slots are allocated with the process allocator; a huge ring the kernel
//!   refuses with `ENOMEM` may be granted lazily here (overcommit), and vice versa.
//! * [`MapOps::peek_elem`]/[`MapOps::pop_elem`] zero the caller's buffer on `ENOENT`, as the
//!   kernel does for a program's buffer. The syscall-side variants (`lookup_elem_sys`,
//!   `lookup_and_delete_elem`) use a scratch buffer instead and leave the caller's untouched,
//!   as bpf(2) does (kernel 6.18: a failed peek/pop does not write the user buffer).

use core::ptr::NonNull;
use core::time::Duration;

use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::map::map_in_map;
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::registry::{AllocCtx, MapTypeOps};
use crate::storage::{copy_from_value, copy_to_value, Slab};
use crate::uapi::*;

/// `BPF_F_ACCESS_MASK` (`kernel/bpf/syscall.c` side of `include/linux/bpf.h`).
const BPF_F_ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

/// `QUEUE_STACK_CREATE_FLAG_MASK`: the only flags a queue or stack accepts.
pub const QUEUE_STACK_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK;

/// `sizeof(struct bpf_queue_stack)` on x86_64 (kernel 6.18: fdinfo `memlock` of a queue with
/// `max_entries = 3, value_size = 4` is 328 = 312 + 4 * 4).
const SIZEOF_BPF_QUEUE_STACK: u64 = 312;

/// `RES_DEF_TIMEOUT`: how long a resilient spinlock waits before giving up (`NSEC_PER_SEC / 4`).
const RES_DEF_TIMEOUT: Duration = Duration::from_millis(250);

/// `bpf_map_flags_access_ok`: a program may not be denied both reads and writes.
fn map_flags_access_ok(flags: u32) -> bool {
    flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
}

/// Ring positions (`qs->head`, `qs->tail`), guarded by the map's lock.
#[derive(Debug, Default)]
struct Ring {
    /// Slot the next push writes. Always `< size`.
    head: u32,
    /// Oldest element (queue side). Always `< size`; `head == tail` means empty.
    tail: u32,
}

/// State shared by both ops tables (`struct bpf_queue_stack`).
struct QueueStack {
    /// The lock of every operation and the positions it guards.
    ring: parking_lot::Mutex<Ring>,
    /// `max_entries + 1`: one slot stays unused to tell full from empty.
    size: u32,
    /// Bytes per slot (`map->value_size`, at most `KMALLOC_MAX_SIZE`).
    value_size: usize,
    /// `size * value_size` bytes; slot `i` starts at `i * value_size`. Read and written only
    /// with `ring` held.
    elements: Slab,
}

impl core::fmt::Debug for QueueStack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueueStack")
            .field("size", &self.size)
            .field("value_size", &self.value_size)
            .finish_non_exhaustive()
    }
}

/// `queue_stack_map_alloc_check`: pure attribute checks, in the kernel's order.
/// Context: syscall.
fn alloc_check(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<()> {
    if attr.max_entries == 0
        || attr.key_size != 0
        || attr.value_size == 0
        || attr.map_flags & !QUEUE_STACK_CREATE_FLAG_MASK != 0
        || !map_flags_access_ok(attr.map_flags)
    {
        return Err(Errno::EINVAL);
    }
    // User space could not read back a value this big.
    if attr.value_size as u64 > KMALLOC_MAX_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

impl QueueStack {
    /// `queue_stack_map_alloc`. Assumes [`alloc_check`] passed. Context: syscall.
    fn alloc(attr: &MapAttr) -> Result<QueueStack> {
        // Deviation: with max_entries == u32::MAX the kernel's `u32 size` wraps to 0 and, if
        // its 2^32 * value_size allocation succeeds, the map is at once empty and full. Here
        // that ring is refused like any other allocation failure.
        let size = attr.max_entries.checked_add(1).ok_or(Errno::ENOMEM)?;
        // At most 2^32 slots of at most 2^22 bytes: the product fits in a u64.
        let bytes = size as u64 * attr.value_size as u64;
        let bytes = usize::try_from(bytes).map_err(|_| Errno::ENOMEM)?;
        let elements = Slab::new_zeroed(bytes, 8)?;
        Ok(QueueStack {
            ring: parking_lot::Mutex::new(Ring::default()),
            size,
            value_size: attr.value_size as usize,
            elements,
        })
    }

    /// `raw_res_spin_lock_irqsave`: `EBUSY` when the lock cannot be had in time.
    fn lock(&self) -> Result<parking_lot::MutexGuard<'_, Ring>> {
        self.ring.try_lock_for(RES_DEF_TIMEOUT).ok_or(Errno::EBUSY)
    }

    fn is_empty(r: &Ring) -> bool {
        r.head == r.tail
    }

    fn is_full(&self, r: &Ring) -> bool {
        let mut head = r.head + 1;
        if head >= self.size {
            head = 0;
        }
        head == r.tail
    }

    fn slot(&self, index: u32) -> *mut u8 {
        debug_assert!(index < self.size);
        // SAFETY: index < size, so the offset is inside `elements` (size * value_size bytes).
        unsafe { self.elements.as_ptr().add(index as usize * self.value_size) }
    }

    /// Copies slot `index` into `value` (exactly `value_size` bytes). Caller holds the lock.
    fn read_slot(&self, _ring: &Ring, index: u32, value: &mut [u8]) {
        // SAFETY: the slot holds value_size bytes inside `elements`; the lock (witnessed by
        // `_ring`) excludes every writer.
        unsafe { copy_from_value(&mut value[..self.value_size], self.slot(index)) };
    }

    /// `__queue_map_get`: the oldest element, removed if `delete`. Context: both.
    fn queue_get(&self, value: &mut [u8], delete: bool) -> Result<()> {
        let value = value.get_mut(..self.value_size).ok_or(Errno::EINVAL)?;
        let mut r = self.lock()?;
        if Self::is_empty(&r) {
            value.fill(0);
            return Err(Errno::ENOENT);
        }
        self.read_slot(&r, r.tail, value);
        if delete {
            r.tail += 1;
            if r.tail >= self.size {
                r.tail = 0;
            }
        }
        Ok(())
    }

    /// `__stack_map_get`: the newest element, removed if `delete`. Context: both.
    fn stack_get(&self, value: &mut [u8], delete: bool) -> Result<()> {
        let value = value.get_mut(..self.value_size).ok_or(Errno::EINVAL)?;
        let mut r = self.lock()?;
        if Self::is_empty(&r) {
            value.fill(0);
            return Err(Errno::ENOENT);
        }
        let index = if r.head == 0 {
            self.size - 1
        } else {
            r.head - 1
        };
        self.read_slot(&r, index, value);
        if delete {
            r.head = index;
        }
        Ok(())
    }

    /// `queue_stack_map_push_elem`. `BPF_EXIST` makes room by dropping the oldest element.
    /// Context: both.
    fn push_elem(&self, value: &[u8], flags: u64) -> Result<()> {
        let replace = flags & BPF_EXIST != 0;
        if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let value = value.get(..self.value_size).ok_or(Errno::EINVAL)?;
        let mut r = self.lock()?;
        if self.is_full(&r) {
            if !replace {
                return Err(Errno::E2BIG);
            }
            r.tail += 1;
            if r.tail >= self.size {
                r.tail = 0;
            }
        }
        // SAFETY: slot `head` lies inside `elements`; the lock held through `r` excludes every
        // other reader and writer of the ring.
        unsafe { copy_to_value(self.slot(r.head), value) };
        r.head += 1;
        if r.head >= self.size {
            r.head = 0;
        }
        Ok(())
    }

    /// `queue_stack_map_mem_usage`.
    fn mem_usage(&self, map: &BpfMap) -> u64 {
        SIZEOF_BPF_QUEUE_STACK + (map.max_entries() as u64 + 1) * map.value_size() as u64
    }
}

/// Runs a get into a scratch buffer and copies it out only on success: bpf(2) never writes
/// the user's buffer when the operation fails.
fn get_sys(
    value: &mut [u8],
    value_size: usize,
    get: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<()> {
    let out = value.get_mut(..value_size).ok_or(Errno::EINVAL)?;
    let mut scratch = vec![0u8; value_size];
    get(&mut scratch)?;
    out.copy_from_slice(&scratch);
    Ok(())
}

/// The `BPF_MAP_TYPE_QUEUE` ops table (`queue_map_ops`).
#[derive(Debug)]
pub struct QueueMap(QueueStack);

/// The `BPF_MAP_TYPE_STACK` ops table (`stack_map_ops`).
#[derive(Debug)]
pub struct StackMap(QueueStack);

fn queue_alloc(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(QueueMap(QueueStack::alloc(attr)?)))
}

fn stack_alloc(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(StackMap(QueueStack::alloc(attr)?)))
}

/// Registry row of `BPF_MAP_TYPE_QUEUE`. Needs CAP_BPF (`map_create`'s privileged list).
pub static QUEUE_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_QUEUE,
    alloc_check: Some(alloc_check),
    alloc: queue_alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: false,
};

/// Registry row of `BPF_MAP_TYPE_STACK`. Needs CAP_BPF (`map_create`'s privileged list).
pub static STACK_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_STACK,
    alloc_check: Some(alloc_check),
    alloc: stack_alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: false,
};

/// The entry points both tables share: stubs and the batch refusals.
macro_rules! queue_stack_common_ops {
    () => {
        /// `queue_stack_map_lookup_elem`: always NULL (programs use peek). Context: program.
        fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Option<NonNull<u8>> {
            None
        }

        /// No `map_lookup_percpu_elem`: the verifier refuses the helper. Context: program.
        fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
            None
        }

        /// `queue_stack_map_update_elem`: `EINVAL` (user space pushes with a NULL key instead).
        /// Context: both.
        fn update_elem(
            &self,
            _map: &BpfMap,
            _ctx: &OpCtx<'_>,
            _key: &[u8],
            _value: &[u8],
            _flags: u64,
        ) -> Result<()> {
            Err(Errno::EINVAL)
        }

        /// `queue_stack_map_delete_elem`: `EINVAL`. Context: both.
        fn delete_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Result<()> {
            Err(Errno::EINVAL)
        }

        /// `queue_stack_map_get_next_key`: `EINVAL`. Context: syscall.
        fn get_next_key(
            &self,
            _map: &BpfMap,
            _key: Option<&[u8]>,
            _next_key: &mut [u8],
        ) -> Result<()> {
            Err(Errno::EINVAL)
        }

        /// `queue_stack_map_push_elem`. Context: both.
        fn push_elem(&self, _map: &BpfMap, value: &[u8], flags: u64) -> Result<()> {
            self.0.push_elem(value, flags)
        }

        /// No `map_lookup_batch`: `BPF_DO_BATCH` returns `ENOTSUPP`. Context: syscall.
        fn lookup_batch(
            &self,
            _map: &BpfMap,
            _ctx: &OpCtx<'_>,
            _args: &mut BatchArgs<'_>,
        ) -> Result<()> {
            Err(Errno::ENOTSUPP)
        }

        /// No `map_lookup_and_delete_batch`: `ENOTSUPP`. Context: syscall.
        fn lookup_and_delete_batch(
            &self,
            _map: &BpfMap,
            _ctx: &OpCtx<'_>,
            _args: &mut BatchArgs<'_>,
        ) -> Result<()> {
            Err(Errno::ENOTSUPP)
        }

        /// No `map_update_batch`: `ENOTSUPP`. Context: syscall.
        fn update_batch(
            &self,
            _map: &BpfMap,
            _ctx: &OpCtx<'_>,
            _args: &mut BatchArgs<'_>,
        ) -> Result<()> {
            Err(Errno::ENOTSUPP)
        }

        /// No `map_delete_batch`: `ENOTSUPP`. Context: syscall.
        fn delete_batch(
            &self,
            _map: &BpfMap,
            _ctx: &OpCtx<'_>,
            _args: &mut BatchArgs<'_>,
        ) -> Result<()> {
            Err(Errno::ENOTSUPP)
        }

        /// No `map_for_each_callback`: the verifier refuses `bpf_for_each_map_elem` with
        /// `ENOTSUPP` ("callback function not allowed for map"). Context: program.
        fn for_each_callback(
            &self,
            _map: &BpfMap,
            _ctx: &OpCtx<'_>,
            _f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
        ) -> Result<u32> {
            Err(Errno::ENOTSUPP)
        }

        /// No `map_mmap`: `bpf_map_mmap` returns `ENOTSUPP`. Context: syscall.
        fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
            Err(Errno::ENOTSUPP)
        }

        /// No `map_gen_lookup`.
        fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
            None
        }

        /// `queue_stack_map_mem_usage`.
        fn mem_usage(&self, map: &BpfMap) -> u64 {
            self.0.mem_usage(map)
        }
    };
}

impl MapOps for QueueMap {
    queue_stack_common_ops!();

    /// `bpf_map_copy_value` for a queue: a peek. Context: syscall.
    fn lookup_elem_sys(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if flags != 0 {
            // BPF_F_LOCK needs a spin lock, which a queue can never have.
            return Err(Errno::EINVAL);
        }
        get_sys(value, self.0.value_size, |v| self.0.queue_get(v, false))
    }

    /// `map_lookup_and_delete_elem` on a queue: `queue_map_pop_elem` with a NULL key.
    /// Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        get_sys(value, self.0.value_size, |v| self.0.queue_get(v, true))
    }

    /// `queue_map_pop_elem`. Context: both (zeroes `value` on `ENOENT`).
    fn pop_elem(&self, _map: &BpfMap, value: &mut [u8]) -> Result<()> {
        self.0.queue_get(value, true)
    }

    /// `queue_map_peek_elem`. Context: both (zeroes `value` on `ENOENT`).
    fn peek_elem(&self, _map: &BpfMap, value: &mut [u8]) -> Result<()> {
        self.0.queue_get(value, false)
    }
}

impl MapOps for StackMap {
    queue_stack_common_ops!();

    /// `bpf_map_copy_value` for a stack: a peek. Context: syscall.
    fn lookup_elem_sys(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        get_sys(value, self.0.value_size, |v| self.0.stack_get(v, false))
    }

    /// `map_lookup_and_delete_elem` on a stack: `stack_map_pop_elem` with a NULL key.
    /// Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if flags != 0 {
            return Err(Errno::EINVAL);
        }
        get_sys(value, self.0.value_size, |v| self.0.stack_get(v, true))
    }

    /// `stack_map_pop_elem`. Context: both (zeroes `value` on `ENOENT`).
    fn pop_elem(&self, _map: &BpfMap, value: &mut [u8]) -> Result<()> {
        self.0.stack_get(value, true)
    }

    /// `stack_map_peek_elem`. Context: both (zeroes `value` on `ENOENT`).
    fn peek_elem(&self, _map: &BpfMap, value: &mut [u8]) -> Result<()> {
        self.0.stack_get(value, false)
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    fn qs(max_entries: u32, value_size: u32) -> QueueStack {
        let attr = MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, value_size, max_entries);
        QueueStack::alloc(&attr).expect("small ring allocates")
    }

    #[test]
    fn ring_wraps_in_both_directions() {
        let q = qs(3, 4);
        let mut v = [0u8; 4];
        // Walk head and tail around the 4-slot ring several times.
        for round in 0u32..10 {
            for i in 0..3u32 {
                q.push_elem(&(round * 10 + i).to_ne_bytes(), BPF_ANY)
                    .unwrap();
            }
            assert_eq!(q.push_elem(&[0; 4], BPF_ANY), Err(Errno::E2BIG));
            for i in 0..3u32 {
                q.queue_get(&mut v, true).unwrap();
                assert_eq!(u32::from_ne_bytes(v), round * 10 + i);
            }
            assert_eq!(q.queue_get(&mut v, true), Err(Errno::ENOENT));
        }
        let s = qs(3, 4);
        for round in 0u32..10 {
            for i in 0..3u32 {
                s.push_elem(&(round * 10 + i).to_ne_bytes(), BPF_ANY)
                    .unwrap();
            }
            s.stack_get(&mut v, true).unwrap();
            assert_eq!(u32::from_ne_bytes(v), round * 10 + 2);
            s.push_elem(&7u32.to_ne_bytes(), BPF_ANY).unwrap();
            for want in [7, round * 10 + 1, round * 10] {
                s.stack_get(&mut v, true).unwrap();
                assert_eq!(u32::from_ne_bytes(v), want);
            }
        }
    }

    #[test]
    fn empty_get_zeroes_buffer() {
        let q = qs(1, 4);
        let mut v = [0xaa; 4];
        assert_eq!(q.queue_get(&mut v, false), Err(Errno::ENOENT));
        assert_eq!(v, [0; 4]);
        let mut v = [0xaa; 4];
        assert_eq!(q.stack_get(&mut v, true), Err(Errno::ENOENT));
        assert_eq!(v, [0; 4]);
    }

    #[test]
    fn contended_lock_is_ebusy() {
        let q = qs(1, 4);
        let _held = q.ring.lock();
        let mut v = [0u8; 4];
        assert_eq!(q.push_elem(&[1; 4], BPF_ANY), Err(Errno::EBUSY));
        assert_eq!(q.queue_get(&mut v, false), Err(Errno::EBUSY));
    }
}
