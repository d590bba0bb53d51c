//! The subcommands of the `altroute` binary, one module each.

pub mod check_config;
pub mod client;
pub mod completions;
pub mod demo;
pub mod lab;
pub mod lab_tool;
pub mod man;
pub mod replay;
pub mod run;
pub mod setup;
