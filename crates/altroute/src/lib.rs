//! altroute daemon library: the policy around the packet path (which is `altroute-packet` and
//! `altroute-flow`, with every syscall in `altroute-io`). The binary (`src/main.rs`, commands in
//! `src/cmd/`) is a thin CLI over these modules.
//!
//! - [`config`]: the YAML configuration (the schema reference is its module doc), loading with
//!   error locations, validation; [`build`] maps it onto the flow table and the pipeline.
//! - [`kernel`]: whether the kernel stays silent on the router's ports (from the I/O crate's
//!   host inspection); [`setup`]: the commands that make it so.
//! - [`worker`]: the datapath threads over AF_PACKET rings, and [`worker::pnet`] for
//!   `datapath.backend: pnet`.
//! - [`control`]: the control thread: gateway probes, [`health`] state machines, hooks, operator
//!   commands, the status file.
//! - [`replay`]: pcap captures through the pipeline, no root needed.
//!
//! The CLI's `lab`, `lab-tool` and `demo` commands are a thin layer over the `altroute-lab` crate.

pub mod api;
pub mod build;
pub mod config;
pub mod control;
pub mod health;
pub mod kernel;
pub mod replay;
pub mod setup;
pub mod worker;
