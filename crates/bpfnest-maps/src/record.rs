// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Special fields in map values: the kernel's `struct btf_record` (`include/linux/bpf.h`).
//!
//! A record lists the offsets of fields that the runtime owns inside a value: spin locks,
//! timers, workqueues, kptrs, graph roots and nodes. The object loader derives it from BTF; the
//! API lets a caller give it directly. It decides three things, as in the kernel:
//! * copies between user space and the map skip those bytes (`copy_map_value`), and values
//!   returned to user space have them zeroed (`check_and_init_map_value`);
//! * `BPF_F_LOCK` is valid only when the record has a spin lock, and then takes it;
//! * map-in-map compatibility compares records (`btf_record_equal`).

use crate::errno::{Errno, Result};
use crate::primitive::{AtomicU32, Ordering};
use crate::uapi::*;

/// The kind of a special field, with the payload the kernel compares in `btf_record_equal`.
///
/// `btf_obj` payloads identify a BTF *object* (not a type): two loads of the same BTF blob
/// are different objects, which is why kptrs to program-local types and list heads from
/// different objects are incompatible while spin locks and timers are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BtfFieldKind {
    /// `struct bpf_spin_lock` (4 bytes).
    SpinLock,
    /// `struct bpf_res_spin_lock` (8 bytes).
    ResSpinLock,
    /// `struct bpf_timer` (16 bytes).
    Timer,
    /// `struct bpf_wq` (16 bytes).
    Workqueue,
    /// `struct bpf_task_work` (8 bytes).
    TaskWork,
    /// An `__kptr_untrusted` / `__kptr` / `__percpu_kptr` / `__uptr` pointer (8 bytes).
    Kptr {
        /// Which kind of pointer.
        flavour: KptrFlavour,
        /// Identity of the BTF object the pointee type lives in (vmlinux is shared by all).
        btf_obj: u64,
        /// Type id of the pointee in that object.
        type_id: u32,
    },
    /// `struct bpf_list_head` (16 bytes).
    ListHead {
        /// Identity of the BTF object of the contained type.
        btf_obj: u64,
        /// Type id of the contained value type.
        value_type_id: u32,
        /// Offset of the `bpf_list_node` in the contained type.
        node_offset: u32,
    },
    /// `struct bpf_list_node` (24 bytes).
    ListNode,
    /// `struct bpf_rb_root` (16 bytes).
    RbRoot {
        /// Identity of the BTF object of the contained type.
        btf_obj: u64,
        /// Type id of the contained value type.
        value_type_id: u32,
        /// Offset of the `bpf_rb_node` in the contained type.
        node_offset: u32,
    },
    /// `struct bpf_rb_node` (32 bytes).
    RbNode,
    /// `struct bpf_refcount` (4 bytes).
    Refcount,
}

/// Which kptr annotation a [`BtfFieldKind::Kptr`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KptrFlavour {
    /// `__kptr_untrusted`.
    Unref,
    /// `__kptr` (referenced).
    Ref,
    /// `__percpu_kptr`.
    Percpu,
    /// `__uptr`.
    Uptr,
}

impl BtfFieldKind {
    /// Size of the field in bytes, as the kernel lays it out.
    pub const fn size(&self) -> u32 {
        match self {
            BtfFieldKind::SpinLock | BtfFieldKind::Refcount => 4,
            BtfFieldKind::ResSpinLock | BtfFieldKind::TaskWork | BtfFieldKind::Kptr { .. } => 8,
            BtfFieldKind::Timer | BtfFieldKind::Workqueue => 16,
            BtfFieldKind::ListHead { .. } | BtfFieldKind::RbRoot { .. } => 16,
            BtfFieldKind::ListNode => 24,
            BtfFieldKind::RbNode => 32,
        }
    }

    const fn align(&self) -> u32 {
        match self {
            BtfFieldKind::SpinLock | BtfFieldKind::Refcount => 4,
            _ => 8,
        }
    }
}

/// One special field: where it is and what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BtfField {
    /// Byte offset inside the value.
    pub offset: u32,
    /// What the field is.
    pub kind: BtfFieldKind,
}

/// The set of special fields of a map value, sorted by offset (`struct btf_record`).
///
/// Invariant: fields are sorted by offset, do not overlap, lie inside the value, and there is
/// at most one lock (spin or res-spin), one timer, one workqueue, one task_work and one refcount,
/// as `btf_parse_fields` enforces. Build one with [`BtfRecord::new`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BtfRecord {
    fields: Vec<BtfField>,
}

impl BtfRecord {
    /// Validates and sorts `fields` for a value of `value_size` bytes.
    ///
    /// Errors are those the kernel's BTF parser gives for the same layout: `EINVAL` for a
    /// misaligned, overlapping or out-of-bounds field, `E2BIG` for a duplicated singleton.
    pub fn new(mut fields: Vec<BtfField>, value_size: u32) -> Result<BtfRecord> {
        fields.sort_by_key(|f| f.offset);
        let mut end = 0u32;
        let mut seen = [0u8; 5];
        for f in &fields {
            let sz = f.kind.size();
            if f.offset % f.kind.align() != 0 || f.offset < end {
                return Err(Errno::EINVAL);
            }
            end = f.offset.checked_add(sz).ok_or(Errno::EINVAL)?;
            if end > value_size {
                return Err(Errno::EINVAL);
            }
            let slot = match f.kind {
                BtfFieldKind::SpinLock | BtfFieldKind::ResSpinLock => Some(0),
                BtfFieldKind::Timer => Some(1),
                BtfFieldKind::Workqueue => Some(2),
                BtfFieldKind::TaskWork => Some(3),
                BtfFieldKind::Refcount => Some(4),
                _ => None,
            };
            if let Some(s) = slot {
                seen[s] += 1;
                if seen[s] > 1 {
                    return Err(Errno::E2BIG);
                }
            }
        }
        Ok(BtfRecord { fields })
    }

    /// The fields, sorted by offset.
    pub fn fields(&self) -> &[BtfField] {
        &self.fields
    }

    /// Whether the record has no fields (the kernel stores such a record as NULL).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Offset of the `bpf_spin_lock`, if any (`btf_record_has_field(rec, BPF_SPIN_LOCK)`).
    pub fn spin_lock_off(&self) -> Option<u32> {
        self.find(|k| matches!(k, BtfFieldKind::SpinLock))
    }

    /// Offset of the `bpf_timer`, if any.
    pub fn timer_off(&self) -> Option<u32> {
        self.find(|k| matches!(k, BtfFieldKind::Timer))
    }

    /// Offset of the `bpf_wq`, if any.
    pub fn wq_off(&self) -> Option<u32> {
        self.find(|k| matches!(k, BtfFieldKind::Workqueue))
    }

    fn find(&self, pred: impl Fn(&BtfFieldKind) -> bool) -> Option<u32> {
        self.fields.iter().find(|f| pred(&f.kind)).map(|f| f.offset)
    }

    /// Whether any field is of a kind the predicate accepts.
    pub fn has(&self, pred: impl Fn(&BtfFieldKind) -> bool) -> bool {
        self.fields.iter().any(|f| pred(&f.kind))
    }
}

/// `btf_record_equal`: both empty, or identical field by field.
pub fn record_equal(a: Option<&BtfRecord>, b: Option<&BtfRecord>) -> bool {
    let a = a.filter(|r| !r.is_empty());
    let b = b.filter(|r| !r.is_empty());
    a == b
}

/// The map-type half of the kernel's `map_check_btf`: which special fields a map type allows.
///
/// Returns `EOPNOTSUPP` (95, not 524) for a field the type cannot hold, and `EACCES` when a
/// record is combined with `BPF_F_RDONLY_PROG`/`BPF_F_WRONLY_PROG`, in the kernel's order.
pub fn check_fields_allowed(map_type: u32, map_flags: u32, rec: &BtfRecord) -> Result<()> {
    if rec.is_empty() {
        return Ok(());
    }
    if map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != 0 {
        return Err(Errno::EACCES);
    }
    let local_storage = matches!(
        map_type,
        BPF_MAP_TYPE_SK_STORAGE
            | BPF_MAP_TYPE_INODE_STORAGE
            | BPF_MAP_TYPE_TASK_STORAGE
            | BPF_MAP_TYPE_CGRP_STORAGE
    );
    for f in rec.fields() {
        let ok = match f.kind {
            BtfFieldKind::SpinLock | BtfFieldKind::ResSpinLock => {
                matches!(
                    map_type,
                    BPF_MAP_TYPE_HASH | BPF_MAP_TYPE_ARRAY | BPF_MAP_TYPE_CGROUP_STORAGE
                ) || local_storage
            }
            BtfFieldKind::Timer | BtfFieldKind::Workqueue | BtfFieldKind::TaskWork => matches!(
                map_type,
                BPF_MAP_TYPE_HASH | BPF_MAP_TYPE_LRU_HASH | BPF_MAP_TYPE_ARRAY
            ),
            BtfFieldKind::Kptr { .. } | BtfFieldKind::Refcount => {
                matches!(
                    map_type,
                    BPF_MAP_TYPE_HASH
                        | BPF_MAP_TYPE_PERCPU_HASH
                        | BPF_MAP_TYPE_LRU_HASH
                        | BPF_MAP_TYPE_LRU_PERCPU_HASH
                        | BPF_MAP_TYPE_ARRAY
                        | BPF_MAP_TYPE_PERCPU_ARRAY
                ) || local_storage
            }
            BtfFieldKind::ListHead { .. } | BtfFieldKind::RbRoot { .. } => matches!(
                map_type,
                BPF_MAP_TYPE_HASH | BPF_MAP_TYPE_LRU_HASH | BPF_MAP_TYPE_ARRAY
            ),
            // Nodes live in allocated objects, never directly in map values.
            BtfFieldKind::ListNode | BtfFieldKind::RbNode => false,
        };
        if !ok {
            return Err(Errno::EOPNOTSUPP);
        }
    }
    Ok(())
}

/// Byte ranges of `0..size` that are *not* special fields, in order.
fn plain_ranges(rec: Option<&BtfRecord>, size: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let fields = rec.map(|r| r.fields()).unwrap_or(&[]);
    let mut cur = 0usize;
    let mut i = 0usize;
    core::iter::from_fn(move || {
        while cur <= size {
            if let Some(f) = fields.get(i) {
                let (off, end) = (f.offset as usize, (f.offset + f.kind.size()) as usize);
                i += 1;
                let r = (cur, off.min(size));
                cur = end;
                if r.1 > r.0 {
                    return Some(r);
                }
            } else {
                let r = (cur, size);
                cur = size + 1;
                if r.1 > r.0 {
                    return Some(r);
                }
                return None;
            }
        }
        None
    })
}

/// `copy_map_value`: copies `src` into the value at `dst`, skipping special fields.
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes and 8-byte aligned.
pub(crate) unsafe fn copy_map_value_in(rec: Option<&BtfRecord>, dst: *mut u8, src: &[u8]) {
    for (a, b) in plain_ranges(rec, src.len()) {
        // SAFETY: a..b lies inside 0..src.len(), which the caller guarantees is writable at dst.
        unsafe { crate::storage::copy_to_value(dst.add(a), &src[a..b]) };
    }
}

/// `copy_map_value` followed by `check_and_init_map_value`: copies the value at `src` into
/// `dst`, leaving special fields of `dst` zero, as the syscall gives them to user space.
///
/// # Safety
/// `src` must be valid for reads of `dst.len()` bytes and 8-byte aligned.
pub(crate) unsafe fn copy_map_value_out(rec: Option<&BtfRecord>, dst: &mut [u8], src: *const u8) {
    let len = dst.len();
    dst.fill(0);
    for (a, b) in plain_ranges(rec, len) {
        // SAFETY: a..b lies inside 0..len, which the caller guarantees is readable at src.
        unsafe { crate::storage::copy_from_value(&mut dst[a..b], src.add(a)) };
    }
}

/// A `bpf_spin_lock` living inside a map value (a 4-byte word, 0 = unlocked).
///
/// The same lock is taken by `BPF_F_LOCK` syscalls and by the `bpf_spin_lock` helper.
pub struct ValueLock<'a>(&'a AtomicU32);

impl<'a> ValueLock<'a> {
    /// Wraps the lock word at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be 4-byte aligned, valid for the lifetime `'a`, and only ever accessed
    /// atomically (it is a special field, which value copies skip).
    pub unsafe fn from_ptr(ptr: *mut u8) -> ValueLock<'a> {
        // SAFETY: the caller guarantees alignment, validity and atomic-only access.
        ValueLock(unsafe { &*(ptr as *const AtomicU32) })
    }

    /// Spins until the lock is taken (`bpf_spin_lock`).
    pub fn lock(&self) {
        let mut i = 0;
        // Acquire: pairs with the Release in `unlock`, so the previous holder's writes are seen.
        while self
            .0
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            crate::primitive::spin_hint(i);
            i = i.saturating_add(1);
        }
    }

    /// Releases the lock (`bpf_spin_unlock`).
    pub fn unlock(&self) {
        // Release: pairs with the Acquire in `lock`.
        self.0.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    fn f(offset: u32, kind: BtfFieldKind) -> BtfField {
        BtfField { offset, kind }
    }

    #[test]
    fn record_validation() {
        assert!(BtfRecord::new(vec![f(4, BtfFieldKind::SpinLock)], 8).is_ok());
        assert_eq!(
            BtfRecord::new(vec![f(6, BtfFieldKind::SpinLock)], 8),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            BtfRecord::new(vec![f(8, BtfFieldKind::Timer)], 16),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            BtfRecord::new(
                vec![f(0, BtfFieldKind::SpinLock), f(4, BtfFieldKind::SpinLock)],
                8
            ),
            Err(Errno::E2BIG)
        );
    }

    #[test]
    fn copy_skips_fields() {
        let rec = BtfRecord::new(vec![f(4, BtfFieldKind::SpinLock)], 12).unwrap();
        let mut val = [0u64; 2];
        let p = val.as_mut_ptr() as *mut u8;
        // SAFETY: val is 16 bytes, 8-aligned.
        unsafe { copy_map_value_in(Some(&rec), p, &[1u8; 12]) };
        let bytes: Vec<u8> = val.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&bytes[..12], &[1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
        let mut out = [9u8; 12];
        // Lock word set: must come out as zero.
        val[0] |= 0xffff_ffff << 32;
        // SAFETY: as above.
        unsafe { copy_map_value_out(Some(&rec), &mut out, val.as_ptr() as *const u8) };
        assert_eq!(out, [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn equality_rules() {
        let a = BtfRecord::new(vec![f(4, BtfFieldKind::SpinLock)], 8).unwrap();
        let b = BtfRecord::new(vec![f(0, BtfFieldKind::SpinLock)], 8).unwrap();
        let empty = BtfRecord::new(vec![], 8).unwrap();
        assert!(record_equal(None, Some(&empty)));
        assert!(record_equal(Some(&a), Some(&a.clone())));
        assert!(!record_equal(Some(&a), Some(&b)));
        assert!(!record_equal(Some(&a), None));
    }

    #[test]
    fn allowed_fields_per_type() {
        let lock = BtfRecord::new(vec![f(0, BtfFieldKind::SpinLock)], 8).unwrap();
        assert_eq!(check_fields_allowed(BPF_MAP_TYPE_ARRAY, 0, &lock), Ok(()));
        assert_eq!(
            check_fields_allowed(BPF_MAP_TYPE_PERCPU_ARRAY, 0, &lock),
            Err(Errno::EOPNOTSUPP)
        );
        assert_eq!(
            check_fields_allowed(BPF_MAP_TYPE_HASH, BPF_F_RDONLY_PROG, &lock),
            Err(Errno::EACCES)
        );
    }
}
