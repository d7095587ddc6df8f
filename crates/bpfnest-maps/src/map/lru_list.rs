// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The LRU behind `BPF_MAP_TYPE_LRU_HASH` and `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
//!
//! Mirrors kernel/bpf/bpf_lru_list.c and bpf_lru_list.h (v6.18), including the 2025 change
//! "bpf: Adjust free target to avoid global starvation of LRU map": a common LRU moves at most
//! `target_free = clamp(nr_elems / nr_cpus / 2, 1, LOCAL_FREE_TARGET)` nodes per refill, not
//! `LOCAL_FREE_TARGET`. Which keys an LRU hash evicts is visible from user space, so every list
//! operation, every head/tail choice and every scan bound follows the kernel.
//!
//! # Layout
//! A node is a preallocated hash element, named by its index ([`NodeId`]). Every list is a
//! circular doubly linked list threaded through two link arrays, `next` and `prev`, indexed by
//! *slot*: slots `0..nr_elems` are the nodes, the slots after them are the list heads. A head
//! is a slot like any other, so `list_add` (after the head), `list_add_tail` (before it),
//! `list_move` and the reverse walks from the tail read exactly as the kernel's `list.h` does,
//! and `next_inactive_rotation` may point at a head.
//!
//! ```text
//!  common LRU (default)                        per-CPU LRU (BPF_F_NO_COMMON_LRU)
//!  +-- global lru_list (one lock) --+          +-- lru_list of CPU c (one lock each) --+
//!  | ACTIVE | INACTIVE | FREE       |          | ACTIVE | INACTIVE | FREE             |
//!  +--------------------------------+          +-----------------------------------------+
//!  +-- local list of CPU c (one lock each) --+
//!  | LOCAL_FREE | LOCAL_PENDING | next_steal |
//!  +-----------------------------------------+
//!  slots: [node 0 .. node n-1 | heads ...]
//! ```
//!
//! Common LRU: `pop_free` takes from the CPU's local free list; when that is empty it flushes
//! the CPU's pending list into the global inactive/active lists, rotates, and refills the local
//! free list with up to `target_free` nodes from the global free list, shrinking the inactive
//! list (evicting through [`LruOwner::del_from_htab`]) for the rest. A popped node waits on the
//! local pending list until the next refill. When even that yields nothing, the CPU steals from
//! the local lists of all CPUs round-robin, starting at its `next_steal`.
//!
//! Per-CPU LRU: each CPU has its own `ACTIVE/INACTIVE/FREE` lists and refills its free list by
//! shrinking at most `PERCPU_FREE_TARGET` nodes; nodes never change CPU.
//!
//! # Locking
//! Each list group has its own lock (the kernel's raw spinlocks): the global list, each local
//! list, each per-CPU list. A node's links are touched only by a thread that holds the lock of
//! the list the node is on, or that owns the node outright after unlinking it; moving between a
//! local list and the global list holds both (local first, then global). Links, and the node
//! fields the kernel reads with `READ_ONCE`, are atomics used with `Relaxed` ordering: the locks
//! provide every ordering the algorithm needs, the atomics only keep the hand-off between locks
//! free of data races without `unsafe`.
//!
//! [`LruOwner::del_from_htab`] is called with list locks held (the kernel's
//! `htab_lru_map_delete_node` runs under them too): it may take bucket locks and read
//! [`BpfLru::node_hash`], but must not call back into the LRU.
//!
//! # Deviations
//! * The kernel's `WARN_ON_ONCE` sanity checks return early as it does, and assert in debug
//!   builds.
//! * Degenerate sizes the hash table never passes (`nr_cpus == 0`, a per-CPU LRU with fewer
//!   elements than CPUs, a CPU number out of range, an unknown `NodeId`) do not panic: CPUs
//!   are taken modulo `nr_cpus`, a per-CPU LRU then gives one node per CPU, unknown nodes are
//!   ignored.

use crate::primitive::{AtomicBool, AtomicU32, Ordering::Relaxed};

/// Index of a preallocated hash element, `0..nr_elems`.
pub type NodeId = u32;

/// The hash table side of the LRU (the kernel's `del_from_htab` callback).
pub trait LruOwner: Send + Sync {
    /// Unlinks element `node` from its bucket if it is still in the table; true if it was
    /// removed (`htab_lru_map_delete_node`). Called with LRU list locks held.
    fn del_from_htab(&self, node: NodeId) -> bool;
}

/// Nodes a common LRU moves from the global free list to a local one at most, per refill.
pub const LOCAL_FREE_TARGET: u32 = 128;
/// Nodes a common LRU's rotations and shrinks scan at most.
pub const LOCAL_NR_SCANS: u32 = LOCAL_FREE_TARGET;
/// Nodes a per-CPU LRU shrinks at most when its free list is empty.
pub const PERCPU_FREE_TARGET: u32 = 4;
/// Nodes a per-CPU LRU's rotations and shrinks scan at most.
pub const PERCPU_NR_SCANS: u32 = PERCPU_FREE_TARGET;

// enum bpf_lru_list_type. The first NR_BPF_LRU_LIST_T index a `LruList`'s heads, the local
// types (from BPF_LOCAL_LIST_T_OFFSET) a `LocalList`'s; only the first NR_BPF_LRU_LIST_COUNT
// are counted.
const BPF_LRU_LIST_T_ACTIVE: u32 = 0;
const BPF_LRU_LIST_T_INACTIVE: u32 = 1;
const BPF_LRU_LIST_T_FREE: u32 = 2;
const BPF_LRU_LOCAL_LIST_T_FREE: u32 = 3;
const BPF_LRU_LOCAL_LIST_T_PENDING: u32 = 4;
const NR_BPF_LRU_LIST_T: u32 = 3;
const NR_BPF_LRU_LIST_COUNT: u32 = 2;
const NR_BPF_LRU_LOCAL_LIST_T: u32 = 2;
const BPF_LOCAL_LIST_T_OFFSET: u32 = NR_BPF_LRU_LIST_T;

const fn is_local_list_type(t: u32) -> bool {
    t >= BPF_LOCAL_LIST_T_OFFSET
}

// The kernel's WARN_ON_ONCE: report in debug builds, then take the same early return.
macro_rules! warn_on {
    ($cond:expr) => {{
        let c = $cond;
        debug_assert!(
            !c,
            concat!("bpf_lru: WARN_ON_ONCE(", stringify!($cond), ")")
        );
        c
    }};
}

// ---------------------------------------------------------------------------------------------
// Locks

#[cfg(not(bpfnest_loom))]
type Guard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(bpfnest_loom)]
type Guard<'a, T> = crate::primitive::MutexGuard<'a, T>;

/// A list lock (the kernel's `raw_spinlock_t`); loom's mutex under `bpfnest_loom`.
struct ListLock<T> {
    #[cfg(not(bpfnest_loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(bpfnest_loom)]
    inner: crate::primitive::Mutex<T>,
}

impl<T> ListLock<T> {
    fn new(v: T) -> Self {
        ListLock {
            #[cfg(not(bpfnest_loom))]
            inner: parking_lot::Mutex::new(v),
            #[cfg(bpfnest_loom)]
            inner: crate::primitive::Mutex::new(v),
        }
    }

    fn lock(&self) -> Guard<'_, T> {
        #[cfg(not(bpfnest_loom))]
        {
            self.inner.lock()
        }
        #[cfg(bpfnest_loom)]
        {
            // No code panics while holding a list lock, so poisoning cannot carry meaning.
            self.inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Links: include/linux/list.h over slot indices

/// `struct list_head` for every node and every list head, by slot.
///
/// Invariant: `next.len() == prev.len()` = nodes + heads, every stored value is a slot below
/// that, and a head slot is always on its own list. All accesses are `Relaxed`: whoever touches
/// a slot holds the lock of the list it is on or owns the unlinked node (see the module doc).
struct Links {
    next: Box<[AtomicU32]>,
    prev: Box<[AtomicU32]>,
}

impl Links {
    /// Every slot starts as an empty list (a self loop), like `INIT_LIST_HEAD`.
    fn new(nr_slots: u32) -> Links {
        let make = || {
            (0..nr_slots)
                .map(AtomicU32::new)
                .collect::<Vec<_>>()
                .into_boxed_slice()
        };
        Links {
            next: make(),
            prev: make(),
        }
    }

    fn next(&self, s: u32) -> u32 {
        self.next[s as usize].load(Relaxed)
    }

    fn prev(&self, s: u32) -> u32 {
        self.prev[s as usize].load(Relaxed)
    }

    fn set_next(&self, s: u32, v: u32) {
        self.next[s as usize].store(v, Relaxed);
    }

    fn set_prev(&self, s: u32, v: u32) {
        self.prev[s as usize].store(v, Relaxed);
    }

    fn is_empty(&self, head: u32) -> bool {
        self.next(head) == head
    }

    /// `__list_add`: links `new` between the adjacent `prev` and `next`.
    fn insert(&self, new: u32, prev: u32, next: u32) {
        self.set_prev(next, new);
        self.set_next(new, next);
        self.set_prev(new, prev);
        self.set_next(prev, new);
    }

    /// `list_add`: right after `head`, i.e. at the front.
    fn add(&self, new: u32, head: u32) {
        self.insert(new, head, self.next(head));
    }

    /// `list_del`. The kernel poisons the links; a self loop keeps every value a valid slot.
    fn del(&self, entry: u32) {
        let (p, n) = (self.prev(entry), self.next(entry));
        self.set_prev(n, p);
        self.set_next(p, n);
        self.set_next(entry, entry);
        self.set_prev(entry, entry);
    }

    /// `list_move`: unlink, then `list_add` to `head`.
    fn move_to(&self, entry: u32, head: u32) {
        self.del(entry);
        self.add(entry, head);
    }
}

// ---------------------------------------------------------------------------------------------
// Lists

/// `struct bpf_lru_node` without its `list_head` (that lives in [`Links`]), plus the element's
/// hash, which the kernel keeps in the hash element next to it.
struct LruNode {
    /// `enum bpf_lru_list_type` of the list the node is on. Written under that list's lock;
    /// read without a lock by `common_push_free` (the kernel's `READ_ONCE`), then rechecked.
    ty: AtomicU32,
    /// Owning CPU: fixed at populate time for a per-CPU LRU; for a common LRU, the CPU whose
    /// pending list the node was added to by its last pop.
    cpu: AtomicU32,
    /// Referenced since it was last moved; set locklessly by `mark_ref`.
    referenced: AtomicBool,
    /// The hash `pop_free` was given; the hash table publishes the element after pop_free
    /// returns, so its own publication orders this store before any other reader.
    hash: AtomicU32,
}

impl LruNode {
    fn new() -> LruNode {
        // A never-populated node is zeroed memory in the kernel: type ACTIVE, CPU 0.
        LruNode {
            ty: AtomicU32::new(BPF_LRU_LIST_T_ACTIVE),
            cpu: AtomicU32::new(0),
            referenced: AtomicBool::new(false),
            hash: AtomicU32::new(0),
        }
    }
}

/// Lock-protected part of a `struct bpf_lru_list`.
struct ListState {
    /// Nodes on the ACTIVE and INACTIVE lists (FREE is not counted).
    counts: [u32; NR_BPF_LRU_LIST_COUNT as usize],
    /// Slot where the next inactive rotation starts: a node on INACTIVE or the INACTIVE head.
    next_inactive_rotation: u32,
}

/// `struct bpf_lru_list`: the global list of a common LRU, or one CPU's list of a per-CPU LRU.
struct LruList {
    /// Slot of the ACTIVE head; INACTIVE and FREE follow it (`lists[type]`).
    base: u32,
    lock: ListLock<ListState>,
}

impl LruList {
    fn new(base: u32) -> LruList {
        LruList {
            base,
            lock: ListLock::new(ListState {
                counts: [0; NR_BPF_LRU_LIST_COUNT as usize],
                next_inactive_rotation: base + BPF_LRU_LIST_T_INACTIVE,
            }),
        }
    }

    fn head(&self, ty: u32) -> u32 {
        debug_assert!(ty < NR_BPF_LRU_LIST_T);
        self.base + ty
    }
}

/// `struct bpf_lru_locallist`: one CPU's local lists of a common LRU.
struct LocalList {
    /// Slot of the LOCAL_FREE head; LOCAL_PENDING follows it.
    base: u32,
    /// Held while touching either local list (the data is the lock witness only).
    lock: ListLock<()>,
    /// CPU whose local lists this CPU steals from first; read and written only by pops on the
    /// owning CPU, without the lock, like the kernel.
    next_steal: AtomicU32,
}

impl LocalList {
    fn free_head(&self) -> u32 {
        self.base
    }

    fn pending_head(&self) -> u32 {
        self.base + (BPF_LRU_LOCAL_LIST_T_PENDING - BPF_LOCAL_LIST_T_OFFSET)
    }
}

/// Common LRU or per-CPU LRU (`lru->percpu`).
enum Flavor {
    /// `struct bpf_common_lru`: one global list plus per-CPU local lists.
    Common {
        lru_list: LruList,
        local: Box<[LocalList]>,
    },
    /// `lru->percpu_lru`: one list per CPU.
    PerCpu { lists: Box<[LruList]> },
}

/// `struct bpf_lru`: the common LRU (global active/inactive/free lists plus per-CPU local
/// free/pending lists) or, with `BPF_F_NO_COMMON_LRU`, one LRU list per CPU.
pub struct BpfLru {
    /// One entry per element; `nodes.len() == nr_elems`.
    nodes: Box<[LruNode]>,
    /// Links of the nodes (slots `0..nr_elems`) and of every list head after them.
    links: Links,
    flavor: Flavor,
    /// Number of CPUs (the kernel's possible CPUs), at least 1; CPU ids are `0..nr_cpus`.
    nr_cpus: u32,
    /// `LOCAL_NR_SCANS` or `PERCPU_NR_SCANS`.
    nr_scans: u32,
    /// Refill size of a common LRU's local free list; 0 and unused for a per-CPU LRU.
    target_free: u32,
}

impl core::fmt::Debug for BpfLru {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BpfLru")
            .field("percpu", &matches!(self.flavor, Flavor::PerCpu { .. }))
            .field("nr_cpus", &self.nr_cpus)
            .field("nr_elems", &self.nodes.len())
            .field("nr_scans", &self.nr_scans)
            .field("target_free", &self.target_free)
            .finish()
    }
}

impl BpfLru {
    /// `bpf_lru_init` followed by `bpf_lru_populate` over elements `0..nr_elems`.
    ///
    /// Common: every node goes onto the global free list with `list_add`, so element
    /// `nr_elems - 1` is at its front; `target_free = clamp(nr_elems / nr_cpus / 2, 1,
    /// LOCAL_FREE_TARGET)`. Per-CPU: CPU 0 gets elements `0..nr_elems / nr_cpus`, CPU 1 the next
    /// as many, and so on (the hash table makes `nr_elems` a multiple of `nr_cpus`).
    ///
    /// # Panics
    /// If `nr_elems` plus the list heads (3 + 2 per CPU, or 3 per CPU) exceeds `u32::MAX`; the
    /// hash table's size checks refuse such a map (`ENOMEM`/`E2BIG`) long before.
    pub fn new(percpu: bool, nr_cpus: u32, nr_elems: u32) -> BpfLru {
        let nr_cpus = nr_cpus.max(1);
        let nr_heads = if percpu {
            u64::from(nr_cpus) * u64::from(NR_BPF_LRU_LIST_T)
        } else {
            u64::from(NR_BPF_LRU_LIST_T) + u64::from(nr_cpus) * u64::from(NR_BPF_LRU_LOCAL_LIST_T)
        };
        let nr_slots = u64::from(nr_elems) + nr_heads;
        // Slots are u32: a table this size could not have been allocated anyway.
        let nr_slots = u32::try_from(nr_slots).expect("LRU slot count fits in u32");
        let links = Links::new(nr_slots);
        let nodes = (0..nr_elems)
            .map(|_| LruNode::new())
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let heads = nr_elems;
        let flavor = if percpu {
            let lists = (0..nr_cpus)
                .map(|c| LruList::new(heads + c * NR_BPF_LRU_LIST_T))
                .collect();
            Flavor::PerCpu { lists }
        } else {
            let local = (0..nr_cpus)
                .map(|c| LocalList {
                    base: heads + NR_BPF_LRU_LIST_T + c * NR_BPF_LRU_LOCAL_LIST_T,
                    lock: ListLock::new(()),
                    next_steal: AtomicU32::new(c),
                })
                .collect();
            Flavor::Common {
                lru_list: LruList::new(heads),
                local,
            }
        };
        let mut lru = BpfLru {
            nodes,
            links,
            flavor,
            nr_cpus,
            nr_scans: if percpu {
                PERCPU_NR_SCANS
            } else {
                LOCAL_NR_SCANS
            },
            target_free: 0,
        };
        lru.populate(nr_elems);
        lru
    }

    /// `bpf_lru_populate`.
    fn populate(&mut self, nr_elems: u32) {
        match &self.flavor {
            Flavor::Common { lru_list, .. } => {
                // bpf_common_lru_populate
                let free = lru_list.head(BPF_LRU_LIST_T_FREE);
                for node in 0..nr_elems {
                    self.set_type(node, BPF_LRU_LIST_T_FREE);
                    self.clear_ref(node);
                    self.links.add(node, free);
                }
                self.target_free = (nr_elems / self.nr_cpus / 2).clamp(1, LOCAL_FREE_TARGET);
            }
            Flavor::PerCpu { lists } => {
                // bpf_percpu_lru_populate: fill each CPU's list in turn; a remainder past the
                // last CPU stays unpopulated, as in the kernel.
                let pcpu_entries = (nr_elems / self.nr_cpus).max(1);
                let mut i = 0;
                'cpus: for (cpu, l) in (0u32..).zip(lists.iter()) {
                    let free = l.head(BPF_LRU_LIST_T_FREE);
                    loop {
                        if i == nr_elems {
                            break 'cpus;
                        }
                        self.nodes[i as usize].cpu.store(cpu, Relaxed);
                        self.set_type(i, BPF_LRU_LIST_T_FREE);
                        self.clear_ref(i);
                        self.links.add(i, free);
                        i += 1;
                        if i % pcpu_entries == 0 {
                            break;
                        }
                    }
                }
            }
        }
    }

    // --- node helpers --------------------------------------------------------------------

    fn node_type(&self, node: u32) -> u32 {
        self.nodes[node as usize].ty.load(Relaxed)
    }

    fn set_type(&self, node: u32, ty: u32) {
        self.nodes[node as usize].ty.store(ty, Relaxed);
    }

    fn node_cpu(&self, node: u32) -> u32 {
        self.nodes[node as usize].cpu.load(Relaxed)
    }

    /// `bpf_lru_node_is_ref`.
    fn is_ref(&self, node: u32) -> bool {
        self.nodes[node as usize].referenced.load(Relaxed)
    }

    /// `bpf_lru_node_clear_ref`.
    fn clear_ref(&self, node: u32) {
        self.nodes[node as usize].referenced.store(false, Relaxed);
    }

    fn cpu_index(&self, cpu: u32) -> u32 {
        cpu % self.nr_cpus
    }

    /// `get_next_cpu` over a contiguous possible mask `0..nr_cpus`.
    fn next_cpu(&self, cpu: u32) -> u32 {
        if cpu + 1 >= self.nr_cpus {
            0
        } else {
            cpu + 1
        }
    }

    // --- moves within one lru_list (its lock held: `st` is the witness) ------------------

    fn count_inc(st: &mut ListState, ty: u32) {
        if ty < NR_BPF_LRU_LIST_COUNT {
            st.counts[ty as usize] += 1;
        }
    }

    fn count_dec(st: &mut ListState, ty: u32) {
        if ty < NR_BPF_LRU_LIST_COUNT {
            st.counts[ty as usize] -= 1;
        }
    }

    /// `__bpf_lru_node_move_to_free`: from an LRU list to `free_head` (the list's own free
    /// list or a local free list, whose lock the caller also holds).
    fn move_to_free(&self, st: &mut ListState, node: u32, free_head: u32, tgt_free_type: u32) {
        let ty = self.node_type(node);
        if warn_on!(is_local_list_type(ty)) {
            return;
        }
        // Removing the rotation candidate: the rotation resumes at its predecessor.
        if node == st.next_inactive_rotation {
            st.next_inactive_rotation = self.links.prev(node);
        }
        Self::count_dec(st, ty);
        self.set_type(node, tgt_free_type);
        self.links.move_to(node, free_head);
    }

    /// `__bpf_lru_node_move_in`: from a local list (its lock held too) into `l`.
    fn move_in(&self, l: &LruList, st: &mut ListState, node: u32, tgt_type: u32) {
        if warn_on!(!is_local_list_type(self.node_type(node)))
            || warn_on!(is_local_list_type(tgt_type))
        {
            return;
        }
        Self::count_inc(st, tgt_type);
        self.set_type(node, tgt_type);
        self.clear_ref(node);
        self.links.move_to(node, l.head(tgt_type));
    }

    /// `__bpf_lru_node_move`: between or within ACTIVE, INACTIVE and FREE of `l`; always to
    /// the head of the target, with the ref bit cleared.
    fn node_move(&self, l: &LruList, st: &mut ListState, node: u32, tgt_type: u32) {
        let ty = self.node_type(node);
        if warn_on!(is_local_list_type(ty)) || warn_on!(is_local_list_type(tgt_type)) {
            return;
        }
        if ty != tgt_type {
            Self::count_dec(st, ty);
            Self::count_inc(st, tgt_type);
            self.set_type(node, tgt_type);
        }
        self.clear_ref(node);
        if node == st.next_inactive_rotation {
            st.next_inactive_rotation = self.links.prev(node);
        }
        self.links.move_to(node, l.head(tgt_type));
    }

    /// `bpf_lru_list_inactive_low`.
    fn inactive_low(st: &ListState) -> bool {
        st.counts[BPF_LRU_LIST_T_INACTIVE as usize] < st.counts[BPF_LRU_LIST_T_ACTIVE as usize]
    }

    /// `__bpf_lru_list_rotate_active`: from the tail, referenced nodes go back to the head of
    /// ACTIVE (one more chance), the others to the head of INACTIVE; at most `nr_scans` nodes,
    /// and never past the node that was first when the walk began.
    fn rotate_active(&self, l: &LruList, st: &mut ListState) {
        let active = l.head(BPF_LRU_LIST_T_ACTIVE);
        let first = self.links.next(active);
        let mut i = 0;
        let mut node = self.links.prev(active);
        while node != active {
            let tmp = self.links.prev(node);
            let tgt = if self.is_ref(node) {
                BPF_LRU_LIST_T_ACTIVE
            } else {
                BPF_LRU_LIST_T_INACTIVE
            };
            self.node_move(l, st, node, tgt);
            i += 1;
            if i == self.nr_scans || node == first {
                break;
            }
            node = tmp;
        }
    }

    /// `__bpf_lru_list_rotate_inactive`: walks backwards from `next_inactive_rotation` (wrapping
    /// over the head) for at most `nr_scans` nodes, promoting referenced nodes to ACTIVE and
    /// leaving the rest in place for the next shrink; remembers where it stopped.
    fn rotate_inactive(&self, l: &LruList, st: &mut ListState) {
        let inactive = l.head(BPF_LRU_LIST_T_INACTIVE);
        if self.links.is_empty(inactive) {
            return;
        }
        let mut last = self.links.next(st.next_inactive_rotation);
        if last == inactive {
            last = self.links.next(last);
        }
        let mut cur = st.next_inactive_rotation;
        let mut next = inactive;
        let mut i = 0;
        while i < self.nr_scans {
            if cur == inactive {
                cur = self.links.prev(cur);
                continue;
            }
            next = self.links.prev(cur);
            if self.is_ref(cur) {
                self.node_move(l, st, cur, BPF_LRU_LIST_T_ACTIVE);
            }
            if cur == last {
                break;
            }
            cur = next;
            i += 1;
        }
        st.next_inactive_rotation = next;
    }

    /// `__bpf_lru_list_shrink_inactive`: from the tail of INACTIVE, promotes referenced nodes
    /// and evicts unreferenced ones to `free_head` until `tgt_nshrink` are freed or `nr_scans`
    /// nodes are scanned. Returns the number freed.
    fn shrink_inactive(
        &self,
        owner: &dyn LruOwner,
        l: &LruList,
        st: &mut ListState,
        tgt_nshrink: u32,
        free_head: u32,
        tgt_free_type: u32,
    ) -> u32 {
        let inactive = l.head(BPF_LRU_LIST_T_INACTIVE);
        let mut nshrinked = 0;
        let mut i = 0;
        let mut node = self.links.prev(inactive);
        while node != inactive {
            let tmp = self.links.prev(node);
            if self.is_ref(node) {
                self.node_move(l, st, node, BPF_LRU_LIST_T_ACTIVE);
            } else if owner.del_from_htab(node) {
                self.move_to_free(st, node, free_head, tgt_free_type);
                nshrinked += 1;
                if nshrinked == tgt_nshrink {
                    break;
                }
            }
            i += 1;
            if i == self.nr_scans {
                break;
            }
            node = tmp;
        }
        nshrinked
    }

    /// `__bpf_lru_list_rotate`: rotate ACTIVE only when INACTIVE is the smaller list; always
    /// rotate INACTIVE.
    fn rotate(&self, l: &LruList, st: &mut ListState) {
        if Self::inactive_low(st) {
            self.rotate_active(l, st);
        }
        self.rotate_inactive(l, st);
    }

    /// `__bpf_lru_list_shrink`: the polite shrink first; if it freed nothing, evict the first
    /// node from the tail of INACTIVE (or of ACTIVE when INACTIVE is empty) that the owner
    /// still holds, ignoring the ref bit. Returns the number freed.
    fn shrink(
        &self,
        owner: &dyn LruOwner,
        l: &LruList,
        st: &mut ListState,
        tgt_nshrink: u32,
        free_head: u32,
        tgt_free_type: u32,
    ) -> u32 {
        let nshrinked = self.shrink_inactive(owner, l, st, tgt_nshrink, free_head, tgt_free_type);
        if nshrinked != 0 {
            return nshrinked;
        }
        let inactive = l.head(BPF_LRU_LIST_T_INACTIVE);
        let force = if self.links.is_empty(inactive) {
            l.head(BPF_LRU_LIST_T_ACTIVE)
        } else {
            inactive
        };
        let mut node = self.links.prev(force);
        while node != force {
            let tmp = self.links.prev(node);
            if owner.del_from_htab(node) {
                self.move_to_free(st, node, free_head, tgt_free_type);
                return 1;
            }
            node = tmp;
        }
        0
    }

    // --- common LRU ------------------------------------------------------------------------

    /// `__local_list_flush`: the CPU's pending nodes, oldest (tail) first, into the global
    /// list's ACTIVE (referenced) or INACTIVE. Both locks held.
    fn local_list_flush(&self, l: &LruList, st: &mut ListState, loc: &LocalList) {
        let pending = loc.pending_head();
        let mut node = self.links.prev(pending);
        while node != pending {
            let tmp = self.links.prev(node);
            let tgt = if self.is_ref(node) {
                BPF_LRU_LIST_T_ACTIVE
            } else {
                BPF_LRU_LIST_T_INACTIVE
            };
            self.move_in(l, st, node, tgt);
            node = tmp;
        }
    }

    /// `bpf_lru_list_push_free`: a node on the global lists back to the global FREE list.
    fn list_push_free(&self, l: &LruList, node: u32) {
        if warn_on!(is_local_list_type(self.node_type(node))) {
            return;
        }
        let mut st = l.lock.lock();
        self.node_move(l, &mut st, node, BPF_LRU_LIST_T_FREE);
    }

    /// `bpf_lru_list_pop_free_to_local`: refill the local free list of `loc` (whose lock the
    /// caller holds) with up to `target_free` nodes, from the global FREE list first (front
    /// first), then by shrinking.
    fn pop_free_to_local(&self, owner: &dyn LruOwner, l: &LruList, loc: &LocalList) {
        let mut st = l.lock.lock();
        self.local_list_flush(l, &mut st, loc);
        self.rotate(l, &mut st);

        let free = l.head(BPF_LRU_LIST_T_FREE);
        let mut nfree = 0;
        let mut node = self.links.next(free);
        while node != free {
            let tmp = self.links.next(node);
            self.move_to_free(&mut st, node, loc.free_head(), BPF_LRU_LOCAL_LIST_T_FREE);
            nfree += 1;
            if nfree == self.target_free {
                break;
            }
            node = tmp;
        }
        if nfree < self.target_free {
            self.shrink(
                owner,
                l,
                &mut st,
                self.target_free - nfree,
                loc.free_head(),
                BPF_LRU_LOCAL_LIST_T_FREE,
            );
        }
    }

    /// `__local_list_add_pending`: record the new owner of `node` and put it at the front of
    /// the CPU's pending list. `loc`'s lock held, `node` unlinked.
    fn local_add_pending(&self, loc: &LocalList, cpu: u32, node: u32, hash: u32) {
        let n = &self.nodes[node as usize];
        n.hash.store(hash, Relaxed);
        n.cpu.store(cpu, Relaxed);
        self.set_type(node, BPF_LRU_LOCAL_LIST_T_PENDING);
        self.clear_ref(node);
        self.links.add(node, loc.pending_head());
    }

    /// `__local_list_pop_free`: unlink the front of the local free list. `loc`'s lock held.
    fn local_pop_free(&self, loc: &LocalList) -> Option<u32> {
        let head = loc.free_head();
        let first = self.links.next(head);
        if first == head {
            return None;
        }
        self.links.del(first);
        Some(first)
    }

    /// `__local_list_pop_pending`: from the tail (oldest) of the pending list, the first
    /// unreferenced node the owner gives up; failing that, the first node at all.
    fn local_pop_pending(&self, owner: &dyn LruOwner, loc: &LocalList) -> Option<u32> {
        let pending = loc.pending_head();
        for force in [false, true] {
            let mut node = self.links.prev(pending);
            while node != pending {
                if (force || !self.is_ref(node)) && owner.del_from_htab(node) {
                    self.links.del(node);
                    return Some(node);
                }
                node = self.links.prev(node);
            }
        }
        None
    }

    /// `bpf_common_lru_pop_free`.
    fn common_pop_free(
        &self,
        owner: &dyn LruOwner,
        lru_list: &LruList,
        local: &[LocalList],
        cpu: u32,
        hash: u32,
    ) -> Option<u32> {
        let loc = &local[cpu as usize];
        {
            let _g = loc.lock.lock();
            let mut node = self.local_pop_free(loc);
            if node.is_none() {
                self.pop_free_to_local(owner, lru_list, loc);
                node = self.local_pop_free(loc);
            }
            if let Some(n) = node {
                self.local_add_pending(loc, cpu, n, hash);
                return Some(n);
            }
        }

        // Neither the local free list nor the global lists had a node: steal from the local
        // free, then pending, lists of every CPU (this one included) round-robin.
        let first_steal = loc.next_steal.load(Relaxed);
        let mut steal = first_steal;
        let node = loop {
            let steal_loc = &local[steal as usize];
            let node = {
                let _g = steal_loc.lock.lock();
                self.local_pop_free(steal_loc)
                    .or_else(|| self.local_pop_pending(owner, steal_loc))
            };
            steal = self.next_cpu(steal);
            if node.is_some() || steal == first_steal {
                break node;
            }
        };
        loc.next_steal.store(steal, Relaxed);

        if let Some(n) = node {
            let _g = loc.lock.lock();
            self.local_add_pending(loc, cpu, n, hash);
        }
        node
    }

    /// `bpf_common_lru_push_free`: a node still pending on its CPU's local list returns to that
    /// CPU's local free list; any other goes to the global FREE list.
    fn common_push_free(&self, lru_list: &LruList, local: &[LocalList], node: u32) {
        let ty = self.node_type(node);
        if warn_on!(ty == BPF_LRU_LIST_T_FREE) || warn_on!(ty == BPF_LRU_LOCAL_LIST_T_FREE) {
            return;
        }
        if ty == BPF_LRU_LOCAL_LIST_T_PENDING {
            let loc = &local[self.cpu_index(self.node_cpu(node)) as usize];
            let _g = loc.lock.lock();
            // A refill on that CPU may have flushed it to the global lists meanwhile.
            if self.node_type(node) == BPF_LRU_LOCAL_LIST_T_PENDING {
                self.set_type(node, BPF_LRU_LOCAL_LIST_T_FREE);
                self.clear_ref(node);
                self.links.move_to(node, loc.free_head());
                return;
            }
        }
        self.list_push_free(lru_list, node);
    }

    // --- per-CPU LRU -----------------------------------------------------------------------

    /// `bpf_percpu_lru_pop_free`: rotate this CPU's list, shrink up to `PERCPU_FREE_TARGET`
    /// nodes if its FREE list is empty, and move the front free node to the head of INACTIVE.
    fn percpu_pop_free(
        &self,
        owner: &dyn LruOwner,
        lists: &[LruList],
        cpu: u32,
        hash: u32,
    ) -> Option<u32> {
        let l = &lists[cpu as usize];
        let mut st = l.lock.lock();
        self.rotate(l, &mut st);
        let free = l.head(BPF_LRU_LIST_T_FREE);
        if self.links.is_empty(free) {
            self.shrink(
                owner,
                l,
                &mut st,
                PERCPU_FREE_TARGET,
                free,
                BPF_LRU_LIST_T_FREE,
            );
        }
        if self.links.is_empty(free) {
            return None;
        }
        let node = self.links.next(free);
        self.nodes[node as usize].hash.store(hash, Relaxed);
        self.clear_ref(node);
        self.node_move(l, &mut st, node, BPF_LRU_LIST_T_INACTIVE);
        Some(node)
    }

    /// `bpf_percpu_lru_push_free`: back to the front of the FREE list of the node's CPU.
    fn percpu_push_free(&self, lists: &[LruList], node: u32) {
        let l = &lists[self.cpu_index(self.node_cpu(node)) as usize];
        let mut st = l.lock.lock();
        self.node_move(l, &mut st, node, BPF_LRU_LIST_T_FREE);
    }

    // --- entry points ----------------------------------------------------------------------

    /// `bpf_lru_pop_free`: a free element for a new key with hash `hash`, evicting through
    /// `owner` if needed; `None` is the hash table's `ENOMEM`. `cpu` is the CPU the caller runs
    /// on (`raw_smp_processor_id()`). Context: both (the hash table's update path).
    pub fn pop_free(&self, owner: &dyn LruOwner, cpu: u32, hash: u32) -> Option<NodeId> {
        let cpu = self.cpu_index(cpu);
        match &self.flavor {
            Flavor::Common { lru_list, local } => {
                self.common_pop_free(owner, lru_list, local, cpu, hash)
            }
            Flavor::PerCpu { lists } => self.percpu_pop_free(owner, lists, cpu, hash),
        }
    }

    /// `bpf_lru_push_free`: return an element that was popped and is no longer (or never was)
    /// in the table. Context: both.
    pub fn push_free(&self, node: NodeId) {
        if node as usize >= self.nodes.len() {
            return;
        }
        match &self.flavor {
            Flavor::Common { lru_list, local } => self.common_push_free(lru_list, local, node),
            Flavor::PerCpu { lists } => self.percpu_push_free(lists, node),
        }
    }

    /// `bpf_lru_node_set_ref`: mark an element used. Lockless, and writes only when the bit is
    /// clear so hot elements do not bounce their cache line. Context: both (program lookups,
    /// key replacement).
    pub fn mark_ref(&self, node: NodeId) {
        if let Some(n) = self.nodes.get(node as usize) {
            if !n.referenced.load(Relaxed) {
                n.referenced.store(true, Relaxed);
            }
        }
    }

    /// Hash given to the `pop_free` that returned `node` (0 for an unknown node). Context: both.
    pub fn node_hash(&self, node: NodeId) -> u32 {
        self.nodes
            .get(node as usize)
            .map_or(0, |n| n.hash.load(Relaxed))
    }

    /// Checks the list structure: every list is a consistent circular list, every node is on
    /// exactly one list whose type it carries (unless it is owned between unlink and relink by
    /// a caller in flight), the ACTIVE/INACTIVE counts match, and `next_inactive_rotation` is
    /// on INACTIVE. For tests and loom models; call it with no operation in flight.
    #[doc(hidden)]
    pub fn debug_check(&self) -> Result<(), &'static str> {
        let n = self.nodes.len();
        let mut seen = vec![false; n];
        let mut walk = |head: u32, ty: u32| -> Result<u32, &'static str> {
            let mut count = 0u32;
            let mut prev = head;
            let mut cur = self.links.next(head);
            while cur != head {
                if cur as usize >= n {
                    return Err("list reaches a foreign head");
                }
                if self.links.prev(cur) != prev {
                    return Err("prev link does not match next link");
                }
                if core::mem::replace(&mut seen[cur as usize], true) {
                    return Err("node on two lists or on a cycle");
                }
                if self.node_type(cur) != ty {
                    return Err("node type does not match its list");
                }
                count += 1;
                prev = cur;
                cur = self.links.next(cur);
            }
            if self.links.prev(head) != prev {
                return Err("head prev link is not the tail");
            }
            Ok(count)
        };
        let mut check_list = |l: &LruList| -> Result<(), &'static str> {
            let st = l.lock.lock();
            for ty in [
                BPF_LRU_LIST_T_ACTIVE,
                BPF_LRU_LIST_T_INACTIVE,
                BPF_LRU_LIST_T_FREE,
            ] {
                let c = walk(l.head(ty), ty)?;
                if ty < NR_BPF_LRU_LIST_COUNT && c != st.counts[ty as usize] {
                    return Err("list count mismatch");
                }
            }
            let nir = st.next_inactive_rotation;
            if nir != l.head(BPF_LRU_LIST_T_INACTIVE)
                && (nir as usize >= n || self.node_type(nir) != BPF_LRU_LIST_T_INACTIVE)
            {
                return Err("next_inactive_rotation is not on the inactive list");
            }
            Ok(())
        };
        let populated = match &self.flavor {
            Flavor::Common { lru_list, local } => {
                check_list(lru_list)?;
                for loc in local.iter() {
                    let _g = loc.lock.lock();
                    walk(loc.free_head(), BPF_LRU_LOCAL_LIST_T_FREE)?;
                    walk(loc.pending_head(), BPF_LRU_LOCAL_LIST_T_PENDING)?;
                }
                n
            }
            Flavor::PerCpu { lists } => {
                for l in lists.iter() {
                    check_list(l)?;
                }
                // bpf_percpu_lru_populate leaves a remainder past the last CPU off every list.
                let pcpu = (n as u32 / self.nr_cpus).max(1);
                n.min(pcpu as usize * self.nr_cpus as usize)
            }
        };
        if seen.iter().filter(|s| **s).count() != populated {
            return Err("a populated node is on no list");
        }
        Ok(())
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    //! The `kernel_*` sequences were recorded on kernel 6.18.44 with 2 possible CPUs
    //! (/sys/devices/system/cpu/possible = 0-1), the prober pinned to one CPU with
    //! sched_setaffinity, an LRU_HASH (u32 key, u64 value) driven by bpf(2), and the survivors
    //! listed with GET_NEXT_KEY after every step. They are replayed here through a fake hash
    //! table that calls the LRU the way `htab_lru_map_update_elem` / `htab_lru_map_delete_elem`
    //! do, and the set of keys each step evicted must match.
    //!
    //! Step syntax: `i<k>` update BPF_ANY, `n<k>` BPF_NOEXIST, `x<k>` BPF_EXIST, `d<k>` delete,
    //! `c<cpu>` migrate the prober; `!<errno>` the step's errno; `>a,b` keys it evicted.

    use super::*;
    use std::collections::{BTreeSet, HashMap};

    const NR_CPUS: u32 = 2;
    const ENOENT: i32 = 2;
    const ENOMEM: i32 = 12;
    const EEXIST: i32 = 17;

    #[derive(Default)]
    struct Table {
        by_key: HashMap<u32, NodeId>,
        by_node: HashMap<NodeId, u32>,
    }

    /// A hash table reduced to what the LRU can observe: which node holds which key.
    struct FakeHtab {
        lru: BpfLru,
        table: parking_lot::Mutex<Table>,
    }

    impl LruOwner for FakeHtab {
        // htab_lru_map_delete_node
        fn del_from_htab(&self, node: NodeId) -> bool {
            let mut t = self.table.lock();
            match t.by_node.remove(&node) {
                Some(k) => {
                    t.by_key.remove(&k);
                    true
                }
                None => false,
            }
        }
    }

    impl FakeHtab {
        /// `htab_map_alloc` rounds a per-CPU LRU's max_entries up to a multiple of the CPUs.
        fn new(percpu: bool, max_entries: u32) -> FakeHtab {
            let n = if percpu {
                max_entries.div_ceil(NR_CPUS) * NR_CPUS
            } else {
                max_entries
            };
            FakeHtab {
                lru: BpfLru::new(percpu, NR_CPUS, n),
                table: parking_lot::Mutex::new(Table::default()),
            }
        }

        /// `htab_lru_map_update_elem`: pop before taking the bucket lock (it may evict), check
        /// the flags, link, and push the loser (the old node, or the new one on error) free.
        fn update(&self, cpu: u32, key: u32, flags: u64) -> Result<(), i32> {
            let Some(new) = self.lru.pop_free(self, cpu, key.wrapping_mul(0x9e37_79b9)) else {
                return Err(ENOMEM);
            };
            let mut t = self.table.lock();
            let old = t.by_key.get(&key).copied();
            let err = match (old, flags) {
                (Some(_), crate::uapi::BPF_NOEXIST) => Some(EEXIST),
                (None, crate::uapi::BPF_EXIST) => Some(ENOENT),
                _ => None,
            };
            if let Some(e) = err {
                drop(t);
                self.lru.push_free(new);
                return Err(e);
            }
            t.by_key.insert(key, new);
            t.by_node.insert(new, key);
            if let Some(o) = old {
                self.lru.mark_ref(new);
                t.by_node.remove(&o);
            }
            drop(t);
            if let Some(o) = old {
                self.lru.push_free(o);
            }
            Ok(())
        }

        /// `htab_lru_map_delete_elem`.
        fn delete(&self, key: u32) -> Result<(), i32> {
            let node = {
                let mut t = self.table.lock();
                let node = t.by_key.remove(&key).ok_or(ENOENT)?;
                t.by_node.remove(&node);
                node
            };
            self.lru.push_free(node);
            Ok(())
        }

        fn keys(&self) -> BTreeSet<u32> {
            self.table.lock().by_key.keys().copied().collect()
        }
    }

    fn parse_list(s: &str) -> Vec<u32> {
        s.split(',').map(|k| k.parse().unwrap()).collect()
    }

    /// Replays `script` (see the module doc) and checks every step's errno and evictions.
    fn replay(percpu: bool, max_entries: u32, script: &str) {
        let h = FakeHtab::new(percpu, max_entries);
        let mut cpu = 0;
        for (i, step) in script.split_whitespace().enumerate() {
            let (head, evicted) = match step.split_once('>') {
                Some((a, b)) => (a, parse_list(b)),
                None => (step, Vec::new()),
            };
            let (op, errno) = match head.split_once('!') {
                Some((a, e)) => (a, e.parse::<i32>().unwrap()),
                None => (head, 0),
            };
            let (kind, arg) = op.split_at(1);
            let arg: u32 = arg.parse().unwrap();
            let before = h.keys();
            let res = match kind {
                "c" => {
                    cpu = arg;
                    Ok(())
                }
                "i" => h.update(cpu, arg, crate::uapi::BPF_ANY),
                "n" => h.update(cpu, arg, crate::uapi::BPF_NOEXIST),
                "x" => h.update(cpu, arg, crate::uapi::BPF_EXIST),
                "d" => h.delete(arg),
                _ => unreachable!("bad step {step}"),
            };
            assert_eq!(res.err().unwrap_or(0), errno, "step {i} ({step}): errno");
            let after = h.keys();
            let mut gone: Vec<u32> = before.difference(&after).copied().collect();
            if kind == "d" {
                gone.retain(|k| *k != arg);
            }
            assert_eq!(gone, evicted, "step {i} ({step}): evicted keys");
            h.lru.debug_check().unwrap();
        }
    }

    #[test]
    fn constants_and_target_free() {
        assert_eq!(
            (
                LOCAL_FREE_TARGET,
                LOCAL_NR_SCANS,
                PERCPU_FREE_TARGET,
                PERCPU_NR_SCANS
            ),
            (128, 128, 4, 4)
        );
        // clamp((nr_elems / nr_cpus) / 2, 1, LOCAL_FREE_TARGET)
        for (n, cpus, want) in [
            (1, 2, 1),
            (3, 2, 1),
            (8, 2, 2),
            (20, 2, 5),
            (600, 2, 128),
            (1000, 4, 125),
            (7, 1, 3),
        ] {
            let lru = BpfLru::new(false, cpus, n);
            assert_eq!(
                (lru.target_free, lru.nr_scans),
                (want, LOCAL_NR_SCANS),
                "n={n} cpus={cpus}"
            );
        }
        assert_eq!(BpfLru::new(true, 2, 8).nr_scans, PERCPU_NR_SCANS);
    }

    #[test]
    fn populate_order() {
        // Common: list_add of 0..n leaves n-1 at the front; a first refill of target_free = 2
        // moves n-1 then n-2 to the local free list (each at its front), so n-2 pops first.
        let h = FakeHtab::new(false, 8);
        let pops: Vec<_> = (0..4).map(|k| h.lru.pop_free(&h, 0, k).unwrap()).collect();
        assert_eq!(pops, [6, 7, 4, 5]);
        // Per-CPU: CPU 0 owns 0..4 (front: 3), CPU 1 owns 4..8.
        let h = FakeHtab::new(true, 8);
        assert_eq!(h.lru.pop_free(&h, 0, 0), Some(3));
        assert_eq!(h.lru.pop_free(&h, 1, 0), Some(7));
        assert_eq!(h.lru.pop_free(&h, 1, 0), Some(6));
        h.lru.debug_check().unwrap();
    }

    #[test]
    fn node_hash_and_ref() {
        let h = FakeHtab::new(false, 4);
        let n = h.lru.pop_free(&h, 1, 0xdead_beef).unwrap();
        assert_eq!(h.lru.node_hash(n), 0xdead_beef);
        h.lru.mark_ref(n);
        assert!(h.lru.is_ref(n));
        h.lru.mark_ref(n);
        assert!(h.lru.is_ref(n));
        // Pushing a pending node frees it to its CPU's local free list with the bit cleared.
        h.lru.push_free(n);
        assert!(!h.lru.is_ref(n));
        assert_eq!(h.lru.node_type(n), BPF_LRU_LOCAL_LIST_T_FREE);
        h.lru.debug_check().unwrap();
    }

    #[test]
    fn out_of_range_inputs_do_not_panic() {
        let h = FakeHtab::new(false, 4);
        h.lru.push_free(99);
        h.lru.mark_ref(99);
        assert_eq!(h.lru.node_hash(99), 0);
        assert!(h.lru.pop_free(&h, 7, 0).is_some());
        let lru = BpfLru::new(true, 0, 0);
        assert_eq!(lru.pop_free(&h, 0, 0), None);
        let lru = BpfLru::new(true, 4, 2);
        lru.debug_check().unwrap();
    }

    #[test]
    fn exhausted_common_lru_returns_none() {
        // A table that never gives elements back: the LRU runs dry and reports ENOMEM.
        struct Never;
        impl LruOwner for Never {
            fn del_from_htab(&self, _: NodeId) -> bool {
                false
            }
        }
        for percpu in [false, true] {
            let lru = BpfLru::new(percpu, 2, 4);
            let mut got = 0;
            while lru.pop_free(&Never, 0, 0).is_some() {
                got += 1;
            }
            // Common: any CPU can take every node; per-CPU: only CPU 0's two.
            assert_eq!(got, if percpu { 2 } else { 4 });
            lru.debug_check().unwrap();
        }
    }

    /// kernel 6.18, common LRU, max_entries 600 on 2 CPUs: (600/2)/2 = 150 is clamped to
    /// target_free = LOCAL_FREE_TARGET = 128. Refills take 128 free nodes each; insert 512 finds
    /// only 88 left and evicts the 40 oldest keys; from then on every 128th insert evicts 128.
    #[test]
    fn kernel_common_n600_clamps_target_free() {
        let h = FakeHtab::new(false, 600);
        let mut evictions = Vec::new();
        for k in 0..1300 {
            let before = h.keys();
            h.update(0, k, crate::uapi::BPF_ANY).unwrap();
            let gone: Vec<u32> = before.difference(&h.keys()).copied().collect();
            if !gone.is_empty() {
                assert_eq!(gone, (gone[0]..=*gone.last().unwrap()).collect::<Vec<_>>());
                evictions.push((k, gone[0], gone.len()));
            }
        }
        assert_eq!(
            evictions,
            [
                (512, 0, 40),
                (640, 40, 128),
                (768, 168, 128),
                (896, 296, 128),
                (1024, 424, 128),
                (1152, 552, 128),
                (1280, 680, 128)
            ]
        );
        h.lru.debug_check().unwrap();
    }

    #[test]
    fn concurrent_smoke() {
        for percpu in [false, true] {
            let h = FakeHtab::new(percpu, 16);
            std::thread::scope(|s| {
                for cpu in 0..NR_CPUS {
                    let h = &h;
                    s.spawn(move || {
                        for i in 0..2000u32 {
                            let key = (i * 7 + cpu * 13) % 40;
                            match i % 5 {
                                0 => drop(h.delete(key)),
                                1 => {
                                    if let Some(&n) = h.table.lock().by_key.get(&key) {
                                        h.lru.mark_ref(n);
                                    }
                                }
                                _ => drop(h.update(cpu, key, crate::uapi::BPF_ANY)),
                            }
                        }
                    });
                }
            });
            h.lru.debug_check().unwrap();
            assert!(h.keys().len() <= 16);
        }
    }

    /// kernel 6.18, common LRU, max_entries 8: target_free = 8/2/2 = 2, so each refill
    /// takes 2 free nodes, and once the free list is empty each refill evicts the 2 oldest keys.
    #[test]
    fn kernel_common_fill_n8() {
        const STEPS: &str = "
        i0 i1 i2 i3 i4 i5 i6 i7 i8>0,1 i9 i10>2,3 i11
        i12>4,5 i13 i14>6,7 i15 i16>8,9
        ";
        replay(false, 8, STEPS);
    }

    /// kernel 6.18, common LRU, max_entries 20: evictions come in batches of target_free = 5.
    #[test]
    fn kernel_common_n20() {
        const STEPS: &str = "
        i0 i1 i2 i3 i4 i5 i6 i7 i8 i9 i10 i11
        i12 i13 i14 i15 i16 i17 i18 i19 i20>0,1,2,3,4 i21 i22 i23
        i24 i25>5,6,7,8,9 i26 i27 i28 i29 i30>10,11,12,13,14 i31 i32 i33 i34 i35>15,16,17,18,19
        i36 i37 i38 i39 i40>20,21,22,23,24 i41 i42 i43 i44 i45>25,26,27,28,29
        ";
        replay(false, 20, STEPS);
    }

    /// kernel 6.18, common LRU, max_entries 3: 3/2/2 = 0 is clamped up to target_free = 1.
    #[test]
    fn kernel_common_n3() {
        const STEPS: &str = "
        i0 i1 i2 i3>0 i4>1 i5>2 i6>3 i7>4 i8>5
        ";
        replay(false, 3, STEPS);
    }

    /// kernel 6.18, common LRU, max_entries 8: replacing key 0 sets the ref bit of its new
    /// node (it outlives younger keys), failed updates still pop (and evict) before
    /// check_flags, deletes of pending nodes return them to the local free list.
    #[test]
    fn kernel_common_mixed_n8() {
        const STEPS: &str = "
        i0 i1 i2 i3 i4 i5 i6 i7 i0>1 i8 i9>2,3 i10
        i11>4,5 d3!2 n5 x42!2>6,7 n0!17 i12 i13 i14>0,8 x12 i15>9 i16 i17>10,11
        d0!2 d0!2 i18 i19>5,13 i20 i21>14,15 i22 i23>16,17
        ";
        replay(false, 8, STEPS);
    }

    /// kernel 6.18, common LRU, max_entries 16: replaced keys 2, 5, 6 are referenced; the
    /// inactive shrink promotes them to ACTIVE, and they are evicted only after rotation
    /// demotes them (2 goes with 100..102; 5 and 6 survive the whole run).
    #[test]
    fn kernel_common_ref_n16() {
        const STEPS: &str = "
        i0 i1 i2 i3 i4 i5 i6 i7 i8 i9 i10 i11
        i12 i13 i14 i15 i2>0,1,3 i5 i6 i100 i101>4,7 i102 i103 i104
        i105>8,9,10,11 i106 i107 i108 i109>12,13,14,15 i110 i111 i112 i113>2,100,101,102 i114 i115 i116
        i117>103,104,105,106 i118 i119 i120 i121>107,108,109,110 i122 i123 i124 i125>111,112,113,114 i126 i127 i128
        i129>115,116,117,118
        ";
        replay(false, 16, STEPS);
    }

    /// kernel 6.18, BPF_F_NO_COMMON_LRU, max_entries 8 on 2 CPUs: CPU 0 owns only 4 nodes,
    /// and each shrink frees up to PERCPU_FREE_TARGET = 4 (bounded by PERCPU_NR_SCANS = 4).
    #[test]
    fn kernel_percpu_mixed_n8() {
        const STEPS: &str = "
        i0 i1 i2 i3 i4>0,1,2,3 i1 i5 i6 i7>1,4,5,6 i8 d6!2 n7!17
        x99!2 i9 i10 i7>8,9,10 i11 i12 i13 i14>7,11,12,13 i15 i16
        ";
        replay(true, 8, STEPS);
    }

    /// kernel 6.18, BPF_F_NO_COMMON_LRU, max_entries 6 on 2 CPUs: each CPU evicts only its
    /// own 3 nodes; a delete frees a node to the list of the CPU that owns it.
    #[test]
    fn kernel_percpu_n6_migrate() {
        const STEPS: &str = "
        i0 i1 i2 i3>0,1,2 c1 i10 i11 i12 i13>10,11,12 i14 c0 i20
        d12!2 c1 i21 i22>13,14,21
        ";
        replay(true, 6, STEPS);
    }

    /// kernel 6.18, common LRU, max_entries 1: the only node sits on another CPU's pending list,
    /// so pop_free steals it (free list first, then pending), starting at next_steal.
    #[test]
    fn kernel_common_n1_steal() {
        const STEPS: &str = "
        i0 c1 i1>0 d1 c0 i2 c1 i3>2 i3 n3 c0 i4>3
        ";
        replay(false, 1, STEPS);
    }

    /// kernel 6.18, common LRU, max_entries 4 (target_free 1), alternating CPUs: refills,
    /// shrinks and steals across the two CPUs' local lists.
    #[test]
    fn kernel_common_n4_steal() {
        const STEPS: &str = "
        i0 i1 i2 c1 i10 i11>0 i12>1 i13>10 c0 i20>11 i21>12 d21
        c1 i22>2 i23>20 i11>13 c0 i24 i25>22 i26>23
        ";
        replay(false, 4, STEPS);
    }

    /// kernel 6.18, a random op sequence (seed 7) on a common LRU, max_entries 13.
    #[test]
    fn kernel_random_common_n13() {
        const STEPS: &str = "
        d12!2 x2!2 d3!2 i1 d6!2 c1 i7 i13 c0 d20!2 n1!17 n12
        c0 c0 i4 i18 i21 i18 n6 i17 x18 c0 i17 i10
        i14>1 i7 d22!2 d2!2 n16 i10>4,12,21 x9!2 n2 i13 i10>6,14 i15 i21
        c1 i11 n18!17 d2 d8!2 i21 c1 n21!17 d9!2 x21 i14 i19>16
        i1 i9 i7>17,18 i15 i14 i8>11,13 d13!2 d8 x11!2 x12!2 d4!2 i4
        i7 c0 i0 i17 i18>1,19 i4 x16!2 d20!2 x1!2 i24 d21 d12!2
        i12>0,9 i20 i6 c0 i3>17,18,24 i1 i18 i3>6,12,20 d19!2 c0 n4!17 n11
        n15!17 i15 d14 i9 i3 x23!2 i22 i0>1,18 i16 i22 i0>10,11 d9
        d2!2 x8!2 i5 i7 i24>4 i20 i25 d24 d25 i12 x7 i15>16
        i0 d25!2 i8 i19>5,20 d14!2 d23!2 d11!2 i3 i6 i15>12 n19!17 d15
        d11!2 d2!2 d3 d25!2 x6 i5 i20 i25>8 d23!2 i12 x2!2 x5
        d0 i14>19 d4!2 n19 d21!2 d4!2 i4 c0 i4>12,20,25 i6 d6 c0
        i7 d10!2 i13 d1!2 d11!2 d21!2 n16 i16 i4 i0 d24!2 i0>14,19
        d4 i15 n3 n10>13
        ";
        replay(false, 13, STEPS);
    }

    /// kernel 6.18, a random op sequence (seed 11) on BPF_F_NO_COMMON_LRU, max_entries 5.
    #[test]
    fn kernel_random_percpu_n5() {
        const STEPS: &str = "
        d7!2 i9 i8 i9 d1!2 i2 i0>2,8 n6 d9 x9!2 c0 c0
        d9!2 c1 i9 d8!2 i4 i1 i4>1,9 i8 d1!2 x5!2 d8 i1
        n1!17 i4 i0 d0 i0 i6>0,1 i9 n4>6,9 i4 i6 d1!2 i1
        c1 d2!2 x3!2>1,6 i3 d2!2 i6 i6>3,4 d0!2 i9 i0 i6>0,9 d9!2
        n1 c0 i4 c1 d6 c0 i3 c1 i7 i9 i9>1,7 i6
        i2 i3>2,6,9 d3 x2!2 x8!2 i6 d9!2 c0 i0 i4 i6 i9>0
        i8>4,6,9 i1 i7 n9>1,7,8 n4 i3 x1!2>3,4,9 i7 i0 i5 i2>0,5,7 i2
        d5!2 x8!2 n2!17 n0 i5 x0!2>0,2,5 c0 i4 i1 c1 x2!2 d5!2
        i7 d6!2 d0!2 d9!2 c1 i0 n1!17 i1 d6!2 x6!2>0,7 d9!2 i7
        d1 i8 c0 i3 d1!2 i9 x7>3,4,9 i0 i2 x3!2>0,2 i5 x7
        i3 i4>3,5 i6 d3!2 d6 i5 i2>4,5 i0 x4!2>0,2 d1!2 i4 d6!2
        i8 i5>4,7 x9!2 i1 d4!2 d0!2 x4!2>1,5 n4 n9 c0 i3>4,8,9 c1
        i2 d1!2 i8 x5!2 d3 i7 i0>2,7,8 d8!2 x2!2 i5 i8 i2>0,5,8
        i3 i6 i7>2,3,6 i0
        ";
        replay(true, 5, STEPS);
    }
}
