//! Dropping the capabilities the router no longer needs once it runs (through the `caps` crate).
//!
//! Start-up needs more than the running router: entering a network namespace (`--netns`:
//! CAP_SYS_ADMIN), loading the offload's eBPF programs and map and attaching them (CAP_BPF,
//! CAP_NET_ADMIN), opening AF_PACKET sockets (CAP_NET_RAW) with SO_SNDBUFFORCE (CAP_NET_ADMIN).
//! Once the ports are open and the offload attached, the router keeps CAP_NET_RAW and
//! CAP_NET_ADMIN (to open ports again, to run `nft` and hooks that change the network), and
//! CAP_BPF only where this kernel refuses map updates without it (kernels before 6.5 check
//! `unprivileged_bpf_disabled` on every bpf() call; later ones only when a map or program is
//! made). Everything else leaves the effective, permitted, inheritable, ambient and (when the
//! process may change it, i.e. holds CAP_SETPCAP) bounding sets.
//!
//! Capabilities belong to each thread: [`drop_all_but`] must run before any other thread is
//! started, so that every thread (they inherit their creator's sets) runs with the reduced sets.

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

/// What the router keeps at run time in any case.
pub const RUNTIME: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW];

/// What [`drop_all_but`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Effective capabilities kept, sorted.
    pub kept: Vec<Capability>,
    /// Permitted capabilities dropped, sorted.
    pub dropped: Vec<Capability>,
    /// Whether the bounding set was trimmed to `kept` (needs CAP_SETPCAP; under systemd the unit's
    /// `CapabilityBoundingSet=` already limits it).
    pub bounding_trimmed: bool,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "capabilities kept: {}; {} dropped; bounding set {}",
            names(&self.kept),
            self.dropped.len(),
            if self.bounding_trimmed {
                "trimmed to the kept ones"
            } else {
                "left as it was (no CAP_SETPCAP)"
            }
        )
    }
}

fn names(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "none".into();
    }
    caps.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn sorted(set: &CapsHashSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.iter().copied().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// Why capabilities could not be changed.
#[derive(Debug, thiserror::Error)]
#[error("changing capabilities: {0}")]
pub struct CapsError(String);

impl From<caps::errors::CapsError> for CapsError {
    fn from(e: caps::errors::CapsError) -> CapsError {
        CapsError(e.to_string())
    }
}

/// Whether `works` still holds with `cap` out of this thread's effective set (it is raised again
/// afterwards). `true` without testing when `cap` is not effective in the first place.
pub fn works_without(cap: Capability, works: impl FnOnce() -> bool) -> Result<bool, CapsError> {
    if !caps::has_cap(None, CapSet::Effective, cap)? {
        return Ok(true);
    }
    caps::drop(None, CapSet::Effective, cap)?;
    let ok = works();
    caps::raise(None, CapSet::Effective, cap)?;
    Ok(ok)
}

/// Drops every capability but `keep` from this thread's sets (see the module doc): bounding
/// first (while CAP_SETPCAP is still effective), then inheritable (which clears ambient ones
/// not kept), effective and permitted. Kept capabilities the thread does not have stay absent.
pub fn drop_all_but(keep: &[Capability]) -> Result<Dropped, CapsError> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    let permitted = caps::read(None, CapSet::Permitted)?;
    let bounding_trimmed = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)?;
    if bounding_trimmed {
        for c in caps::read(None, CapSet::Bounding)? {
            if !keep.contains(&c) {
                caps::drop(None, CapSet::Bounding, c)?;
            }
        }
    }
    for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
        let now = caps::read(None, set)?;
        let reduced: CapsHashSet = now.intersection(&keep).copied().collect();
        if reduced != now {
            caps::set(None, set, &reduced)?;
        }
    }
    let dropped: CapsHashSet = permitted.difference(&keep).copied().collect();
    Ok(Dropped {
        kept: sorted(&caps::read(None, CapSet::Effective)?),
        dropped: sorted(&dropped),
        bounding_trimmed,
    })
}

/// The capability sets of a `/proc/PID/status` (or `/proc/PID/task/TID/status`) text, as
/// `(CapEff, CapPrm, CapBnd, CapAmb)` bit masks.
pub fn parse_proc_status(text: &str) -> Option<(u64, u64, u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some((
        field("CapEff")?,
        field("CapPrm")?,
        field("CapBnd")?,
        field("CapAmb")?,
    ))
}

/// The bit mask of a set of capabilities, as `/proc/PID/status` shows it.
pub fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_sets_parse() {
        let text = "Name:\taltroute\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003000\nCapEff:\t0000000000003000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let (eff, prm, bnd, amb) = parse_proc_status(text).unwrap();
        assert_eq!(eff, mask(&RUNTIME));
        assert_eq!(prm, 0x3000);
        assert_eq!(bnd, 0x1ff_ffff_ffff);
        assert_eq!(amb, 0);
        assert_eq!(parse_proc_status("CapEff:\t0\n"), None);
    }

    #[test]
    fn report_names_what_was_kept() {
        let d = Dropped {
            kept: RUNTIME.to_vec(),
            dropped: vec![Capability::CAP_SYS_ADMIN],
            bounding_trimmed: false,
        };
        assert_eq!(
            d.to_string(),
            "capabilities kept: CAP_NET_ADMIN CAP_NET_RAW; 1 dropped; bounding set left as it was (no CAP_SETPCAP)"
        );
    }

    /// Runs in a thread of its own (capabilities are per thread), as root only.
    #[test]
    fn dropping_leaves_only_the_kept_set() {
        let has_all =
            caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false);
        if !has_all {
            eprintln!("skipping: not root with CAP_SETPCAP");
            return;
        }
        let got = std::thread::spawn(|| {
            let d = drop_all_but(&RUNTIME).expect("drop");
            let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
            (d, parse_proc_status(&status).expect("parse"))
        })
        .join()
        .expect("thread");
        let (d, (eff, prm, bnd, _amb)) = got;
        assert!(d.bounding_trimmed);
        assert_eq!(d.kept, RUNTIME.to_vec());
        assert!(d.dropped.contains(&Capability::CAP_SYS_ADMIN));
        assert_eq!(
            (eff, prm, bnd),
            (mask(&RUNTIME), mask(&RUNTIME), mask(&RUNTIME))
        );
        // This thread was not touched.
        assert!(caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap());
    }
}
