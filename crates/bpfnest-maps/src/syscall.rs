// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The map commands of bpf(2), as `kernel/bpf/syscall.c` runs them: the generic checks in the
//! kernel's order, then the type's [`MapOps`](crate::MapOps), then the epilogue (the outer-map
//! wait for readers).
//!
//! Byte slices stand in for user pointers. A key or value slice whose length differs from what
//! the kernel would read (`key_size`, [`BpfMap::sys_value_size`]) gives `EINVAL`; the kernel
//! has no such case (it reads what it needs from the pointer), so this is bpfnest's own.

use crate::attr::MapAttr;
use crate::bpf_map::{BpfMap, MapRef};
use crate::errno::{Errno, Result};
use crate::object::{FMode, PinnedObject};
use crate::ops::{BatchArgs, OpCtx};
use crate::record::BtfRecord;
use crate::registry::{AllocCtx, BtfKind};
use crate::runtime::{MapHandle, Runtime};
use crate::uapi::*;

/// `bpf_map_info` as `BPF_OBJ_GET_INFO_BY_FD` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    /// Map id.
    pub id: u32,
    /// Key size.
    pub key_size: u32,
    /// Value size.
    pub value_size: u32,
    /// Max entries.
    pub max_entries: u32,
    /// Flags as stored (no `BPF_F_RDONLY`/`BPF_F_WRONLY`).
    pub map_flags: u32,
    /// Name, NUL-padded.
    pub name: [u8; BPF_OBJ_NAME_LEN],
    /// BTF object id, 0 if none.
    pub btf_id: u32,
    /// BTF key type id.
    pub btf_key_type_id: u32,
    /// BTF value type id.
    pub btf_value_type_id: u32,
    /// BTF vmlinux value type id.
    pub btf_vmlinux_value_type_id: u32,
    /// `map_extra`.
    pub map_extra: u64,
    /// Whether the map is frozen (not part of `bpf_map_info`; bpftool reads it from fdinfo).
    pub frozen: bool,
}

impl MapInfo {
    /// The name as a string.
    pub fn name_str(&self) -> &str {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(BPF_OBJ_NAME_LEN);
        core::str::from_utf8(&self.name[..n]).unwrap_or("")
    }
}

/// `bpf_obj_name_cpy`: `[A-Za-z0-9_.]` up to a NUL within 16 bytes.
fn obj_name_cpy(src: &[u8; BPF_OBJ_NAME_LEN]) -> Result<[u8; BPF_OBJ_NAME_LEN]> {
    let mut dst = [0u8; BPF_OBJ_NAME_LEN];
    for (i, &c) in src.iter().enumerate() {
        if c == 0 {
            return Ok(dst);
        }
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
            return Err(Errno::EINVAL);
        }
        dst[i] = c;
    }
    Err(Errno::EINVAL)
}

/// Runs `f` inside a read-side section of the runtime's normal RCU flavour, as the kernel wraps
/// syscall-side map operations in `rcu_read_lock`.
fn rcu_read<R>(map: &BpfMap, f: impl FnOnce() -> R) -> R {
    map.with_read_lock(f)
}

impl Runtime {
    fn sys_ctx(&self) -> OpCtx<'_> {
        OpCtx {
            cpu: self.inner.config.syscall_cpu,
            files: Some(&self.inner.files),
        }
    }

    /// `BPF_MAP_CREATE`.
    pub fn map_create(&self, attr: &MapAttr) -> Result<MapHandle> {
        self.map_create_inner(attr, None)
    }

    /// `BPF_MAP_CREATE` with a special-field record given directly instead of through BTF, as
    /// the object loader does after parsing BTF. The record goes through the same checks as
    /// one derived by `map_check_btf`.
    pub fn map_create_with_record(&self, attr: &MapAttr, record: BtfRecord) -> Result<MapHandle> {
        self.map_create_inner(attr, Some(record))
    }

    fn map_create_inner(
        &self,
        attr: &MapAttr,
        direct_record: Option<BtfRecord>,
    ) -> Result<MapHandle> {
        let cfg = &self.inner.config;
        let mut attr = *attr;
        let token_flag = attr.map_flags & BPF_F_TOKEN_FD != 0;
        attr.map_flags &= !BPF_F_TOKEN_FD;

        if attr.btf_vmlinux_value_type_id != 0 {
            if attr.map_type != BPF_MAP_TYPE_STRUCT_OPS
                || attr.btf_key_type_id != 0
                || attr.btf_value_type_id != 0
            {
                return Err(Errno::EINVAL);
            }
        } else if attr.btf_key_type_id != 0 && attr.btf_value_type_id == 0 {
            return Err(Errno::EINVAL);
        }
        if attr.map_type != BPF_MAP_TYPE_BLOOM_FILTER
            && attr.map_type != BPF_MAP_TYPE_ARENA
            && attr.map_extra != 0
        {
            return Err(Errno::EINVAL);
        }
        let mode = FMode::from_flags(attr.map_flags)?;
        // One NUMA node (node 0); NUMA_NO_NODE (-1) means "any".
        if attr.map_flags & BPF_F_NUMA_NODE != 0
            && attr.numa_node != NUMA_NO_NODE
            && attr.numa_node >= 1
        {
            return Err(Errno::EINVAL);
        }
        let type_ops = crate::registry::find(attr.map_type).ok_or(Errno::EINVAL)?;
        let ctx = AllocCtx {
            nr_cpus: self.nr_cpus(),
            caps: cfg.caps,
            rcu: self.rcu(),
            files: &self.inner.files,
        };
        if let Some(check) = type_ops.alloc_check {
            check(&attr, &ctx)?;
        }
        if token_flag {
            // No BPF tokens here: `map_token_fd` (0) never names one.
            return Err(Errno::EINVAL);
        }
        if cfg.unprivileged_bpf_disabled && !cfg.caps.bpf {
            return Err(Errno::EPERM);
        }
        if !type_ops.unprivileged && !cfg.caps.bpf {
            return Err(Errno::EPERM);
        }
        if attr.map_ifindex != 0 {
            // bpf_map_offload_map_alloc: CAP_SYS_ADMIN, ARRAY or HASH only, then a device that
            // can offload. bpfnest has no devices but loopback (ifindex 1, present in every
            // network namespace), which cannot offload: EOPNOTSUPP, as on Linux.
            if !cfg.caps.sys_admin {
                return Err(Errno::EPERM);
            }
            if attr.map_type != BPF_MAP_TYPE_ARRAY && attr.map_type != BPF_MAP_TYPE_HASH {
                return Err(Errno::EINVAL);
            }
            return Err(if attr.map_ifindex == 1 {
                Errno::EOPNOTSUPP
            } else {
                Errno::EINVAL
            });
        }
        let ops = (type_ops.alloc)(&attr, &ctx)?;
        let name = obj_name_cpy(&attr.map_name)?;
        let mut map = Box::new(BpfMap {
            map_type: attr.map_type,
            key_size: attr.key_size,
            value_size: attr.value_size,
            max_entries: ops.max_entries().unwrap_or(attr.max_entries),
            map_flags: attr.map_flags & !(BPF_F_RDONLY | BPF_F_WRONLY),
            map_extra: attr.map_extra,
            numa_node: if attr.map_flags & BPF_F_NUMA_NODE != 0 {
                attr.numa_node
            } else {
                NUMA_NO_NODE
            },
            name,
            btf_id: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            btf_vmlinux_value_type_id: 0,
            id: Default::default(),
            refcnt: Default::default(),
            usercnt: Default::default(),
            frozen: Default::default(),
            writecnt: Default::default(),
            freeze_mutex: parking_lot::Mutex::new(()),
            record: None,
            free_after_rcu_gp: Default::default(),
            free_after_mult_rcu_gp: Default::default(),
            sleepable_refcnt: Default::default(),
            excl: false,
            bypass_spec_v1: cfg.caps.bypass_spec_v1(),
            type_ops,
            ops,
            core: self.inner.core.clone(),
        });
        if attr.excl_prog_hash_size != 0 {
            // A SHA-256 of the one program allowed to use the map.
            if attr.excl_prog_hash_size != 32 {
                return Err(Errno::EINVAL);
            }
            map.excl = true;
        }
        if attr.btf_key_type_id != 0
            || attr.btf_value_type_id != 0
            || attr.btf_vmlinux_value_type_id != 0
        {
            let btf = crate::object::FileTable::btf_get(&self.inner.files, attr.btf_fd)?;
            if btf.is_kernel() {
                return Err(Errno::EACCES);
            }
            if attr.btf_value_type_id != 0 {
                let key_kind = if attr.btf_key_type_id != 0 {
                    if btf.type_size(attr.btf_key_type_id) != Some(attr.key_size) {
                        return Err(Errno::EINVAL);
                    }
                    btf.type_kind(attr.btf_key_type_id)
                } else {
                    if type_ops.check_btf.is_none() {
                        return Err(Errno::EINVAL);
                    }
                    BtfKind::Void
                };
                if btf.type_size(attr.btf_value_type_id) != Some(attr.value_size) {
                    return Err(Errno::EINVAL);
                }
                let rec = btf.value_record(attr.btf_value_type_id, attr.value_size)?;
                map.record = self.check_record(&attr, rec)?;
                if let Some(check) = type_ops.check_btf {
                    check(&attr, key_kind, btf.type_kind(attr.btf_value_type_id))?;
                }
            }
            map.btf_id = btf.id();
            map.btf_key_type_id = attr.btf_key_type_id;
            map.btf_value_type_id = attr.btf_value_type_id;
            map.btf_vmlinux_value_type_id = attr.btf_vmlinux_value_type_id;
        } else if let Some(rec) = direct_record {
            // A record given directly stands for the value type's fields; the key and value
            // type kinds that the type's own `map_check_btf` looks at are unknown here, so only
            // the record checks run (types that refuse every special field fail in them).
            if !rec.value_size_ok(attr.value_size) {
                return Err(Errno::EINVAL);
            }
            map.record = self.check_record(&attr, Some(rec))?;
        }
        let uref = MapRef::from_new(map);
        self.inner.core.alloc_map_id(&uref)?;
        Ok(self.install_map(uref, mode))
    }

    /// The record half of `map_check_btf`: capability, flag and per-type field checks.
    fn check_record(&self, attr: &MapAttr, rec: Option<BtfRecord>) -> Result<Option<BtfRecord>> {
        let Some(rec) = rec.filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if !self.inner.config.caps.bpf {
            return Err(Errno::EPERM);
        }
        crate::record::check_fields_allowed(attr.map_type, attr.map_flags, &rec)?;
        Ok(Some(rec))
    }

    /// `BPF_MAP_GET_FD_BY_ID`: a new handle on the map with `id`. `open_flags` may hold
    /// `BPF_F_RDONLY` or `BPF_F_WRONLY`.
    pub fn map_get_fd_by_id(&self, id: u32, open_flags: u32) -> Result<MapHandle> {
        // kernel 6.18: only BPF_OBJ_FLAG_MASK (RDONLY|WRONLY); BPF_F_TOKEN_FD is EINVAL here.
        if open_flags & !(BPF_F_RDONLY | BPF_F_WRONLY) != 0 {
            return Err(Errno::EINVAL);
        }
        if !self.inner.config.caps.sys_admin {
            return Err(Errno::EPERM);
        }
        let mode = FMode::from_flags(open_flags)?;
        let uref = self.inner.core.map_get_by_id(id)?;
        Ok(self.install_map(uref, mode))
    }

    /// `BPF_MAP_GET_NEXT_ID`.
    pub fn map_get_next_id(&self, start_id: u32) -> Result<u32> {
        if !self.inner.config.caps.sys_admin {
            return Err(Errno::EPERM);
        }
        self.inner.core.next_map_id(start_id)
    }

    /// `BPF_OBJ_PIN` of a map: the pin holds a reference and a user reference.
    pub fn obj_pin(&self, handle: &MapHandle, path: &str) -> Result<()> {
        self.inner
            .pins
            .lock()
            .pin(path, PinnedObject::Map(handle.map().clone_uref()))
    }

    /// `BPF_OBJ_GET`: a new handle on the map pinned at `path` (`EINVAL` for a program pin).
    pub fn obj_get(&self, path: &str, file_flags: u32) -> Result<MapHandle> {
        if file_flags & !(BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PATH_FD) != 0 {
            return Err(Errno::EINVAL);
        }
        let mode = FMode::from_flags(file_flags)?;
        let obj = self.inner.pins.lock().get(path)?;
        match &*obj {
            PinnedObject::Map(m) => Ok(self.install_map(m.clone_uref(), mode)),
            PinnedObject::Prog(_) => Err(Errno::EINVAL),
        }
    }

    /// Removes a pin (bpffs `unlink`) or an empty pin directory (`rmdir`).
    pub fn unpin(&self, path: &str) -> Result<()> {
        let mut pins = self.inner.pins.lock();
        pins.unpin(path)
    }

    /// Creates a directory in the pin namespace (bpffs `mkdir`).
    pub fn pin_mkdir(&self, path: &str) -> Result<()> {
        self.inner.pins.lock().mkdir(path)
    }

    /// Pinned paths, sorted.
    pub fn pinned_paths(&self) -> Vec<String> {
        self.inner.pins.lock().paths()
    }
}

impl BtfRecord {
    fn value_size_ok(&self, value_size: u32) -> bool {
        self.fields()
            .iter()
            .all(|f| f.offset + f.kind.size() <= value_size)
    }
}

fn check_len(got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// `__bpf_copy_key`: a zero-size key must be absent.
fn copy_key<'k>(map: &BpfMap, key: Option<&'k [u8]>) -> Result<Option<&'k [u8]>> {
    match key {
        Some(k) if map.key_size == 0 => {
            let _ = k;
            Err(Errno::EINVAL)
        }
        Some(k) => check_len(k.len(), map.key_size as usize).map(|_| Some(k)),
        None if map.key_size == 0 => Ok(None),
        None => Err(Errno::EFAULT),
    }
}

fn has_spin_lock(map: &BpfMap) -> bool {
    map.record().and_then(|r| r.spin_lock_off()).is_some()
}

// `map_get_sys_perms`: a frozen map is read-only from the syscall side.
fn can_read(h: &MapHandle) -> bool {
    h.mode().can_read()
}

fn can_write(h: &MapHandle) -> bool {
    h.mode().can_write() && !h.map().frozen()
}

/// `maybe_wait_bpf_programs`: after an outer map changed, wait until no non-sleepable program
/// can still see the old inner map. Sleepable programs are not waited for (the kernel's choice:
/// a tasks-trace wait can take very long).
fn maybe_wait_bpf_programs(map: &BpfMap) {
    if matches!(
        map.map_type,
        BPF_MAP_TYPE_HASH_OF_MAPS | BPF_MAP_TYPE_ARRAY_OF_MAPS
    ) {
        map.core.rcu.normal.synchronize();
    }
}

impl MapHandle {
    fn ctx(&self) -> OpCtx<'_> {
        self.runtime().sys_ctx()
    }

    /// `BPF_MAP_LOOKUP_ELEM`: copies the value for `key` into `value` (the syscall value size).
    /// `flags` may be `BPF_F_LOCK` on maps with a spin lock.
    pub fn lookup_elem(&self, key: Option<&[u8]>, value: &mut [u8], flags: u64) -> Result<()> {
        if flags & !BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let map: &BpfMap = self.map();
        if !can_read(self) {
            return Err(Errno::EPERM);
        }
        if flags & BPF_F_LOCK != 0 && !has_spin_lock(map) {
            return Err(Errno::EINVAL);
        }
        let key = copy_key(map, key)?;
        check_len(value.len(), map.sys_value_size())?;
        let ctx = self.ctx();
        // Queues, stacks and bloom filters peek here (`bpf_map_copy_value`); their
        // `lookup_elem_sys` does that without touching `value` on failure, as the kernel only
        // copies out on success.
        rcu_read(map, || {
            map.ops
                .lookup_elem_sys(map, &ctx, key.unwrap_or(&[]), value, flags)
        })
    }

    /// `BPF_MAP_UPDATE_ELEM`. For outer maps and program arrays the 4-byte value is a handle
    /// number. After a successful outer-map update, returns only when no non-sleepable reader
    /// can still see the old inner map.
    pub fn update_elem(&self, key: Option<&[u8]>, value: &[u8], flags: u64) -> Result<()> {
        let map: &BpfMap = self.map();
        map.write_active(|| {
            if !can_write(self) {
                return Err(Errno::EPERM);
            }
            if flags & BPF_F_LOCK != 0 && !has_spin_lock(map) {
                return Err(Errno::EINVAL);
            }
            let key = copy_key(map, key)?;
            check_len(value.len(), map.sys_value_size())?;
            let r = self.update_value(map, key, value, flags);
            if r.is_ok() {
                maybe_wait_bpf_programs(map);
            }
            r
        })
    }

    /// `bpf_map_update_value`: the per-type dispatch shared with `UPDATE_BATCH`.
    pub(crate) fn update_value(
        &self,
        map: &BpfMap,
        key: Option<&[u8]>,
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        let ctx = self.ctx();
        match map.map_type {
            BPF_MAP_TYPE_QUEUE | BPF_MAP_TYPE_STACK | BPF_MAP_TYPE_BLOOM_FILTER => {
                rcu_read(map, || map.ops.push_elem(map, value, flags))
            }
            // Program arrays may sleep in the kernel; no read-side section.
            BPF_MAP_TYPE_PROG_ARRAY => {
                map.ops
                    .update_elem(map, &ctx, key.unwrap_or(&[]), value, flags)
            }
            _ => rcu_read(map, || {
                map.ops
                    .update_elem(map, &ctx, key.unwrap_or(&[]), value, flags)
            }),
        }
    }

    /// `BPF_MAP_DELETE_ELEM`.
    pub fn delete_elem(&self, key: Option<&[u8]>) -> Result<()> {
        let map: &BpfMap = self.map();
        map.write_active(|| {
            if !can_write(self) {
                return Err(Errno::EPERM);
            }
            let key = copy_key(map, key)?;
            let ctx = self.ctx();
            let r = if map.map_type == BPF_MAP_TYPE_PROG_ARRAY {
                map.ops.delete_elem(map, &ctx, key.unwrap_or(&[]))
            } else {
                rcu_read(map, || map.ops.delete_elem(map, &ctx, key.unwrap_or(&[])))
            };
            if r.is_ok() {
                maybe_wait_bpf_programs(map);
            }
            r
        })
    }

    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key`, or the first key when `key` is `None`.
    pub fn get_next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        let map: &BpfMap = self.map();
        if !can_read(self) {
            return Err(Errno::EPERM);
        }
        let key = match key {
            Some(k) => copy_key(map, Some(k))?,
            None => None,
        };
        check_len(next_key.len(), map.key_size as usize)?;
        rcu_read(map, || map.ops.get_next_key(map, key, next_key))
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`: hash types, and pop for queues and stacks.
    pub fn lookup_and_delete_elem(
        &self,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        if flags & !BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let map: &BpfMap = self.map();
        map.write_active(|| {
            if !can_read(self) || !can_write(self) {
                return Err(Errno::EPERM);
            }
            if flags != 0 && matches!(map.map_type, BPF_MAP_TYPE_QUEUE | BPF_MAP_TYPE_STACK) {
                return Err(Errno::EINVAL);
            }
            if flags & BPF_F_LOCK != 0 && !has_spin_lock(map) {
                return Err(Errno::EINVAL);
            }
            let key = copy_key(map, key)?;
            check_len(value.len(), map.sys_value_size())?;
            let ctx = self.ctx();
            match map.map_type {
                BPF_MAP_TYPE_QUEUE
                | BPF_MAP_TYPE_STACK
                | BPF_MAP_TYPE_HASH
                | BPF_MAP_TYPE_PERCPU_HASH
                | BPF_MAP_TYPE_LRU_HASH
                | BPF_MAP_TYPE_LRU_PERCPU_HASH
                | BPF_MAP_TYPE_STACK_TRACE => rcu_read(map, || {
                    map.ops.lookup_and_delete_elem(map, &ctx, key, value, flags)
                }),
                _ => Err(Errno::ENOTSUPP),
            }
        })
    }

    /// `BPF_MAP_FREEZE`: makes the map read-only from the syscall side for good.
    pub fn freeze(&self) -> Result<()> {
        let map: &BpfMap = self.map();
        if map.map_type == BPF_MAP_TYPE_STRUCT_OPS || map.record().is_some_and(|r| !r.is_empty()) {
            return Err(Errno::ENOTSUPP);
        }
        if !can_write(self) {
            return Err(Errno::EPERM);
        }
        let _g = map.freeze_mutex.lock();
        if map.writecnt.load(crate::primitive::Ordering::SeqCst) != 0 {
            return Err(Errno::EBUSY);
        }
        if map.frozen() {
            return Err(Errno::EBUSY);
        }
        // Release: pairs with the Acquire in `BpfMap::frozen`.
        map.frozen.store(true, crate::primitive::Ordering::Release);
        Ok(())
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` for a map.
    pub fn info(&self) -> MapInfo {
        let m: &BpfMap = self.map();
        MapInfo {
            map_type: m.map_type,
            id: m.id(),
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            map_flags: m.map_flags,
            name: m.name,
            btf_id: m.btf_id,
            btf_key_type_id: m.btf_key_type_id,
            btf_value_type_id: m.btf_value_type_id,
            btf_vmlinux_value_type_id: m.btf_vmlinux_value_type_id,
            map_extra: m.map_extra,
            frozen: m.frozen(),
        }
    }

    fn do_batch(&self, cmd: BatchCmd, args: &mut BatchArgs<'_>) -> Result<()> {
        let map: &BpfMap = self.map();
        let has_read = matches!(cmd, BatchCmd::Lookup | BatchCmd::LookupAndDelete);
        let has_write = cmd != BatchCmd::Lookup;
        let mut run = || {
            if has_read && !can_read(self) {
                return Err(Errno::EPERM);
            }
            if has_write && !can_write(self) {
                return Err(Errno::EPERM);
            }
            let ctx = self.ctx();
            match cmd {
                BatchCmd::Lookup => map.ops.lookup_batch(map, &ctx, args),
                BatchCmd::LookupAndDelete => map.ops.lookup_and_delete_batch(map, &ctx, args),
                BatchCmd::Update => map.ops.update_batch(map, &ctx, args),
                BatchCmd::Delete => map.ops.delete_batch(map, &ctx, args),
            }
        };
        if has_write {
            map.write_active(|| {
                let r = run();
                // Write batches wait for readers whether or not they succeeded.
                maybe_wait_bpf_programs(map);
                r
            })
        } else {
            run()
        }
    }

    /// `BPF_MAP_LOOKUP_BATCH`. On return `args.count` holds the number of elements copied.
    pub fn lookup_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.do_batch(BatchCmd::Lookup, args)
    }
    /// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`.
    pub fn lookup_and_delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.do_batch(BatchCmd::LookupAndDelete, args)
    }
    /// `BPF_MAP_UPDATE_BATCH`.
    pub fn update_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.do_batch(BatchCmd::Update, args)
    }
    /// `BPF_MAP_DELETE_BATCH`.
    pub fn delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.do_batch(BatchCmd::Delete, args)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BatchCmd {
    Lookup,
    LookupAndDelete,
    Update,
    Delete,
}

/// `bpf_map_copy_value`'s dispatch for one key, shared by lookups and generic batches.
fn copy_value(
    map: &BpfMap,
    ctx: &OpCtx<'_>,
    key: &[u8],
    value: &mut [u8],
    flags: u64,
) -> Result<()> {
    map.ops.lookup_elem_sys(map, ctx, key, value, flags)
}

/// `generic_map_lookup_batch`: walks keys with `get_next_key`, skipping keys that vanish (or
/// array-of-maps holes), and ends with `ENOENT` when the map is exhausted.
/// `in_batch`/`out_batch` hold a key.
pub fn generic_map_lookup_batch(
    map: &BpfMap,
    ctx: &OpCtx<'_>,
    args: &mut BatchArgs<'_>,
) -> Result<()> {
    if args.elem_flags & !BPF_F_LOCK != 0 {
        return Err(Errno::EINVAL);
    }
    if args.elem_flags & BPF_F_LOCK != 0 && !has_spin_lock(map) {
        return Err(Errno::EINVAL);
    }
    let ks = map.key_size as usize;
    let vs = map.sys_value_size();
    let max_count = args.count;
    if max_count == 0 {
        return Ok(());
    }
    args.count = 0;
    if args.keys.len() < ks * max_count as usize || args.values.len() < vs * max_count as usize {
        return Err(Errno::EFAULT);
    }
    let mut prev: Option<Vec<u8>> = match args.in_batch {
        Some(b) if b.len() >= ks => Some(b[..ks].to_vec()),
        Some(_) => return Err(Errno::EFAULT),
        None => None,
    };
    let mut key = vec![0u8; ks];
    let mut value = vec![0u8; vs];
    let mut cp = 0u32;
    let mut err = Ok(());
    while cp < max_count {
        let r = rcu_read(map, || map.ops.get_next_key(map, prev.as_deref(), &mut key));
        if let Err(e) = r {
            err = Err(e);
            break;
        }
        match rcu_read(map, || {
            copy_value(map, ctx, &key, &mut value, args.elem_flags)
        }) {
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
            Ok(()) => {
                let c = cp as usize;
                args.keys[c * ks..(c + 1) * ks].copy_from_slice(&key);
                args.values[c * vs..(c + 1) * vs].copy_from_slice(&value);
                cp += 1;
            }
        }
        prev = Some(key.clone());
    }
    args.count = cp;
    if cp > 0 {
        if let Some(p) = &prev {
            if args.out_batch.len() < ks {
                return Err(Errno::EFAULT);
            }
            args.out_batch[..ks].copy_from_slice(p);
        }
    }
    err
}

/// `generic_map_update_batch`: each element through the update path; stops at the first error.
pub fn generic_map_update_batch(
    map: &BpfMap,
    ctx: &OpCtx<'_>,
    args: &mut BatchArgs<'_>,
) -> Result<()> {
    if args.elem_flags & !BPF_F_LOCK != 0 {
        return Err(Errno::EINVAL);
    }
    if args.elem_flags & BPF_F_LOCK != 0 && !has_spin_lock(map) {
        return Err(Errno::EINVAL);
    }
    let ks = map.key_size as usize;
    let vs = map.sys_value_size();
    let count = args.count;
    args.count = 0;
    let mut r = Ok(());
    for cp in 0..count as usize {
        let (Some(k), Some(v)) = (
            args.keys.get(cp * ks..(cp + 1) * ks),
            args.values.get(cp * vs..(cp + 1) * vs),
        ) else {
            r = Err(Errno::EFAULT);
            break;
        };
        r = match map.map_type {
            BPF_MAP_TYPE_QUEUE | BPF_MAP_TYPE_STACK | BPF_MAP_TYPE_BLOOM_FILTER => {
                map.ops.push_elem(map, v, args.elem_flags)
            }
            BPF_MAP_TYPE_PROG_ARRAY => map.ops.update_elem(map, ctx, k, v, args.elem_flags),
            _ => rcu_read(map, || map.ops.update_elem(map, ctx, k, v, args.elem_flags)),
        };
        if r.is_err() {
            break;
        }
        args.count = cp as u32 + 1;
    }
    r
}

/// `generic_map_delete_batch`: deletes each key; stops at the first error (e.g. `ENOENT`).
pub fn generic_map_delete_batch(
    map: &BpfMap,
    ctx: &OpCtx<'_>,
    args: &mut BatchArgs<'_>,
) -> Result<()> {
    if args.elem_flags & !BPF_F_LOCK != 0 {
        return Err(Errno::EINVAL);
    }
    if args.elem_flags & BPF_F_LOCK != 0 && !has_spin_lock(map) {
        return Err(Errno::EINVAL);
    }
    let ks = map.key_size as usize;
    let count = args.count;
    args.count = 0;
    let mut r = Ok(());
    for cp in 0..count as usize {
        let Some(k) = args.keys.get(cp * ks..(cp + 1) * ks) else {
            r = Err(Errno::EFAULT);
            break;
        };
        r = if map.map_type == BPF_MAP_TYPE_PROG_ARRAY {
            map.ops.delete_elem(map, ctx, k)
        } else {
            rcu_read(map, || map.ops.delete_elem(map, ctx, k))
        };
        if r.is_err() {
            break;
        }
        args.count = cp as u32 + 1;
    }
    r
}
