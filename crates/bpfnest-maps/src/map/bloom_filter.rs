// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_BLOOM_FILTER`. Mirrors `kernel/bpf/bloom_filter.c` (v6.18).
//!
//! # Layout
//! A bit array of `bitset_mask + 1` bits (a power of two, at least 64, at most 2^32) and
//! `nr_hash_funcs` hash functions (`map_extra & 0xf`, 0 meaning 5). Function `i` of a value is
//! `jhash2(value, seed + i)` when `value_size % 4 == 0` and `jhash(value, seed + i)` otherwise,
//! masked with `bitset_mask`; `seed` is random unless the map was created with
//! `BPF_F_ZERO_SEED`, and then every answer, false positives included, equals the kernel's.
//!
//! Push sets the bits of all functions; peek reports `ENOENT` as soon as one bit is clear.
//!
//! # Concurrency
//! No lock: bits are only ever set, with an atomic OR (`set_bit`), and tested with a plain load
//! (`test_bit`). A peek racing a push of the same value may see some of its bits and report
//! `ENOENT`, as in the kernel. Nothing points into the bit array, so it is freed with the map.
//! The array is zeroed map memory (`Slab`) whose words are only reached through the atomic
//! bit operations of the private `bitops` module (up to 512 MiB, allocated lazily zeroed).
//!
//! # Creation
//! The check/alloc split is the kernel's: `alloc_check` only refuses a `value_size` above
//! `KMALLOC_MAX_SIZE` (`E2BIG`), and every `EINVAL` comes from `alloc`, which runs after
//! `map_create`'s capability check. So an unprivileged caller with bad attributes gets `EPERM`,
//! and an oversized value wins over every other mistake.

use core::ptr::NonNull;
use std::hash::{BuildHasher, Hasher};

use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::map::jhash::{jhash, jhash2_bytes};
use crate::map::map_in_map;
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::registry::{AllocCtx, BtfKind, MapTypeOps};
use crate::storage::Slab;
use crate::uapi::*;

/// `BPF_F_ACCESS_MASK`.
const BPF_F_ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

/// `BLOOM_CREATE_FLAG_MASK`: the only flags a bloom filter accepts.
pub const BLOOM_CREATE_FLAG_MASK: u32 = BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_ACCESS_MASK;

/// Hash functions used when `map_extra` leaves the count at 0.
pub const DEFAULT_NR_HASH_FUNCS: u32 = 5;

/// `sizeof(struct bpf_bloom_filter)` on x86_64 (kernel 6.18: fdinfo `memlock` of the smallest
/// filter, a 64-bit array, is 320 = 312 + 8).
const SIZEOF_BPF_BLOOM_FILTER: u64 = 312;

/// `BITS_PER_LONG`.
const BITS_PER_LONG: u32 = 64;

/// `bpf_map_flags_access_ok`.
fn map_flags_access_ok(flags: u32) -> bool {
    flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
}

/// The filter (`struct bpf_bloom_filter`).
pub struct BloomFilter {
    /// Number of bits minus one; the bit count is a power of two (`U32_MAX` for 2^32 bits).
    bitset_mask: u32,
    /// Added to the function index to seed `jhash`; 0 with `BPF_F_ZERO_SEED`.
    hash_seed: u32,
    /// 1..=15.
    nr_hash_funcs: u32,
    /// `value_size`: how many bytes of a value are hashed.
    value_size: usize,
    /// `(bitset_mask + 1) / 8` bytes (at least 8): bit `h` is bit `h % 64` of the 64-bit word
    /// `h / 64` (`set_bit` numbering). Bits are only ever set, through `bitops`.
    bitset: Slab,
}

impl core::fmt::Debug for BloomFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BloomFilter")
            .field("bitset_mask", &format_args!("{:#x}", self.bitset_mask))
            .field("hash_seed", &self.hash_seed)
            .field("nr_hash_funcs", &self.nr_hash_funcs)
            .finish_non_exhaustive()
    }
}

/// `bloom_map_alloc_check`: only the value size; every other check waits for `alloc`.
/// Context: syscall.
fn alloc_check(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<()> {
    // User space could not pass a value this big.
    if attr.value_size as u64 > KMALLOC_MAX_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

/// The bit-array size the kernel picks: `(bitset_words, bitset_mask)`.
///
/// About `n * k / ln 2` bits, with `7 / 5` standing in for `1 / ln 2` and computed as
/// `(n * k) / 5 * 7` in `u32` (the division first, as the kernel does), then rounded up to a
/// power of two of at least 64. When that overflows `u32` or exceeds 2^31, the array has
/// 2^32 bits (mask `U32_MAX`).
fn bitset_size(max_entries: u32, nr_hash_funcs: u32) -> (usize, u32) {
    let nr_bits = max_entries
        .checked_mul(nr_hash_funcs)
        .and_then(|n| (n / 5).checked_mul(7))
        .filter(|&n| n <= 1 << 31);
    let (bits, mask) = match nr_bits {
        None => (1u64 << 32, u32::MAX),
        Some(n) if n <= BITS_PER_LONG => (BITS_PER_LONG as u64, BITS_PER_LONG - 1),
        // n <= 2^31, so its next power of two fits in a u32.
        Some(n) => (n.next_power_of_two() as u64, n.next_power_of_two() - 1),
    };
    ((bits / 64) as usize, mask)
}

/// `get_random_u32`, from the standard library's per-process random hash keys.
fn random_u32() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x6266_6c6f_6f6d); // any input: the keys carry the randomness
    h.finish() as u32
}

impl BloomFilter {
    /// `bloom_map_alloc`: the `EINVAL` checks, then the bit array. Assumes [`alloc_check`]
    /// passed. Context: syscall.
    fn alloc(attr: &MapAttr) -> Result<BloomFilter> {
        // The low 4 bits of map_extra are the hash count; anything above is reserved.
        if attr.key_size != 0
            || attr.value_size == 0
            || attr.max_entries == 0
            || attr.map_flags & !BLOOM_CREATE_FLAG_MASK != 0
            || !map_flags_access_ok(attr.map_flags)
            || attr.map_extra & !0xf != 0
        {
            return Err(Errno::EINVAL);
        }
        let nr_hash_funcs = match attr.map_extra as u32 {
            0 => DEFAULT_NR_HASH_FUNCS,
            k => k,
        };
        let (words, bitset_mask) = bitset_size(attr.max_entries, nr_hash_funcs);
        let bitset = Slab::new_zeroed(words * 8, 8)?;
        let hash_seed = if attr.map_flags & BPF_F_ZERO_SEED != 0 {
            0
        } else {
            random_u32()
        };
        Ok(BloomFilter {
            bitset_mask,
            hash_seed,
            nr_hash_funcs,
            value_size: attr.value_size as usize,
            bitset,
        })
    }

    /// `hash`: bit index of function `index` for `value` (exactly `value_size` bytes).
    fn hash(&self, value: &[u8], index: u32) -> u32 {
        let seed = self.hash_seed.wrapping_add(index);
        let h = if value.len().is_multiple_of(4) {
            jhash2_bytes(value, seed)
        } else {
            jhash(value, seed)
        };
        h & self.bitset_mask
    }

    /// `bloom_map_peek_elem`: `Ok` if every function's bit is set (maybe a false positive),
    /// `ENOENT` if one is clear (certainly absent). Context: both.
    fn peek_elem(&self, value: &[u8]) -> Result<()> {
        let value = value.get(..self.value_size).ok_or(Errno::EINVAL)?;
        for i in 0..self.nr_hash_funcs {
            let h = self.hash(value, i);
            // SAFETY: h <= bitset_mask, and the slab holds bitset_mask + 1 bits.
            if !unsafe { bitops::test_bit(self.bitset.as_ptr(), h) } {
                return Err(Errno::ENOENT);
            }
        }
        Ok(())
    }

    /// `bloom_map_push_elem`: only `BPF_ANY`. Context: both.
    fn push_elem(&self, value: &[u8], flags: u64) -> Result<()> {
        if flags != BPF_ANY {
            return Err(Errno::EINVAL);
        }
        let value = value.get(..self.value_size).ok_or(Errno::EINVAL)?;
        for i in 0..self.nr_hash_funcs {
            let h = self.hash(value, i);
            // SAFETY: h <= bitset_mask, and the slab holds bitset_mask + 1 bits.
            unsafe { bitops::set_bit(self.bitset.as_ptr(), h) };
        }
        Ok(())
    }

    /// The hash-function count in use.
    pub fn nr_hash_funcs(&self) -> u32 {
        self.nr_hash_funcs
    }

    /// The bit-array size minus one.
    pub fn bitset_mask(&self) -> u32 {
        self.bitset_mask
    }
}

/// `set_bit`/`test_bit` on the words of the bit array.
mod bitops {
    use core::sync::atomic::{AtomicU64, Ordering};

    /// The word holding bit `h` and the bit's mask.
    ///
    /// # Safety
    /// `base` must be 8-aligned and valid for `h / 64 + 1` words that are only accessed
    /// atomically, for as long as the returned reference is used.
    unsafe fn word<'a>(base: *mut u8, h: u32) -> (&'a AtomicU64, u64) {
        // SAFETY: the word is in range and aligned (caller's promise).
        let w = unsafe { AtomicU64::from_ptr(base.cast::<u64>().add((h / 64) as usize)) };
        (w, 1u64 << (h % 64))
    }

    /// `set_bit`: atomic, unordered (the kernel's `set_bit` implies no barrier).
    ///
    /// # Safety
    /// As [`word`].
    pub(super) unsafe fn set_bit(base: *mut u8, h: u32) {
        // SAFETY: the caller's promise.
        let (w, bit) = unsafe { word(base, h) };
        w.fetch_or(bit, Ordering::Relaxed);
    }

    /// `test_bit`: a plain load with no ordering against pushes (none in the kernel either).
    ///
    /// # Safety
    /// As [`word`].
    pub(super) unsafe fn test_bit(base: *mut u8, h: u32) -> bool {
        // SAFETY: the caller's promise.
        let (w, bit) = unsafe { word(base, h) };
        w.load(Ordering::Relaxed) & bit != 0
    }
}

/// `bloom_map_check_btf`: bloom filters are keyless, so the key type must be void.
fn check_btf(_attr: &MapAttr, key: BtfKind, _value: BtfKind) -> Result<()> {
    if key == BtfKind::Void {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

fn alloc(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(BloomFilter::alloc(attr)?))
}

/// Registry row of `BPF_MAP_TYPE_BLOOM_FILTER` (`bloom_filter_map_ops`). Needs CAP_BPF.
pub static BLOOM_FILTER_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_BLOOM_FILTER,
    alloc_check: Some(alloc_check),
    alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: Some(check_btf),
    unprivileged: false,
};

impl MapOps for BloomFilter {
    /// `bloom_map_lookup_elem`: `ERR_PTR(-EINVAL)`, i.e. no value (programs must use
    /// `bpf_map_peek_elem`; the verifier refuses the helper). Context: program.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Option<NonNull<u8>> {
        None
    }

    /// No `map_lookup_percpu_elem`. Context: program.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_map_copy_value` for a bloom filter: a membership test of the value user space
    /// passed in `value` (unchanged on success). Context: syscall.
    fn lookup_elem_sys(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: &[u8],
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if flags != 0 {
            // BPF_F_LOCK needs a spin lock, which a bloom filter can never have.
            return Err(Errno::EINVAL);
        }
        self.peek_elem(value)
    }

    /// `bloom_map_update_elem`: `EINVAL` (user space pushes with a NULL key). Context: both.
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

    /// `bloom_map_delete_elem`: `EOPNOTSUPP`. Context: both.
    fn delete_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, _key: &[u8]) -> Result<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// `bloom_map_get_next_key`: `EOPNOTSUPP`. Context: syscall.
    fn get_next_key(&self, _map: &BpfMap, _key: Option<&[u8]>, _next_key: &mut [u8]) -> Result<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// `map_lookup_and_delete_elem` has no bloom-filter branch: `ENOTSUPP`. Context: syscall.
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

    /// `bloom_map_push_elem`. Context: both.
    fn push_elem(&self, _map: &BpfMap, value: &[u8], flags: u64) -> Result<()> {
        BloomFilter::push_elem(self, value, flags)
    }

    /// `bloom_map_pop_elem`: `EOPNOTSUPP`. Context: program.
    fn pop_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// `bloom_map_peek_elem`: membership of `value` (an input). Context: both.
    fn peek_elem(&self, _map: &BpfMap, value: &mut [u8]) -> Result<()> {
        BloomFilter::peek_elem(self, value)
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

    /// No `map_mmap`: `ENOTSUPP`. Context: syscall.
    fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_gen_lookup`.
    fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
        None
    }

    /// `bloom_map_mem_usage`: the struct plus the bit array rounded to whole longs.
    fn mem_usage(&self, _map: &BpfMap) -> u64 {
        let bytes = (self.bitset_mask as u64 + 1).div_ceil(8);
        SIZEOF_BPF_BLOOM_FILTER + bytes.div_ceil(8) * 8
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    #[test]
    fn bitset_sizing_matches_kernel() {
        // (max_entries, nr_hash_funcs, bytes): kernel 6.18 fdinfo memlock minus 312.
        let cases: &[(u32, u32, u64)] = &[
            (1, 1, 8),
            (1, 5, 8),
            (4, 5, 8),
            (4, 15, 16),
            (45, 1, 8),
            (46, 1, 8),
            // 47 / 5 * 7 = 63 bits, not 47 * 7 / 5 = 65: the division comes first.
            (47, 1, 8),
            (50, 1, 16),
            (100, 3, 64),
            (1000, 1, 256),
            (1 << 20, 5, 1 << 20),
            (0x7fff_ffff, 1, 1 << 29),
            (u32::MAX, 15, 1 << 29),
            (429_496_729, 5, 1 << 29),
            (0x1fff_ffff, 15, 1 << 29),
        ];
        for &(n, k, bytes) in cases {
            let (words, mask) = bitset_size(n, k);
            assert_eq!(words as u64 * 8, bytes, "n={n} k={k}");
            assert_eq!((mask as u64 + 1) / 8, bytes, "n={n} k={k}");
        }
    }

    #[test]
    fn random_seed_differs_from_zero_seed_eventually() {
        // A random seed of 0 four times running would mean the seed is not random.
        assert!((0..4).any(|_| random_u32() != 0));
    }
}
