// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The kernel backend: BPF maps over raw bpf(2), no libbpf.
//!
//! [`FdMap`] offers the byte-level methods of [`bpfnest_maps::MapHandle`] (same names, same
//! arguments, same [`BatchArgs`](bpfnest_maps::BatchArgs) and [`MapInfo`](bpfnest_maps::MapInfo))
//! over a real map fd, so one op sequence can run against the userspace maps and the kernel and
//! be compared errno for errno. Inputs stay raw: types, flags and sizes reach the kernel exactly
//! as given, and errors are [`SysError`] `{ call, errno }` with the kernel's errno unchanged
//! (`ENOTSUPP` stays 524).
//!
//! # The choke point
//! `sys::bpf(cmd, &mut attr)` is the only place that calls `libc::syscall(SYS_bpf, ..)`, and
//! `sys::owned_fd` the only place that adopts a raw fd. Both are `unsafe fn`s with a `# Safety`
//! contract; each caller states, next to the length checks it made, why the kernel stays
//! inside the buffers the attr points to.
//!
//! # `union bpf_attr` layouts
//! One `#[repr(C)]` struct per command group, each exactly [`ATTR_SIZE`] = 168 bytes
//! (`sizeof(union bpf_attr)` on v6.18) with an explicit zero tail, so every byte past a
//! command's `LAST_FIELD` is zero as `CHECK_ATTR` requires; the full size is always passed.
//! Every field offset is a compile-time check against the uapi header (`src/attr.rs` has the
//! byte-level sketch).
//!
//! | struct          | commands                                         | fields (offset)                                                                                                                                  | `LAST_FIELD` end |
//! |-----------------|--------------------------------------------------|--------------------------------------------------------------------------------------------------------------------------------------------------|------------------|
//! | `MapCreateAttr` | `BPF_MAP_CREATE`                                 | map_type 0, key_size 4, value_size 8, max_entries 12, map_flags 16, inner_map_fd 20, numa_node 24, map_name 28, map_ifindex 44, btf_fd 48, btf_key_type_id 52, btf_value_type_id 56, btf_vmlinux_value_type_id 60, map_extra 64, value_type_btf_obj_fd 72, map_token_fd 76, excl_prog_hash 80, excl_prog_hash_size 88 | 92 |
//! | `ElemAttr`      | `BPF_MAP_{LOOKUP,UPDATE,DELETE,LOOKUP_AND_DELETE}_ELEM`, `GET_NEXT_KEY`, `FREEZE` | map_fd 0, key 8, value/next_key 16, flags 24                                                                        | 32 (DELETE 16, GET_NEXT_KEY 24, FREEZE 4) |
//! | `BatchAttr`     | `BPF_MAP_*_BATCH`                                | in_batch 0, out_batch 8, keys 16, values 24, count 32, map_fd 36, elem_flags 40, flags 48                                                        | 56 |
//! | `ObjAttr`       | `BPF_OBJ_PIN`, `BPF_OBJ_GET`                     | pathname 0, bpf_fd 8, file_flags 12, path_fd 16                                                                                                  | 20 |
//! | `GetIdAttr`     | `BPF_MAP_GET_NEXT_ID`, `BPF_MAP_GET_FD_BY_ID`    | start_id/map_id 0, next_id 4, open_flags 8, fd_by_id_token_fd 12                                                                                 | 8 / 12 |
//! | `InfoAttr`      | `BPF_OBJ_GET_INFO_BY_FD`                         | bpf_fd 0, info_len 4, info 8                                                                                                                     | 16 |
//! | `BtfLoadAttr`   | `BPF_BTF_LOAD`                                   | btf 0, btf_log_buf 8, btf_size 16, btf_log_size 20, btf_log_level 24, btf_log_true_size 28, btf_flags 32, btf_token_fd 36                        | 40 |
//!
//! `struct bpf_map_info` is read as 104 bytes (v6.18, ending with `hash`/`hash_size`, which stay
//! 0), `struct bpf_btf_info` as 32.
//!
//! # Buffer checks
//! The kernel reads and writes as many bytes as the map's sizes say, whatever a slice holds, so
//! [`FdMap`] caches `key_size`, `value_size` and the type from `BPF_OBJ_GET_INFO_BY_FD` when it
//! is made and checks every slice first: a key or value of the wrong length is `EINVAL` (as in
//! bpfnest-maps), a short batch buffer `EFAULT`. Per-CPU values are
//! `round_up(value_size, 8) * possible CPUs` bytes, the CPUs counted from
//! `/sys/devices/system/cpu/possible` as libbpf does.
#![warn(missing_docs)]

mod attr;
mod btf;
mod error;
mod map;
mod sys;

pub use attr::ATTR_SIZE;
pub use btf::{btf_load, OwnedBtf};
pub use error::{BtfLoadError, Result, SysError};
pub use map::{map_get_fd_by_id, map_get_next_id, obj_get, obj_pin, probe, unpin, FdMap};
