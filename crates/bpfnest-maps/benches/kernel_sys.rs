// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Just enough raw bpf(2) for the benchmarks to measure the kernel side by side with bpfnest in
//! the same run. The full kernel backend is `bpfnest-sys`; this stays self-contained so the
//! benchmarks do not depend upward.

#![allow(
    dead_code,
    reason = "shared by several bench binaries, each using a subset"
)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;

#[repr(C)]
#[derive(Default)]
struct CreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    pad: [u64; 12],
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
    tail: [u64; 12],
}

fn sys_bpf(cmd: i64, attr: *mut u8, size: usize) -> i64 {
    // SAFETY: `attr` points to a live, zero-padded attribute struct of `size` bytes.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) }
}

/// A kernel map fd, or `None` when bpf(2) is refused (the caller skips kernel figures).
pub fn create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    inner: Option<&OwnedFd>,
) -> Option<OwnedFd> {
    let mut a = CreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        inner_map_fd: inner.map(|f| f.as_raw_fd() as u32).unwrap_or(0),
        ..Default::default()
    };
    let fd = sys_bpf(
        BPF_MAP_CREATE,
        &mut a as *mut _ as *mut u8,
        size_of::<CreateAttr>(),
    );
    // SAFETY: a non-negative return of BPF_MAP_CREATE is a new fd we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn elem(cmd: i64, fd: &OwnedFd, key: &[u8], value: *mut u8, flags: u64) -> i64 {
    let mut a = ElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        pad: 0,
        key: key.as_ptr() as u64,
        value: value as u64,
        flags,
        tail: [0; 12],
    };
    sys_bpf(cmd, &mut a as *mut _ as *mut u8, size_of::<ElemAttr>())
}

/// BPF_MAP_UPDATE_ELEM.
pub fn update(fd: &OwnedFd, key: &[u8], value: &[u8], flags: u64) -> i64 {
    elem(
        BPF_MAP_UPDATE_ELEM,
        fd,
        key,
        value.as_ptr() as *mut u8,
        flags,
    )
}

/// BPF_MAP_LOOKUP_ELEM.
pub fn lookup(fd: &OwnedFd, key: &[u8], value: &mut [u8]) -> i64 {
    elem(BPF_MAP_LOOKUP_ELEM, fd, key, value.as_mut_ptr(), 0)
}
