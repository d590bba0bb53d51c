//! Backing large, long-lived arrays (the flow table's) with transparent huge pages.
//!
//! At 64k–1M flows nearly every flow-table access misses the TLB on 4 KiB pages, and in a
//! virtual machine each miss is a two-dimensional page walk. [`prefer_huge_pages`] asks the kernel
//! to back an address range with 2 MiB pages: `MADV_HUGEPAGE` (future faults and khugepaged may
//! use huge pages even when the system's THP mode is `madvise`), then `MADV_COLLAPSE` (Linux 6.1+:
//! collapse what is already faulted in, now). Neither changes the memory's contents; both are
//! advice, and a kernel that cannot follow it (THP `never`, no free huge pages, an old kernel)
//! leaves the 4 KiB pages in place, reported as an error the caller may log and ignore.

//!
//! [`HugePageAlloc`] does it from the start, for a whole process: as its global allocator it
//! places every allocation of 2 MiB or more on 2 MiB boundaries, in whole 2 MiB pages, advised
//! before anything touches them, so a flow table's arrays are huge pages end to end (where
//! [`prefer_huge_pages`] on an arbitrary `Vec` can only reach the whole pages inside it).

use std::alloc::{GlobalAlloc, Layout, System};

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

/// A global allocator for long-running packet processes: allocations of 2 MiB or more (a flow
/// table's slots, index and counters) start on a 2 MiB boundary, span whole 2 MiB pages and are
/// advised `MADV_HUGEPAGE` before they are first touched, so their first faults map huge pages
/// (THP `madvise` or `always`) and the table is huge pages end to end: fewer TLB misses, and the
/// same cache-set layout in every run (with 4 KiB pages a 64k-flow table's speed varied by
/// process with where its pages landed). Smaller allocations go to [`System`] unchanged.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: altroute_io::mem::HugePageAlloc = altroute_io::mem::HugePageAlloc;
/// # fn main() {}
/// ```
///
/// Costs: up to 2 MiB of address space (not memory: untouched pages are never backed) per large
/// allocation, and one `madvise` per large allocation. The benches use it; the daemon does not
/// yet: installed there, `coalesce_lab` (a debug build forwarding bursts of small datagrams) lost
/// 4–10 % of them in 3 runs of 3, against none lost without it, for a reason not found yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePageAlloc;

/// The layout a large request is served with (`None`: pass it to [`System`] as it is).
fn huge_layout(l: Layout) -> Option<Layout> {
    if l.size() < HUGE {
        return None;
    }
    let size = l.size().checked_next_multiple_of(HUGE)?;
    Layout::from_size_align(size, l.align().max(HUGE)).ok()
}

/// `MADV_HUGEPAGE` on `[p, p + len)`, a range [`HugePageAlloc`] just allocated (whole 2 MiB
/// pages). Advice only: a refusal (THP off) leaves 4 KiB pages.
fn advise(p: *mut u8, len: usize) {
    // SAFETY: madvise(MADV_HUGEPAGE) changes only how the kernel backs the range, never its
    // contents or validity; the range is memory this allocator has just obtained from System.
    unsafe {
        libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE);
    }
}

// SAFETY: every block handed out comes from `System` with a layout at least as large and as
// aligned as the one asked for (`huge_layout`), and is returned to `System` with that same layout
// (recomputed from the caller's layout, as `dealloc` and `realloc` are given it).
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(h) = huge_layout(layout) else {
            // SAFETY: forwarded unchanged; the caller's contract (non-zero size) holds.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: `h` has a non-zero size (at least 2 MiB).
        let p = unsafe { System.alloc(h) };
        if !p.is_null() {
            advise(p, h.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if huge_layout(layout).is_none() {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: as in `alloc` (which advises the block before anything touches it).
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is valid for at least `layout.size()` bytes.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` / `alloc_zeroed` / `realloc` with this `layout`, hence
        // from `System` with `huge_layout(layout)` or `layout` itself.
        unsafe { System.dealloc(ptr, huge_layout(layout).unwrap_or(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if huge_layout(layout).is_none() && new_size < HUGE {
            // SAFETY: small before and after: System's own block, System's realloc.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, does not
        // overflow `isize`, so this layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (`new_size` > 0 by the caller's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and do not overlap
            // (the old one is still allocated); the old one is then freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_allocations_are_aligned_and_whole_pages_small_ones_pass_through() {
        let a = HugePageAlloc;
        let big = Layout::from_size_align(3 * HUGE + 100, 64).unwrap();
        let small = Layout::from_size_align(4096, 8).unwrap();
        // SAFETY: non-zero layouts; each block is written within its size and freed once with
        // the layout it was allocated with.
        unsafe {
            let p = a.alloc(big);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE, 0, "a large block starts on a huge page");
            p.write_bytes(0xab, big.size());
            let q = a.alloc(small);
            assert!(!q.is_null());
            q.write_bytes(1, small.size());
            a.dealloc(q, small);
            a.dealloc(p, big);
            let z = a.alloc_zeroed(big);
            assert!(
                std::slice::from_raw_parts(z, big.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            a.dealloc(z, big);
        }
        assert_eq!(huge_layout(small), None);
        assert_eq!(
            huge_layout(big).map(|l| (l.size(), l.align())),
            Some((4 * HUGE, HUGE))
        );
    }

    #[test]
    fn realloc_keeps_contents_across_the_threshold_both_ways() {
        let a = HugePageAlloc;
        let small = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: as above; each pointer is used only until it is reallocated or freed.
        unsafe {
            let p = a.alloc(small);
            for i in 0..1000 {
                *p.add(i) = i as u8;
            }
            let p = a.realloc(p, small, HUGE + 1);
            assert_eq!(p as usize % HUGE, 0);
            assert!((0..1000).all(|i| *p.add(i) == i as u8));
            let big = Layout::from_size_align(HUGE + 1, 8).unwrap();
            let p = a.realloc(p, big, 500);
            assert!((0..500).all(|i| *p.add(i) == i as u8));
            a.dealloc(p, Layout::from_size_align(500, 8).unwrap());
        }
    }

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
