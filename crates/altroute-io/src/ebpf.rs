//! eBPF for the kernel-side fast path of established flows ([`offload`]): the tc (tcx ingress)
//! program that forwards offloaded flows, the socket filter an `ETH_P_ALL` tap needs (it sees
//! frames before tc ingress; EtherType-bound sockets get them after, so redirected frames never
//! reach those), and their shared flow map.
//!
//! The programs are C, `crates/altroute-io/ebpf/offload.bpf.c`, compiled by Debian's clang into
//! `offload.bpf.o` beside it (`ebpf/build.sh`); the object is committed and embedded here, so
//! building altroute needs no BPF toolchain, and CI rebuilds it and fails if it differs
//! (`ebpf/check.sh`). The [`aya`] crate loads it, creates the map and attaches the programs. The
//! kernel's verifier is the check that matters: the netns test `tests/netns_ebpf.rs` loads both
//! programs, attaches them, forwards frames through them and holds the tc program to the pure
//! Rust mirror (`altroute_packet::pipeline::offload::apply`) on random frames. Every object is
//! an owned file descriptor, so dropping the Rust value frees the map, unloads the program or
//! detaches the link.

pub mod offload;

pub use offload::{Offload, OffloadAction, OffloadKey, OffloadMap, OffloadStats, TcxLink};

/// An eBPF failure.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The object could not be parsed, or its map created.
    #[error("loading the offload object: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    /// The object lacks a program or map it must have.
    #[error("the offload object has no {0}")]
    Missing(&'static str),
    /// Loading (the verifier's message is in the error), attaching or test-running a program
    /// failed.
    #[error("{program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// What aya reports.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map operation failed.
    #[error("the flow map: {0}")]
    Map(#[source] Box<aya::maps::MapError>),
}

impl EbpfError {
    fn program(program: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> EbpfError {
        move |e| EbpfError::Program {
            program,
            source: Box::new(e),
        }
    }
}

impl From<aya::maps::MapError> for EbpfError {
    fn from(e: aya::maps::MapError) -> EbpfError {
        EbpfError::Map(Box::new(e))
    }
}
