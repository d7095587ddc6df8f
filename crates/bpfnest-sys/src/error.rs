// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Errors: the command that failed and the errno bpf(2) returned, unchanged.

use bpfnest_maps::Errno;

/// A failed call: which one, and the errno exactly as the kernel returned it (`ENOTSUPP`
/// stays 524; nothing is folded or renamed).
///
/// `call` is the uapi command name (`"BPF_MAP_LOOKUP_ELEM"`), or for the few non-bpf(2) steps
/// this crate takes, the operation (`"/proc/self/fdinfo"`, `"unlink"`, `"dup"`). A length
/// check this crate makes before calling the kernel (see [`crate::FdMap`]) reports the
/// command it guarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {errno}")]
pub struct SysError {
    /// The command or step that failed.
    pub call: &'static str,
    /// The errno, positive.
    pub errno: Errno,
}

impl SysError {
    /// Creates an error for `call`.
    pub const fn new(call: &'static str, errno: Errno) -> SysError {
        SysError { call, errno }
    }

    /// The errno; always `Some` (the shape every bpfnest error shares, see STYLE.md).
    pub fn errno(&self) -> Option<Errno> {
        Some(self.errno)
    }

    /// An error from a std I/O call (`/proc` reads, `unlink`).
    pub(crate) fn io(call: &'static str, e: &std::io::Error) -> SysError {
        SysError::new(call, Errno::new(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

impl From<SysError> for Errno {
    fn from(e: SysError) -> Errno {
        e.errno
    }
}

/// `BPF_BTF_LOAD` failed: the error, plus the kernel's BTF verifier log when one could be
/// fetched.
///
/// The errno is the one the kernel gave the caller's load (made without a log, as libbpf
/// does); the log comes from a second load of the same blob with `btf_log_level = 1`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct BtfLoadError {
    /// The failed call.
    pub error: SysError,
    /// The verifier log, possibly empty (the kernel wrote none, or the retry failed early).
    pub log: String,
}

impl BtfLoadError {
    /// The errno of the load; always `Some`.
    pub fn errno(&self) -> Option<Errno> {
        Some(self.error.errno)
    }

    /// The BTF verifier's log.
    pub fn log(&self) -> &str {
        &self.log
    }
}

impl From<BtfLoadError> for SysError {
    fn from(e: BtfLoadError) -> SysError {
        e.error
    }
}

/// Result of a kernel call.
pub type Result<T, E = SysError> = core::result::Result<T, E>;
