// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix match over bit strings.
//! Mirrors `kernel/bpf/lpm_trie.c` (v6.18).
//!
//! # Keys
//!
//! A key is `struct bpf_lpm_trie_key_u8 { __u32 prefixlen; __u8 data[]; }`: a host-order
//! prefix length followed by `data_size = key_size - 4` bytes. The data is a big-endian bit
//! string: bit 0 is the most significant bit of `data[0]`, so an IPv4 address goes in as its
//! four network-order bytes. A trie created with `data_size` bytes matches prefixes of
//! `0..=max_prefixlen` bits, `max_prefixlen = 8 * data_size`. Bits past `prefixlen` are
//! ignored when matching but are stored, and `get_next_key` hands them back unchanged.
//!
//! # The trie
//!
//! A binary trie, path-compressed: a node stands for `prefixlen` leading bits of its `data`,
//! and a node's children extend that prefix; which child slot a longer prefix goes to is the
//! first bit *after* the parent's prefix (`data` bit number `parent.prefixlen`). Take an IPv4
//! trie holding
//!
//! * A = 10.0.0.0/8, B = 10.1.0.0/16, C = 10.64.0.0/16, D = 10.128.0.0/9.
//!
//! B and C both extend A's eight bits with a 0 at bit 8, so both belong in A's `child[0]`;
//! they part at bit 9 (`0x01 = 0000_0001`, `0x40 = 0100_0000`). The slot therefore holds a
//! valueless *intermediate* node (IM) of prefix length 9, the bits B and C share, whose only
//! job is to tell them apart. D has a 1 at bit 8 and takes A's
//! `child[1]` directly:
//!
//! ```text
//!                       root
//!                         |
//!               +-------------------+
//!               |  A  10.0.0.0/8    |
//!               |  value            |
//!               |  [0]         [1]  |
//!               +-------------------+
//!                   |           |
//!                   |           +----------------------+
//!                   |                                  |
//!       +-----------------------+           +-------------------+
//!       |  IM 10.0.0.0/9        |           |  D  10.128.0.0/9  |
//!       |  no value (flag IM)   |           |  value            |
//!       |  [0]             [1]  |           |  [0]         [1]  |
//!       +-----------------------+           +-------------------+
//!           |               |
//!           |  bit 9 = 0    |  bit 9 = 1
//! +------------------+ +------------------+
//! |  B  10.1.0.0/16  | |  C  10.64.0.0/16 |
//! |  value           | |  value           |
//! +------------------+ +------------------+
//! ```
//!
//! A lookup walks down from the root, following at each node the key's bit after the node's
//! prefix, and remembers the last *real* node whose prefix the key matched. It stops at an empty
//! slot or at the first node the key does not match. For 10.1.2.3 that is A, IM (skipped as a
//! result), B: the answer is B. For 10.2.0.1 the walk passes A and IM and stops at B
//! (10.1/16 differs from 10.2 at bit 14), so the answer is A.
//!
//! An update walks the same way to the slot its prefix belongs in, and then does one of four
//! things: fill an empty slot; take the place (and children) of a node with the same prefix,
//! which is how a value is overwritten and how an IM node becomes real; insert itself above a
//! longer prefix it covers; or, as
//! for C above, split a slot with a new IM node whose prefix is the bits both share. A delete
//! finds the exact real node and unlinks it, keeping the shape minimal: a node with two
//! children is not unlinked but flagged IM; a leaf whose parent is IM takes that parent with
//! it (the sibling moves up into the parent's slot); a node with one child is replaced by it.
//!
//! Invariants, true whenever the lock is free:
//! 1. Down every edge `prefixlen` strictly grows, a child agrees with its parent on the
//!    parent's `prefixlen` bits, and `child[b]` holds prefixes whose next bit is `b`. Depth is
//!    thus at most `max_prefixlen + 1`.
//! 2. An IM node has exactly two children and never reaches a caller; `n_entries` counts real
//!    nodes only.
//! 3. A published node's `prefixlen`, `data` and value never change. An update *replaces* the
//!    node (as the kernel does), so a program holding a value pointer keeps reading the value
//!    it found. The one in-place change is a delete setting the IM flag of a two-child node.
//!
//! `get_next_key` walks in **postorder** (`child[0]` subtree, `child[1]` subtree, node):
//! more specific prefixes before the ones covering them, and at a split the 0 side first. Above
//! that is B, C, D, A. A key that is not an element (absent, or only an IM node) or is longer
//! than `max_prefixlen` restarts the walk at the first node in postorder, where no key at all
//! starts it too.
//!
//! # Locking and reclamation
//!
//! Writers (update, delete) serialise on `lock` (the kernel's raw spinlock, an rqspinlock in
//! 6.18). Readers (lookups from programs and syscalls, `get_next_key`) take no lock: they walk
//! under the caller's read-side section. A node becomes reachable through a Release store into
//! a slot (`rcu_assign_pointer`); readers load slots with Acquire, so a node's header, data and
//! value are initialised before any reader can see it. A node a writer unlinks is freed only
//! after every reader that could have reached it has left its section (the kernel's
//! `bpf_mem_cache_free_rcu`).
//!
//! Which sections? Syscalls and non-sleepable programs read under the normal flavour. Sleepable
//! programs cannot name a trie (it is not in the verifier's sleepable allow-list), but they may
//! use ARRAY_OF_MAPS and HASH_OF_MAPS, and through those reach an inner trie under tasks-trace
//! RCU only. The kernel stays memory-safe there because `bpf_mem_alloc` hands node memory back
//! to the slab only after a tasks-trace grace period as well. Here nodes are therefore freed
//! after a tasks-trace grace period followed by a normal one
//! ([`Rcu::call_rcu_tasks_trace_then_rcu`]); the writer never waits for either.
//!
//! # Deviations from the kernel
//! * The value starts at an 8-byte-aligned offset inside the node (the kernel puts it right
//!   after `data`); `mem_usage` still charges the kernel's `24 + data_size + value_size`.
//! * The rqspinlock's `EDEADLK`/`ETIMEDOUT` and the `ENOMEM` of `get_next_key`'s node stack
//!   cannot happen here.
//! * A key or value slice shorter than the map's sizes gives `EINVAL` (or no match for a
//!   program-side lookup); the kernel reads what it needs from a pointer.

use core::ptr::{self, NonNull};
use std::alloc::{self, Layout};

use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::primitive::{AtomicPtr, AtomicU32, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::rcu::Rcu;
use crate::record::{copy_map_value_in, copy_map_value_out, BtfRecord};
use crate::registry::{AllocCtx, BtfKind, MapTypeOps};
use crate::syscall::{
    generic_map_delete_batch, generic_map_lookup_batch, generic_map_update_batch,
};
use crate::uapi::*;

/// Intermediate node: splits two subtrees, carries no value.
const LPM_TREE_NODE_FLAG_IM: u32 = 1 << 0;

/// Largest `data_size`: 2048-bit prefixes.
const LPM_DATA_SIZE_MAX: u32 = 256;
/// Smallest `data_size`.
const LPM_DATA_SIZE_MIN: u32 = 1;
/// `offsetof(struct bpf_lpm_trie_key_u8, data)`.
const LPM_KEY_HDR_SIZE: u32 = 4;
/// `LPM_KEY_SIZE(LPM_DATA_SIZE_MIN)`.
const LPM_KEY_SIZE_MIN: u32 = LPM_KEY_HDR_SIZE + LPM_DATA_SIZE_MIN;
/// `LPM_KEY_SIZE(LPM_DATA_SIZE_MAX)`.
const LPM_KEY_SIZE_MAX: u32 = LPM_KEY_HDR_SIZE + LPM_DATA_SIZE_MAX;
/// `sizeof(struct lpm_trie_node)` in 6.18 (two child pointers, `prefixlen`, `flags`; the
/// `rcu_head` left with the switch to `bpf_mem_alloc`). Kernel 6.18: the largest accepted
/// `value_size` is 4194024 = 4 MiB - 256 - 24.
const LPM_NODE_SIZE: u64 = 24;
/// Smallest value.
const LPM_VAL_SIZE_MIN: u32 = 1;
/// A whole node, key data and value included, must fit one kmalloc.
const LPM_VAL_SIZE_MAX: u64 = KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX as u64 - LPM_NODE_SIZE;

/// `BPF_F_ACCESS_MASK`.
const BPF_F_ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;
/// The only flags a trie accepts (`BPF_F_NO_PREALLOC` is also mandatory).
const LPM_CREATE_FLAG_MASK: u32 = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK;

/// Header of a trie node (`struct lpm_trie_node`). The allocation continues with `data_size`
/// key bytes at [`LpmTrie::data_off`] and, at [`LpmTrie::value_off`], `value_size` value bytes
/// (present but unused in IM nodes: every node has the same layout, as the kernel allocates
/// all nodes from one `bpf_mem_alloc` of leaf size).
#[repr(C)]
struct Node {
    /// Subtrees whose next bit after `prefixlen` is 0 and 1. Written only under the trie lock;
    /// stores that make a node reachable are Release.
    child: [AtomicPtr<Node>; 2],
    /// Number of leading `data` bits this node stands for. Fixed before publication.
    prefixlen: u32,
    /// `LPM_TREE_NODE_FLAG_IM` or 0. Set at allocation, or by a delete under the lock; read
    /// Relaxed by readers (a racing reader may still return the value of a node being deleted,
    /// as on Linux).
    flags: AtomicU32,
}

impl Node {
    fn is_im(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & LPM_TREE_NODE_FLAG_IM != 0
    }
}

/// The trie (`struct lpm_trie`).
pub struct LpmTrie {
    /// The top node, or null when the trie is empty.
    root: AtomicPtr<Node>,
    /// Serialises writers. Readers never take it.
    lock: Mutex<()>,
    /// Real (non-IM) nodes linked into the trie; at most `max_entries`. Changed only under
    /// `lock`, read without it by `mem_usage` (`READ_ONCE`).
    n_entries: AtomicUsize,
    /// `max_entries` as created.
    max_entries: usize,
    /// `key_size - 4`: bytes of key data per key and per node.
    data_size: usize,
    /// `8 * data_size`.
    max_prefixlen: u32,
    /// Bytes of value per node.
    value_size: usize,
    /// Offset of the key data inside a node allocation (right after the header).
    data_off: usize,
    /// Offset of the value inside a node allocation: `data_off + data_size` rounded up to 8, so
    /// values are aligned for the word copies of `crate::storage` and for programs.
    value_off: usize,
    /// Layout of every node allocation.
    layout: Layout,
}

/// A node unlinked from the trie, waiting for its grace period.
struct RetiredNode {
    node: *mut Node,
    layout: Layout,
}

// SAFETY: a retired node is unreachable from the trie; the RCU callback that owns this value is
// the only code that touches it again, once, to free it.
unsafe impl Send for RetiredNode {}

/// Bit `index` of a big-endian bit string (`extract_bit`). Out-of-range bits read as 0; the
/// algorithms below never ask for one (invariant 1 keeps every index below `max_prefixlen`).
fn extract_bit(data: &[u8], index: usize) -> usize {
    data.get(index / 8)
        .map_or(0, |b| usize::from((b >> (7 - index % 8)) & 1))
}

/// `longest_prefix_match`: how many leading bits `a` (a node) and `b` (a key) share, capped at
/// the shorter of their prefix lengths. Compares eight bytes at a time, as the kernel's 64-bit
/// fast path does.
fn longest_prefix_match(a_len: u32, a: &[u8], b_len: u32, b: &[u8]) -> u32 {
    let limit = a_len.min(b_len);
    let mut bits = 0u32;
    for (x, y) in a.chunks(8).zip(b.chunks(8)) {
        if bits >= limit {
            break;
        }
        let (mut wx, mut wy) = ([0u8; 8], [0u8; 8]);
        wx[..x.len()].copy_from_slice(x);
        wy[..y.len()].copy_from_slice(y);
        let diff = u64::from_be_bytes(wx) ^ u64::from_be_bytes(wy);
        if diff != 0 {
            // The zero padding of a short tail chunk is equal on both sides, so the first
            // difference lies inside the real bytes.
            return (bits + diff.leading_zeros()).min(limit);
        }
        bits += 8 * x.len() as u32;
    }
    bits.min(limit)
}

/// `bpf_map_flags_access_ok`: a map cannot be both read-only and write-only for programs.
fn flags_access_ok(flags: u32) -> bool {
    flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
}

/// Where `get_next_key` continues after finding the given key.
enum Successor {
    /// The next key is this real node (an ancestor of the given key).
    Node(*mut Node),
    /// The next key is the first node in postorder of this subtree.
    FirstOf(*mut Node),
    /// The given key was the last one.
    End,
}

impl LpmTrie {
    /// `trie_alloc` after its checks: the layout of the trie's nodes. Assumes `attr` passed
    /// [`trie_alloc`]'s checks.
    fn new(attr: &MapAttr) -> Result<LpmTrie> {
        let data_size = (attr.key_size - LPM_KEY_HDR_SIZE) as usize;
        let value_size = attr.value_size as usize;
        let data_off = core::mem::size_of::<Node>();
        let value_off = data_off
            .checked_add(data_size)
            .and_then(|x| x.checked_add(7))
            .map(|x| x & !7)
            .ok_or(Errno::ENOMEM)?;
        let size = value_off.checked_add(value_size).ok_or(Errno::ENOMEM)?;
        let align = core::mem::align_of::<Node>().max(8);
        let layout = Layout::from_size_align(size, align).map_err(|_| Errno::ENOMEM)?;
        Ok(LpmTrie {
            root: AtomicPtr::new(ptr::null_mut()),
            lock: Mutex::new(()),
            n_entries: AtomicUsize::new(0),
            max_entries: attr.max_entries as usize,
            data_size,
            max_prefixlen: (data_size * 8) as u32,
            value_size,
            data_off,
            value_off,
            layout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // Nothing panics while holding the lock, so a poisoned lock still guards a sound trie.
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Splits a key into its prefix length and data, or `None` if the slice is too short.
    fn split_key<'k>(&self, key: &'k [u8]) -> Option<(u32, &'k [u8])> {
        let hdr: [u8; 4] = key.get(..4)?.try_into().ok()?;
        let data = key.get(4..4 + self.data_size)?;
        Some((u32::from_ne_bytes(hdr), data))
    }

    /// The key data of `node`.
    ///
    /// # Safety
    /// `node` must be a live node of this trie (reached from the root inside a read-side
    /// section or under the lock, or still private) for as long as the slice is used. The
    /// bytes never change after the node is published (invariant 3).
    unsafe fn data<'a>(&self, node: *const Node) -> &'a [u8] {
        // SAFETY: the allocation holds `data_size` key bytes at `data_off` (see `new`), written
        // once before publication; the caller keeps the node alive.
        unsafe {
            core::slice::from_raw_parts((node as *const u8).add(self.data_off), self.data_size)
        }
    }

    /// The value memory of `node`.
    ///
    /// # Safety
    /// As [`LpmTrie::data`]; the pointer is only valid while the node is.
    unsafe fn value_ptr(&self, node: *const Node) -> *mut u8 {
        // SAFETY: `value_off + value_size` is inside the node's allocation (see `new`).
        unsafe { (node as *mut u8).add(self.value_off) }
    }

    /// `lpm_trie_node_alloc`: a private node holding `data` and, for a real node, `value`.
    /// `ENOMEM` if the allocator refuses.
    fn alloc_node(
        &self,
        prefixlen: u32,
        flags: u32,
        data: &[u8],
        value: Option<(&[u8], Option<&BtfRecord>)>,
    ) -> Result<*mut Node> {
        // SAFETY: the layout is non-zero sized (a header and at least one byte of data).
        let node = unsafe { alloc::alloc_zeroed(self.layout) } as *mut Node;
        if node.is_null() {
            return Err(Errno::ENOMEM);
        }
        let header = Node {
            child: [
                AtomicPtr::new(ptr::null_mut()),
                AtomicPtr::new(ptr::null_mut()),
            ],
            prefixlen,
            flags: AtomicU32::new(flags),
        };
        // SAFETY: `node` is a fresh allocation of `layout`, aligned for `Node` and large enough
        // for the header, `data_size` bytes at `data_off` and `value_size` bytes at `value_off`;
        // nobody else can see it yet. `data` and `value` are exactly those sizes (callers pass
        // slices cut by `split_key`, `data` or `value_size`).
        unsafe {
            ptr::write(node, header);
            let n = data.len().min(self.data_size);
            ptr::copy_nonoverlapping(data.as_ptr(), (node as *mut u8).add(self.data_off), n);
            if let Some((value, rec)) = value {
                copy_map_value_in(rec, self.value_ptr(node), value);
            }
        }
        Ok(node)
    }

    /// Frees a node at once.
    ///
    /// # Safety
    /// `node` came from `alloc_node` of a trie with this `layout`, and nobody can reach it: it
    /// was never published, or it was unlinked and a grace period has passed, or the whole trie
    /// is being dropped.
    unsafe fn free_node(node: *mut Node, layout: Layout) {
        // SAFETY: the caller owns the node exclusively; it was initialised by `alloc_node`.
        unsafe {
            ptr::drop_in_place(node);
            alloc::dealloc(node as *mut u8, layout);
        }
    }

    /// Frees an unlinked node once readers of both flavours that could have reached it are
    /// gone (`bpf_mem_cache_free_rcu`; see the module doc for why both). Null is ignored.
    fn free_rcu(&self, rcu: &Rcu, node: *mut Node) {
        if node.is_null() {
            return;
        }
        let retired = RetiredNode {
            node,
            layout: self.layout,
        };
        rcu.call_rcu_tasks_trace_then_rcu(Box::new(move || {
            let r = retired;
            // SAFETY: the writer unlinked the node under the lock before queueing this callback,
            // so only readers that started before the unlink can hold it, and the grace periods
            // of both flavours have waited for all of them.
            unsafe { LpmTrie::free_node(r.node, r.layout) }
        }));
    }

    /// `trie_check_add_elem`: a new real node is about to be linked. Called with the lock held.
    fn check_add_elem(&self, flags: u64) -> Result<()> {
        if flags == BPF_EXIST {
            return Err(Errno::ENOENT);
        }
        // Relaxed: the lock orders every change of n_entries; mem_usage only wants a recent value.
        let n = self.n_entries.load(Ordering::Relaxed);
        if n == self.max_entries {
            return Err(Errno::ENOSPC);
        }
        self.n_entries.store(n + 1, Ordering::Relaxed);
        Ok(())
    }

    fn dec_entries(&self) {
        let n = self.n_entries.load(Ordering::Relaxed);
        self.n_entries.store(n.saturating_sub(1), Ordering::Relaxed);
    }

    /// `trie_lookup_elem`: the real node holding the longest prefix of `key`.
    ///
    /// The key's own `prefixlen` caps the match: only nodes with `prefixlen <=` the key's are
    /// candidates, and a key longer than `max_prefixlen` matches nothing.
    ///
    /// # Safety
    /// The caller is inside a read-side section (of either flavour) or holds the lock; the
    /// returned node stays valid until that section ends.
    unsafe fn lookup(&self, key: &[u8]) -> Option<NonNull<Node>> {
        let (plen, kdata) = self.split_key(key)?;
        if plen > self.max_prefixlen {
            return None;
        }
        let mut found: *mut Node = ptr::null_mut();
        // Acquire: pairs with the Release stores in `insert_locked`/`delete_locked` that
        // publish nodes, so the header and data read below are initialised.
        let mut node = self.root.load(Ordering::Acquire);
        while !node.is_null() {
            // SAFETY: reached from the root inside the caller's read-side section: the node
            // can be unlinked meanwhile but is freed only after the section ends.
            let (n, data) = unsafe { (&*node, self.data(node)) };
            let matchlen = longest_prefix_match(n.prefixlen, data, plen, kdata);
            if matchlen == self.max_prefixlen {
                // A full-length match is a real node: IM nodes are always shorter than their
                // children (invariants 1 and 2).
                found = node;
                break;
            }
            if matchlen < n.prefixlen {
                break;
            }
            if !n.is_im() {
                found = node;
            }
            // Acquire: as for the root.
            node = n.child[extract_bit(kdata, n.prefixlen as usize)].load(Ordering::Acquire);
        }
        NonNull::new(found)
    }

    /// `trie_update_elem`. Context: both.
    fn update(
        &self,
        rcu: &Rcu,
        rec: Option<&BtfRecord>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        if flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let (plen, kdata) = self.split_key(key).ok_or(Errno::EINVAL)?;
        if plen > self.max_prefixlen {
            return Err(Errno::EINVAL);
        }
        let value = value.get(..self.value_size).ok_or(Errno::EINVAL)?;
        // Allocated and filled before taking the lock, as the kernel does.
        let new = self.alloc_node(plen, 0, kdata, Some((value, rec)))?;
        let (ret, old) = {
            let _guard = self.lock();
            // SAFETY: the lock is held and `new` is private and holds (plen, kdata).
            unsafe { self.insert_locked(new, plen, kdata, flags) }
        };
        if ret.is_err() {
            // SAFETY: `new` was not linked: every error return of `insert_locked` precedes the
            // store that would publish it.
            unsafe { LpmTrie::free_node(new, self.layout) };
        }
        self.free_rcu(rcu, old);
        ret
    }

    /// The locked half of `trie_update_elem`: links `new` and returns the node it replaced
    /// (to be freed after a grace period), or null.
    ///
    /// # Safety
    /// The lock is held, and `new` is a private node of this trie with prefix `plen` and data
    /// `kdata`.
    unsafe fn insert_locked(
        &self,
        new: *mut Node,
        plen: u32,
        kdata: &[u8],
        flags: u64,
    ) -> (Result<()>, *mut Node) {
        let nul = ptr::null_mut();
        let mut slot: &AtomicPtr<Node> = &self.root;
        let mut matchlen = 0;
        let mut node;
        loop {
            // Relaxed: every store to a slot happens under the lock we hold.
            node = slot.load(Ordering::Relaxed);
            if node.is_null() {
                break;
            }
            // SAFETY: linked nodes are live while the lock is held (unlinking takes the lock,
            // and frees wait for a grace period after that).
            let (n, data) = unsafe { (&*node, self.data(node)) };
            matchlen = longest_prefix_match(n.prefixlen, data, plen, kdata);
            if n.prefixlen != matchlen || n.prefixlen == plen {
                break;
            }
            slot = &n.child[extract_bit(kdata, n.prefixlen as usize)];
        }
        // SAFETY: `new` is private to this call (caller's promise).
        let new_ref = unsafe { &*new };

        if node.is_null() {
            if let Err(e) = self.check_add_elem(flags) {
                return (Err(e), nul);
            }
            // Release: pairs with the Acquire loads of readers; `new` is fully initialised.
            slot.store(new, Ordering::Release);
            return (Ok(()), nul);
        }

        // SAFETY: as in the loop.
        let (n, ndata) = unsafe { (&*node, self.data(node)) };
        if n.prefixlen == matchlen {
            // Same prefix: replace the node. A real one keeps the count; an IM one becomes real.
            if !n.is_im() {
                if flags == BPF_NOEXIST {
                    return (Err(Errno::EEXIST), nul);
                }
            } else if let Err(e) = self.check_add_elem(flags) {
                return (Err(e), nul);
            }
            // Relaxed: `new` is still private; the Release store below publishes these.
            new_ref.child[0].store(n.child[0].load(Ordering::Relaxed), Ordering::Relaxed);
            new_ref.child[1].store(n.child[1].load(Ordering::Relaxed), Ordering::Relaxed);
            // Release: pairs with the Acquire loads of readers.
            slot.store(new, Ordering::Release);
            return (Ok(()), node);
        }

        if let Err(e) = self.check_add_elem(flags) {
            return (Err(e), nul);
        }

        if matchlen == plen {
            // The new prefix covers `node`: it goes in between, `node` below it.
            new_ref.child[extract_bit(ndata, matchlen as usize)].store(node, Ordering::Relaxed);
            // Release: pairs with the Acquire loads of readers.
            slot.store(new, Ordering::Release);
            return (Ok(()), nul);
        }

        // Neither covers the other: split the slot at their common prefix.
        let im = match self.alloc_node(matchlen, LPM_TREE_NODE_FLAG_IM, ndata, None) {
            Ok(im) => im,
            Err(e) => {
                self.dec_entries();
                return (Err(e), nul);
            }
        };
        // SAFETY: `im` is private until the store below.
        let im_ref = unsafe { &*im };
        let (c0, c1) = if extract_bit(kdata, matchlen as usize) == 1 {
            (node, new)
        } else {
            (new, node)
        };
        im_ref.child[0].store(c0, Ordering::Relaxed);
        im_ref.child[1].store(c1, Ordering::Relaxed);
        // Release: pairs with the Acquire loads of readers; publishes `im` and `new` at once.
        slot.store(im, Ordering::Release);
        (Ok(()), nul)
    }

    /// `trie_delete_elem`. Context: both.
    fn delete(&self, rcu: &Rcu, key: &[u8]) -> Result<()> {
        let (plen, kdata) = self.split_key(key).ok_or(Errno::EINVAL)?;
        if plen > self.max_prefixlen {
            return Err(Errno::EINVAL);
        }
        let (ret, retired) = {
            let _guard = self.lock();
            // SAFETY: the lock is held.
            unsafe { self.delete_locked(plen, kdata) }
        };
        for node in retired {
            self.free_rcu(rcu, node);
        }
        ret
    }

    /// The locked half of `trie_delete_elem`: unlinks the exact real node and returns the
    /// nodes to free after a grace period (null entries are unused).
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn delete_locked(&self, plen: u32, kdata: &[u8]) -> (Result<()>, [*mut Node; 2]) {
        let none = [ptr::null_mut(); 2];
        // `trim` is the slot holding `node`; `trim2` the slot holding its parent.
        let mut trim: &AtomicPtr<Node> = &self.root;
        let mut trim2 = trim;
        let mut parent: *mut Node = ptr::null_mut();
        let mut matchlen = 0;
        let mut node;
        loop {
            // Relaxed: every store to a slot happens under the lock we hold.
            node = trim.load(Ordering::Relaxed);
            if node.is_null() {
                break;
            }
            // SAFETY: linked nodes are live while the lock is held.
            let (n, data) = unsafe { (&*node, self.data(node)) };
            matchlen = longest_prefix_match(n.prefixlen, data, plen, kdata);
            if n.prefixlen != matchlen || n.prefixlen == plen {
                break;
            }
            parent = node;
            trim2 = trim;
            trim = &n.child[extract_bit(kdata, n.prefixlen as usize)];
        }
        if node.is_null() {
            return (Err(Errno::ENOENT), none);
        }
        // SAFETY: as in the loop.
        let n = unsafe { &*node };
        if n.prefixlen != plen || n.prefixlen != matchlen || n.is_im() {
            return (Err(Errno::ENOENT), none);
        }

        self.dec_entries();

        let c0 = n.child[0].load(Ordering::Relaxed);
        let c1 = n.child[1].load(Ordering::Relaxed);
        if !c0.is_null() && !c1.is_null() {
            // Still needed to split its subtrees: keep it as an IM node. Relaxed: readers
            // that miss the flag return the value of a node deleted concurrently, which is
            // allowed; the memory stays valid until the node is unlinked and a grace period
            // passes.
            n.flags.store(
                n.flags.load(Ordering::Relaxed) | LPM_TREE_NODE_FLAG_IM,
                Ordering::Relaxed,
            );
            return (Ok(()), none);
        }

        if !parent.is_null() && c0.is_null() && c1.is_null() {
            // SAFETY: `parent` is linked (it holds `node`), hence live under the lock.
            let p = unsafe { &*parent };
            if p.is_im() {
                // An IM parent left with one child is useless: its other child takes its slot.
                let sibling = if p.child[0].load(Ordering::Relaxed) == node {
                    p.child[1].load(Ordering::Relaxed)
                } else {
                    p.child[0].load(Ordering::Relaxed)
                };
                // Release: pairs with the Acquire loads of readers reaching `sibling` by its
                // new path.
                trim2.store(sibling, Ordering::Release);
                return (Ok(()), [parent, node]);
            }
        }

        // Zero or one child: the child (or nothing) takes the node's slot.
        let heir = if !c0.is_null() { c0 } else { c1 };
        // Release: pairs with the Acquire loads of readers reaching `heir` by its new path.
        trim.store(heir, Ordering::Release);
        (Ok(()), [node, ptr::null_mut()])
    }

    /// The first node of `root`'s subtree in postorder: the leftmost real node, descending into
    /// `child[0]` where there is one. Null only if `root` is null.
    ///
    /// # Safety
    /// As [`LpmTrie::lookup`].
    unsafe fn first_postorder(&self, root: *mut Node) -> *mut Node {
        let mut next = ptr::null_mut();
        let mut node = root;
        while !node.is_null() {
            // SAFETY: reached from the root inside the caller's read-side section.
            let n = unsafe { &*node };
            if n.is_im() {
                // IM nodes always have two children (invariant 2): keep going left.
                // Acquire: pairs with the Release stores that publish nodes.
                node = n.child[0].load(Ordering::Acquire);
            } else {
                next = node;
                // Acquire: as above.
                node = n.child[0].load(Ordering::Acquire);
                if node.is_null() {
                    node = n.child[1].load(Ordering::Acquire);
                }
            }
        }
        next
    }

    /// The postorder successor of the real node `(plen, kdata)`, found by walking down from
    /// `root` and back up the recorded path.
    ///
    /// # Safety
    /// As [`LpmTrie::lookup`].
    unsafe fn successor(&self, root: *mut Node, plen: u32, kdata: &[u8]) -> Successor {
        // The kernel's node_stack: the path from the root, at most max_prefixlen + 1 deep.
        let mut stack: Vec<*mut Node> = Vec::with_capacity(self.max_prefixlen as usize + 1);
        let mut node = root;
        let mut matchlen = 0;
        while !node.is_null() {
            stack.push(node);
            // SAFETY: reached from the root inside the caller's read-side section.
            let (n, data) = unsafe { (&*node, self.data(node)) };
            matchlen = longest_prefix_match(n.prefixlen, data, plen, kdata);
            if n.prefixlen != matchlen || n.prefixlen == plen {
                break;
            }
            // Acquire: pairs with the Release stores that publish nodes.
            node = n.child[extract_bit(kdata, n.prefixlen as usize)].load(Ordering::Acquire);
        }
        if node.is_null() {
            return Successor::FirstOf(root);
        }
        // SAFETY: as above.
        let n = unsafe { &*node };
        if n.prefixlen != matchlen || n.is_im() {
            return Successor::FirstOf(root);
        }
        // Found: climb. Coming up from a left child, the right subtree is next; otherwise the
        // parent itself, unless it is IM.
        let mut idx = stack.len() - 1;
        while idx > 0 {
            let parent = stack[idx - 1];
            // SAFETY: on the path walked above, inside the same read-side section.
            let p = unsafe { &*parent };
            // Acquire: pairs with the Release stores that publish nodes.
            if p.child[0].load(Ordering::Acquire) == node {
                let right = p.child[1].load(Ordering::Acquire);
                if !right.is_null() {
                    return Successor::FirstOf(right);
                }
            }
            if !p.is_im() {
                return Successor::Node(parent);
            }
            node = parent;
            idx -= 1;
        }
        Successor::End
    }

    /// `trie_get_next_key`. Context: syscall.
    ///
    /// # Safety
    /// As [`LpmTrie::lookup`].
    unsafe fn next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        let out = next_key
            .get_mut(..LPM_KEY_HDR_SIZE as usize + self.data_size)
            .ok_or(Errno::EINVAL)?;
        // Acquire: pairs with the Release stores that publish nodes.
        let root = self.root.load(Ordering::Acquire);
        if root.is_null() {
            return Err(Errno::ENOENT);
        }
        let start = match key {
            None => root,
            Some(k) => {
                let (plen, kdata) = self.split_key(k).ok_or(Errno::EINVAL)?;
                if plen > self.max_prefixlen {
                    root
                } else {
                    // SAFETY: the caller's read-side section covers this walk.
                    match unsafe { self.successor(root, plen, kdata) } {
                        Successor::Node(n) => return self.copy_key_out(n, out),
                        Successor::FirstOf(sub) => sub,
                        Successor::End => return Err(Errno::ENOENT),
                    }
                }
            }
        };
        // SAFETY: the caller's read-side section covers this walk.
        let next = unsafe { self.first_postorder(start) };
        if next.is_null() {
            // Unreachable while invariant 2 holds; a missing key is the kernel's answer for
            // "nothing after this".
            return Err(Errno::ENOENT);
        }
        self.copy_key_out(next, out)
    }

    /// Writes `node`'s prefix length and data as a key.
    fn copy_key_out(&self, node: *mut Node, out: &mut [u8]) -> Result<()> {
        // SAFETY: `node` came from a walk inside the caller's read-side section.
        let (n, data) = unsafe { (&*node, self.data(node)) };
        out[..4].copy_from_slice(&n.prefixlen.to_ne_bytes());
        out[4..4 + self.data_size].copy_from_slice(data);
        Ok(())
    }

    /// `trie_mem_usage`: every real node at the kernel's node size.
    fn usage(&self) -> u64 {
        let elem = LPM_NODE_SIZE + self.data_size as u64 + self.value_size as u64;
        elem * self.n_entries.load(Ordering::Relaxed) as u64
    }
}

impl Drop for LpmTrie {
    /// `trie_free`: no program or syscall can reach the map any more, so linked nodes are freed
    /// at once; nodes unlinked earlier belong to their pending RCU callbacks.
    fn drop(&mut self) {
        let mut stack = vec![self.root.load(Ordering::Relaxed)];
        while let Some(node) = stack.pop() {
            if node.is_null() {
                continue;
            }
            // SAFETY: the trie is exclusively ours (`&mut self`); each linked node is reached
            // exactly once (it is a tree) and freed after its children were collected.
            unsafe {
                let n = &*node;
                stack.push(n.child[0].load(Ordering::Relaxed));
                stack.push(n.child[1].load(Ordering::Relaxed));
                LpmTrie::free_node(node, self.layout);
            }
        }
    }
}

/// `trie_alloc`. All of its checks give `EINVAL`, and they run in `map_alloc`, after
/// `map_create`'s capability check (kernel 6.18: an LPM create with `max_entries == 0` by a user
/// without CAP_BPF fails with EPERM). The trie has no `map_alloc_check`.
fn trie_alloc(attr: &MapAttr, _ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    if attr.max_entries == 0
        || attr.map_flags & BPF_F_NO_PREALLOC == 0
        || attr.map_flags & !LPM_CREATE_FLAG_MASK != 0
        || !flags_access_ok(attr.map_flags)
        || attr.key_size < LPM_KEY_SIZE_MIN
        || attr.key_size > LPM_KEY_SIZE_MAX
        || attr.value_size < LPM_VAL_SIZE_MIN
        || u64::from(attr.value_size) > LPM_VAL_SIZE_MAX
    {
        return Err(Errno::EINVAL);
    }
    Ok(Box::new(LpmTrie::new(attr)?))
}

/// `trie_check_btf`: keys must be a struct embedding `struct bpf_lpm_trie_key_u8`. A map
/// without a key type gets the void type here and fails too.
fn trie_check_btf(_attr: &MapAttr, key: BtfKind, _value: BtfKind) -> Result<()> {
    if key == BtfKind::Struct {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// `trie_map_ops`. Needs CAP_BPF (not in `map_create`'s unprivileged list); may be an inner map
/// with the generic compatibility test (`max_entries` not compared).
pub static TRIE_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_LPM_TRIE,
    alloc_check: None,
    alloc: trie_alloc,
    meta_equal: Some(crate::map::map_in_map::meta_equal),
    check_btf: Some(trie_check_btf),
    unprivileged: false,
};

impl MapOps for LpmTrie {
    /// `trie_lookup_elem`. Context: program. The pointer is into the matched node, which is
    /// freed only after the caller's read-side section ends.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        // SAFETY: programs run inside a read-side section (normal, or tasks-trace for sleepable
        // programs reaching an inner trie); nodes outlive both (see `free_rcu`).
        let node = unsafe { self.lookup(key) }?;
        // SAFETY: the node is live for the caller's section; the value lies inside it.
        NonNull::new(unsafe { self.value_ptr(node.as_ptr()) })
    }

    /// The verifier refuses `bpf_map_lookup_percpu_elem` on a trie (not a per-CPU map).
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_map_copy_value` over `trie_lookup_elem`: `ENOENT` when no prefix matches.
    /// Context: syscall. `BPF_F_LOCK` never reaches here: trie values cannot hold a spin lock.
    fn lookup_elem_sys(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        _flags: u64,
    ) -> Result<()> {
        let out = value.get_mut(..self.value_size).ok_or(Errno::EINVAL)?;
        // SAFETY: syscall-side operations run inside a read-side section (crate::syscall).
        let node = unsafe { self.lookup(key) }.ok_or(Errno::ENOENT)?;
        // SAFETY: the node is live for the section; its value is `value_size` bytes, 8-aligned.
        unsafe { copy_map_value_out(map.record(), out, self.value_ptr(node.as_ptr())) };
        Ok(())
    }

    /// `trie_update_elem`: `EINVAL` for flags above `BPF_EXIST` or a prefix longer than the
    /// trie's, then `EEXIST` (NOEXIST on a present key), `ENOENT` (EXIST on an absent key or an
    /// IM node), `ENOSPC` (a new key in a full trie; replacing a present key is always
    /// allowed). Context: both.
    fn update_elem(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        self.update(map.rcu(), map.record(), key, value, flags)
    }

    /// `trie_delete_elem`: `EINVAL` for a prefix longer than the trie's, `ENOENT` unless a real
    /// node has exactly this prefix. Context: both.
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.delete(map.rcu(), key)
    }

    /// `trie_get_next_key`: postorder. Context: syscall.
    fn get_next_key(&self, _map: &BpfMap, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        // SAFETY: syscall-side operations run inside a read-side section (crate::syscall).
        unsafe { self.next_key(key, next_key) }
    }

    /// `map_lookup_and_delete_elem` is not in the trie's ops; the syscall answers `ENOTSUPP`
    /// (kernel 6.18: 524) before getting here.
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

    /// No `map_push_elem`: the verifier's `check_map_func_compatibility` refuses the helper on
    /// a trie with `EINVAL`.
    fn push_elem(&self, _map: &BpfMap, _value: &[u8], _flags: u64) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// No `map_pop_elem`: refused by the verifier with `EINVAL`.
    fn pop_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// No `map_peek_elem`: refused by the verifier with `EINVAL`.
    fn peek_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
        Err(Errno::EINVAL)
    }

    /// `generic_map_lookup_batch`, in `get_next_key` (postorder) order.
    fn lookup_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_lookup_batch(map, ctx, args)
    }

    /// No `map_lookup_and_delete_batch`: `BPF_DO_BATCH` answers `ENOTSUPP` and leaves `count`
    /// as passed (kernel 6.18).
    fn lookup_and_delete_batch(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `generic_map_update_batch`.
    fn update_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_update_batch(map, ctx, args)
    }

    /// `generic_map_delete_batch`.
    fn delete_batch(&self, map: &BpfMap, ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        generic_map_delete_batch(map, ctx, args)
    }

    /// No `map_for_each_callback`: the verifier refuses `bpf_for_each_map_elem` with
    /// `ENOTSUPP` ("callback function not allowed for map").
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_mmap`: `bpf_map_mmap` answers `ENOTSUPP` (kernel 6.18: 524).
    fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
        Err(Errno::ENOTSUPP)
    }

    /// No `map_gen_lookup`: lookups are always helper calls.
    fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
        None
    }

    /// `trie_mem_usage`: `(24 + data_size + value_size) * n_entries` (kernel 6.18: 96 for three
    /// entries of an 8-byte key and a 4-byte value).
    fn mem_usage(&self, _map: &BpfMap) -> u64 {
        self.usage()
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    fn trie(key_size: u32, value_size: u32, max_entries: u32) -> LpmTrie {
        let attr = MapAttr::new(BPF_MAP_TYPE_LPM_TRIE, key_size, value_size, max_entries)
            .flags(BPF_F_NO_PREALLOC);
        LpmTrie::new(&attr).unwrap()
    }

    fn key(plen: u32, data: &[u8]) -> Vec<u8> {
        let mut k = plen.to_ne_bytes().to_vec();
        k.extend_from_slice(data);
        k
    }

    fn bit_by_bit(a_len: u32, a: &[u8], b_len: u32, b: &[u8]) -> u32 {
        let limit = a_len.min(b_len);
        (0..limit)
            .take_while(|&i| extract_bit(a, i as usize) == extract_bit(b, i as usize))
            .count() as u32
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn extract_bit_is_big_endian() {
        let d = [0b1000_0001, 0b0100_0000];
        assert_eq!(extract_bit(&d, 0), 1);
        assert_eq!(extract_bit(&d, 1), 0);
        assert_eq!(extract_bit(&d, 7), 1);
        assert_eq!(extract_bit(&d, 9), 1);
        assert_eq!(extract_bit(&d, 16), 0, "out of range reads 0");
    }

    #[test]
    fn prefix_match_agrees_with_bitwise() {
        let mut rng = Rng(0x1234_5678);
        for size in [1usize, 2, 3, 4, 7, 8, 9, 16, 17] {
            for _ in 0..500 {
                let a: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
                let mut b = a.clone();
                // Flip one random bit (or none) so long common prefixes are common.
                let flip = rng.below(8 * size as u64 + 1) as usize;
                if flip < 8 * size {
                    b[flip / 8] ^= 0x80 >> (flip % 8);
                }
                let max = 8 * size as u32;
                let (la, lb) = (
                    rng.below(u64::from(max) + 1) as u32,
                    rng.below(u64::from(max) + 1) as u32,
                );
                assert_eq!(
                    longest_prefix_match(la, &a, lb, &b),
                    bit_by_bit(la, &a, lb, &b),
                    "{a:?} {b:?} {la} {lb}"
                );
            }
        }
    }

    #[test]
    fn layout_aligns_values() {
        for ks in [5u32, 6, 8, 13, 20, 260] {
            let t = trie(ks, 3, 1);
            assert_eq!(t.data_off, core::mem::size_of::<Node>());
            assert_eq!(t.value_off % 8, 0);
            assert!(t.value_off >= t.data_off + t.data_size);
            assert_eq!(t.layout.size(), t.value_off + 3);
        }
    }

    /// Checks invariants 1 and 2 of the module doc; returns the number of real nodes.
    fn check_invariants(t: &LpmTrie) -> usize {
        fn walk(t: &LpmTrie, node: *mut Node, parent: Option<(*mut Node, usize)>) -> usize {
            if node.is_null() {
                return 0;
            }
            // SAFETY: single-threaded test; linked nodes are live.
            let (n, data) = unsafe { (&*node, t.data(node)) };
            assert!(n.prefixlen <= t.max_prefixlen);
            if let Some((p, slot)) = parent {
                // SAFETY: as above.
                let (pn, pdata) = unsafe { (&*p, t.data(p)) };
                assert!(n.prefixlen > pn.prefixlen, "prefixes grow downwards");
                assert_eq!(
                    longest_prefix_match(pn.prefixlen, pdata, n.prefixlen, data),
                    pn.prefixlen
                );
                assert_eq!(
                    extract_bit(data, pn.prefixlen as usize),
                    slot,
                    "child in the slot of its next bit"
                );
            }
            let c0 = n.child[0].load(Ordering::Relaxed);
            let c1 = n.child[1].load(Ordering::Relaxed);
            if n.is_im() {
                assert!(!c0.is_null() && !c1.is_null(), "IM nodes have two children");
            }
            usize::from(!n.is_im()) + walk(t, c0, Some((node, 0))) + walk(t, c1, Some((node, 1)))
        }
        walk(t, t.root.load(Ordering::Relaxed), None)
    }

    #[test]
    fn random_ops_keep_the_shape_minimal() {
        let rcu = Rcu::new();
        let mut rng = Rng(0x00f0_0ba1);
        for data_size in [1usize, 2, 3] {
            let t = trie(4 + data_size as u32, 8, 200);
            let mut live: Vec<Vec<u8>> = Vec::new();
            for _ in 0..3000 {
                let max = 8 * data_size as u64;
                if rng.below(3) == 0 && !live.is_empty() {
                    let k = live.swap_remove(rng.below(live.len() as u64) as usize);
                    assert_eq!(t.delete(&rcu, &k), Ok(()));
                } else {
                    let plen = rng.below(max + 1) as u32;
                    let data: Vec<u8> = (0..data_size).map(|_| rng.next() as u8).collect();
                    let k = key(plen, &data);
                    let dup = live.iter().position(|l| {
                        let lp = u32::from_ne_bytes(l[..4].try_into().unwrap());
                        lp == plen && longest_prefix_match(lp, &l[4..], plen, &data) == plen
                    });
                    match t.update(&rcu, None, &k, &[7; 8], BPF_ANY) {
                        Ok(()) => match dup {
                            Some(i) => live[i] = k,
                            None => live.push(k),
                        },
                        Err(e) => {
                            assert_eq!(e, Errno::ENOSPC);
                            assert!(dup.is_none());
                        }
                    }
                }
                assert_eq!(check_invariants(&t), live.len());
                assert_eq!(t.n_entries.load(Ordering::Relaxed), live.len());
            }
        }
        rcu.barrier();
    }

    #[test]
    fn delete_of_two_child_node_flags_it() {
        let rcu = Rcu::new();
        let t = trie(8, 4, 10);
        let k16 = key(16, &[192, 168, 0, 0]);
        t.update(&rcu, None, &k16, &[1; 4], BPF_ANY).unwrap();
        t.update(&rcu, None, &key(24, &[192, 168, 0, 0]), &[2; 4], BPF_ANY)
            .unwrap();
        t.update(&rcu, None, &key(24, &[192, 168, 128, 0]), &[3; 4], BPF_ANY)
            .unwrap();
        let root = t.root.load(Ordering::Relaxed);
        t.delete(&rcu, &k16).unwrap();
        // Same node, now IM: not unlinked, not freed.
        assert_eq!(t.root.load(Ordering::Relaxed), root);
        // SAFETY: single-threaded; the root is linked.
        assert!(unsafe { &*root }.is_im());
        assert_eq!(t.delete(&rcu, &k16), Err(Errno::ENOENT));
        // Deleting a leaf under the IM root removes the root too.
        t.delete(&rcu, &key(24, &[192, 168, 0, 0])).unwrap();
        let new_root = t.root.load(Ordering::Relaxed);
        // SAFETY: as above.
        assert_eq!(unsafe { &*new_root }.prefixlen, 24);
        assert_eq!(check_invariants(&t), 1);
        rcu.barrier();
    }
}
