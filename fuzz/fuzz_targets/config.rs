//! The configuration parser and validator on arbitrary text: no panic, errors that say
//! something; and a configuration it accepts is built into the flow table and pipeline config
//! (and a replay context) without a panic.
#![no_main]

use altroute::build;
use altroute::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut cfg = match Config::from_str_named(text, "fuzz.yaml") {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(!e.diagnostics.is_empty(), "an error without a diagnostic");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(cfg.validate().is_ok());
    let _ = cfg.summary();
    let links = build::links(&cfg);
    assert!(links.len() <= cfg.ports.len());
    // Building allocates the table at `max_flows`: keep it small here.
    cfg.limits.max_flows = cfg.limits.max_flows.min(4096);
    let workers = cfg.limits.workers.unwrap_or(2).max(1);
    for worker in [0, workers - 1] {
        let _ = build::table_config(&cfg, worker, workers);
    }
    let _ = build::pipeline_config(&cfg, &links, &|_| None);
    let _ = altroute::replay::context(&cfg);
});
