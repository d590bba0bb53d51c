//! The mmap'ed rings shared with the kernel: [`Mapping`] (a socket's rings, or spill buffers),
//! the status word that hands a slot or block between kernel and user space, and where a V2
//! slot lives ([`SlotMap`]). The rest by job: [`rx`] walks a port's RX rings into batches of
//! in-place frames, [`spill`] reads the frames larger than a V2 slot from the socket queue,
//! [`tx`] holds the two transmit paths (sendmmsg from caller memory, or a TPACKET_V2 TX ring).

mod rx;
mod spill;
mod tx;

use std::os::fd::RawFd;
use std::sync::atomic::AtomicU32;

pub(crate) use rx::{RingState, RxCore, RxCounters, RxParams, RxRing, RxRings, V2Ring, V3Ring};
pub(crate) use spill::Spill;
pub(crate) use tx::{TxCore, TxCounters, TxKind, TxRing, TxSocket, retag_addr};

use crate::error::IoError;
use crate::sys;

/// A shared, read-write mapping of a packet socket's rings.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    pub(crate) fn new(fd: RawFd, len: usize, iface: &str) -> Result<Mapping, IoError> {
        // SAFETY: a fresh shared mapping of the socket's rings; the kernel validated `len` against
        // the ring setup (it fails with EINVAL otherwise). No existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys::last_err(iface, "mmap(PACKET_RX_RING/PACKET_TX_RING)"));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    /// Private anonymous memory of `len` bytes, populated up front (the spill buffers).
    pub(crate) fn anon(len: usize, iface: &str) -> Result<Mapping, IoError> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys::last_err(iface, "mmap(spill buffers)"));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; every view into the mapping borrows
        // the owning port, so none outlives this drop.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The status word at the start of a slot / block, shared with the kernel.
///
/// # Safety
/// `p` must point into a live ring mapping, 4-byte aligned.
unsafe fn status<'a>(p: *mut u8) -> &'a AtomicU32 {
    // SAFETY: guaranteed by the caller; the kernel accesses the word with its own barriers and we
    // only ever use atomic loads/stores on it.
    unsafe { AtomicU32::from_ptr(p.cast()) }
}

/// Where slot `i` of a V2 ring lives: slots never straddle blocks, so a block may end in
/// unused bytes and slot `i` is at `(i / per_block) * block_size + (i % per_block) * frame_size`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotMap {
    pub block_size: usize,
    pub frame_size: usize,
    pub per_block: usize,
    pub frame_nr: usize,
}

impl SlotMap {
    pub(crate) fn new(g: &crate::geometry::RingGeometry) -> SlotMap {
        SlotMap {
            block_size: g.block_size as usize,
            frame_size: g.frame_size as usize,
            per_block: g.frames_per_block().max(1) as usize,
            frame_nr: g.frame_nr as usize,
        }
    }

    /// Byte offset of slot `i` (`i < frame_nr`) from the ring start.
    pub(crate) fn offset(&self, i: usize) -> usize {
        (i / self.per_block) * self.block_size + (i % self.per_block) * self.frame_size
    }
}

/// Most rings (sockets) one port receives from.
pub(crate) const MAX_RINGS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RingGeometry;

    #[test]
    fn slot_map_agrees_with_the_geometry() {
        for (reserve, vnet, max) in [(18, false, 1518), (8, true, 65553), (0, false, 9018)] {
            let g = RingGeometry::v2(reserve, vnet, max, 100).unwrap();
            let m = SlotMap::new(&g);
            for i in 0..g.frame_nr {
                assert_eq!(m.offset(i as usize), g.slot_offset(i), "{g:?} slot {i}");
            }
        }
    }
}
