// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_RINGBUF`, the kernel-producer ring buffer. Mirrors `kernel/bpf/ringbuf.c`
//! (v6.18); `BPF_MAP_TYPE_USER_RINGBUF` is not implemented.
//!
//! # Layout
//! As in the kernel, the ring is one block of pages whose data pages are mapped twice in a
//! row, so that a record that wraps past the end of the ring is still contiguous in memory:
//!
//! ```text
//!  kernel view (what programs and the producer side use):
//!  +--------+----------+----------+-----------------------+-----------------------+
//!  | page 0 | consumer | producer |  data (max_entries)   |  data again (alias)   |
//!  | private| page     | page     |  pages 3 ..           |  same physical pages  |
//!  +--------+----------+----------+-----------------------+-----------------------+
//!  user view (`mmap`): consumer page read-write, then producer page and data x2 read-only.
//! ```
//!
//! * Page 0 is the kernel's private part of `struct bpf_ringbuf` (waitq, lock, ...). Here it
//!   holds a pointer back to the `Ring` state, so that [`ringbuf_submit`] can find the ring
//!   from a record alone, exactly as `bpf_ringbuf_restore_from_rec` does, and the wakeup
//!   counter.
//! * The consumer page starts with `consumer_pos`; the producer page with `producer_pos` and
//!   then `pending_pos` (the oldest record not yet committed, as far as the last reserve saw).
//! * Positions are free-running byte counts; a position's offset in the data is `pos & mask`.
//! * Each record is an 8-byte header `{ u32 len; u32 pg_off; }` and `len` bytes of sample,
//!   padded to 8. `len` carries `BPF_RINGBUF_BUSY_BIT` while reserved and
//!   `BPF_RINGBUF_DISCARD_BIT` once discarded; `pg_off` is the header's page offset from
//!   page 0 (3 + the data page), which user space sees too.
//!
//! The memory is a `memfd` mapped twice (kernel view and user view), so the bytes user space
//! reads through `mmap` are the bytes programs wrote, and a user-space write outside the
//! consumer page faults as it would on Linux.
//!
//! # Protocol and ordering
//! * Reserve (producer lock held): skip committed records from `pending_pos`, refuse when the
//!   new record would put `producer_pos` more than `mask` bytes ahead of `consumer_pos` or of
//!   `pending_pos`, write the busy header, then publish `producer_pos` with Release (pairs with
//!   the consumer's Acquire load). Reservations are thus ordered by position.
//! * Commit (no lock): swap the header's `len` (AcqRel; its Release pairs with the consumer's
//!   Acquire load of `len`, publishing the sample bytes).
//! * Consume: read records in position order and stop at the first busy one, so records appear
//!   in reservation order even when committed out of order; store `consumer_pos` with Release
//!   (pairs with the Acquire load in reserve: the consumer is done reading before the space is
//!   reused).
//!
//! The producer lock is the kernel's resilient spinlock (`raw_res_spin_lock_irqsave`): a
//! reserve that cannot take it within `RES_DEF_TIMEOUT` (a quarter second) fails as if the
//! ring were full. Wakeups (`irq_work` → `wake_up_all`) are only counted: there is no epoll
//! here; [`RingBufConsumer`] polls, like `ring_buffer__consume`.
//!
//! # Deviations
//! * Dynptr helpers (`bpf_ringbuf_reserve_dynptr` and friends) are not provided.
//! * Memory comes from a `memfd`; a host whose page size is not 4096 cannot map the ring and
//!   gets `ENOMEM`. Pages are allocated on first touch, where the kernel allocates them all at
//!   creation.

use core::ops::ControlFlow;
use core::ptr::NonNull;
use core::time::Duration;

use crate::attr::MapAttr;
use crate::bpf_map::{BpfMap, MapRef};
use crate::errno::{Errno, Result};
use crate::map::map_in_map;
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::primitive::Ordering;
use crate::registry::{AllocCtx, MapTypeOps};
use crate::storage::{copy_from_value, copy_to_value};
use crate::uapi::*;

/// `RINGBUF_CREATE_FLAG_MASK`: a ring buffer accepts `BPF_F_NUMA_NODE` and nothing else (not
/// even `BPF_F_RDONLY`/`BPF_F_WRONLY`; kernel 6.18: every other bit up to 21 is `EINVAL`).
pub const RINGBUF_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE;

/// `RINGBUF_MAX_RECORD_SZ`: the largest sample a reserve accepts (`UINT_MAX / 4`; the top two
/// bits of `len` are the busy and discard bits).
pub const RINGBUF_MAX_RECORD_SZ: u64 = u32::MAX as u64 / 4;

/// `BPF_RINGBUF_BUSY_BIT`: the record is reserved but not yet committed.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// `BPF_RINGBUF_DISCARD_BIT`: the record was discarded; consumers skip it.
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`: size of the record header.
pub const BPF_RINGBUF_HDR_SZ: u32 = 8;

/// `BPF_RB_NO_WAKEUP`: commit without notifying the consumer.
pub const BPF_RB_NO_WAKEUP: u64 = 1 << 0;
/// `BPF_RB_FORCE_WAKEUP`: commit and notify the consumer unconditionally.
pub const BPF_RB_FORCE_WAKEUP: u64 = 1 << 1;

/// `bpf_ringbuf_query` flag: bytes between the consumer and producer positions.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_query` flag: size of the data area.
pub const BPF_RB_RING_SIZE: u64 = 1;
/// `bpf_ringbuf_query` flag: the consumer position.
pub const BPF_RB_CONS_POS: u64 = 2;
/// `bpf_ringbuf_query` flag: the producer position.
pub const BPF_RB_PROD_POS: u64 = 3;

const PAGE: usize = PAGE_SIZE as usize;

/// `RINGBUF_PGOFF`: pages of `struct bpf_ringbuf` before `consumer_pos` (kernel 6.18 x86_64:
/// 1, from fdinfo `memlock`).
const RINGBUF_PGOFF: usize = 1;
/// `RINGBUF_POS_PAGES`: the consumer and producer pages.
const RINGBUF_POS_PAGES: usize = 2;
/// `RINGBUF_NR_META_PAGES`.
const RINGBUF_NR_META_PAGES: usize = RINGBUF_PGOFF + RINGBUF_POS_PAGES;

/// `sizeof(struct bpf_ringbuf_map)` on x86_64 (kernel 6.18: a 4096-byte ring has `memlock`
/// 16728 = 304 + 4 pages + 5 page pointers).
const SIZEOF_BPF_RINGBUF_MAP: u64 = 304;

/// `RES_DEF_TIMEOUT` of the resilient spinlock.
const RES_DEF_TIMEOUT: Duration = Duration::from_millis(250);

/// Atomic words in the shared pages.
mod shm {
    use crate::primitive::Ordering;
    use core::sync::atomic::{AtomicU32, AtomicU64};

    /// A `u64` in a ring's shared pages.
    #[repr(transparent)]
    pub(super) struct Word64(AtomicU64);

    /// A `u32` in a ring's shared pages (the halves of a record header).
    #[repr(transparent)]
    pub(super) struct Word32(AtomicU32);

    impl Word64 {
        /// The word at `p`.
        ///
        /// # Safety
        /// `p` must be 8-aligned, inside a ring mapping that stays mapped for `'a`, and the
        /// word must only ever be accessed atomically.
        pub(super) unsafe fn at<'a>(p: *mut u8) -> &'a Word64 {
            // SAFETY: Word64 is a transparent AtomicU64, which has u64's layout; the caller
            // guarantees alignment, lifetime and atomic-only access.
            unsafe { &*p.cast::<Word64>() }
        }
        pub(super) fn load(&self, order: Ordering) -> u64 {
            self.0.load(order)
        }
        pub(super) fn store(&self, v: u64, order: Ordering) {
            self.0.store(v, order)
        }
        pub(super) fn fetch_add(&self, v: u64, order: Ordering) -> u64 {
            self.0.fetch_add(v, order)
        }
    }

    impl Word32 {
        /// The word at `p`.
        ///
        /// # Safety
        /// As [`Word64::at`], with 4-byte alignment.
        pub(super) unsafe fn at<'a>(p: *mut u8) -> &'a Word32 {
            // SAFETY: as in Word64::at.
            unsafe { &*p.cast::<Word32>() }
        }
        pub(super) fn load(&self, order: Ordering) -> u32 {
            self.0.load(order)
        }
        pub(super) fn store(&self, v: u32, order: Ordering) {
            self.0.store(v, order)
        }
        pub(super) fn swap(&self, v: u32, order: Ordering) -> u32 {
            self.0.swap(v, order)
        }
    }
}

/// The two mappings of one ring (`bpf_ringbuf_area_alloc`).
///
/// Invariant: `kbase` maps `(3 + 2 * nr_data_pages)` pages (page 0, consumer page, producer
/// page, data, data again) and `ubase` maps `(2 + 2 * nr_data_pages)` pages (consumer page
/// read-write, then producer page, data, data again read-only), both of one memfd, until drop.
struct RingArea {
    kbase: NonNull<u8>,
    klen: usize,
    ubase: NonNull<u8>,
    ulen: usize,
}

// SAFETY: the area is shared memory accessed only through atomics (positions, headers) or by
// the record protocol (sample bytes); the pointers themselves are immutable.
unsafe impl Send for RingArea {}
// SAFETY: as above.
unsafe impl Sync for RingArea {}

/// Closes a file descriptor when dropped.
struct OwnedFd(libc::c_int);

impl Drop for OwnedFd {
    fn drop(&mut self) {
        // SAFETY: the fd was opened by us and is closed once.
        unsafe { libc::close(self.0) };
    }
}

/// Reserves `len` bytes of address space with no access.
fn reserve_va(len: usize) -> Result<NonNull<u8>> {
    // SAFETY: an anonymous PROT_NONE mapping at an address of the kernel's choice touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Errno::ENOMEM);
    }
    NonNull::new(p.cast()).ok_or(Errno::ENOMEM)
}

/// Maps `len` bytes of `fd` at file offset `off` over `addr`, which lies in a reservation
/// made by [`reserve_va`] and owned by the caller.
///
/// # Safety
/// `addr..addr + len` must be inside a reservation the caller owns and nothing may reference
/// memory there yet.
unsafe fn map_fixed(
    addr: *mut u8,
    len: usize,
    prot: libc::c_int,
    fd: &OwnedFd,
    off: usize,
) -> Result<()> {
    let off = libc::off_t::try_from(off).map_err(|_| Errno::ENOMEM)?;
    // SAFETY: the caller owns the range; MAP_FIXED replaces only its own reservation.
    let p = unsafe {
        libc::mmap(
            addr.cast(),
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_FIXED,
            fd.0,
            off,
        )
    };
    if p == libc::MAP_FAILED {
        Err(Errno::ENOMEM)
    } else {
        Ok(())
    }
}

impl RingArea {
    /// Maps a ring with `data_sz` bytes of data (a power-of-two multiple of the page size).
    fn new(data_sz: usize) -> Result<RingArea> {
        // SAFETY: sysconf has no preconditions.
        if unsafe { libc::sysconf(libc::_SC_PAGESIZE) } != PAGE as libc::c_long {
            return Err(Errno::ENOMEM);
        }
        let nr_data = data_sz / PAGE;
        let file_len = (RINGBUF_NR_META_PAGES + nr_data)
            .checked_mul(PAGE)
            .ok_or(Errno::ENOMEM)?;
        let klen = file_len.checked_add(data_sz).ok_or(Errno::ENOMEM)?;
        let ulen = klen - RINGBUF_PGOFF * PAGE;
        let name = c"bpfnest_ringbuf";
        // SAFETY: name is a NUL-terminated string.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Errno::ENOMEM);
        }
        let fd = OwnedFd(fd);
        let len = libc::off_t::try_from(file_len).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: fd is a memfd we own; the new size is zero-filled on first touch.
        if unsafe { libc::ftruncate(fd.0, len) } != 0 {
            return Err(Errno::ENOMEM);
        }
        let kbase = reserve_va(klen)?;
        let ubase = match reserve_va(ulen) {
            Ok(u) => u,
            Err(e) => {
                // SAFETY: kbase is our reservation of klen bytes, referenced by nothing.
                unsafe { libc::munmap(kbase.as_ptr().cast(), klen) };
                return Err(e);
            }
        };
        let area = RingArea {
            kbase,
            klen,
            ubase,
            ulen,
        };
        // From here on, dropping `area` unmaps both reservations.
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let k = kbase.as_ptr();
        let u = ubase.as_ptr();
        let meta = RINGBUF_NR_META_PAGES * PAGE;
        // SAFETY: every range below lies inside the reservation it names (klen = meta + 2 *
        // data_sz, ulen = klen - one page) and nothing references the area yet.
        unsafe {
            map_fixed(k, file_len, rw, &fd, 0)?;
            map_fixed(k.add(file_len), data_sz, rw, &fd, meta)?;
            map_fixed(u, PAGE, rw, &fd, RINGBUF_PGOFF * PAGE)?;
            map_fixed(
                u.add(PAGE),
                PAGE + data_sz,
                libc::PROT_READ,
                &fd,
                (RINGBUF_PGOFF + 1) * PAGE,
            )?;
            map_fixed(
                u.add(2 * PAGE + data_sz),
                data_sz,
                libc::PROT_READ,
                &fd,
                meta,
            )?;
        }
        Ok(area)
    }
}

impl Drop for RingArea {
    fn drop(&mut self) {
        // SAFETY: both ranges are our mappings; the map (and with it every pointer handed out
        // by reserve and mmap) is gone.
        unsafe {
            libc::munmap(self.kbase.as_ptr().cast(), self.klen);
            libc::munmap(self.ubase.as_ptr().cast(), self.ulen);
        }
    }
}

/// The ring (`struct bpf_ringbuf`). Boxed, so that page 0 can point at it.
struct Ring {
    /// The mapped pages.
    area: RingArea,
    /// `max_entries - 1`: data size minus one (a power of two minus one).
    mask: u64,
    /// The producer lock (`rb->spinlock`): serialises reservations and `pending_pos`.
    lock: parking_lot::Mutex<()>,
}

impl Ring {
    fn data(&self) -> *mut u8 {
        // SAFETY: the data area starts after the three meta pages of the kernel view.
        unsafe { self.area.kbase.as_ptr().add(RINGBUF_NR_META_PAGES * PAGE) }
    }

    /// How many times a commit would have woken the consumer (`irq_work_queue`): the second
    /// word of the private page 0.
    fn wakeups(&self) -> &shm::Word64 {
        // SAFETY: page 0 is mapped while self lives; its second word is only used atomically.
        unsafe { shm::Word64::at(self.area.kbase.as_ptr().add(8)) }
    }

    fn consumer_pos(&self) -> &shm::Word64 {
        // SAFETY: first word of the consumer page, 8-aligned, mapped while self lives, and
        // only accessed atomically (here and through the user view).
        unsafe { shm::Word64::at(self.area.kbase.as_ptr().add(RINGBUF_PGOFF * PAGE)) }
    }

    fn producer_pos(&self) -> &shm::Word64 {
        // SAFETY: first word of the producer page; as in consumer_pos.
        unsafe { shm::Word64::at(self.area.kbase.as_ptr().add((RINGBUF_PGOFF + 1) * PAGE)) }
    }

    fn pending_pos(&self) -> &shm::Word64 {
        // SAFETY: second word of the producer page; as in consumer_pos.
        unsafe { shm::Word64::at(self.area.kbase.as_ptr().add((RINGBUF_PGOFF + 1) * PAGE + 8)) }
    }

    /// The `len` word of the header at position `pos`.
    fn hdr_len(&self, pos: u64) -> &shm::Word32 {
        // SAFETY: pos & mask < data size and record positions are 8-aligned; the header lies
        // in the data area, which is mapped while self lives and whose header words are only
        // accessed atomically.
        unsafe { shm::Word32::at(self.data().add((pos & self.mask) as usize)) }
    }

    /// `ringbuf_total_data_sz`.
    fn total_data_sz(&self) -> u64 {
        self.mask + 1
    }

    /// `__bpf_ringbuf_reserve`: a pointer to `size` writable bytes, or `None` when the record
    /// is too large, the ring lacks room, or the lock could not be taken in time.
    fn reserve(&self, size: u64) -> Option<NonNull<u8>> {
        if size > RINGBUF_MAX_RECORD_SZ {
            return None;
        }
        let len = round_up8(size + BPF_RINGBUF_HDR_SZ as u64);
        if len > self.total_data_sz() {
            return None;
        }
        // Acquire: pairs with the consumer's Release store of consumer_pos; its reads of the
        // space we may now reuse are done.
        let cons_pos = self.consumer_pos().load(Ordering::Acquire);
        let _guard = self.lock.try_lock_for(RES_DEF_TIMEOUT)?;
        // Only written under the lock.
        let mut pend_pos = self.pending_pos().load(Ordering::Relaxed);
        let prod_pos = self.producer_pos().load(Ordering::Relaxed);
        let new_prod_pos = prod_pos + len;
        while pend_pos < prod_pos {
            // Acquire: pairs with the AcqRel swap in commit.
            let hdr_len = self.hdr_len(pend_pos).load(Ordering::Acquire);
            if hdr_len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let tmp = (hdr_len & !BPF_RINGBUF_DISCARD_BIT) as u64;
            pend_pos += round_up8(tmp + BPF_RINGBUF_HDR_SZ as u64);
        }
        self.pending_pos().store(pend_pos, Ordering::Relaxed);
        // The producer may run at most `mask` bytes ahead of the consumer and of the oldest
        // record still being written.
        if new_prod_pos.wrapping_sub(cons_pos) > self.mask
            || new_prod_pos.wrapping_sub(pend_pos) > self.mask
        {
            return None;
        }
        let off = (prod_pos & self.mask) as usize;
        let hdr = self.hdr_len(prod_pos);
        // bpf_ringbuf_rec_pg_off: the header's page, counted from page 0.
        let pg_off = ((RINGBUF_NR_META_PAGES * PAGE + off) / PAGE) as u32;
        hdr.store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        // SAFETY: the pg_off word follows the len word in the same 8-aligned header.
        unsafe { shm::Word32::at(self.data().add(off + 4)) }.store(pg_off, Ordering::Relaxed);
        // Release: pairs with the consumer's (and query's) Acquire load of producer_pos: the
        // busy header is visible before the position that covers it.
        self.producer_pos().store(new_prod_pos, Ordering::Release);
        // SAFETY: the sample follows the header; with the aliased second copy of the data,
        // `size` bytes from there are mapped even when the record wraps.
        NonNull::new(unsafe { self.data().add(off + BPF_RINGBUF_HDR_SZ as usize) })
    }

    /// `ringbuf_avail_data_sz`.
    fn avail_data_sz(&self) -> u64 {
        // Acquire: pairs with the Release stores of the two positions.
        let cons_pos = self.consumer_pos().load(Ordering::Acquire);
        let prod_pos = self.producer_pos().load(Ordering::Acquire);
        prod_pos.wrapping_sub(cons_pos)
    }
}

/// `bpf_ringbuf_commit`: clears the busy bit (setting the discard bit if asked) and decides
/// about the wakeup.
///
/// # Safety
/// `sample` must come from a reserve on a ring that is still alive, not yet committed.
unsafe fn commit(sample: NonNull<u8>, flags: u64, discard: bool) {
    // SAFETY: the header sits 8 bytes before the sample (caller's promise).
    let hdr = unsafe { sample.as_ptr().sub(BPF_RINGBUF_HDR_SZ as usize) };
    // SAFETY: the header's two words are 4-aligned and only accessed atomically.
    let (len, pg_off) = unsafe { (shm::Word32::at(hdr), shm::Word32::at(hdr.add(4))) };
    // bpf_ringbuf_restore_from_rec: page 0 lies pg_off pages before the header's page.
    let back = (hdr as usize & (PAGE - 1)) + pg_off.load(Ordering::Relaxed) as usize * PAGE;
    // SAFETY: page 0 of a live ring holds the pointer to its `Ring`, written before the map
    // was published and never changed; the Ring lives as long as the map.
    let ring: &Ring = unsafe { &*hdr.wrapping_sub(back).cast::<*const Ring>().read() };
    let mut new_len = len.load(Ordering::Relaxed) ^ BPF_RINGBUF_BUSY_BIT;
    if discard {
        new_len |= BPF_RINGBUF_DISCARD_BIT;
    }
    // AcqRel (the kernel's xchg is a full barrier): the Release half pairs with the
    // consumer's Acquire load of len and publishes the sample bytes.
    len.swap(new_len, Ordering::AcqRel);
    // If the consumer has caught up with this record it may be waiting for it.
    let rec_pos = hdr as u64 - ring.data() as u64;
    // Acquire: pairs with the consumer's Release store.
    let cons_pos = ring.consumer_pos().load(Ordering::Acquire) & ring.mask;
    if flags & BPF_RB_FORCE_WAKEUP != 0 || (cons_pos == rec_pos && flags & BPF_RB_NO_WAKEUP == 0) {
        ring.wakeups().fetch_add(1, Ordering::Relaxed);
    }
}

/// The `BPF_MAP_TYPE_RINGBUF` ops table (`ringbuf_map_ops`).
pub struct RingBufMap {
    ring: Box<Ring>,
}

impl core::fmt::Debug for RingBufMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RingBufMap")
            .field("size", &self.ring.total_data_sz())
            .finish_non_exhaustive()
    }
}

/// The ring of `map`, if it is a ring buffer.
fn ring_of(map: &BpfMap) -> Option<&Ring> {
    if !core::ptr::eq(map.type_ops, &RINGBUF_MAP_OPS) {
        return None;
    }
    let ops: *const dyn MapOps = map.ops();
    // SAFETY: a map whose type row is RINGBUF_MAP_OPS got its ops from `alloc` below, which
    // always boxes a RingBufMap; the thin cast drops the vtable of that very object.
    let rb = unsafe { &*ops.cast::<RingBufMap>() };
    Some(&rb.ring)
}

/// `ringbuf_map_alloc`: every check is here (the kernel has no `map_alloc_check` for ring
/// buffers), in the kernel's order. Context: syscall.
fn alloc(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    if attr.map_flags & !RINGBUF_CREATE_FLAG_MASK != 0 {
        return Err(Errno::EINVAL);
    }
    // The data size is max_entries: a power of two and whole pages. No upper bound: a
    // u32 cannot exceed the kernel's 64 GiB limit (kernel 6.18 accepts 2^31).
    if attr.key_size != 0
        || attr.value_size != 0
        || !attr.max_entries.is_power_of_two()
        || !(attr.max_entries as u64).is_multiple_of(PAGE_SIZE)
    {
        return Err(Errno::EINVAL);
    }
    let data_sz = attr.max_entries as usize;
    let area = RingArea::new(data_sz)?;
    let ring = Box::new(Ring {
        area,
        mask: attr.max_entries as u64 - 1,
        lock: parking_lot::Mutex::new(()),
    });
    // SAFETY: page 0 is private to the ring, page-aligned and mapped read-write; the Box keeps
    // the Ring at a fixed address until the area (declared in it) is unmapped.
    unsafe { ring.area.kbase.as_ptr().cast::<*const Ring>().write(&*ring) };
    Ok(Box::new(RingBufMap { ring }))
}

/// Registry row of `BPF_MAP_TYPE_RINGBUF`: unprivileged, no `map_alloc_check`.
pub static RINGBUF_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_RINGBUF,
    alloc_check: None,
    alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: true,
};

/// `bpf_ringbuf_reserve(map, size, flags)`: room for a `size`-byte sample, to be passed to
/// [`ringbuf_submit`] or [`ringbuf_discard`]. `None` for non-zero `flags`, a record larger
/// than [`RINGBUF_MAX_RECORD_SZ`] or the ring, a full ring, or a map that is not a ring buffer
/// (the verifier rules the last out). Context: program.
///
/// The memory is shared with the consumer and concurrently running producers; write it with
/// raw pointer writes only, never through a `&mut [u8]` held across another reserve.
pub fn ringbuf_reserve(map: &BpfMap, size: u64, flags: u64) -> Option<NonNull<u8>> {
    if flags != 0 {
        return None;
    }
    ring_of(map)?.reserve(size)
}

/// `bpf_ringbuf_submit(sample, flags)`: commits a reserved record. `flags` may ask for
/// [`BPF_RB_NO_WAKEUP`] or [`BPF_RB_FORCE_WAKEUP`]; other bits are ignored, as in the kernel.
/// Context: program.
///
/// # Safety
/// `sample` must have been returned by [`ringbuf_reserve`] on a map that is still alive, and
/// not yet submitted or discarded (the verifier's reference tracking guarantees this for
/// programs). A stale pointer makes this read and write freed memory.
pub unsafe fn ringbuf_submit(sample: NonNull<u8>, flags: u64) {
    // SAFETY: the caller's promise.
    unsafe { commit(sample, flags, false) }
}

/// `bpf_ringbuf_discard(sample, flags)`: drops a reserved record; consumers skip it.
/// Context: program.
///
/// # Safety
/// As [`ringbuf_submit`].
pub unsafe fn ringbuf_discard(sample: NonNull<u8>, flags: u64) {
    // SAFETY: the caller's promise.
    unsafe { commit(sample, flags, true) }
}

/// `bpf_ringbuf_output(map, data, size, flags)`: reserve, copy and submit in one step.
/// `EINVAL` for flags other than the wakeup bits, `EAGAIN` when the record does not fit.
/// Context: program.
pub fn ringbuf_output(map: &BpfMap, data: &[u8], flags: u64) -> Result<()> {
    if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
        return Err(Errno::EINVAL);
    }
    let ring = ring_of(map).ok_or(Errno::EINVAL)?;
    let rec = ring.reserve(data.len() as u64).ok_or(Errno::EAGAIN)?;
    // SAFETY: reserve returned room for data.len() bytes, owned by us until the commit.
    unsafe {
        copy_to_value(rec.as_ptr(), data);
        commit(rec, flags, false);
    }
    Ok(())
}

/// `bpf_ringbuf_query(map, flags)`: [`BPF_RB_AVAIL_DATA`], [`BPF_RB_RING_SIZE`],
/// [`BPF_RB_CONS_POS`] or [`BPF_RB_PROD_POS`]; 0 for any other flag (and for a map that is
/// not a ring buffer). Context: program.
pub fn ringbuf_query(map: &BpfMap, flags: u64) -> u64 {
    let Some(ring) = ring_of(map) else { return 0 };
    match flags {
        BPF_RB_AVAIL_DATA => ring.avail_data_sz(),
        BPF_RB_RING_SIZE => ring.total_data_sz(),
        // Acquire: pairs with the Release stores of the positions.
        BPF_RB_CONS_POS => ring.consumer_pos().load(Ordering::Acquire),
        BPF_RB_PROD_POS => ring.producer_pos().load(Ordering::Acquire),
        _ => 0,
    }
}

/// The user-space consumer of a ring buffer: libbpf's `ring_buffer__consume` without epoll.
///
/// Works only through the map's `mmap` region, as a process does: it reads `producer_pos`,
/// record headers and samples from the read-only pages and advances `consumer_pos` in the
/// writable one. Records come out in reservation order; discarded records are skipped; a
/// record still being written (busy) stops the walk until it is committed. One consumer per
/// ring: two consumers would both deliver the same records.
pub struct RingBufConsumer {
    /// Keeps the map (and with it the mapping) alive.
    map: MapRef,
    /// Start of the user view: `consumer_pos` (read-write page).
    cons: NonNull<u8>,
    /// `data_sz - 1`.
    mask: u64,
    /// Reused buffer a sample is copied into before the callback sees it.
    scratch: Vec<u8>,
}

// SAFETY: the consumer owns a map reference and raw pointers into its shared pages, which are
// only accessed atomically or by the record protocol; moving it to another thread is fine.
unsafe impl Send for RingBufConsumer {}

impl core::fmt::Debug for RingBufConsumer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RingBufConsumer")
            .field("map", &self.map)
            .field("size", &(self.mask + 1))
            .finish()
    }
}

impl RingBufConsumer {
    /// A consumer of `map`; `EINVAL` if it is not a ring buffer.
    pub fn new(map: &BpfMap) -> Result<RingBufConsumer> {
        if map.map_type() != BPF_MAP_TYPE_RINGBUF {
            return Err(Errno::EINVAL);
        }
        let (cons, len) = map.ops().mmap(map)?;
        // The region is the consumer page, the producer page and the data twice.
        let data_sz = (len - RINGBUF_POS_PAGES * PAGE) / 2;
        Ok(RingBufConsumer {
            map: map.inc(),
            cons,
            mask: data_sz as u64 - 1,
            scratch: Vec::new(),
        })
    }

    fn consumer_pos(&self) -> &shm::Word64 {
        // SAFETY: first word of the user view's consumer page, mapped while self.map lives.
        unsafe { shm::Word64::at(self.cons.as_ptr()) }
    }

    fn producer_pos(&self) -> &shm::Word64 {
        // SAFETY: first word of the producer page (read-only view; loads only).
        unsafe { shm::Word64::at(self.cons.as_ptr().add(PAGE)) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data follows the two position pages in the user view.
        unsafe { self.cons.as_ptr().add(RINGBUF_POS_PAGES * PAGE) }
    }

    /// Delivers up to `n` committed records to `f`, in order. `f` returning `Break` stops after
    /// that record (it counts as consumed). Returns the number of records delivered.
    pub fn consume_n(&mut self, n: usize, mut f: impl FnMut(&[u8]) -> ControlFlow<()>) -> usize {
        let mut cnt = 0;
        if n == 0 {
            return 0;
        }
        // Only this consumer stores consumer_pos.
        let mut cons_pos = self.consumer_pos().load(Ordering::Acquire);
        loop {
            let mut got_new_data = false;
            // Acquire: pairs with the Release store in reserve; headers up to prod_pos are
            // written (busy or committed).
            let prod_pos = self.producer_pos().load(Ordering::Acquire);
            while cons_pos < prod_pos {
                let off = (cons_pos & self.mask) as usize;
                // SAFETY: a record header in the data area, 8-aligned; loads only.
                let hdr = unsafe { shm::Word32::at(self.data().add(off)) };
                // Acquire: pairs with the AcqRel swap in commit; the sample bytes are visible.
                let len = hdr.load(Ordering::Acquire);
                if len & BPF_RINGBUF_BUSY_BIT != 0 {
                    return cnt;
                }
                got_new_data = true;
                let sample_len = (len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)) as usize;
                cons_pos += round_up8(sample_len as u64 + BPF_RINGBUF_HDR_SZ as u64);
                let mut stop = false;
                if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                    self.scratch.clear();
                    self.scratch.resize(sample_len, 0);
                    let src = self.data().wrapping_add(off + BPF_RINGBUF_HDR_SZ as usize);
                    // SAFETY: the committed sample follows its header; thanks to the second
                    // mapping of the data it is contiguous even when it wraps, and no producer
                    // writes it until consumer_pos passes it.
                    unsafe { copy_from_value(&mut self.scratch, src) };
                    cnt += 1;
                    stop = f(&self.scratch).is_break();
                }
                // Release: pairs with the Acquire load in reserve; our reads of the record are
                // done before its space can be reused.
                self.consumer_pos().store(cons_pos, Ordering::Release);
                if stop || cnt >= n {
                    return cnt;
                }
            }
            if !got_new_data {
                return cnt;
            }
        }
    }

    /// Delivers every committed record available now (see [`RingBufConsumer::consume_n`]).
    pub fn consume(&mut self, f: impl FnMut(&[u8]) -> ControlFlow<()>) -> usize {
        self.consume_n(usize::MAX, f)
    }

    /// The next committed record, if any.
    pub fn next_record(&mut self) -> Option<Vec<u8>> {
        let mut out = None;
        self.consume_n(1, |s| {
            out = Some(s.to_vec());
            ControlFlow::Break(())
        });
        out
    }

    /// Bytes between the consumer and producer positions (`ring__avail_data_size`).
    pub fn avail_data(&self) -> u64 {
        let cons_pos = self.consumer_pos().load(Ordering::Acquire);
        let prod_pos = self.producer_pos().load(Ordering::Acquire);
        prod_pos.wrapping_sub(cons_pos)
    }

    /// How many commits so far would have woken a waiting consumer (the kernel's
    /// `irq_work_queue` → `wake_up_all`): forced ones, and unforced ones of the record the
    /// consumer was positioned at.
    pub fn wakeups(&self) -> u64 {
        ring_of(&self.map).map_or(0, |r| r.wakeups().load(Ordering::Relaxed))
    }
}

impl MapOps for RingBufMap {
    /// `ringbuf_map_lookup_elem`: `ERR_PTR(-ENOTSUPP)`, i.e. no value. Context: program.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Option<NonNull<u8>> {
        None
    }

    /// No `map_lookup_percpu_elem`. Context: program.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_map_copy_value` → `ringbuf_map_lookup_elem`: `ENOTSUPP`. Context: syscall.
    fn lookup_elem_sys(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: &[u8],
        _value: &mut [u8],
        _flags: u64,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `ringbuf_map_update_elem`: `ENOTSUPP`. Context: both.
    fn update_elem(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: &[u8],
        _value: &[u8],
        _flags: u64,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `ringbuf_map_delete_elem`: `ENOTSUPP`. Context: both.
    fn delete_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `ringbuf_map_get_next_key`: `ENOTSUPP`. Context: syscall.
    fn get_next_key(&self, _map: &BpfMap, _key: Option<&[u8]>, _next_key: &mut [u8]) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `map_lookup_and_delete_elem` has no ring-buffer branch: `ENOTSUPP`. Context: syscall.
    fn lookup_and_delete_elem(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: Option<&[u8]>,
        _value: &mut [u8],
        _flags: u64,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_push_elem` (the verifier allows the helper only on queue, stack and bloom
    /// filter maps): `ENOTSUPP`. Context: both.
    fn push_elem(&self, _map: &BpfMap, _value: &[u8], _flags: u64) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_pop_elem`: `ENOTSUPP`. Context: program.
    fn pop_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_peek_elem`: `ENOTSUPP`. Context: both.
    fn peek_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::ENOTSUPP)
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

    /// No `map_for_each_callback`: the verifier refuses with `ENOTSUPP`. Context: program.
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Err(Errno::ENOTSUPP)
    }

    /// `ringbuf_map_mmap_kern`: the user view, i.e. the consumer page (read-write), then the
    /// producer page and the data twice (read-only): `2 * PAGE_SIZE + 2 * max_entries` bytes.
    /// The kernel refuses a writable mapping of anything but the consumer page (`EPERM`) and a
    /// longer one (`EINVAL`); here the protections of the pages enforce the same split.
    /// Context: syscall.
    fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        Ok((self.ring.area.ubase, self.ring.area.ulen))
    }

    /// No `map_gen_lookup`.
    fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
        None
    }

    /// `ringbuf_map_mem_usage`: the map struct, every page, and the page-pointer array that
    /// maps the data twice.
    fn mem_usage(&self, map: &BpfMap) -> u64 {
        let nr_data_pages = map.max_entries() as u64 / PAGE_SIZE;
        let nr_pages = RINGBUF_NR_META_PAGES as u64 + nr_data_pages;
        let nr_ptrs = RINGBUF_NR_META_PAGES as u64 + 2 * nr_data_pages;
        SIZEOF_BPF_RINGBUF_MAP + nr_pages * PAGE_SIZE + nr_ptrs * 8
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    #[test]
    fn area_maps_data_twice() {
        let area = RingArea::new(2 * PAGE).unwrap();
        let k = area.kbase.as_ptr();
        // SAFETY: offsets inside the kernel view; the test is the only user.
        unsafe {
            let first = k.add(RINGBUF_NR_META_PAGES * PAGE);
            let second = first.add(2 * PAGE);
            copy_to_value(first.add(8), &[1, 2, 3, 4]);
            let mut b = [0u8; 4];
            copy_from_value(&mut b, second.add(8));
            assert_eq!(b, [1, 2, 3, 4]);
            // The user view shows the same consumer page and data.
            shm::Word64::at(k.add(PAGE)).store(77, Ordering::Relaxed);
            assert_eq!(
                shm::Word64::at(area.ubase.as_ptr()).load(Ordering::Relaxed),
                77
            );
            copy_from_value(&mut b, area.ubase.as_ptr().add(2 * PAGE + 2 * PAGE + 8));
            assert_eq!(b, [1, 2, 3, 4]);
        }
        assert_eq!(area.ulen, 2 * PAGE + 4 * PAGE);
    }
}
