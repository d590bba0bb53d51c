//! The connection table of altroute (work in progress: see the foundation issue).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod hash;
pub mod key;

pub use key::{Family, FlowKey, proto};
