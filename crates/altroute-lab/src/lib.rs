//! # altroute-lab: a network-namespace lab to run the router in
//!
//! This crate builds and tears down a lab of network namespaces — one LAN, a router namespace,
//! two ISPs and an "Internet" — runs traffic tools in them, injects faults (black hole, loss, rate
//! limit) and runs the scripted `altroute demo`. It is what the `altroute lab`, `altroute demo` and
//! `altroute lab-tool` commands and the daemon's integration tests are made of. It does not
//! depend on the daemon: the router runs as a child process of the `altroute` binary, whose path
//! the caller passes in.
//!
//! - [`Lab`]: builds a lab ([`Lab::up`], from the pure command list [`plan_up`]), runs commands in
//!   its namespaces, injects and clears faults, and deletes its namespaces when dropped.
//!   [`Forwarder`] says who forwards in the router namespace: the userspace router (the kernel
//!   kept silent) or the kernel itself (the baseline).
//! - [`tool`]: the traffic tools run inside the namespaces (`altroute lab-tool`): a whoami server
//!   and a counting client, and a bulk-transfer pair that hashes a deterministic byte stream.
//! - [`demo`]: the demo scenario (traffic, split, failover, failback) and the pieces the lab tests
//!   share with it: the router as a child process and its status file.
//!
//! Only namespaces whose names carry the caller's prefix are created or deleted, and only
//! documentation address ranges (and 10.0.0.0/24 inside the lab) are used.

pub mod demo;
mod error;
mod exec;
mod lab;
mod plan;
pub mod tool;
mod topology;

pub use error::LabError;
pub use exec::{is_root, list_namespaces, prerequisites, run_cmd, run_with_timeout};
pub use lab::{Background, Lab, teardown};
pub use plan::{Cmd, check_prefix, plan_up};
pub use topology::{
    DEFAULT_PREFIX, Forwarder, Isp, LAN_CLIENTS, LINKS, NAMESPACES, ROUTER_ADDRS, SERVERS,
};
