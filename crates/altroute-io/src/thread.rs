//! Waking datapath workers: an `eventfd` [`Notifier`] that wakes a worker sleeping in
//! [`wait_ports`] when another thread hands it work, and the waits themselves: [`wait_ports`]
//! (poll on every port of a worker plus an optional notifier) and [`wait_any`] (ports only),
//! one poll without allocating.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::IoError;
use crate::port::Port;

/// Wakes a thread that waits in [`wait_ports`]: an `eventfd` plus a "sleeping" flag, so a
/// producer only makes the `write` syscall when the consumer is actually about to sleep.
///
/// Protocol: the consumer calls [`Notifier::prepare_sleep`], checks its queues once more, then
/// waits (with the notifier in the poll set) and calls [`Notifier::woke`]. A producer pushes its
/// work, then calls [`Notifier::notify`].
#[derive(Debug)]
pub struct Notifier {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Notifier {
    /// A new non-blocking eventfd.
    pub fn new() -> Result<Notifier, IoError> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(crate::sys::last_err("(eventfd)", "eventfd"));
        }
        Ok(Notifier {
            // SAFETY: `fd` is a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            sleeping: AtomicBool::new(false),
        })
    }

    /// Consumer: about to sleep (check the queues once more after this).
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    /// Consumer: awake again; clears the flag and the counter.
    pub fn woke(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v`; non-blocking, EAGAIN when nothing was written.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// Producer: wakes the consumer if it is (about to be) asleep. Returns whether it wrote.
    pub fn notify(&self) -> bool {
        if !self.sleeping.load(Ordering::SeqCst) {
            return false;
        }
        if !self.sleeping.swap(false, Ordering::SeqCst) {
            return false;
        }
        let v = 1u64;
        // SAFETY: writes 8 bytes from `v`; a full counter (EAGAIN) still leaves it readable.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
        true
    }
}

/// Waits until one of `ports` has a frame ready, `notifier` was notified, or `timeout` passes.
/// Returns the number of ready descriptors. Polls the notifier and the first [`POLL_MAX`] - 1
/// sockets of the ports (a port has one per bound EtherType); further ones are not polled.
pub fn wait_ports(
    ports: &[Port],
    notifier: Option<&Notifier>,
    timeout: Duration,
) -> Result<usize, IoError> {
    wait(ports.iter(), notifier, timeout)
}

/// Waits until at least one of `ports` has a frame ready (or `timeout` passes); returns how many
/// sockets are ready. For a worker that serves several ports from one thread; polls the first
/// [`POLL_MAX`] sockets (a port has one per bound EtherType). [`wait_ports`] without a notifier.
pub fn wait_any(ports: &[&Port], timeout: Duration) -> Result<usize, IoError> {
    wait(ports.iter().copied(), None, timeout)
}

/// At most this many descriptors are polled at once (a fixed array on the stack).
pub const POLL_MAX: usize = 64;

/// The poll of [`wait_ports`] and [`wait_any`]: for input on the notifier's eventfd (if any)
/// and every socket of `ports`, the first [`POLL_MAX`] of them; errors name the first port.
fn wait<'p>(
    ports: impl Iterator<Item = &'p Port> + Clone,
    notifier: Option<&Notifier>,
    timeout: Duration,
) -> Result<usize, IoError> {
    let name = ports.clone().next().map_or("(none)", Port::iface);
    let fds = notifier
        .map(|n| n.fd.as_raw_fd())
        .into_iter()
        .chain(ports.flat_map(Port::raw_fds));
    let (mut set, n) = crate::sys::pollin_set::<POLL_MAX>(fds);
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    crate::sys::poll_in(&mut set[..n], ms, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifier_wakes_only_a_sleeper() {
        let n = Notifier::new().unwrap();
        assert!(!n.notify(), "nobody sleeps");
        n.prepare_sleep();
        assert!(n.notify());
        assert!(!n.notify(), "one write per sleep");
        // The eventfd is readable now: a wait returns at once.
        let t = std::time::Instant::now();
        let r = wait_ports(&[], Some(&n), Duration::from_secs(5)).unwrap();
        assert_eq!(r, 1);
        assert!(t.elapsed() < Duration::from_secs(1));
        n.woke();
        let r = wait_ports(&[], Some(&n), Duration::from_millis(10)).unwrap();
        assert_eq!(r, 0);
    }
}
