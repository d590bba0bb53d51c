//! The per-frame pipeline of altroute: pure functions over `&mut [u8]`.
//!
//! No I/O, no clock, no allocation on the per-packet paths, no `unsafe`, no panics on any input.
//! The layers, bottom-up:
//!
//! | module | job |
//! |---|---|
//! | [`wire`] | zero-copy views and owned reprs of Ethernet/802.1Q, ARP, IPv4, TCP, UDP, ICMPv4 |
//! | [`checksum`] | RFC 1071 sums, pseudo-headers, RFC 1624 incremental updates, NAT [`Delta`](checksum::Delta), partial checksums |
//! | [`fast`] | the fixed-offset parser for the common case (IPv4 TCP/UDP/echo, no options, not fragmented) |
//! | [`slow`] | the etherparse-based parser for the rest (options, fragments, ICMP errors with their quoted datagram, ARP) |
//! | [`mod@drop`] | [`DropReason`] and [`DropCounters`] |
//! | [`build`] | replies the router originates (ARP, ICMP errors and echo, TCP RST) into caller-provided buffers |
//! | [`neigh`] | the neighbour (ARP) table |
//! | [`pipeline`] | `process()`: one frame in, one verdict out — parse, classify, flow lookup or creation, NAT and L2 rewrite |
//! | [`egress`] | after the verdict: the frame's checksum/GSO offload state ([`TxOffload`](egress::TxOffload)), checksums finished in software, UDP coalescing into GSO frames |
//!
//! Every read and write of frame bytes in altroute happens in this crate; the daemon only moves
//! frames and converts [`TxOffload`](egress::TxOffload) to and from the I/O layer's virtio-net
//! header.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod build;
pub mod checksum;
pub mod drop;
pub mod egress;
pub mod fast;
pub mod neigh;
pub mod pipeline;
pub mod slow;
#[cfg(test)]
mod testutil;
pub mod wire;

pub use drop::{DropCounters, DropReason};
pub use fast::{FastFrame, FastOptions, FastParse, IcmpQuery, SlowReason};
