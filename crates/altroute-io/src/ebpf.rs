//! eBPF for the kernel-side fast path of established flows: a small assembler ([`asm`]), thin
//! safe wrappers over `bpf(2)` ([`sys`]: hash maps, program loading with the verifier log, tcx
//! links, `SO_ATTACH_BPF`) and the two offload programs with their map ([`offload`]): the tc
//! program, and the socket filter an `ETH_P_ALL` tap needs (it sees frames before tc ingress;
//! EtherType-bound sockets get them after, so redirected frames never reach those).
//!
//! The programs are built by Rust functions and assembled here by hand — no clang, no ELF, no
//! BTF, no aya/libbpf — so the repository needs no C or BPF toolchain. The kernel's verifier is
//! the check that matters: the netns test `tests/netns_ebpf.rs` loads both programs and
//! attaches them. Every object is an owned file descriptor, so closing it (dropping the Rust
//! value) frees the map, unloads the program or detaches the link.

pub mod asm;
pub mod offload;
pub mod sys;

pub use asm::{Asm, EbpfInsn, Reg};
pub use offload::{Offload, OffloadAction, OffloadKey, OffloadMap, OffloadStats};
pub use sys::{HashMap, ProgType, Program, TcxLink};

/// An eBPF failure.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// A `bpf(2)` (or related) syscall failed.
    #[error("{op}: {source}")]
    Os {
        /// The operation, e.g. `bpf(BPF_MAP_CREATE)`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The verifier (or the loader) refused a program; `log` is the verifier's log.
    #[error("loading {name}: {source}; verifier log:\n{log}")]
    Load {
        /// Program name.
        name: String,
        /// The OS error of the first attempt.
        #[source]
        source: std::io::Error,
        /// The verifier log of the second attempt (log level 1).
        log: String,
    },
    /// A program could not be assembled (unbound label, jump too far) or used that way.
    #[error("eBPF: {0}")]
    Assemble(String),
    /// A key or value had the wrong size for the map.
    #[error("map element size {key}/{value}, the map wants {want_key}/{want_value}")]
    Size {
        /// Key length given.
        key: usize,
        /// Value length given.
        value: usize,
        /// The map's key size.
        want_key: usize,
        /// The map's value size.
        want_value: usize,
    },
}
