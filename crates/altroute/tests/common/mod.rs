//! Helpers shared by the network-namespace tests (`lab.rs`, `router_lab.rs`, `coalesce_lab.rs`):
//! whether a test may run, what it left behind, and a namespace's checksum error counters.
//!
//! Each test crate uses only some of them.
#![allow(dead_code)]

use std::time::Duration;

use altroute_lab::prerequisites;
use altroute_lab::{Lab, list_namespaces};

/// True when the test should run; panics when it cannot but must (`ALTROUTE_REQUIRE_NETNS`, set
/// by `.ci/run`); otherwise prints why it skips.
pub fn should_run(name: &str, tools: &[(&str, &str)]) -> bool {
    match prerequisites(tools) {
        Ok(()) => true,
        Err(why) => {
            let required = std::env::var_os("ALTROUTE_REQUIRE_NETNS")
                .is_some_and(|v| !v.is_empty() && v != "0");
            assert!(!required, "{name}: ALTROUTE_REQUIRE_NETNS is set but {why}");
            eprintln!("skipping {name}: {why}");
            false
        }
    }
}

/// The namespaces whose names start with `prefix` (what a test left behind).
pub fn leftovers(prefix: &str) -> Vec<String> {
    list_namespaces()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Sums `nstat -az` counters whose name ends with `CsumErrors` in a lab namespace.
pub fn checksum_errors(lab: &Lab, role: &str) -> u64 {
    let Ok(out) = lab.exec_ok(role, &["nstat", "-az"], Duration::from_secs(10)) else {
        panic!("nstat -az in {role} failed");
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n.ends_with("CsumErrors"))
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}
