//! Tests of loading, defaults and error locations.

use super::*;

const GOOD: &str = "\
ports:
  - name: lan
    role: lan
    interface: r-lan
    addresses: [10.0.0.1/24]
  - name: wan1
    role: wan
    interface: r-wan1
    addresses: [192.0.2.1/24]
  - name: wan2
    role: wan
    interface: r-wan2
    addresses:
      - 198.51.100.1/24
gateways:
  - name: isp1
    port: wan1
    via: 192.0.2.2
  - name: isp2
    port: wan2
    via: 198.51.100.2
    weight: 3
";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_named(text, "test.yaml")
}

fn one_err(text: &str) -> Diagnostic {
    let e = load(text).expect_err("config should be rejected");
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    e.diagnostics[0].clone()
}

fn assert_at(d: &Diagnostic, path: &str, line: usize, needle: &str) {
    assert_eq!(d.path, path, "{d}");
    assert_eq!(d.pos.map(|p| p.line), Some(line), "{d}");
    assert!(d.message.contains(needle), "{d:?} lacks {needle:?}");
}

#[test]
fn good_config_and_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.ports.len(), 3);
    assert_eq!(c.ports[0].mtu, 1500);
    assert_eq!(c.gateways[0].weight, 1);
    assert_eq!(c.gateways[1].weight, 3);
    assert_eq!(c.gateways[0].tier, 0);
    assert!(c.gateways[0].enabled);
    assert_eq!(c.gateways[0].probe_targets(), vec![c.gateways[0].via]);
    assert_eq!(c.gateways[0].probe.interval_ms, 500);
    assert_eq!(c.gateways[0].probe.timeout_ms, 1000);
    assert_eq!(c.gateways[0].probe_quorum(), 1);
    assert_eq!(
        c.nat_address(&c.gateways[1]),
        Some("198.51.100.1".parse().unwrap())
    );
    assert_eq!(c.policy.mode, Mode::LoadBalance);
    assert_eq!(c.policy.syn_retry.threshold, 2);
    assert_eq!(c.policy.failure_redirect.window_s, 60);
    assert_eq!(c.policy.failure_redirect.min_samples, 10);
    assert_eq!(c.nat.port_range, [1024, 65535]);
    assert_eq!(c.nat.port_block, 64);
    assert_eq!(c.nat.timeouts.tcp_established, 7440);
    assert_eq!(c.nat.timeouts.udp, 300);
    assert_eq!(c.nat.timeouts.tcp_syn_inbound, 6);
    assert_eq!(c.limits.max_flows, 1 << 20);
    assert!(c.limits.workers() >= 1);
    assert_eq!(c.datapath.batch, 64);
    assert!(c.datapath.vnet_hdr && c.datapath.verify_checksums);
    assert_eq!(c.datapath.rx_ring, RxRing::V2);
    assert_eq!(c.datapath.fanout, Fanout::Cbpf);
    assert_eq!(c.logging.level, "info");
    assert!(
        c.summary()
            .starts_with("3 ports (1 lan, 2 wan), 2 gateways")
    );
}

#[test]
fn default_private_destinations_exclude_documentation_ranges() {
    let p = default_private();
    assert_eq!(p.len(), 9);
    for doc in ["192.0.2.1", "198.51.100.1", "203.0.113.10"] {
        let ip = doc.parse().unwrap();
        assert!(!p.iter().any(|c| c.contains(ip)), "{doc} is private?");
    }
    for private in [
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "224.0.0.1",
    ] {
        let ip = private.parse().unwrap();
        assert!(p.iter().any(|c| c.contains(ip)), "{private} not private?");
    }
}

#[test]
fn round_trips_through_yaml() {
    let c = load(GOOD).unwrap();
    let text = serde_norway::to_string(&c).unwrap();
    let back = load(&text).unwrap();
    assert_eq!(c, back);
}

#[test]
fn unknown_key_has_path_and_line() {
    let text = GOOD.replace("    weight: 3\n", "    wieght: 3\n");
    let d = one_err(&text);
    assert_at(&d, "gateways[1].wieght", 22, "unknown field `wieght`");
    assert!(d.message.contains("weight"), "{d}");
    assert!(!d.message.contains(" at line "), "{d}");
}

#[test]
fn bad_cidr_has_path_and_line() {
    let text = GOOD.replace("198.51.100.1/24", "198.51.100.1/33");
    let d = one_err(&text);
    assert_at(&d, "ports[2].addresses[0]", 14, "0..=32");
    let e = load(&text).unwrap_err().to_string();
    assert!(e.starts_with("test.yaml:14:"), "{e}");
}

#[test]
fn bad_enum_and_bad_ip_have_path_and_line() {
    let d = one_err(&GOOD.replace(
        "role: wan\n    interface: r-wan1",
        "role: wun\n    interface: r-wan1",
    ));
    assert_at(&d, "ports[1].role", 7, "unknown variant `wun`");
    let d = one_err(&GOOD.replace("via: 192.0.2.2", "via: 192.0.2"));
    assert_at(
        &d,
        "gateways[0].via",
        18,
        "invalid IPv4 address \"192.0.2\"",
    );
    let d = one_err(&format!("{GOOD}    nat_address: 198.51.100.x\n"));
    assert_at(
        &d,
        "gateways[1].nat_address",
        23,
        "invalid IPv4 address \"198.51.100.x\"",
    );
    let d = one_err(&format!(
        "{GOOD}    probe:\n      targets:\n        - 203.0.113.10\n        - 203.0.113.300\n"
    ));
    assert_at(
        &d,
        "gateways[1].probe.targets[1]",
        26,
        "invalid IPv4 address \"203.0.113.300\"",
    );
    let d = one_err(&format!("{GOOD}    mac: 02:zz:00:00:00:01\n"));
    assert_at(&d, "gateways[1].mac", 23, "invalid MAC address");
}

#[test]
fn missing_field_is_reported() {
    let d = one_err(&GOOD.replace("    via: 198.51.100.2\n", ""));
    assert_eq!(d.path, "gateways[1]");
    assert!(d.message.contains("missing field `via`"), "{d}");
    assert!(d.pos.is_some());
}

#[test]
fn yaml_syntax_error_has_line() {
    let text = GOOD.replace("    port: wan1\n", "    port: [wan1\n");
    let e = load(&text).unwrap_err();
    assert!(e.diagnostics[0].pos.is_some(), "{e}");
}

#[test]
fn unknown_gateway_port_has_validate_path_and_line() {
    let d = one_err(&GOOD.replace("port: wan2", "port: wan3"));
    assert_at(&d, "gateways[1].port", 20, "unknown port \"wan3\"");
    assert!(d.message.contains("wan1, wan2"), "{d}");
}

#[test]
fn gateway_on_lan_port_and_unattached_via() {
    let d = one_err(&GOOD.replace("port: wan1", "port: lan"));
    assert_at(&d, "gateways[0].port", 17, "role lan");
    let d = one_err(&GOOD.replace("via: 192.0.2.2", "via: 192.0.3.2"));
    assert_at(&d, "gateways[0].via", 18, "directly attached");
    let d = one_err(&GOOD.replace("via: 192.0.2.2", "via: 192.0.2.1"));
    assert_at(&d, "gateways[0].via", 18, "router's own address");
}

#[test]
fn udp_timeout_cites_rfc_4787() {
    let d = one_err(&format!("{GOOD}nat:\n  timeouts:\n    udp: 60\n"));
    assert_at(&d, "nat.timeouts.udp", 25, "RFC 4787 REQ-5");
}

#[test]
fn flow_table_limits_are_checked_early() {
    let d = one_err(&format!("{GOOD}    tier: 256\n"));
    assert_at(&d, "gateways[1].tier", 23, "0..=255");
    let d = one_err(&format!(
        "{GOOD}nat:\n  timeouts:\n    tcp_established: 600\n"
    ));
    assert_at(&d, "nat.timeouts.tcp_established", 25, "RFC 5382 REQ-5");
    let d = one_err(&format!("{GOOD}limits:\n  max_flows: 16777217\n"));
    assert_at(&d, "limits.max_flows", 24, "1..=16777216");
    let d = one_err(&format!("{GOOD}policy:\n  syn_retry:\n    threshold: 0\n"));
    assert_at(&d, "policy.syn_retry.threshold", 25, "1..=255");
}

#[test]
fn weight_zero_and_duplicates_and_quorum() {
    let d = one_err(&GOOD.replace("weight: 3", "weight: 0"));
    assert_at(&d, "gateways[1].weight", 22, "must be > 0");
    let d = one_err(&GOOD.replace("name: isp2", "name: isp1"));
    assert_at(&d, "gateways[1].name", 19, "duplicate name \"isp1\"");
    let d = one_err(&format!("{GOOD}    probe:\n      quorum: 2\n"));
    assert_at(&d, "gateways[1].probe.quorum", 24, "number of targets (1)");
}

#[test]
fn rules_pins_forwards_cross_references() {
    let text = format!(
        "{GOOD}\
rules:
  - name: r1
    gateway: isp1
  - name: r2
    src: 10.0.0.8/29
    gateway: isp9
  - name: r3
    proto: icmp
    dport: 80
    gateway: isp2
pins:
  - client: 10.0.0.3/32
    gateway: nope
  - client: 172.16.0.0/24
    gateway: isp1
port_forwards:
  - proto: tcp
    port: 8080
    to: 192.0.2.7:80
policy:
  force: isp3
"
    );
    let e = load(&text).unwrap_err();
    let got: Vec<(String, usize)> = e
        .diagnostics
        .iter()
        .map(|d| (d.path.clone(), d.pos.map_or(0, |p| p.line)))
        .collect();
    let want = [
        ("rules[0]", 24),
        ("rules[1].gateway", 28),
        ("rules[2].dport", 31),
        ("pins[0].gateway", 35),
        ("pins[1].client", 36),
        ("port_forwards[0].to", 41),
        ("policy.force", 43),
    ];
    let want: Vec<(String, usize)> = want.iter().map(|(p, l)| (p.to_string(), *l)).collect();
    assert_eq!(got, want, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("test.yaml:28:5: rules[1].gateway: unknown gateway \"isp9\""),
        "{text}"
    );
}

#[test]
fn port_validation() {
    let d = one_err(&GOOD.replace("[10.0.0.1/24]", "[10.0.0.0/24]"));
    assert_at(&d, "ports[0].addresses[0]", 5, "network address");
    let d = one_err(&GOOD.replace("interface: r-lan\n", "interface: r-lan\n    vlan: 4095\n"));
    assert_at(&d, "ports[0].vlan", 5, "1..=4094");
    let d = one_err(&GOOD.replace("interface: r-wan2", "interface: r-wan1"));
    assert_at(&d, "ports[2].interface", 12, "already used by ports[1]");
    let d = one_err(
        &GOOD
            .replace("198.51.100.1/24", "192.0.2.9/24")
            .replace("via: 198.51.100.2", "via: 192.0.2.3"),
    );
    assert_at(&d, "ports[2].addresses[0]", 14, "overlaps");
}

#[test]
fn nat_port_blocks_must_cover_workers() {
    let d = one_err(&format!(
        "{GOOD}nat:\n  port_range: [2000, 2100]\n  port_block: 64\nlimits:\n  workers: 4\n"
    ));
    assert_at(&d, "nat.port_block", 25, "4 workers");
}

#[test]
fn every_example_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 4, "only {n} examples in {}", dir.display());
}

#[test]
fn strip_location_only_strips_the_suffix() {
    assert_eq!(strip_location("bad at line 3 column 7"), "bad");
    assert_eq!(strip_location("bad at line x"), "bad at line x");
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    proptest! {
        #[test]
        fn cidr_round_trips_and_contains_its_network(a in any::<u32>(), p in 0u8..=32, b in any::<u32>()) {
            let c = Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap();
            let back: Cidr = c.to_string().parse().unwrap();
            prop_assert_eq!(back, c);
            prop_assert!(c.contains(c.addr()));
            prop_assert!(c.contains(c.network()));
            let other = IpAddr::V4(Ipv4Addr::from(b));
            let same_net = Cidr::new(other, p).unwrap().network() == c.network();
            prop_assert_eq!(c.contains(other), same_net);
        }

        #[test]
        fn port_range_and_mac_round_trip(lo in 1u16.., span in 0u16.., m in any::<[u8; 6]>()) {
            let hi = lo.saturating_add(span);
            let r = PortRange { lo, hi };
            prop_assert_eq!(r.to_string().parse::<PortRange>().unwrap(), r);
            prop_assert_eq!(Mac(m).to_string().parse::<Mac>().unwrap(), Mac(m));
        }

        #[test]
        fn key_lines_find_every_gateway_field_in_serialized_configs(
            n in 1usize..6,
            weights in proptest::collection::vec(1u32..100, 6),
        ) {
            let mut c = load(GOOD).unwrap();
            let template = c.gateways[0].clone();
            c.gateways = (0..n)
                .map(|i| {
                    let mut g = template.clone();
                    g.name = format!("gw{i}");
                    g.weight = weights[i];
                    g.probe.targets = vec![Ipv4Addr::new(203, 0, 113, i as u8 + 1)];
                    g
                })
                .collect();
            let text = serde_norway::to_string(&c).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let k = KeyLines::scan(&text);
            for (i, w) in weights.iter().enumerate().take(n) {
                for (field, needle) in [("name", format!("gw{i}")), ("weight", w.to_string())] {
                    let path = format!("gateways[{i}].{field}");
                    let pos = k.exact(&path).unwrap();
                    let line = lines[pos.line - 1];
                    prop_assert!(line.contains(&format!("{field}: {needle}")), "{} -> {}", path, line);
                }
                let t = k.exact(&format!("gateways[{i}].probe.targets[0]")).unwrap();
                let want = format!("203.0.113.{}", i + 1);
                prop_assert!(lines[t.line - 1].contains(&want), "{}", lines[t.line - 1]);
            }
            prop_assert!(k.exact("nat.timeouts.udp").is_some());
            prop_assert!(k.exact("ports[2].addresses[0]").is_some());
        }
    }
}

#[test]
fn rx_ring_layouts() {
    for (text, want) in [
        ("v2", RxRing::V2),
        ("v2-spill", RxRing::V2Spill),
        ("v3", RxRing::V3),
    ] {
        let c = load(&format!("{GOOD}datapath:\n  rx_ring: {text}\n")).unwrap();
        assert_eq!(c.datapath.rx_ring, want, "{text}");
    }
    let d = one_err(&format!("{GOOD}datapath:\n  rx_ring: v4\n"));
    assert_at(&d, "datapath.rx_ring", 24, "unknown variant `v4`");
    let d = one_err(&format!("{GOOD}datapath:\n  ring_frames: 3000\n"));
    assert_at(&d, "datapath.ring_frames", 24, "power of two");
}

#[test]
fn offload_modes() {
    assert_eq!(load(GOOD).unwrap().datapath.offload, Offload::Tc);
    for (text, want) in [("off", Offload::Off), ("tc", Offload::Tc)] {
        let c = load(&format!("{GOOD}datapath:\n  offload: {text}\n")).unwrap();
        assert_eq!(c.datapath.offload, want, "{text}");
    }
    let d = one_err(&format!("{GOOD}datapath:\n  offload: xdp\n"));
    assert_at(&d, "datapath.offload", 24, "unknown variant `xdp`");
}

#[test]
fn pnet_backend_needs_plain_frames_and_untagged_ports() {
    let c = load(&format!(
        "{GOOD}datapath:\n  backend: pnet\n  vnet_hdr: false\n"
    ))
    .unwrap();
    assert_eq!(c.datapath.backend, Backend::Pnet);
    let d = one_err(&format!("{GOOD}datapath:\n  backend: pnet\n"));
    assert_at(&d, "datapath.vnet_hdr", 23, "needs backend: af-packet");
    let tagged = GOOD.replace(
        "    interface: r-wan1\n",
        "    interface: r-wan1\n    vlan: 7\n",
    );
    let d = one_err(&format!(
        "{tagged}datapath:\n  backend: pnet\n  vnet_hdr: false\n"
    ));
    assert_at(&d, "ports[1].vlan", 9, "pnet cannot see the VLAN tags");
    load(&format!("{tagged}datapath:\n  vnet_hdr: false\n")).unwrap();
}
