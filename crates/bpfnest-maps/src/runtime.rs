// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`Runtime`]: the per-"kernel" state — map ids, the handle table, pins, RCU and CPU count.
//!
//! The kernel keeps these as globals (`map_idr`, the task's fd table, bpffs). bpfnest keeps
//! them in an explicit object so that independent runtimes (tests, tenants) never share ids.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::object::{FMode, FileObject, FileTable, HandleTable, PinTree};
use crate::rcu::{Rcu, RcuReader};
use crate::registry::Caps;

/// Runtime settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of possible CPUs: per-CPU maps hold one value per CPU. Defaults to the machine's.
    pub nr_cpus: u32,
    /// The CPU syscall-side operations run on (LRU free lists, per-CPU bookkeeping). Pinning
    /// the caller to one CPU is what makes kernel LRU behaviour reproducible; this is that pin.
    pub syscall_cpu: u32,
    /// Capabilities of the user the runtime acts for.
    pub caps: Caps,
    /// `kernel.unprivileged_bpf_disabled` (Debian's default is 2: only CAP_BPF may use bpf(2)).
    pub unprivileged_bpf_disabled: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            nr_cpus: possible_cpus(),
            syscall_cpu: 0,
            caps: Caps::ROOT,
            unprivileged_bpf_disabled: true,
        }
    }
}

/// `num_possible_cpus()`: per-CPU values are laid out for every *possible* CPU, which may be
/// more than the online ones. Read from sysfs ("0-3", "0,2-5") and counted as the kernel's
/// `for_each_possible_cpu` visits them; falls back to the parallelism the OS reports.
pub fn possible_cpus() -> u32 {
    let parsed = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            let mut n = 0u32;
            for part in s.trim().split(',') {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            (n > 0).then_some(n)
        });
    parsed.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    })
}

/// Map id table (`map_idr`): cyclic allocation in `1..INT_MAX`.
#[derive(Default)]
pub(crate) struct IdTable {
    maps: HashMap<u32, MapPtr>,
    next: u32,
}

#[derive(Clone, Copy)]
struct MapPtr(*const BpfMap);
// SAFETY: pointers in the id table are only dereferenced under the table lock, while the map
// is guaranteed alive (its last put removes it under the same lock before freeing).
unsafe impl Send for MapPtr {}

const ID_MAX: u32 = i32::MAX as u32; // idr_alloc_cyclic(.., 1, INT_MAX): INT_MAX excluded

impl IdTable {
    fn alloc(&mut self, map: *const BpfMap) -> Result<u32> {
        if self.maps.len() as u64 >= (ID_MAX - 1) as u64 {
            return Err(Errno::ENOSPC);
        }
        let mut id = self.next.max(1);
        loop {
            if id >= ID_MAX {
                id = 1;
            }
            if !self.maps.contains_key(&id) {
                break;
            }
            id += 1;
        }
        self.maps.insert(id, MapPtr(map));
        self.next = id + 1;
        Ok(id)
    }
}

/// State shared by every map of a runtime (reachable from each [`BpfMap`]).
pub struct Core {
    pub(crate) map_ids: parking_lot::Mutex<IdTable>,
    pub(crate) rcu: Rcu,
    pub(crate) nr_cpus: u32,
    /// One normal-flavour reader per thread that ran a syscall-side operation, so that the
    /// `rcu_read_lock` around each operation costs a few ns instead of a registration.
    syscall_readers: thread_local::ThreadLocal<SyscallReader>,
}

/// A thread's normal-flavour reader for syscall-side sections.
struct SyscallReader(RcuReader);

// SAFETY: `ThreadLocal` hands `&SyscallReader` only to the thread that created it, so the
// reader's record is written by one thread, as `RcuReader` requires. The value changes thread
// only when the `ThreadLocal` is dropped (with `Core`), when no guard borrowed from it exists:
// guards live inside `Core::with_read_lock`, which borrows `Core`.
unsafe impl Send for SyscallReader {}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("nr_cpus", &self.nr_cpus)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Runs `f` inside a read-side section of the normal flavour, as the kernel wraps
    /// syscall-side map operations in `rcu_read_lock`. Nests.
    pub(crate) fn with_read_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let reader = self
            .syscall_readers
            .get_or(|| SyscallReader(self.rcu.normal.register()));
        let _guard = reader.0.read_lock();
        f()
    }

    /// `bpf_map_alloc_id`.
    pub(crate) fn alloc_map_id(&self, map: &BpfMap) -> Result<u32> {
        let mut t = self.map_ids.lock();
        let id = t.alloc(map)?;
        map.id.store(id, crate::primitive::Ordering::Relaxed);
        Ok(id)
    }

    /// `bpf_map_free_id`: called by the last put, before the map is freed.
    pub(crate) fn free_map_id(&self, map: &BpfMap) {
        let mut t = self.map_ids.lock();
        let id = map.id.swap(0, crate::primitive::Ordering::Relaxed);
        if id != 0 {
            t.maps.remove(&id);
        }
    }

    /// `bpf_map_get_curr_or_next`-style walk and `BPF_MAP_GET_FD_BY_ID`'s lookup.
    pub(crate) fn map_get_by_id(&self, id: u32) -> Result<crate::bpf_map::UserRef> {
        let t = self.map_ids.lock();
        let p = t.maps.get(&id).ok_or(Errno::ENOENT)?;
        // SAFETY: the table lock is held and the map is still in the table, so its last put
        // has not passed `free_map_id` and the memory is live.
        let map = unsafe { &*p.0 };
        map.inc_not_zero_with_uref().ok_or(Errno::ENOENT)
    }

    /// `BPF_MAP_GET_NEXT_ID`: the smallest live id greater than `start`.
    pub(crate) fn next_map_id(&self, start: u32) -> Result<u32> {
        let t = self.map_ids.lock();
        t.maps
            .keys()
            .copied()
            .filter(|&i| i > start)
            .min()
            .ok_or(Errno::ENOENT)
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) core: crate::primitive::Arc<Core>,
    pub(crate) config: Config,
    pub(crate) files: HandleTable,
    pub(crate) pins: parking_lot::Mutex<PinTree>,
}

/// A userspace BPF "kernel": the owner of maps, handles and pins.
///
/// Cheap to clone (a shared reference). Maps outlive the `Runtime` value as long as handles
/// or references to them exist.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime::new(Config::default())
    }
}

impl Runtime {
    /// A runtime with its own id space, handle table, pin namespace and RCU domains.
    pub fn new(config: Config) -> Runtime {
        let core = crate::primitive::Arc::new(Core {
            map_ids: parking_lot::Mutex::new(IdTable::default()),
            rcu: Rcu::new(),
            nr_cpus: config.nr_cpus.max(1),
            syscall_readers: thread_local::ThreadLocal::new(),
        });
        Runtime {
            inner: Arc::new(RuntimeInner {
                core,
                config,
                files: HandleTable::new(),
                pins: parking_lot::Mutex::new(PinTree::default()),
            }),
        }
    }

    /// The settings this runtime was created with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Number of possible CPUs.
    pub fn nr_cpus(&self) -> u32 {
        self.inner.core.nr_cpus
    }

    /// The RCU flavours that guard program runs and deferred frees.
    pub fn rcu(&self) -> &Rcu {
        &self.inner.core.rcu
    }

    /// The handle table (resolves numbers in byte-level values such as outer-map updates).
    pub fn files(&self) -> &dyn FileTable {
        &self.inner.files
    }

    /// Number of open handles (including the three reserved ones).
    pub fn open_handles(&self) -> usize {
        self.inner.files.open_count()
    }

    /// Opens a handle on a non-BPF object (like opening `/dev/null`): for tests of `EINVAL`
    /// on "not a map" handles.
    pub fn open_other(&self) -> Handle {
        self.install(FileObject::Other)
    }

    /// Installs a program so that program arrays can take it by handle.
    pub fn install_prog(&self, prog: Arc<dyn crate::object::BpfProg>) -> Handle {
        self.install(FileObject::Prog(prog))
    }

    /// Installs a BTF object so that map creation can take it by handle.
    pub fn install_btf(&self, btf: Arc<dyn crate::object::BtfObject>) -> Handle {
        self.install(FileObject::Btf(btf))
    }

    pub(crate) fn install(&self, obj: FileObject) -> Handle {
        let obj = Arc::new(obj);
        let fd = self.inner.files.install(obj.clone());
        Handle {
            rt: self.clone(),
            fd,
            obj,
        }
    }

    pub(crate) fn install_map(&self, map: crate::bpf_map::UserRef, mode: FMode) -> MapHandle {
        MapHandle(self.install(FileObject::Map { map, mode }))
    }

    /// Waits until every callback deferred so far (freed maps, elements) has run.
    pub fn rcu_barrier(&self) {
        let rcu = &self.inner.core.rcu;
        // A tasks-trace callback may queue a normal one: drain in that order.
        rcu.tasks_trace.barrier();
        rcu.normal.barrier();
    }
}

/// An open handle: the runtime's counterpart of a file descriptor. Dropping it closes it.
pub struct Handle {
    rt: Runtime,
    fd: u32,
    obj: Arc<FileObject>,
}

impl Handle {
    /// The handle number, as used in byte-level values (`inner_map_fd`, outer-map values).
    pub fn raw(&self) -> u32 {
        self.fd
    }
    /// The object behind the handle.
    pub fn object(&self) -> &FileObject {
        &self.obj
    }
    /// The runtime the handle belongs to.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("fd", &self.fd)
            .field("obj", &self.obj)
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.rt.inner.files.close_if(self.fd, &self.obj);
    }
}

/// A handle on a map (like a map fd). Holds a reference and a user reference to the map.
///
/// Operations through it are the syscall commands (see [`crate::syscall`]).
#[derive(Debug)]
pub struct MapHandle(pub(crate) Handle);

impl MapHandle {
    /// The handle number.
    pub fn raw(&self) -> u32 {
        self.0.fd
    }
    /// The runtime that owns the map.
    pub fn runtime(&self) -> &Runtime {
        &self.0.rt
    }
    /// The handle's access mode.
    pub fn mode(&self) -> FMode {
        match &*self.0.obj {
            FileObject::Map { mode, .. } => *mode,
            _ => unreachable!("MapHandle always wraps a map object"),
        }
    }
    /// The map.
    pub fn map(&self) -> &crate::bpf_map::UserRef {
        match &*self.0.obj {
            FileObject::Map { map, .. } => map,
            _ => unreachable!("MapHandle always wraps a map object"),
        }
    }
    /// The map's id.
    pub fn id(&self) -> u32 {
        self.map().id()
    }
    /// Another handle on the same map with the same mode (`dup`).
    pub fn try_clone(&self) -> MapHandle {
        self.0.rt.install_map(self.map().clone_uref(), self.mode())
    }
}
