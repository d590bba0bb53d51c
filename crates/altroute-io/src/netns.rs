//! Moving the calling thread into a named network namespace (`ip netns` style, `/run/netns/NAME`).
//! Used by lab and test code that runs ports inside namespaces from one process: sockets opened by
//! the thread afterwards live in that namespace. Other threads are not affected.

use std::os::fd::AsRawFd;

use crate::error::IoError;

/// Moves the calling thread into the network namespace `name` (a name under `/run/netns`, or an
/// absolute path such as `/proc/PID/ns/net`).
pub fn enter(name: &str) -> Result<(), IoError> {
    let path = if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/run/netns/{name}")
    };
    let f = std::fs::File::open(&path).map_err(|e| IoError::os(name, "open(netns)", e))?;
    // SAFETY: `f` is an open namespace file descriptor; setns only changes this thread's namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(crate::sys::last_err(name, "setns(CLONE_NEWNET)"));
    }
    Ok(())
}
