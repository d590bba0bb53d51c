//! Pinning worker threads to CPUs. A relay thread that migrates between CPUs hands frames to
//! veth/backlog queues of different CPUs, which can reorder a flow; pinned workers keep order.

use crate::error::IoError;

/// Pins the calling thread to `cpu` (`sched_setaffinity`).
pub fn pin_current_thread(cpu: usize) -> Result<(), IoError> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(IoError::config("cpu", format!("CPU {cpu} out of range")));
    }
    // SAFETY: cpu_set_t is a plain bitmask; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE` was checked, so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(crate::sys::last_err("cpu", "sched_setaffinity"));
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pins_to_cpu_zero() {
        std::thread::spawn(|| super::pin_current_thread(0).unwrap())
            .join()
            .unwrap();
        assert!(super::pin_current_thread(1 << 20).is_err());
        assert!(super::available() >= 1);
    }
}
