//! altroute daemon library: configuration, kernel set-up checks, the netns lab and its traffic
//! tools. The binary (`src/main.rs`, commands in `src/cmd/`) is a thin CLI over these modules.

pub mod build;
pub mod config;
pub mod control;
pub mod demo;
pub mod health;
pub mod kernel;
pub mod lab;
pub mod replay;
pub mod setup;
pub mod worker;
