// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`FdMap`]: a kernel map behind an owned fd, with the byte-level methods of
//! [`bpfnest_maps::MapHandle`], plus the id, pin and probe commands.
//!
//! The kernel reads `key_size` and value bytes from the pointers it is given and writes as many
//! back, whatever the caller's buffer holds. So every key and value slice is checked against the
//! map's sizes before the call, and a mismatch is `EINVAL`, as bpfnest-maps answers it
//! (`syscall.rs`, `check_len`), so that both backends agree. Batch buffers shorter than
//! `count` elements (or than the batch position) are `EFAULT`, bpfnest-maps' answer for a short
//! batch buffer. These checks run before the kernel's own, so when a call is wrong in several
//! ways at once the length errno wins here, where bpfnest-maps and the kernel may report an
//! earlier check (`EPERM` on a read-only fd, say).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use bpfnest_maps::uapi::*;
use bpfnest_maps::{BatchArgs, Errno, MapAttr, MapInfo};

use crate::attr::{
    BatchAttr, ElemAttr, GetIdAttr, InfoAttr, MapCreateAttr, MapInfoRaw, ObjAttr, MAP_INFO_SIZE,
};
use crate::error::{Result, SysError};
use crate::sys::{bpf, owned_fd, Cmd};

/// A BPF map in the kernel, held by an owned fd (closed on drop).
///
/// Method names and arguments mirror [`bpfnest_maps::MapHandle`], so the same byte-level
/// sequence can run against either backend. Errors carry the command and the kernel's errno.
#[derive(Debug)]
pub struct FdMap {
    fd: OwnedFd,
    /// `map_type`, `id`, `key_size`, `value_size` and `max_entries` as
    /// `BPF_OBJ_GET_INFO_BY_FD` reported them for `fd` when this value was made. None of them
    /// can change for the life of a map, and `fd` keeps the map alive, so they stay the
    /// kernel's; the length checks that keep the kernel inside our buffers rely on that.
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    /// Bytes of one value as bpf(2) exchanges it (`bpf_map_value_size`), derived from the
    /// fields above and the possible-CPU count at construction.
    sys_value_size: usize,
}

/// `bpf_map_value_size` (`kernel/bpf/syscall.c`): per-CPU types carry one 8-byte-rounded value
/// per possible CPU; fd-holding maps carry a `u32`. Keep in sync with
/// `bpfnest_maps::BpfMap::sys_value_size`.
fn sys_value_size(map_type: u32, value_size: u32, ncpus: u32) -> usize {
    match map_type {
        BPF_MAP_TYPE_PERCPU_HASH
        | BPF_MAP_TYPE_LRU_PERCPU_HASH
        | BPF_MAP_TYPE_PERCPU_ARRAY
        | BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE => {
            round_up8(u64::from(value_size)) as usize * ncpus as usize
        }
        BPF_MAP_TYPE_PROG_ARRAY
        | BPF_MAP_TYPE_PERF_EVENT_ARRAY
        | BPF_MAP_TYPE_CGROUP_ARRAY
        | BPF_MAP_TYPE_ARRAY_OF_MAPS
        | BPF_MAP_TYPE_HASH_OF_MAPS => 4,
        _ => value_size as usize,
    }
}

/// The size of a batch position (`in_batch`/`out_batch`): a `u32` bucket index for the hash
/// family (`__htab_map_lookup_and_delete_batch`), a key for the generic batch code.
fn batch_pos_size(map_type: u32, key_size: u32) -> usize {
    match map_type {
        BPF_MAP_TYPE_HASH
        | BPF_MAP_TYPE_PERCPU_HASH
        | BPF_MAP_TYPE_LRU_HASH
        | BPF_MAP_TYPE_LRU_PERCPU_HASH
        | BPF_MAP_TYPE_HASH_OF_MAPS => 4,
        _ => key_size as usize,
    }
}

fn check_len(cmd: Cmd, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(cmd.err(Errno::EINVAL))
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // An open fd is never negative.
    fd.as_raw_fd() as u32
}

/// `BPF_OBJ_GET_INFO_BY_FD` into a `bpf_map_info`.
fn map_info_raw(fd: BorrowedFd<'_>) -> Result<MapInfoRaw> {
    let mut info = MapInfoRaw::zeroed();
    let mut attr = InfoAttr::new(
        fd_u32(fd),
        MAP_INFO_SIZE as u32,
        (&raw mut info) as usize as u64,
    );
    // SAFETY: `info` is a live MAP_INFO_SIZE-byte local and `info_len` says so; the kernel
    // writes at most `info_len` bytes whatever the fd is, and reads the in-fields (`hash`,
    // 0: no hash wanted) from the same buffer.
    unsafe { bpf(Cmd::ObjGetInfoByFd, &mut attr) }?;
    Ok(info)
}

/// Whether the fdinfo of `fd` has `frozen: 1` (`bpf_map_show_fdinfo`), as bpftool reads it.
fn read_frozen(fd: RawFd) -> Result<bool> {
    const CALL: &str = "/proc/self/fdinfo";
    let s = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .map_err(|e| SysError::io(CALL, &e))?;
    Ok(s.lines()
        .find_map(|l| l.strip_prefix("frozen:"))
        .is_some_and(|v| v.trim() == "1"))
}

/// A key as a user pointer: null for `None`. A key of the wrong length is refused before the
/// call (the kernel would read `key_size` bytes regardless).
fn key_ptr(cmd: Cmd, key: Option<&[u8]>, key_size: u32) -> Result<u64> {
    match key {
        None => Ok(0),
        Some(k) => {
            check_len(cmd, k.len(), key_size as usize)?;
            // A zero-length key keeps its non-null dangling address: the kernel answers a
            // non-null key on a keyless map with EINVAL (`__bpf_copy_key`), as bpfnest-maps does.
            Ok(k.as_ptr() as usize as u64)
        }
    }
}

impl FdMap {
    /// `BPF_MAP_CREATE`. Every [`MapAttr`] field is passed through unchanged; `inner_map_fd`
    /// and `btf_fd` are fd numbers in this process ([`FdMap::raw`], [`crate::OwnedBtf::raw`]).
    /// The fields `MapAttr` lacks (`value_type_btf_obj_fd`, `map_token_fd`,
    /// `excl_prog_hash`) are 0; `excl_prog_hash_size` is passed as given, so a non-zero size
    /// without a hash is the kernel's `EINVAL`.
    pub fn map_create(attr: &MapAttr) -> Result<FdMap> {
        let mut a = MapCreateAttr::zeroed();
        a.map_type = attr.map_type;
        a.key_size = attr.key_size;
        a.value_size = attr.value_size;
        a.max_entries = attr.max_entries;
        a.map_flags = attr.map_flags;
        a.inner_map_fd = attr.inner_map_fd;
        a.numa_node = attr.numa_node;
        a.map_name = attr.map_name;
        a.map_ifindex = attr.map_ifindex;
        a.btf_fd = attr.btf_fd;
        a.btf_key_type_id = attr.btf_key_type_id;
        a.btf_value_type_id = attr.btf_value_type_id;
        a.btf_vmlinux_value_type_id = attr.btf_vmlinux_value_type_id;
        a.map_extra = attr.map_extra;
        a.excl_prog_hash_size = attr.excl_prog_hash_size;
        // SAFETY: the only address field, `excl_prog_hash`, is null.
        let ret = unsafe { bpf(Cmd::MapCreate, &mut a) }?;
        // SAFETY: a successful BPF_MAP_CREATE returns a new map fd, adopted once here.
        FdMap::adopt(unsafe { owned_fd(ret) })
    }

    /// Wraps an fd that may name any object: refuses (`EINVAL`, as `BPF_OBJ_GET` of a program
    /// pin is refused by bpfnest-maps) unless `/proc/self/fd/<fd>` is `anon_inode:bpf-map`.
    pub fn from_fd(fd: OwnedFd) -> Result<FdMap> {
        const CALL: &str = "/proc/self/fd";
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| SysError::io(CALL, &e))?;
        if link.as_os_str() != "anon_inode:bpf-map" {
            return Err(Cmd::ObjGetInfoByFd.err(Errno::EINVAL));
        }
        FdMap::adopt(fd)
    }

    /// Wraps an fd known to name a map, caching its sizes from the kernel.
    fn adopt(fd: OwnedFd) -> Result<FdMap> {
        let info = map_info_raw(fd.as_fd())?;
        let ncpus = bpfnest_maps::runtime::possible_cpus();
        Ok(FdMap {
            fd,
            map_type: info.map_type,
            id: info.id,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            sys_value_size: sys_value_size(info.map_type, info.value_size, ncpus),
        })
    }

    /// The fd number, as used in byte-level values (`inner_map_fd`, outer-map values).
    pub fn raw(&self) -> u32 {
        fd_u32(self.fd.as_fd())
    }

    /// The map's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// `enum bpf_map_type`.
    pub fn map_type(&self) -> u32 {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// Value size in bytes, as created (not the syscall size; see [`FdMap::sys_value_size`]).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Max entries as the kernel stored it.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Bytes of one value in lookups, updates and batches (`bpf_map_value_size`).
    pub fn sys_value_size(&self) -> usize {
        self.sys_value_size
    }

    /// Another fd on the same map (`dup`, close-on-exec), with the same access mode.
    pub fn try_clone(&self) -> Result<FdMap> {
        let fd = self.fd.try_clone().map_err(|e| SysError::io("dup", &e))?;
        Ok(FdMap {
            fd,
            map_type: self.map_type,
            id: self.id,
            key_size: self.key_size,
            value_size: self.value_size,
            max_entries: self.max_entries,
            sys_value_size: self.sys_value_size,
        })
    }

    /// `BPF_OBJ_GET_INFO_BY_FD`, with `frozen` read from `/proc/self/fdinfo/<fd>` as bpftool
    /// does. Unlike [`bpfnest_maps::MapHandle::info`] this can fail (the kernel is asked).
    pub fn info(&self) -> Result<MapInfo> {
        let i = map_info_raw(self.fd.as_fd())?;
        Ok(MapInfo {
            map_type: i.map_type,
            id: i.id,
            key_size: i.key_size,
            value_size: i.value_size,
            max_entries: i.max_entries,
            map_flags: i.map_flags,
            name: i.name,
            btf_id: i.btf_id,
            btf_key_type_id: i.btf_key_type_id,
            btf_value_type_id: i.btf_value_type_id,
            btf_vmlinux_value_type_id: i.btf_vmlinux_value_type_id,
            map_extra: i.map_extra,
            frozen: read_frozen(self.fd.as_raw_fd())?,
        })
    }

    /// `BPF_MAP_LOOKUP_ELEM`: copies the value for `key` into `value` (the syscall value
    /// size). `flags` may be `BPF_F_LOCK` on maps with a spin lock. Outer maps and program
    /// arrays give the inner object's id.
    pub fn lookup_elem(&self, key: Option<&[u8]>, value: &mut [u8], flags: u64) -> Result<()> {
        let cmd = Cmd::MapLookupElem;
        let k = key_ptr(cmd, key, self.key_size)?;
        check_len(cmd, value.len(), self.sys_value_size)?;
        let mut attr = ElemAttr::new(self.raw(), k, value.as_mut_ptr() as usize as u64, flags);
        // SAFETY: `key` is null or `key_size` bytes and `value` is `bpf_map_value_size` bytes
        // (both checked above against the kernel's own sizes for this fd), which is what
        // BPF_MAP_LOOKUP_ELEM reads and writes; both borrows outlive the call.
        unsafe { bpf(cmd, &mut attr) }.map(drop)
    }

    /// `BPF_MAP_UPDATE_ELEM`. For outer maps and program arrays `value` is a 4-byte fd.
    pub fn update_elem(&self, key: Option<&[u8]>, value: &[u8], flags: u64) -> Result<()> {
        let cmd = Cmd::MapUpdateElem;
        let k = key_ptr(cmd, key, self.key_size)?;
        check_len(cmd, value.len(), self.sys_value_size)?;
        let mut attr = ElemAttr::new(self.raw(), k, value.as_ptr() as usize as u64, flags);
        // SAFETY: `key` is null or `key_size` bytes and `value` is `bpf_map_value_size` bytes
        // (checked above), which is what BPF_MAP_UPDATE_ELEM reads; it writes through neither.
        unsafe { bpf(cmd, &mut attr) }.map(drop)
    }

    /// `BPF_MAP_DELETE_ELEM`.
    pub fn delete_elem(&self, key: Option<&[u8]>) -> Result<()> {
        let cmd = Cmd::MapDeleteElem;
        let k = key_ptr(cmd, key, self.key_size)?;
        let mut attr = ElemAttr::new(self.raw(), k, 0, 0);
        // SAFETY: `key` is null or `key_size` bytes (checked above), all the command reads.
        unsafe { bpf(cmd, &mut attr) }.map(drop)
    }

    /// `BPF_MAP_GET_NEXT_KEY`: the key after `key`, or the first key when `key` is `None`.
    pub fn get_next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        let cmd = Cmd::MapGetNextKey;
        let k = key_ptr(cmd, key, self.key_size)?;
        check_len(cmd, next_key.len(), self.key_size as usize)?;
        let mut attr = ElemAttr::new(self.raw(), k, next_key.as_mut_ptr() as usize as u64, 0);
        // SAFETY: `key` is null or `key_size` bytes and `next_key` is `key_size` bytes
        // (checked above): the kernel reads the one and writes the other.
        unsafe { bpf(cmd, &mut attr) }.map(drop)
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`: hash types, and pop for queues and stacks
    /// (`key == None`). Other types give the kernel's `ENOTSUPP` (524).
    pub fn lookup_and_delete_elem(
        &self,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<()> {
        let cmd = Cmd::MapLookupAndDeleteElem;
        let k = key_ptr(cmd, key, self.key_size)?;
        check_len(cmd, value.len(), self.sys_value_size)?;
        let mut attr = ElemAttr::new(self.raw(), k, value.as_mut_ptr() as usize as u64, flags);
        // SAFETY: as for `lookup_elem`: `key` null or `key_size` bytes, `value`
        // `bpf_map_value_size` bytes, checked above.
        unsafe { bpf(cmd, &mut attr) }.map(drop)
    }

    /// `BPF_MAP_FREEZE`: makes the map read-only from the syscall side for good.
    pub fn freeze(&self) -> Result<()> {
        let mut attr = ElemAttr::new(self.raw(), 0, 0, 0);
        // SAFETY: no addresses (BPF_MAP_FREEZE reads only `map_fd`).
        unsafe { bpf(Cmd::MapFreeze, &mut attr) }.map(drop)
    }

    fn batch(&self, cmd: Cmd, args: &mut BatchArgs<'_>) -> Result<()> {
        let is_lookup = matches!(cmd, Cmd::MapLookupBatch | Cmd::MapLookupAndDeleteBatch);
        let count = args.count as usize;
        if count > 0 {
            let efault = cmd.err(Errno::EFAULT);
            let need_keys = count.checked_mul(self.key_size as usize).ok_or(efault)?;
            let need_values = count.checked_mul(self.sys_value_size).ok_or(efault)?;
            if args.keys.len() < need_keys {
                return Err(efault);
            }
            if cmd != Cmd::MapDeleteBatch && args.values.len() < need_values {
                return Err(efault);
            }
            if is_lookup {
                let pos = batch_pos_size(self.map_type, self.key_size);
                if args.in_batch.is_some_and(|b| b.len() < pos) || args.out_batch.len() < pos {
                    return Err(efault);
                }
            }
        }
        let mut attr = BatchAttr::zeroed();
        attr.in_batch = args.in_batch.map_or(0, |b| b.as_ptr() as usize as u64);
        attr.out_batch = args.out_batch.as_mut_ptr() as usize as u64;
        attr.keys = args.keys.as_mut_ptr() as usize as u64;
        attr.values = args.values.as_mut_ptr() as usize as u64;
        attr.count = args.count;
        attr.map_fd = self.raw();
        attr.elem_flags = args.elem_flags;
        attr.flags = args.flags;
        // SAFETY: with `count == 0` every batch command returns before touching a buffer.
        // Otherwise `keys` holds `count` keys and `values` `count` syscall-size values (values
        // unused by DELETE_BATCH), and for lookups `in_batch` (if any) and `out_batch` hold a
        // batch position (`batch_pos_size`), all checked above against this map's sizes; the
        // kernel accesses no more than that.
        let r = unsafe { bpf(cmd, &mut attr) };
        // The kernel writes `count` back on success and on most errors; on an early error
        // (bad flags) it leaves the requested count, which is what `attr.count` still holds.
        args.count = attr.count;
        r.map(drop)
    }

    /// `BPF_MAP_LOOKUP_BATCH`. On return `args.count` holds the count the kernel wrote back,
    /// also on error.
    pub fn lookup_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.batch(Cmd::MapLookupBatch, args)
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`.
    pub fn lookup_and_delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.batch(Cmd::MapLookupAndDeleteBatch, args)
    }

    /// `BPF_MAP_UPDATE_BATCH`.
    pub fn update_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.batch(Cmd::MapUpdateBatch, args)
    }

    /// `BPF_MAP_DELETE_BATCH`.
    pub fn delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<()> {
        self.batch(Cmd::MapDeleteBatch, args)
    }
}

impl AsFd for FdMap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for FdMap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<FdMap> for OwnedFd {
    fn from(m: FdMap) -> OwnedFd {
        m.fd
    }
}

/// `BPF_MAP_GET_FD_BY_ID`: a new fd on the map with `id`. `open_flags` may hold
/// `BPF_F_RDONLY` or `BPF_F_WRONLY`; anything else is the kernel's to refuse.
pub fn map_get_fd_by_id(id: u32, open_flags: u32) -> Result<FdMap> {
    let mut attr = GetIdAttr::new(id, open_flags);
    // SAFETY: no addresses.
    let ret = unsafe { bpf(Cmd::MapGetFdById, &mut attr) }?;
    // SAFETY: a successful BPF_MAP_GET_FD_BY_ID returns a new map fd, adopted once here.
    FdMap::adopt(unsafe { owned_fd(ret) })
}

/// `BPF_MAP_GET_NEXT_ID`: the smallest map id above `start_id` (`ENOENT` past the last).
pub fn map_get_next_id(start_id: u32) -> Result<u32> {
    let mut attr = GetIdAttr::new(start_id, 0);
    // SAFETY: no addresses; the kernel writes `next_id` inside `attr`.
    unsafe { bpf(Cmd::MapGetNextId, &mut attr) }?;
    Ok(attr.next_id)
}

fn c_path(cmd: Cmd, path: &str) -> Result<CString> {
    CString::new(path).map_err(|_| cmd.err(Errno::EINVAL))
}

/// `BPF_OBJ_PIN`: pins `map` at `path` on a bpffs mount.
pub fn obj_pin(map: &FdMap, path: &str) -> Result<()> {
    let cmd = Cmd::ObjPin;
    let p = c_path(cmd, path)?;
    let mut attr = ObjAttr::new(p.as_ptr() as usize as u64, map.raw(), 0);
    // SAFETY: `pathname` is a NUL-terminated string alive across the call; nothing else.
    unsafe { bpf(cmd, &mut attr) }.map(drop)
}

/// `BPF_OBJ_GET`: a new fd on the map pinned at `path`. `file_flags` may hold `BPF_F_RDONLY`
/// or `BPF_F_WRONLY`. A pin of anything but a map is `EINVAL` (see [`FdMap::from_fd`]).
pub fn obj_get(path: &str, file_flags: u32) -> Result<FdMap> {
    let cmd = Cmd::ObjGet;
    let p = c_path(cmd, path)?;
    let mut attr = ObjAttr::new(p.as_ptr() as usize as u64, 0, file_flags);
    // SAFETY: `pathname` is a NUL-terminated string alive across the call; `path_fd` is 0
    // and not an address.
    let ret = unsafe { bpf(cmd, &mut attr) }?;
    // SAFETY: a successful BPF_OBJ_GET returns a new fd, adopted once here.
    FdMap::from_fd(unsafe { owned_fd(ret) })
}

/// Removes a pin (bpffs `unlink`).
pub fn unpin(path: &str) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| SysError::io("unlink", &e))
}

/// Whether bpf(2) works here: creates and closes a one-entry array (as `bpftool feature`
/// probes do). The error is the kernel's (`EPERM` without CAP_BPF, `ENOSYS` without bpf(2)).
pub fn probe() -> Result<(), SysError> {
    FdMap::map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 4, 1)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_sizes_follow_bpf_map_value_size() {
        assert_eq!(sys_value_size(BPF_MAP_TYPE_HASH, 12, 8), 12);
        assert_eq!(sys_value_size(BPF_MAP_TYPE_PERCPU_ARRAY, 12, 3), 48);
        assert_eq!(sys_value_size(BPF_MAP_TYPE_LRU_PERCPU_HASH, 8, 2), 16);
        assert_eq!(sys_value_size(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 8), 4);
        assert_eq!(sys_value_size(BPF_MAP_TYPE_PROG_ARRAY, 4, 8), 4);
        assert_eq!(batch_pos_size(BPF_MAP_TYPE_HASH, 16), 4);
        assert_eq!(batch_pos_size(BPF_MAP_TYPE_ARRAY, 4), 4);
        assert_eq!(batch_pos_size(BPF_MAP_TYPE_LPM_TRIE, 8), 8);
    }

    #[test]
    fn key_length_mismatch_is_einval_before_the_call() {
        let e = key_ptr(Cmd::MapLookupElem, Some(&[0; 3]), 4).unwrap_err();
        assert_eq!(e, SysError::new("BPF_MAP_LOOKUP_ELEM", Errno::EINVAL));
        assert_eq!(key_ptr(Cmd::MapLookupElem, None, 4), Ok(0));
        assert_ne!(key_ptr(Cmd::MapLookupElem, Some(&[]), 0), Ok(0));
    }
}
