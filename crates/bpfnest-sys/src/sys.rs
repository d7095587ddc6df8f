// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The choke point: [`bpf`] holds the crate's only `libc::syscall(SYS_bpf, ..)`, and
//! [`owned_fd`] the only adoption of a raw fd.
//!
//! Every command passes a full [`ATTR_SIZE`]-byte attr (see [`crate::attr`]). The return value
//! is the kernel's; a negative one becomes a [`SysError`] naming the command, with `errno` read
//! right after the call and passed through unchanged.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use bpfnest_maps::Errno;

use crate::attr::{BpfAttr, ATTR_SIZE};
use crate::error::SysError;

/// `enum bpf_cmd`: the commands this crate issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Cmd {
    MapCreate = 0,
    MapLookupElem = 1,
    MapUpdateElem = 2,
    MapDeleteElem = 3,
    MapGetNextKey = 4,
    ObjPin = 6,
    ObjGet = 7,
    MapGetNextId = 12,
    MapGetFdById = 14,
    ObjGetInfoByFd = 15,
    BtfLoad = 18,
    MapLookupAndDeleteElem = 21,
    MapFreeze = 22,
    MapLookupBatch = 24,
    MapLookupAndDeleteBatch = 25,
    MapUpdateBatch = 26,
    MapDeleteBatch = 27,
}

impl Cmd {
    /// The uapi name, used as [`SysError::call`].
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Cmd::MapCreate => "BPF_MAP_CREATE",
            Cmd::MapLookupElem => "BPF_MAP_LOOKUP_ELEM",
            Cmd::MapUpdateElem => "BPF_MAP_UPDATE_ELEM",
            Cmd::MapDeleteElem => "BPF_MAP_DELETE_ELEM",
            Cmd::MapGetNextKey => "BPF_MAP_GET_NEXT_KEY",
            Cmd::ObjPin => "BPF_OBJ_PIN",
            Cmd::ObjGet => "BPF_OBJ_GET",
            Cmd::MapGetNextId => "BPF_MAP_GET_NEXT_ID",
            Cmd::MapGetFdById => "BPF_MAP_GET_FD_BY_ID",
            Cmd::ObjGetInfoByFd => "BPF_OBJ_GET_INFO_BY_FD",
            Cmd::BtfLoad => "BPF_BTF_LOAD",
            Cmd::MapLookupAndDeleteElem => "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
            Cmd::MapFreeze => "BPF_MAP_FREEZE",
            Cmd::MapLookupBatch => "BPF_MAP_LOOKUP_BATCH",
            Cmd::MapLookupAndDeleteBatch => "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
            Cmd::MapUpdateBatch => "BPF_MAP_UPDATE_BATCH",
            Cmd::MapDeleteBatch => "BPF_MAP_DELETE_BATCH",
        }
    }

    /// The error this command fails with when a check made before the call refuses it.
    pub(crate) const fn err(self, errno: Errno) -> SysError {
        SysError::new(self.name(), errno)
    }
}

/// `bpf(cmd, attr, ATTR_SIZE)`. The kernel may write back into `attr` (batch `count`,
/// `info_len`, `btf_log_true_size`); read those fields after the call.
///
/// # Safety
///
/// Every address in `attr` must be null or valid for every read and write that `cmd` makes
/// through it, for the sizes the kernel derives from the object behind the attr's fd (for
/// example `key_size` bytes read from `key` and `value_size` bytes written to `value` on
/// `BPF_MAP_LOOKUP_ELEM`). A value buffer one byte shorter than the map's value size is a
/// kernel write past the end of a Rust allocation. Strings (`pathname`) must be
/// NUL-terminated. Zero-length accesses may use any non-null address.
pub(crate) unsafe fn bpf<A: BpfAttr>(cmd: Cmd, attr: &mut A) -> Result<i64, SysError> {
    const { assert!(size_of::<A>() == ATTR_SIZE) };
    let ptr: *mut A = attr;
    // SAFETY: `ptr` comes from a live `&mut A` of ATTR_SIZE bytes with no implicit padding
    // (checked in `attr.rs`), so the kernel's copy-in and write-back stay inside it; the
    // addresses inside the attr meet the kernel's accesses by this fn's contract.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            ptr.cast::<libc::c_void>(),
            ATTR_SIZE as libc::c_long,
        )
    };
    if ret < 0 {
        let errno = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        Err(cmd.err(Errno::new(errno)))
    } else {
        Ok(ret as i64)
    }
}

/// Adopts the fd returned by an fd-creating command (`BPF_MAP_CREATE`, `BPF_OBJ_GET`,
/// `BPF_MAP_GET_FD_BY_ID`, `BPF_BTF_LOAD`).
///
/// # Safety
///
/// `ret` must be the non-negative return value of one of those commands, not yet adopted:
/// adopting it twice closes it twice, and the second close may close an unrelated file that
/// reused the number.
pub(crate) unsafe fn owned_fd(ret: i64) -> OwnedFd {
    debug_assert!((0..=i64::from(i32::MAX)).contains(&ret));
    // SAFETY: by the contract, `ret` is a fresh fd the kernel just installed for this process,
    // and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}
