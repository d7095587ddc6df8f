// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `union bpf_attr` and the info structs, as `#[repr(C)]` layouts: the one source of truth for
//! the bytes this crate hands to bpf(2).
//!
//! Each command group gets its own struct, padded with an explicit zero tail to
//! [`ATTR_SIZE`], so the whole region the kernel copies is initialised and every byte past the
//! command's `*_LAST_FIELD` is zero (`CHECK_ATTR`). No struct has implicit padding: gaps are
//! named `_pad*` fields, and a `const` check per struct proves the fields add up to its size.
//!
//! Offsets are from `include/uapi/linux/bpf.h` of v6.18. The installed linux-libc-dev (6.1)
//! confirms every field it has (`offsetof` printed by a C program); the newer ones
//! (`value_type_btf_obj_fd`, `map_token_fd`, `excl_prog_hash*`, `path_fd`, `btf_log_true_size`,
//! `btf_flags`, `btf_token_fd`, `fd_by_id_token_fd`, `bpf_map_info.hash*`) follow the uapi
//! declaration order and were checked against a 6.18 kernel by errno (a bad pointer at the
//! field gives `EFAULT`, a bad fd `EBADF`, a byte past `LAST_FIELD` `EINVAL`).
//!
//! ```text
//! union bpf_attr (ATTR_SIZE = 168 = sizeof on v6.18; the kernel zero-fills a shorter copy
//!                 and requires a longer one's tail to be zero)
//!
//! MapCreateAttr  BPF_MAP_CREATE                 LAST_FIELD excl_prog_hash_size (end 92)
//!   0 map_type      4 key_size        8 value_size     12 max_entries
//!  16 map_flags    20 inner_map_fd   24 numa_node      28 map_name[16]
//!  44 map_ifindex  48 btf_fd         52 btf_key_type_id 56 btf_value_type_id
//!  60 btf_vmlinux_value_type_id      64 map_extra (u64)
//!  72 value_type_btf_obj_fd (s32)    76 map_token_fd (s32)
//!  80 excl_prog_hash (u64 ptr)       88 excl_prog_hash_size   92.. zero
//!
//! ElemAttr       BPF_MAP_{LOOKUP,UPDATE,DELETE,LOOKUP_AND_DELETE}_ELEM, GET_NEXT_KEY, FREEZE
//!                LAST_FIELD flags (end 32); DELETE key (16); GET_NEXT_KEY next_key (24);
//!                FREEZE map_fd (4)
//!   0 map_fd   4 pad   8 key (ptr)   16 value | next_key (ptr)   24 flags   32.. zero
//!
//! BatchAttr      BPF_MAP_*_BATCH                LAST_FIELD batch.flags (end 56)
//!   0 in_batch   8 out_batch   16 keys   24 values (ptrs)
//!  32 count (in/out)   36 map_fd   40 elem_flags   48 flags   56.. zero
//!
//! ObjAttr        BPF_OBJ_PIN / BPF_OBJ_GET      LAST_FIELD path_fd (end 20)
//!   0 pathname (ptr)   8 bpf_fd   12 file_flags   16 path_fd (s32)   20.. zero
//!
//! GetIdAttr      BPF_MAP_GET_NEXT_ID / BPF_MAP_GET_FD_BY_ID (LAST_FIELD next_id / open_flags)
//!   0 start_id | map_id   4 next_id   8 open_flags   12 fd_by_id_token_fd (s32)   16.. zero
//!
//! InfoAttr       BPF_OBJ_GET_INFO_BY_FD         LAST_FIELD info.info (end 16)
//!   0 bpf_fd   4 info_len (in/out)   8 info (ptr)   16.. zero
//!
//! BtfLoadAttr    BPF_BTF_LOAD                   LAST_FIELD btf_token_fd (end 40)
//!   0 btf (ptr)   8 btf_log_buf (ptr)   16 btf_size   20 btf_log_size   24 btf_log_level
//!  28 btf_log_true_size (out)   32 btf_flags   36 btf_token_fd (s32)   40.. zero
//!
//! MapInfoRaw     struct bpf_map_info (104 bytes on v6.18)
//!   0 type  4 id  8 key_size  12 value_size  16 max_entries  20 map_flags  24 name[16]
//!  40 ifindex  44 btf_vmlinux_value_type_id  48 netns_dev  56 netns_ino  64 btf_id
//!  68 btf_key_type_id  72 btf_value_type_id  76 pad  80 map_extra  88 hash (ptr)
//!  96 hash_size  100 pad
//!
//! BtfInfoRaw     struct bpf_btf_info (32 bytes)
//!   0 btf (ptr)  8 btf_size  12 id  16 name (ptr)  24 name_len  28 kernel_btf
//! ```

use core::mem::{offset_of, size_of};

use bpfnest_maps::uapi::BPF_OBJ_NAME_LEN;

/// Bytes passed as `size` on every call: `sizeof(union bpf_attr)` on v6.18, set by its longest
/// member (`BPF_PROG_LOAD`). Measured on the reference kernel with `BPF_MAP_GET_NEXT_ID`: a
/// non-zero byte at offset 164 gives `EINVAL` (inside the union, past `LAST_FIELD`), one at
/// 168 `E2BIG` (`bpf_check_uarg_tail_zero`: past the union).
pub const ATTR_SIZE: usize = 168;

/// A command group's layout, exactly [`ATTR_SIZE`] bytes with no implicit padding.
///
/// Only the structs in this module implement it; [`crate::sys::bpf`] checks the size at
/// compile time.
pub(crate) trait BpfAttr: Sized {}

/// Checks that a struct's fields tile it exactly (no implicit padding, nothing uninitialised
/// reaches the kernel).
macro_rules! dense {
    ($t:ty, $($f:ident: $ft:ty),* $(,)?) => {
        const _: () = assert!(0 $(+ size_of::<$ft>())* == size_of::<$t>());
    };
}

/// Asserts one field offset against the uapi header.
macro_rules! at {
    ($t:ty, $f:ident, $off:expr) => {
        const _: () = assert!(offset_of!($t, $f) == $off);
    };
}

/// `BPF_MAP_CREATE`.
#[repr(C, align(8))]
pub(crate) struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; BPF_OBJ_NAME_LEN],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
    pub value_type_btf_obj_fd: i32,
    pub map_token_fd: i32,
    pub excl_prog_hash: u64,
    pub excl_prog_hash_size: u32,
    _tail: [u8; ATTR_SIZE - 92],
}
impl BpfAttr for MapCreateAttr {}
at!(MapCreateAttr, map_type, 0);
at!(MapCreateAttr, key_size, 4);
at!(MapCreateAttr, value_size, 8);
at!(MapCreateAttr, max_entries, 12);
at!(MapCreateAttr, map_flags, 16);
at!(MapCreateAttr, inner_map_fd, 20);
at!(MapCreateAttr, numa_node, 24);
at!(MapCreateAttr, map_name, 28);
at!(MapCreateAttr, map_ifindex, 44);
at!(MapCreateAttr, btf_fd, 48);
at!(MapCreateAttr, btf_key_type_id, 52);
at!(MapCreateAttr, btf_value_type_id, 56);
at!(MapCreateAttr, btf_vmlinux_value_type_id, 60);
at!(MapCreateAttr, map_extra, 64);
at!(MapCreateAttr, value_type_btf_obj_fd, 72);
at!(MapCreateAttr, map_token_fd, 76);
at!(MapCreateAttr, excl_prog_hash, 80);
at!(MapCreateAttr, excl_prog_hash_size, 88);
at!(MapCreateAttr, _tail, 92);
dense!(MapCreateAttr, a: [u32; 7], b: [u8; BPF_OBJ_NAME_LEN], c: [u32; 5], d: u64,
    e: [i32; 2], f: u64, g: u32, t: [u8; ATTR_SIZE - 92]);

impl MapCreateAttr {
    pub(crate) const fn zeroed() -> MapCreateAttr {
        MapCreateAttr {
            map_type: 0,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            map_flags: 0,
            inner_map_fd: 0,
            numa_node: 0,
            map_name: [0; BPF_OBJ_NAME_LEN],
            map_ifindex: 0,
            btf_fd: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            btf_vmlinux_value_type_id: 0,
            map_extra: 0,
            value_type_btf_obj_fd: 0,
            map_token_fd: 0,
            excl_prog_hash: 0,
            excl_prog_hash_size: 0,
            _tail: [0; ATTR_SIZE - 92],
        }
    }
}

/// `BPF_MAP_*_ELEM`, `BPF_MAP_GET_NEXT_KEY` and `BPF_MAP_FREEZE`.
#[repr(C, align(8))]
pub(crate) struct ElemAttr {
    pub map_fd: u32,
    _pad0: u32,
    pub key: u64,
    /// `value`, or `next_key` for `BPF_MAP_GET_NEXT_KEY`.
    pub value: u64,
    pub flags: u64,
    _tail: [u8; ATTR_SIZE - 32],
}
impl BpfAttr for ElemAttr {}
at!(ElemAttr, map_fd, 0);
at!(ElemAttr, _pad0, 4);
at!(ElemAttr, key, 8);
at!(ElemAttr, value, 16);
at!(ElemAttr, flags, 24);
at!(ElemAttr, _tail, 32);
dense!(ElemAttr, a: [u32; 2], b: [u64; 3], t: [u8; ATTR_SIZE - 32]);

impl ElemAttr {
    pub(crate) const fn new(map_fd: u32, key: u64, value: u64, flags: u64) -> ElemAttr {
        ElemAttr {
            map_fd,
            _pad0: 0,
            key,
            value,
            flags,
            _tail: [0; ATTR_SIZE - 32],
        }
    }
}

/// `BPF_MAP_LOOKUP_BATCH`, `BPF_MAP_LOOKUP_AND_DELETE_BATCH`, `BPF_MAP_UPDATE_BATCH`,
/// `BPF_MAP_DELETE_BATCH` (`attr->batch`).
#[repr(C, align(8))]
pub(crate) struct BatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    /// In: elements requested. Out: elements processed, written back by the kernel also on
    /// most errors.
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
    _tail: [u8; ATTR_SIZE - 56],
}
impl BpfAttr for BatchAttr {}
at!(BatchAttr, in_batch, 0);
at!(BatchAttr, out_batch, 8);
at!(BatchAttr, keys, 16);
at!(BatchAttr, values, 24);
at!(BatchAttr, count, 32);
at!(BatchAttr, map_fd, 36);
at!(BatchAttr, elem_flags, 40);
at!(BatchAttr, flags, 48);
at!(BatchAttr, _tail, 56);
dense!(BatchAttr, a: [u64; 4], b: [u32; 2], c: [u64; 2], t: [u8; ATTR_SIZE - 56]);

impl BatchAttr {
    pub(crate) const fn zeroed() -> BatchAttr {
        BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: 0,
            values: 0,
            count: 0,
            map_fd: 0,
            elem_flags: 0,
            flags: 0,
            _tail: [0; ATTR_SIZE - 56],
        }
    }
}

/// `BPF_OBJ_PIN` and `BPF_OBJ_GET`.
#[repr(C, align(8))]
pub(crate) struct ObjAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
    /// Directory fd for a relative `pathname`, honoured only with `BPF_F_PATH_FD`.
    pub path_fd: i32,
    _tail: [u8; ATTR_SIZE - 20],
}
impl BpfAttr for ObjAttr {}
at!(ObjAttr, pathname, 0);
at!(ObjAttr, bpf_fd, 8);
at!(ObjAttr, file_flags, 12);
at!(ObjAttr, path_fd, 16);
at!(ObjAttr, _tail, 20);
dense!(ObjAttr, a: u64, b: [u32; 2], c: i32, t: [u8; ATTR_SIZE - 20]);

impl ObjAttr {
    pub(crate) const fn new(pathname: u64, bpf_fd: u32, file_flags: u32) -> ObjAttr {
        ObjAttr {
            pathname,
            bpf_fd,
            file_flags,
            path_fd: 0,
            _tail: [0; ATTR_SIZE - 20],
        }
    }
}

/// `BPF_MAP_GET_NEXT_ID` and `BPF_MAP_GET_FD_BY_ID`.
#[repr(C, align(8))]
pub(crate) struct GetIdAttr {
    /// `start_id` for `GET_NEXT_ID`, `map_id` for `GET_FD_BY_ID` (a uapi union).
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
    /// Honoured by `BPF_BTF_GET_FD_BY_ID` only; past `LAST_FIELD` (so zero) for maps.
    pub fd_by_id_token_fd: i32,
    _tail: [u8; ATTR_SIZE - 16],
}
impl BpfAttr for GetIdAttr {}
at!(GetIdAttr, id, 0);
at!(GetIdAttr, next_id, 4);
at!(GetIdAttr, open_flags, 8);
at!(GetIdAttr, fd_by_id_token_fd, 12);
at!(GetIdAttr, _tail, 16);
dense!(GetIdAttr, a: [u32; 3], b: i32, t: [u8; ATTR_SIZE - 16]);

impl GetIdAttr {
    pub(crate) const fn new(id: u32, open_flags: u32) -> GetIdAttr {
        GetIdAttr {
            id,
            next_id: 0,
            open_flags,
            fd_by_id_token_fd: 0,
            _tail: [0; ATTR_SIZE - 16],
        }
    }
}

/// `BPF_OBJ_GET_INFO_BY_FD` (`attr->info`).
#[repr(C, align(8))]
pub(crate) struct InfoAttr {
    pub bpf_fd: u32,
    /// In: size of the buffer at `info`. Out: bytes the kernel filled.
    pub info_len: u32,
    pub info: u64,
    _tail: [u8; ATTR_SIZE - 16],
}
impl BpfAttr for InfoAttr {}
at!(InfoAttr, bpf_fd, 0);
at!(InfoAttr, info_len, 4);
at!(InfoAttr, info, 8);
at!(InfoAttr, _tail, 16);
dense!(InfoAttr, a: [u32; 2], b: u64, t: [u8; ATTR_SIZE - 16]);

impl InfoAttr {
    pub(crate) const fn new(bpf_fd: u32, info_len: u32, info: u64) -> InfoAttr {
        InfoAttr {
            bpf_fd,
            info_len,
            info,
            _tail: [0; ATTR_SIZE - 16],
        }
    }
}

/// `BPF_BTF_LOAD`.
#[repr(C, align(8))]
pub(crate) struct BtfLoadAttr {
    pub btf: u64,
    pub btf_log_buf: u64,
    pub btf_size: u32,
    pub btf_log_size: u32,
    pub btf_log_level: u32,
    /// Out: the log size that would have fit everything (v6.4+).
    pub btf_log_true_size: u32,
    pub btf_flags: u32,
    pub btf_token_fd: i32,
    _tail: [u8; ATTR_SIZE - 40],
}
impl BpfAttr for BtfLoadAttr {}
at!(BtfLoadAttr, btf, 0);
at!(BtfLoadAttr, btf_log_buf, 8);
at!(BtfLoadAttr, btf_size, 16);
at!(BtfLoadAttr, btf_log_size, 20);
at!(BtfLoadAttr, btf_log_level, 24);
at!(BtfLoadAttr, btf_log_true_size, 28);
at!(BtfLoadAttr, btf_flags, 32);
at!(BtfLoadAttr, btf_token_fd, 36);
at!(BtfLoadAttr, _tail, 40);
dense!(BtfLoadAttr, a: [u64; 2], b: [u32; 5], c: i32, t: [u8; ATTR_SIZE - 40]);

impl BtfLoadAttr {
    pub(crate) const fn zeroed() -> BtfLoadAttr {
        BtfLoadAttr {
            btf: 0,
            btf_log_buf: 0,
            btf_size: 0,
            btf_log_size: 0,
            btf_log_level: 0,
            btf_log_true_size: 0,
            btf_flags: 0,
            btf_token_fd: 0,
            _tail: [0; ATTR_SIZE - 40],
        }
    }
}

/// `struct bpf_map_info`, filled by `BPF_OBJ_GET_INFO_BY_FD` on a map fd.
#[repr(C, align(8))]
pub(crate) struct MapInfoRaw {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; BPF_OBJ_NAME_LEN],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    _pad0: u32,
    pub map_extra: u64,
    /// In: where to write the map's SHA-256 (v6.18); left 0, so the kernel computes none.
    pub hash: u64,
    pub hash_size: u32,
    _pad1: u32,
}
/// `sizeof(struct bpf_map_info)` on v6.18 (the kernel reports it back as `info_len`).
pub(crate) const MAP_INFO_SIZE: usize = 104;
at!(MapInfoRaw, map_type, 0);
at!(MapInfoRaw, id, 4);
at!(MapInfoRaw, key_size, 8);
at!(MapInfoRaw, value_size, 12);
at!(MapInfoRaw, max_entries, 16);
at!(MapInfoRaw, map_flags, 20);
at!(MapInfoRaw, name, 24);
at!(MapInfoRaw, ifindex, 40);
at!(MapInfoRaw, btf_vmlinux_value_type_id, 44);
at!(MapInfoRaw, netns_dev, 48);
at!(MapInfoRaw, netns_ino, 56);
at!(MapInfoRaw, btf_id, 64);
at!(MapInfoRaw, btf_key_type_id, 68);
at!(MapInfoRaw, btf_value_type_id, 72);
at!(MapInfoRaw, _pad0, 76);
at!(MapInfoRaw, map_extra, 80);
at!(MapInfoRaw, hash, 88);
at!(MapInfoRaw, hash_size, 96);
at!(MapInfoRaw, _pad1, 100);
dense!(MapInfoRaw, a: [u32; 6], b: [u8; BPF_OBJ_NAME_LEN], c: [u32; 2], d: [u64; 2],
    e: [u32; 4], f: [u64; 2], g: [u32; 2]);
const _: () = assert!(size_of::<MapInfoRaw>() == MAP_INFO_SIZE);

impl MapInfoRaw {
    pub(crate) const fn zeroed() -> MapInfoRaw {
        MapInfoRaw {
            map_type: 0,
            id: 0,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            map_flags: 0,
            name: [0; BPF_OBJ_NAME_LEN],
            ifindex: 0,
            btf_vmlinux_value_type_id: 0,
            netns_dev: 0,
            netns_ino: 0,
            btf_id: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            _pad0: 0,
            map_extra: 0,
            hash: 0,
            hash_size: 0,
            _pad1: 0,
        }
    }
}

/// `struct bpf_btf_info`, filled by `BPF_OBJ_GET_INFO_BY_FD` on a BTF fd.
#[repr(C, align(8))]
pub(crate) struct BtfInfoRaw {
    /// In: buffer for the raw BTF; left 0.
    pub btf: u64,
    pub btf_size: u32,
    pub id: u32,
    /// In: buffer for the name; left 0.
    pub name: u64,
    pub name_len: u32,
    pub kernel_btf: u32,
}
/// `sizeof(struct bpf_btf_info)`.
pub(crate) const BTF_INFO_SIZE: usize = 32;
at!(BtfInfoRaw, btf, 0);
at!(BtfInfoRaw, btf_size, 8);
at!(BtfInfoRaw, id, 12);
at!(BtfInfoRaw, name, 16);
at!(BtfInfoRaw, name_len, 24);
at!(BtfInfoRaw, kernel_btf, 28);
dense!(BtfInfoRaw, a: u64, b: [u32; 2], c: u64, d: [u32; 2]);
const _: () = assert!(size_of::<BtfInfoRaw>() == BTF_INFO_SIZE);

impl BtfInfoRaw {
    pub(crate) const fn zeroed() -> BtfInfoRaw {
        BtfInfoRaw {
            btf: 0,
            btf_size: 0,
            id: 0,
            name: 0,
            name_len: 0,
            kernel_btf: 0,
        }
    }
}

const _: () = {
    assert!(size_of::<MapCreateAttr>() == ATTR_SIZE);
    assert!(size_of::<ElemAttr>() == ATTR_SIZE);
    assert!(size_of::<BatchAttr>() == ATTR_SIZE);
    assert!(size_of::<ObjAttr>() == ATTR_SIZE);
    assert!(size_of::<GetIdAttr>() == ATTR_SIZE);
    assert!(size_of::<InfoAttr>() == ATTR_SIZE);
    assert!(size_of::<BtfLoadAttr>() == ATTR_SIZE);
};

/// The offsets the 6.1 header cannot confirm, checked against the running kernel by errno:
/// an unmapped address at a pointer field gives `EFAULT`, a closed fd at an fd field `EBADF`,
/// a non-zero byte past `LAST_FIELD` `EINVAL`. Skipped (one printed line) without bpf(2),
/// unless `CI=true`.
#[cfg(test)]
mod tests {
    use bpfnest_maps::uapi::*;
    use bpfnest_maps::Errno;

    use super::*;
    use crate::sys::{bpf, owned_fd, Cmd};

    /// Below `mmap_min_addr`: never mapped, so the kernel's copy faults and touches nothing.
    const UNMAPPED: u64 = 1;
    /// An fd number no process has open (far above any `RLIMIT_NOFILE` default).
    const NO_FD: i32 = 0x7fff_fff0;

    fn kernel() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| match crate::probe() {
            Ok(()) => true,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but bpf(2) is unavailable ({e}): layout probes cannot run")
            }
            Err(e) => {
                println!("bpf(2) unavailable: {}; skipping kernel tests", e.errno);
                false
            }
        })
    }

    fn errno<A: BpfAttr>(cmd: Cmd, attr: &mut A) -> Option<Errno> {
        // SAFETY: every address in the attrs below is null, a live buffer of the size the
        // command reads or writes, or UNMAPPED (which the kernel cannot reach).
        let ret = match unsafe { bpf(cmd, attr) } {
            Ok(ret) => ret,
            Err(e) => return Some(e.errno),
        };
        if cmd != Cmd::MapGetNextId && cmd != Cmd::ObjGetInfoByFd {
            // SAFETY: a successful fd-creating command's return, adopted once (and closed).
            drop(unsafe { owned_fd(ret) });
        }
        None
    }

    fn array_attr() -> MapCreateAttr {
        let mut a = MapCreateAttr::zeroed();
        a.map_type = BPF_MAP_TYPE_ARRAY;
        a.key_size = 4;
        a.value_size = 4;
        a.max_entries = 1;
        a
    }

    #[test]
    fn map_create_tail_fields() {
        if !kernel() {
            return;
        }
        assert_eq!(errno(Cmd::MapCreate, &mut array_attr()), None);
        // excl_prog_hash (80) is read once excl_prog_hash_size (88) is 32.
        let mut a = array_attr();
        a.excl_prog_hash = UNMAPPED;
        a.excl_prog_hash_size = 32;
        assert_eq!(errno(Cmd::MapCreate, &mut a), Some(Errno::EFAULT));
        // A size without a hash.
        let mut a = array_attr();
        a.excl_prog_hash_size = 1;
        assert_eq!(errno(Cmd::MapCreate, &mut a), Some(Errno::EINVAL));
        // map_token_fd (76) is looked up under BPF_F_TOKEN_FD.
        let mut a = array_attr();
        a.map_flags = BPF_F_TOKEN_FD;
        a.map_token_fd = NO_FD;
        assert_eq!(errno(Cmd::MapCreate, &mut a), Some(Errno::EBADF));
        // The first byte past LAST_FIELD.
        let mut a = array_attr();
        a._tail[0] = 1;
        assert_eq!(errno(Cmd::MapCreate, &mut a), Some(Errno::EINVAL));
    }

    #[test]
    fn btf_load_tail_fields() {
        if !kernel() {
            return;
        }
        let mut a = BtfLoadAttr::zeroed();
        a.btf_flags = BPF_F_TOKEN_FD;
        a.btf_token_fd = NO_FD;
        assert_eq!(errno(Cmd::BtfLoad, &mut a), Some(Errno::EBADF));
        let mut a = BtfLoadAttr::zeroed();
        a.btf_flags = 2;
        assert_eq!(errno(Cmd::BtfLoad, &mut a), Some(Errno::EINVAL));
        let mut a = BtfLoadAttr::zeroed();
        a._tail[0] = 1;
        assert_eq!(errno(Cmd::BtfLoad, &mut a), Some(Errno::EINVAL));
        // btf_log_true_size (28) is written back: a header with a bad magic, a tiny log.
        let mut blob = [0u8; 24];
        blob[..4].copy_from_slice(&[0x9f, 0xeb ^ 0xff, 1, 0]);
        blob[4..8].copy_from_slice(&24u32.to_ne_bytes());
        let mut log = [0u8; 8];
        let mut a = BtfLoadAttr::zeroed();
        a.btf = blob.as_ptr() as usize as u64;
        a.btf_size = blob.len() as u32;
        a.btf_log_buf = log.as_mut_ptr() as usize as u64;
        a.btf_log_size = log.len() as u32;
        a.btf_log_level = 1;
        assert!(errno(Cmd::BtfLoad, &mut a).is_some());
        assert!(
            a.btf_log_true_size as usize > log.len(),
            "{}",
            a.btf_log_true_size
        );
    }

    #[test]
    fn obj_and_id_tail_fields() {
        if !kernel() {
            return;
        }
        // path_fd (16) is used under BPF_F_PATH_FD.
        let path = c"x";
        let mut a = ObjAttr::new(path.as_ptr() as usize as u64, 0, BPF_F_PATH_FD);
        a.path_fd = NO_FD;
        assert_eq!(errno(Cmd::ObjGet, &mut a), Some(Errno::EBADF));
        let mut a = ObjAttr::new(path.as_ptr() as usize as u64, 0, 0);
        a._tail[0] = 1;
        assert_eq!(errno(Cmd::ObjGet, &mut a), Some(Errno::EINVAL));
        // fd_by_id_token_fd (12) is past BPF_MAP_GET_FD_BY_ID's LAST_FIELD (open_flags).
        let mut a = GetIdAttr::new(1, 0);
        a.fd_by_id_token_fd = NO_FD;
        assert_eq!(errno(Cmd::MapGetFdById, &mut a), Some(Errno::EINVAL));
        // next_id (4) is written; open_flags (8) is past GET_NEXT_ID's LAST_FIELD.
        let m = crate::FdMap::map_create(&bpfnest_maps::MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 4, 1))
            .unwrap();
        let mut a = GetIdAttr::new(m.id() - 1, 0);
        assert_eq!(errno(Cmd::MapGetNextId, &mut a), None);
        assert!(a.next_id != 0 && a.next_id <= m.id(), "{}", a.next_id);
        let mut a = GetIdAttr::new(0, 1);
        assert_eq!(errno(Cmd::MapGetNextId, &mut a), Some(Errno::EINVAL));
    }

    #[test]
    fn map_info_size() {
        if !kernel() {
            return;
        }
        let m = crate::FdMap::map_create(&bpfnest_maps::MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 4, 1))
            .unwrap();
        let mut info = MapInfoRaw::zeroed();
        let mut a = InfoAttr::new(
            m.raw(),
            MAP_INFO_SIZE as u32,
            (&raw mut info) as usize as u64,
        );
        assert_eq!(errno(Cmd::ObjGetInfoByFd, &mut a), None);
        assert_eq!(a.info_len as usize, MAP_INFO_SIZE);
        assert_eq!(
            (info.key_size, info.value_size, info.max_entries),
            (4, 4, 1)
        );
        // hash (88) with a wrong hash_size (96).
        let mut info = MapInfoRaw::zeroed();
        info.hash = UNMAPPED;
        info.hash_size = 1;
        let mut a = InfoAttr::new(
            m.raw(),
            MAP_INFO_SIZE as u32,
            (&raw mut info) as usize as u64,
        );
        assert_eq!(errno(Cmd::ObjGetInfoByFd, &mut a), Some(Errno::EINVAL));
    }
}
