//! altroute daemon library: configuration, kernel set-up, workers, health, control and replay.
//! The binary (`src/main.rs`, commands in `src/cmd/`) is a thin CLI over these modules; its
//! `lab`, `lab-tool` and `demo` commands are a thin CLI over the `altroute-lab` crate.

pub mod build;
pub mod config;
pub mod control;
pub mod health;
pub mod kernel;
pub mod replay;
pub mod setup;
pub mod worker;
