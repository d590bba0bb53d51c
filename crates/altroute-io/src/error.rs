//! Typed errors: every failure names the interface and the operation, e.g.
//! `setsockopt(PACKET_VNET_HDR) on wan1: EBUSY (Device or resource busy)`.

use std::fmt;

/// An I/O failure on one interface.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A syscall failed.
    #[error("{op} on {iface}: {}", ErrnoDisplay(.source))]
    Os {
        /// Interface (or namespace / path) the operation was about.
        iface: String,
        /// The operation, e.g. `setsockopt(PACKET_VNET_HDR)`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work (bad sizes, name too long, option combination).
    #[error("invalid configuration for {iface}: {reason}")]
    Config {
        /// Interface the configuration was for.
        iface: String,
        /// What is wrong.
        reason: String,
    },
    /// The portable (pnet) backend failed.
    #[error("{op} on {iface}: {reason}")]
    Backend {
        /// Interface name.
        iface: String,
        /// The operation.
        op: &'static str,
        /// The backend's message.
        reason: String,
    },
}

impl IoError {
    pub(crate) fn os(iface: &str, op: &'static str, source: std::io::Error) -> IoError {
        IoError::Os {
            iface: iface.to_owned(),
            op,
            source,
        }
    }

    pub(crate) fn config(iface: &str, reason: impl Into<String>) -> IoError {
        IoError::Config {
            iface: iface.to_owned(),
            reason: reason.into(),
        }
    }

    /// The interface the error is about.
    pub fn iface(&self) -> &str {
        match self {
            IoError::Os { iface, .. }
            | IoError::Config { iface, .. }
            | IoError::Backend { iface, .. } => iface,
        }
    }

    /// The failed operation (`"config"` for configuration errors).
    pub fn op(&self) -> &'static str {
        match self {
            IoError::Os { op, .. } | IoError::Backend { op, .. } => op,
            IoError::Config { .. } => "config",
        }
    }

    /// The errno, if the error came from a syscall.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            IoError::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The symbolic name of an errno value, for the errors a packet socket actually returns.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENOBUFS => "ENOBUFS",
        libc::EALREADY => "EALREADY",
        libc::ERANGE => "ERANGE",
        _ => return None,
    })
}

struct ErrnoDisplay<'a>(&'a std::io::Error);

impl fmt::Display for ErrnoDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error() {
            Some(n) => {
                // `io::Error`'s Display appends " (os error N)"; keep only the message.
                let msg = self.0.to_string();
                let msg = msg.split(" (os error").next().unwrap_or(&msg).to_owned();
                match errno_name(n) {
                    Some(name) => write!(f, "{name} ({msg})"),
                    None => write!(f, "errno {n} ({msg})"),
                }
            }
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_iface_op_and_errno() {
        let e = IoError::os(
            "wan1",
            "setsockopt(PACKET_VNET_HDR)",
            std::io::Error::from_raw_os_error(libc::EBUSY),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("setsockopt(PACKET_VNET_HDR) on wan1: EBUSY"),
            "{s}"
        );
        assert_eq!(e.iface(), "wan1");
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        let c = IoError::config("lan0", "frame too big");
        assert_eq!(
            c.to_string(),
            "invalid configuration for lan0: frame too big"
        );
    }
}
