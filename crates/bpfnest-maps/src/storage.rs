// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Raw value memory: the bytes programs point into.
//!
//! Values are shared between concurrently running programs and syscalls without locks, exactly
//! as in the kernel, where a lookup from user space may observe a half-written value. To keep
//! that race defined behaviour in Rust, every copy into or out of value memory goes through the
//! relaxed atomic word copies below (plain `mov`s on x86_64), and value memory is never turned
//! into a `&[u8]`.

use crate::errno::{Errno, Result};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::alloc::{self, Layout};

/// Copies `src` into value memory at `dst`.
///
/// # Safety
/// `dst..dst+src.len()` must be valid for writes and inside one live allocation.
pub(crate) unsafe fn copy_to_value(dst: *mut u8, src: &[u8]) {
    let mut i = 0;
    let n = src.len();
    while i < n {
        // SAFETY: dst+i is inside the caller's range.
        let p = unsafe { dst.add(i) };
        if (p as usize).is_multiple_of(8) && n - i >= 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&src[i..i + 8]);
            // SAFETY: p is 8-aligned and 8 bytes are in range; value memory is only accessed atomically.
            unsafe { AtomicU64::from_ptr(p as *mut u64) }
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            i += 8;
        } else {
            // SAFETY: one byte in range.
            unsafe { AtomicU8::from_ptr(p) }.store(src[i], Ordering::Relaxed);
            i += 1;
        }
    }
}

/// Copies value memory at `src` into `dst`.
///
/// # Safety
/// `src..src+dst.len()` must be valid for reads and inside one live allocation.
pub(crate) unsafe fn copy_from_value(dst: &mut [u8], src: *const u8) {
    let mut i = 0;
    let n = dst.len();
    while i < n {
        // SAFETY: src+i is inside the caller's range.
        let p = unsafe { src.add(i) } as *mut u8;
        if (p as usize).is_multiple_of(8) && n - i >= 8 {
            // SAFETY: p is 8-aligned and 8 bytes are in range.
            let w = unsafe { AtomicU64::from_ptr(p as *mut u64) }.load(Ordering::Relaxed);
            dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
            i += 8;
        } else {
            // SAFETY: one byte in range.
            dst[i] = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed);
            i += 1;
        }
    }
}

/// Fills value memory with zeros.
///
/// # Safety
/// As [`copy_to_value`] for `len` bytes.
pub(crate) unsafe fn zero_value(dst: *mut u8, len: usize) {
    const Z: [u8; 64] = [0; 64];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(64);
        // SAFETY: off+n <= len.
        unsafe { copy_to_value(dst.add(off), &Z[..n]) };
        off += n;
    }
}

/// A zeroed, fixed-size block of value memory (`bpf_map_area_alloc`).
///
/// Invariant: `ptr` points to `layout.size()` bytes allocated with `layout`, owned by this slab,
/// and is only accessed through the atomic copies above or by programs.
pub struct Slab {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the slab is plain memory; concurrent access is by atomic word copies only.
unsafe impl Send for Slab {}
// SAFETY: as above; `&Slab` only hands out raw pointers.
unsafe impl Sync for Slab {}

impl Slab {
    /// Allocates `size` zeroed bytes aligned to `align` (8, or `PAGE_SIZE` for mmapable maps).
    /// A size the allocator refuses gives `ENOMEM`, as `bpf_map_area_alloc` does.
    pub fn new_zeroed(size: usize, align: usize) -> Result<Slab> {
        let layout = Layout::from_size_align(size.max(1), align).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(Errno::ENOMEM)?;
        Ok(Slab { ptr, layout })
    }

    /// Start of the block.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        // SAFETY: allocated in `new_zeroed` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}
