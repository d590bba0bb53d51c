//! Backing large, long-lived arrays (the flow table's) with transparent huge pages.
//!
//! At 64k–1M flows nearly every flow-table access misses the TLB on 4 KiB pages, and in a
//! virtual machine each miss is a two-dimensional page walk. [`prefer_huge_pages`] asks the kernel
//! to back an address range with 2 MiB pages: `MADV_HUGEPAGE` (future faults and khugepaged may
//! use huge pages even when the system's THP mode is `madvise`), then `MADV_COLLAPSE` (Linux 6.1+:
//! collapse what is already faulted in, now). Neither changes the memory's contents; both are
//! advice, and a kernel that cannot follow it (THP `never`, no free huge pages, an old kernel)
//! leaves the 4 KiB pages in place, reported as an error the caller may log and ignore.

use crate::error::IoError;

/// Huge page size on x86_64 and aarch64 (4 KiB base pages).
const HUGE: usize = 2 << 20;
/// `MADV_COLLAPSE` (`include/uapi/asm-generic/mman-common.h`, Linux 6.1); not in `libc` yet.
const MADV_COLLAPSE: libc::c_int = 25;

/// What [`prefer_huge_pages`] managed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugeAdvice {
    /// Bytes of the range inside whole 2 MiB pages (the part advice can apply to).
    pub eligible: usize,
    /// Whether `MADV_COLLAPSE` succeeded on all of it (it is backed by huge pages now).
    pub collapsed: bool,
}

/// Ask for huge pages behind the whole 2 MiB pages inside `[addr, addr + len)`. `addr` and
/// `len` describe memory the caller owns and keeps for a long time (a `Vec`'s buffer that is
/// never reallocated); ranges smaller than one huge page are left alone (`eligible == 0`).
///
/// Errors: `MADV_HUGEPAGE` refused (THP disabled or unsupported). A failed `MADV_COLLAPSE`
/// (kernel too old, memory too fragmented) is not an error: `collapsed` is false and the range
/// may still be collapsed later by khugepaged.
pub fn prefer_huge_pages(addr: usize, len: usize) -> Result<HugeAdvice, IoError> {
    let start = addr.next_multiple_of(HUGE);
    let end = addr.saturating_add(len) / HUGE * HUGE;
    if end <= start {
        return Ok(HugeAdvice::default());
    }
    let eligible = end - start;
    let ptr = start as *mut libc::c_void;
    // SAFETY: madvise with MADV_HUGEPAGE only changes how the kernel backs the pages of the range
    // (it never changes their contents or validity); on addresses that are not mapped it fails
    // with ENOMEM and changes nothing.
    if unsafe { libc::madvise(ptr, eligible, libc::MADV_HUGEPAGE) } < 0 {
        return Err(crate::sys::last_err("memory", "madvise(MADV_HUGEPAGE)"));
    }
    // SAFETY: as above: MADV_COLLAPSE copies the range's pages into huge pages and remaps them,
    // preserving contents; the range is whole huge pages inside memory the caller owns.
    let collapsed = unsafe { libc::madvise(ptr, eligible, MADV_COLLAPSE) } == 0;
    Ok(HugeAdvice {
        eligible,
        collapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ranges_are_left_alone() {
        let v = vec![0u8; 4096];
        let a = prefer_huge_pages(v.as_ptr() as usize, v.len()).unwrap();
        assert_eq!(a.eligible, 0);
    }

    #[test]
    fn contents_survive_the_advice() {
        // 8 MiB holds at least three whole huge pages wherever the allocator put it.
        let mut v: Vec<u64> = (0..(1u64 << 20)).collect();
        match prefer_huge_pages(v.as_ptr() as usize, v.len() * 8) {
            Ok(a) => assert!(a.eligible >= 3 * HUGE, "{a:?}"),
            // THP disabled on this machine: the advice is refused, nothing changed.
            Err(e) => eprintln!("no transparent huge pages here: {e}"),
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        v[12345] = 7;
        assert_eq!(v[12345], 7);
    }
}
