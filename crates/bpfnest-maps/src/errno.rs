// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The errno contract: every map operation fails with exactly the `errno` Linux returns.
//!
//! [`Errno`] is a positive `i32` carrying the uapi number. It is the whole error type of
//! [`crate::MapOps`]: nothing else is carried, so two backends can be compared with `==`.
//! `ENOTSUPP` (524) is kernel-internal but reaches user space through bpf(2) unchanged; it is
//! distinct from `EOPNOTSUPP` (95) and must never be folded into it.

use core::fmt;

/// A Linux errno value, always positive.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(i32);

macro_rules! errnos {
    ($($name:ident = $val:expr, $msg:expr;)*) => {
        impl Errno {
            $(
                #[doc = $msg]
                pub const $name: Errno = Errno($val);
            )*

            /// The uapi name (`"EINVAL"`), or `None` for a number this crate does not name.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted.";
    ENOENT = 2, "No such file or directory (missing key, empty slot, unknown id).";
    ESRCH = 3, "No such process.";
    EINTR = 4, "Interrupted system call.";
    E2BIG = 7, "Argument list too long (index out of range, map full, size too large).";
    EBADF = 9, "Bad file descriptor (handle not open).";
    EAGAIN = 11, "Try again.";
    ENOMEM = 12, "Out of memory.";
    EACCES = 13, "Permission denied.";
    EFAULT = 14, "Bad address.";
    EBUSY = 16, "Device or resource busy.";
    EEXIST = 17, "File exists (key exists with BPF_NOEXIST, pin path taken).";
    ENOTDIR = 20, "Not a directory.";
    EINVAL = 22, "Invalid argument.";
    ENOSPC = 28, "No space left on device (batch buffer too small, queue full).";
    ERANGE = 34, "Result out of range.";
    ENAMETOOLONG = 36, "File name too long.";
    ENOTEMPTY = 39, "Directory not empty.";
    EOPNOTSUPP = 95, "Operation not supported (uapi 95).";
    ENOTSUPP = 524, "Operation is not supported (kernel-internal 524, returned by bpf(2)).";
}

impl Errno {
    /// Wraps a raw errno. Negative values (kernel-internal `-EINVAL` style) are negated.
    pub const fn new(raw: i32) -> Errno {
        Errno(if raw < 0 { -raw } else { raw })
    }

    /// The positive errno number.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for Errno {}

/// Result of a map operation.
pub type Result<T, E = Errno> = core::result::Result<T, E>;

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    #[test]
    fn enotsupp_is_not_eopnotsupp() {
        assert_eq!(Errno::ENOTSUPP.raw(), 524);
        assert_eq!(Errno::EOPNOTSUPP.raw(), 95);
        assert_ne!(Errno::ENOTSUPP, Errno::EOPNOTSUPP);
        assert_eq!(Errno::ENOTSUPP.to_string(), "ENOTSUPP (524)");
        assert_eq!(Errno::new(-22), Errno::EINVAL);
        assert_eq!(Errno::new(4242).to_string(), "errno 4242");
    }
}
