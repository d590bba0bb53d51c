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
//!   commands and reloads, the status file.
//! - [`api`]: the HTTP API on a Unix socket (and TCP), Prometheus metrics, the web page and the
//!   CLI's client.
//! - [`replay`]: pcap captures through the pipeline, no root needed.
//! - Running as a service: [`service`] (systemd readiness and watchdog), [`caps`] (dropping
//!   the capabilities start-up needed), [`logging`] (`logging.level`, and the line format:
//!   journald's under systemd).
//!
//! The CLI's `lab`, `lab-tool` and `demo` commands are a thin layer over the `altroute-lab` crate.

pub mod api;
pub mod build;
pub mod caps;
pub mod config;
pub mod control;
pub mod health;
pub mod kernel;
pub mod logging;
pub mod replay;
pub mod service;
pub mod setup;
pub mod worker;
