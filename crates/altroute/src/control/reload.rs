//! What a configuration reload may change on a running router, and what needs a restart.
//!
//! Two configurations are compared key by key (through their serde form, so a key added to the
//! schema later is covered without a change here): [`changed_keys`] lists the key paths whose
//! values differ, and [`restart_keys`] those of them that the running router cannot apply.
//!
//! Applied live: a gateway's `weight`, `tier`, `enabled`, `comment`, `probe` and `hooks`;
//! `policy` except `on_gateway_down` (the workers' pipelines build their reject answers from
//! it); `rules`; `pins`; `nat.timeouts`; `logging`; `api.token_file`. Everything else needs a
//! restart: ports and interfaces, a gateway added, removed, renamed or moved in the list, its
//! `port`, `via`, `mac` or `nat_address` (the workers' pipelines are built around them), port
//! forwards (the kernel steering programs hold them), the NAT port range and blocks, `limits`
//! (the flow tables are allocated at their size and the workers started), private
//! destinations, `datapath`, and where the API listens.

use serde_json::Value;

use crate::config::Config;

/// Key paths (with `[*]` for any list index) whose changes a running router applies. A path is
/// live when it is one of these or lies under one.
const LIVE: &[&str] = &[
    "gateways[*].weight",
    "gateways[*].tier",
    "gateways[*].enabled",
    "gateways[*].comment",
    "gateways[*].probe",
    "gateways[*].hooks",
    "policy.mode",
    "policy.sticky",
    "policy.syn_retry",
    "policy.failure_redirect",
    "policy.failback",
    "policy.force",
    "rules",
    "pins",
    "nat.timeouts",
    "logging",
    "api.token_file",
];

/// The key paths whose values differ between `a` and `b`: the deepest differing keys, sections
/// in alphabetical order (a list of another length is reported as the list itself).
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return vec![".".into()];
    };
    let mut out = Vec::new();
    diff(&a, &b, String::new(), &mut out);
    out
}

fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    sub,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(p, q, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(if path.is_empty() { ".".into() } else { path }),
        _ => {}
    }
}

/// `gateways[3].probe.targets[0]` → `gateways[*].probe.targets[*]`.
fn generic(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[*]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether a change at `path` is applied live.
pub fn is_live(path: &str) -> bool {
    let g = generic(path);
    LIVE.iter().any(|l| {
        g == *l
            || g.strip_prefix(l)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// The changed keys that need a restart, each with a word on why when the path alone does not
/// say it.
pub fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    changed_keys(old, new)
        .into_iter()
        .filter(|p| !is_live(p))
        .map(|p| {
            if p == "gateways" {
                "gateways (a gateway added or removed)".to_string()
            } else if p.starts_with("gateways[") && p.ends_with("].name") {
                format!("{p} (a gateway renamed or moved in the list)")
            } else {
                p
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::from_str_named(
            &format!(
                "ports:\n  - {{name: lan, role: lan, interface: r-lan, addresses: [10.0.0.1/24]}}\n  - {{name: wan1, role: wan, interface: r-wan1, addresses: [192.0.2.1/24]}}\n  - {{name: wan2, role: wan, interface: r-wan2, addresses: [198.51.100.1/24]}}\ngateways:\n  - {{name: isp1, port: wan1, via: 192.0.2.2}}\n  - {{name: isp2, port: wan2, via: 198.51.100.2}}\n{extra}"
            ),
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn no_change_no_keys() {
        assert!(changed_keys(&cfg(""), &cfg("")).is_empty());
    }

    #[test]
    fn live_changes_need_no_restart() {
        let a = cfg("");
        let mut b = cfg(
            "policy: {mode: failover, force: isp2}\npins: [{client: 10.0.0.9/32, gateway: isp2}]\nlogging: {level: debug}\n",
        );
        b.gateways[0].weight = 4;
        b.gateways[1].tier = 1;
        b.gateways[1].enabled = false;
        b.gateways[0].probe.interval_ms = 200;
        b.nat.timeouts.udp = 600;
        let changed = changed_keys(&a, &b);
        for k in [
            "gateways[0].weight",
            "gateways[1].tier",
            "gateways[1].enabled",
            "gateways[0].probe.interval_ms",
            "policy.mode",
            "policy.force",
            "pins",
            "nat.timeouts.udp",
            "logging.level",
        ] {
            assert!(changed.iter().any(|c| c == k), "{k} not in {changed:?}");
        }
        assert_eq!(restart_keys(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn structural_changes_name_their_keys() {
        let a = cfg("");
        let mut b = cfg("datapath: {batch: 32}\nlimits: {max_flows: 1000}\n");
        b.gateways[1].via = "198.51.100.3".parse().unwrap();
        b.policy.on_gateway_down = crate::config::OnGatewayDown::Wait;
        let keys = restart_keys(&a, &b);
        assert_eq!(
            keys,
            vec![
                "datapath.batch",
                "gateways[1].via",
                "limits.max_flows",
                "policy.on_gateway_down",
            ],
            "{keys:?}"
        );
        let mut c = cfg("");
        c.gateways.pop();
        assert_eq!(
            restart_keys(&a, &c),
            vec!["gateways (a gateway added or removed)"]
        );
        let mut d = cfg("");
        d.gateways.swap(0, 1);
        let keys = restart_keys(&a, &d);
        assert!(
            keys.iter()
                .any(|k| k == "gateways[0].name (a gateway renamed or moved in the list)"),
            "{keys:?}"
        );
    }

    #[test]
    fn generic_paths_match_any_index() {
        assert_eq!(
            generic("gateways[12].probe.targets[0]"),
            "gateways[*].probe.targets[*]"
        );
        assert!(is_live("gateways[3].probe.targets[1]"));
        assert!(is_live("rules[0].gateway"));
        assert!(is_live("rules"));
        assert!(!is_live("gateways[3].port"));
        assert!(!is_live("policy.on_gateway_down"));
        assert!(!is_live("logging_x"));
        assert!(!is_live("api.listen"));
    }
}
