// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_BTF_LOAD`: a raw BTF blob into the kernel, as an owned BTF fd.
//!
//! The load is made without a log first, as libbpf does: a log at level 1 also reports
//! successful loads, and a log too small for that report fails the load with `ENOSPC`. Only
//! when that load fails is the blob loaded again with a log, to give the caller the verifier's
//! reason next to the first load's errno.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use bpfnest_maps::Errno;

use crate::attr::{BtfInfoRaw, BtfLoadAttr, InfoAttr, BTF_INFO_SIZE};
use crate::error::{BtfLoadError, Result};
use crate::sys::{bpf, owned_fd, Cmd};

/// First log buffer size for the diagnostic reload.
const LOG_SIZE: usize = 64 * 1024;
/// Largest log buffer the reload grows to (`btf_log_true_size` may ask for more).
const LOG_SIZE_MAX: usize = 16 * 1024 * 1024;
/// `BPF_LOG_LEVEL1`.
const LOG_LEVEL: u32 = 1;

/// A BTF object in the kernel, held by an owned fd (closed on drop).
#[derive(Debug)]
pub struct OwnedBtf {
    fd: OwnedFd,
}

impl OwnedBtf {
    /// The fd number, for `MapAttr::btf_fd`.
    pub fn raw(&self) -> u32 {
        // An open fd is never negative.
        self.fd.as_raw_fd() as u32
    }

    /// The BTF object's id (`bpf_btf_info.id`), the `btf_id` maps created with it report.
    pub fn id(&self) -> Result<u32> {
        let mut info = BtfInfoRaw::zeroed();
        let mut attr = InfoAttr::new(
            self.raw(),
            BTF_INFO_SIZE as u32,
            (&raw mut info) as usize as u64,
        );
        // SAFETY: `info` is a live BTF_INFO_SIZE-byte local and `info_len` says so; its
        // in-pointers (`btf`, `name`) are null, so the kernel copies out neither blob nor name.
        unsafe { bpf(Cmd::ObjGetInfoByFd, &mut attr) }?;
        Ok(info.id)
    }
}

impl AsFd for OwnedBtf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for OwnedBtf {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<OwnedBtf> for OwnedFd {
    fn from(b: OwnedBtf) -> OwnedFd {
        b.fd
    }
}

/// One `BPF_BTF_LOAD` of `blob`, with `log` as the log buffer (level 1) if given. Returns the
/// result and `btf_log_true_size`.
fn load(blob: &[u8], log: Option<&mut [u8]>) -> (Result<OwnedFd>, u32) {
    let cmd = Cmd::BtfLoad;
    let Ok(size) = u32::try_from(blob.len()) else {
        // Far past BTF_MAX_SIZE, which the kernel refuses with E2BIG.
        return (Err(cmd.err(Errno::E2BIG)), 0);
    };
    let mut attr = BtfLoadAttr::zeroed();
    attr.btf = blob.as_ptr() as usize as u64;
    attr.btf_size = size;
    if let Some(log) = log {
        attr.btf_log_buf = log.as_mut_ptr() as usize as u64;
        attr.btf_log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.btf_log_level = LOG_LEVEL;
    }
    // SAFETY: `btf` is `blob`, `btf_size` bytes; `btf_log_buf` is null or a live buffer of
    // at least `btf_log_size` bytes. The kernel reads the one and writes at most that many
    // bytes to the other.
    let r = unsafe { bpf(cmd, &mut attr) };
    // SAFETY: a successful BPF_BTF_LOAD returns a new BTF fd, adopted once here.
    let r = r.map(|ret| unsafe { owned_fd(ret) });
    (r, attr.btf_log_true_size)
}

/// Reloads `blob` with a log to say why the first load failed; empty if no log came back.
fn fetch_log(blob: &[u8]) -> String {
    let mut size = LOG_SIZE;
    loop {
        let mut buf = vec![0u8; size];
        // A reload that succeeds after all is closed when `r` drops: the caller was told
        // the load failed.
        let (r, true_size) = load(blob, Some(&mut buf));
        let grow = matches!(&r, Err(e) if e.errno == Errno::ENOSPC)
            && (true_size as usize) > size
            && size < LOG_SIZE_MAX;
        if grow {
            size = (true_size as usize).min(LOG_SIZE_MAX);
            continue;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        return String::from_utf8_lossy(&buf[..end]).into_owned();
    }
}

/// `BPF_BTF_LOAD` of a raw BTF blob (header, types, strings). On failure the error carries the
/// kernel's errno for this load and the BTF verifier's log.
pub fn btf_load(blob: &[u8]) -> Result<OwnedBtf, BtfLoadError> {
    match load(blob, None).0 {
        Ok(fd) => Ok(OwnedBtf { fd }),
        Err(error) => Err(BtfLoadError {
            error,
            log: fetch_log(blob),
        }),
    }
}

impl From<BtfLoadError> for Errno {
    fn from(e: BtfLoadError) -> Errno {
        e.error.errno
    }
}
