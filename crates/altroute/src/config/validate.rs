//! Semantic checks of a parsed [`Config`]: cross-references between sections and value ranges.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Config, Gateway, Proto, Role};

/// One problem found by `validate()`: the key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Key path such as `gateways[1].port`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

struct Sink(Vec<Issue>);

impl Sink {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn duplicates<'a>(s: &mut Sink, section: &str, what: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.enumerate() {
        if let Some(first) = seen.get(n) {
            s.err(
                format!("{section}[{i}].{what}"),
                format!("duplicate {what} {n:?} (first used at {section}[{first}])"),
            );
        } else {
            seen.insert(n, i);
        }
    }
}

/// The most flows the flow table holds (altroute-flow `MAX_FLOWS`).
pub const MAX_FLOWS: u32 = 1 << 24;
/// The most gateways the flow table holds (altroute-flow `MAX_GATEWAYS`, a 64-bit set).
pub const MAX_GATEWAYS: usize = 64;

pub(super) fn validate(c: &Config) -> Result<(), Vec<Issue>> {
    let mut s = Sink(Vec::new());
    ports(c, &mut s);
    gateways(c, &mut s);
    policy(c, &mut s);
    rules(c, &mut s);
    forwards(c, &mut s);
    nat_limits(c, &mut s);
    misc(c, &mut s);
    if s.0.is_empty() { Ok(()) } else { Err(s.0) }
}

fn gateway_ref(c: &Config, s: &mut Sink, path: String, name: &str) {
    if c.gateway(name).is_none() {
        let known: Vec<&str> = c.gateways.iter().map(|g| g.name.as_str()).collect();
        s.err(
            path,
            format!(
                "unknown gateway {name:?} (known gateways: {})",
                known.join(", ")
            ),
        );
    }
}

fn ports(c: &Config, s: &mut Sink) {
    if c.ports.is_empty() {
        s.err("ports", "at least one lan and one wan port are required");
        return;
    }
    duplicates(s, "ports", "name", c.ports.iter().map(|p| p.name.as_str()));
    let mut ifaces: HashMap<(&str, Option<u16>), usize> = HashMap::new();
    for (i, p) in c.ports.iter().enumerate() {
        let at = |k: &str| format!("ports[{i}].{k}");
        if p.name.trim().is_empty() {
            s.err(at("name"), "must not be empty");
        }
        if p.interface.is_empty() || p.interface.len() > 15 || p.interface.contains(['/', ' ']) {
            s.err(
                at("interface"),
                format!(
                    "{:?} is not a Linux interface name (1..=15 characters, no '/' or spaces)",
                    p.interface
                ),
            );
        }
        if let Some(first) = ifaces.insert((p.interface.as_str(), p.vlan), i) {
            s.err(
                at("interface"),
                format!(
                    "interface {:?}{} is already used by ports[{first}]",
                    p.interface,
                    p.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default()
                ),
            );
        }
        if let Some(v) = p.vlan
            && !(1..=4094).contains(&v)
        {
            s.err(at("vlan"), format!("VLAN id {v} is out of range 1..=4094"));
        }
        if !(576..=9216).contains(&p.mtu) {
            s.err(
                at("mtu"),
                format!("MTU {} is out of range 576..=9216", p.mtu),
            );
        }
        if let Some(m) = p.mac
            && (m.is_multicast() || m.is_zero())
        {
            s.err(
                at("mac"),
                format!("{m} is not a unicast MAC address (zero or group bit set)"),
            );
        }
        if p.first_v4().is_none() {
            s.err(
                at("addresses"),
                format!(
                    "a {} port needs an IPv4 address/prefix ({})",
                    if p.role == Role::Wan { "wan" } else { "lan" },
                    if p.role == Role::Wan {
                        "the NAT source, e.g. 192.0.2.1/24"
                    } else {
                        "the clients' gateway, e.g. 10.0.0.1/24"
                    }
                ),
            );
        }
        for (j, a) in p.addresses.iter().enumerate() {
            let ap = format!("ports[{i}].addresses[{j}]");
            let max = if a.is_ipv4() { 32 } else { 128 };
            if a.is_network() && a.prefix() < max {
                s.err(
                    ap.clone(),
                    format!(
                        "{a} is a network address; give the router's own address in it (e.g. {}/{})",
                        first_host(a.network()),
                        a.prefix()
                    ),
                );
            }
            if a.addr().is_unspecified() || a.addr().is_multicast() || a.addr().is_loopback() {
                s.err(ap, format!("{} cannot be a port address", a.addr()));
            }
        }
    }
    // Overlapping subnets on different ports make direct delivery ambiguous.
    for (i, p) in c.ports.iter().enumerate() {
        for (j, q) in c.ports.iter().enumerate().skip(i + 1) {
            for a in &p.addresses {
                for (k, b) in q.addresses.iter().enumerate() {
                    if a.overlaps(b) {
                        s.err(
                            format!("ports[{j}].addresses[{k}]"),
                            format!(
                                "{b} overlaps {a} on port {:?}: attached subnets must be distinct",
                                p.name
                            ),
                        );
                    }
                }
            }
        }
    }
    if !c.ports.iter().any(|p| p.role == Role::Lan) {
        s.err("ports", "no port has role: lan");
    }
    if !c.ports.iter().any(|p| p.role == Role::Wan) {
        s.err("ports", "no port has role: wan");
    }
}

fn first_host(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(1)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(1)).into()),
    }
}

fn gateways(c: &Config, s: &mut Sink) {
    if c.gateways.is_empty() {
        s.err("gateways", "at least one gateway is required");
        return;
    }
    duplicates(
        s,
        "gateways",
        "name",
        c.gateways.iter().map(|g| g.name.as_str()),
    );
    if c.gateways.len() > MAX_GATEWAYS {
        s.err(
            format!("gateways[{MAX_GATEWAYS}]"),
            format!(
                "{} gateways: at most {MAX_GATEWAYS} are supported",
                c.gateways.len()
            ),
        );
    }
    if !c.gateways.iter().any(|g| g.enabled) {
        s.err("gateways", "every gateway has enabled: false");
    }
    for (i, g) in c.gateways.iter().enumerate() {
        let at = |k: &str| format!("gateways[{i}].{k}");
        if g.name.trim().is_empty() {
            s.err(at("name"), "must not be empty");
        }
        gateway_port(c, s, i, g);
        if let Some(m) = g.mac
            && (m.is_multicast() || m.is_zero())
        {
            s.err(at("mac"), format!("{m} is not a unicast MAC address"));
        }
        if g.tier > 255 {
            s.err(
                at("tier"),
                format!("tier {} is out of range 0..=255", g.tier),
            );
        }
        if g.weight == 0 {
            s.err(
                at("weight"),
                "weight must be > 0 (use enabled: false to stop using a gateway)",
            );
        }
        gateway_probe(s, i, g);
    }
}

/// `gateways[i].port` names a WAN port whose subnet holds `via` (and `nat_address`, if set).
fn gateway_port(c: &Config, s: &mut Sink, i: usize, g: &Gateway) {
    let at = |k: &str| format!("gateways[{i}].{k}");
    match c.port(&g.port) {
        None => {
            let wans: Vec<&str> = c
                .ports
                .iter()
                .filter(|p| p.role == Role::Wan)
                .map(|p| p.name.as_str())
                .collect();
            s.err(
                at("port"),
                format!("unknown port {:?} (wan ports: {})", g.port, wans.join(", ")),
            );
        }
        Some(p) if p.role != Role::Wan => s.err(
            at("port"),
            format!("port {:?} has role lan; a gateway needs a wan port", g.port),
        ),
        Some(p) => {
            let via = IpAddr::V4(g.via);
            if p.addresses.iter().any(|a| a.addr() == via) {
                s.err(
                    at("via"),
                    format!("{} is the router's own address on port {:?}", g.via, p.name),
                );
            } else if p.subnet_of(via).is_none() {
                let subnets: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
                s.err(
                    at("via"),
                    format!(
                        "{} is not in a subnet of port {:?} ({}): the next hop must be directly attached",
                        g.via,
                        p.name,
                        subnets.join(", ")
                    ),
                );
            }
            if let Some(n) = g.nat_address
                && !p.addresses.iter().any(|a| a.addr() == IpAddr::V4(n))
            {
                s.err(
                    at("nat_address"),
                    format!("{n} is not one of port {:?}'s addresses", p.name),
                );
            }
        }
    }
}

/// `gateways[i].probe` and `.hooks`: ranges, targets, thresholds with hysteresis, quorum.
fn gateway_probe(s: &mut Sink, i: usize, g: &Gateway) {
    let at = |k: &str| format!("gateways[{i}].{k}");
    let pr = &g.probe;
    if pr.interval_ms < 10 {
        s.err(
            at("probe.interval_ms"),
            format!("{} ms is too short (minimum 10)", pr.interval_ms),
        );
    }
    if pr.timeout_ms == 0 {
        s.err(at("probe.timeout_ms"), "must be > 0");
    }
    for (j, t) in pr.targets.iter().enumerate() {
        if t.is_unspecified() || t.is_multicast() || t.is_broadcast() {
            s.err(
                format!("gateways[{i}].probe.targets[{j}]"),
                format!("{t} cannot be pinged"),
            );
        }
    }
    for (k, th) in [("down", &pr.down), ("up", &pr.up)] {
        if th.loss_pct > 100 {
            s.err(
                at(&format!("probe.{k}.loss_pct")),
                format!("{} is not a percentage (0..=100)", th.loss_pct),
            );
        }
        if th.rounds == 0 {
            s.err(at(&format!("probe.{k}.rounds")), "must be > 0");
        }
    }
    if pr.up.loss_pct >= pr.down.loss_pct {
        s.err(
            at("probe.up.loss_pct"),
            format!(
                "up.loss_pct ({}) must be below down.loss_pct ({}) or the gateway would flap",
                pr.up.loss_pct, pr.down.loss_pct
            ),
        );
    }
    if let (Some(u), Some(d)) = (pr.up.rtt_ms, pr.down.rtt_ms)
        && u >= d
    {
        s.err(
            at("probe.up.rtt_ms"),
            format!("up.rtt_ms ({u}) must be below down.rtt_ms ({d})"),
        );
    }
    let n = g.probe_targets().len();
    if let Some(q) = pr.quorum
        && (q == 0 || q as usize > n)
    {
        s.err(
            at("probe.quorum"),
            format!("quorum {q} must be between 1 and the number of targets ({n})"),
        );
    }
    if g.hooks.timeout_ms == 0 {
        s.err(at("hooks.timeout_ms"), "must be > 0");
    }
    for (k, h) in [("up", &g.hooks.up), ("down", &g.hooks.down)] {
        if h.as_deref().is_some_and(|h| h.trim().is_empty()) {
            s.err(
                at(&format!("hooks.{k}")),
                "empty command (leave the key out instead)",
            );
        }
    }
}

fn policy(c: &Config, s: &mut Sink) {
    let p = &c.policy;
    if let Some(f) = &p.force {
        gateway_ref(c, s, "policy.force".into(), f);
    }
    if p.mode == super::Mode::Manual && p.force.is_none() {
        s.err(
            "policy.mode",
            "manual mode sends every new connection to the forced gateway: set policy.force",
        );
    }
    if p.syn_retry.enabled && !(1..=255).contains(&p.syn_retry.threshold) {
        s.err(
            "policy.syn_retry.threshold",
            format!(
                "{} is out of range 1..=255 (the first SYN is never a retry)",
                p.syn_retry.threshold
            ),
        );
    }
    let fr = &p.failure_redirect;
    if fr.window_s == 0 {
        s.err("policy.failure_redirect.window_s", "must be > 0");
    }
    if fr.min_samples == 0 {
        s.err("policy.failure_redirect.min_samples", "must be > 0");
    }
    if !(fr.failed_ratio > 0.0 && fr.failed_ratio <= 1.0) {
        s.err(
            "policy.failure_redirect.failed_ratio",
            format!("{} must be in (0, 1]", fr.failed_ratio),
        );
    }
}

fn rules(c: &Config, s: &mut Sink) {
    duplicates(s, "rules", "name", c.rules.iter().map(|r| r.name.as_str()));
    for (i, r) in c.rules.iter().enumerate() {
        let at = |k: &str| format!("rules[{i}].{k}");
        if r.src.is_none() && r.dst.is_none() && r.dport.is_none() && r.proto == Proto::Any {
            s.err(
                format!("rules[{i}]"),
                format!(
                    "rule {:?} matches everything: give at least one of src, dst, proto, dport (use policy.force to send everything through one gateway)",
                    r.name
                ),
            );
        }
        if r.dport.is_some() && !matches!(r.proto, Proto::Tcp | Proto::Udp) {
            s.err(at("dport"), "dport needs proto: tcp or proto: udp");
        }
        gateway_ref(c, s, at("gateway"), &r.gateway);
    }
    for (i, p) in c.pins.iter().enumerate() {
        gateway_ref(c, s, format!("pins[{i}].gateway"), &p.gateway);
        if !c
            .ports
            .iter()
            .filter(|p| p.role == Role::Lan)
            .any(|l| l.addresses.iter().any(|a| a.overlaps(&p.client)))
        {
            s.err(
                format!("pins[{i}].client"),
                format!("{} is not inside any lan port's subnet", p.client),
            );
        }
    }
}

fn forwards(c: &Config, s: &mut Sink) {
    let mut seen: HashMap<(Proto, u16), usize> = HashMap::new();
    let mut targets: HashMap<(Proto, std::net::SocketAddrV4), usize> = HashMap::new();
    if c.port_forwards.len() > altroute_io::steering::MAX_FORWARDS {
        s.err(
            format!("port_forwards[{}]", altroute_io::steering::MAX_FORWARDS),
            format!(
                "{} port forwards: at most {} are supported (the workers' steering program checks each)",
                c.port_forwards.len(),
                altroute_io::steering::MAX_FORWARDS
            ),
        );
    }
    for (i, f) in c.port_forwards.iter().enumerate() {
        let at = |k: &str| format!("port_forwards[{i}].{k}");
        if let Some(first) = targets.insert((f.proto, f.to.0), i) {
            s.err(
                at("to"),
                format!(
                    "{} is already the target of port_forwards[{first}]: one inside endpoint takes one forward \
                     (its replies are steered to the worker of that forward's port)",
                    f.to
                ),
            );
        }
        if !matches!(f.proto, Proto::Tcp | Proto::Udp) {
            s.err(at("proto"), "a port forward needs proto: tcp or proto: udp");
        }
        if f.port == 0 {
            s.err(at("port"), "port 0 is not a valid port");
        }
        if let Some(first) = seen.insert((f.proto, f.port), i) {
            s.err(
                at("port"),
                format!(
                    "port {} is already forwarded by port_forwards[{first}]",
                    f.port
                ),
            );
        }
        let to = IpAddr::V4(*f.to.0.ip());
        if !c
            .ports
            .iter()
            .filter(|p| p.role == Role::Lan)
            .any(|p| p.subnet_of(to).is_some())
        {
            s.err(
                at("to"),
                format!("{} is not inside any lan port's subnet", f.to),
            );
        }
        for (j, g) in f.gateways.iter().enumerate() {
            gateway_ref(c, s, format!("port_forwards[{i}].gateways[{j}]"), g);
        }
    }
}

fn nat_limits(c: &Config, s: &mut Sink) {
    let [lo, hi] = c.nat.port_range;
    if lo == 0 || lo > hi {
        s.err(
            "nat.port_range",
            format!("[{lo}, {hi}] must be [lo, hi] with 1 <= lo <= hi"),
        );
    }
    if c.nat.port_block == 0 {
        s.err("nat.port_block", "must be > 0");
    } else if lo != 0 && lo <= hi {
        let blocks = (u32::from(hi) - u32::from(lo) + 1) / u32::from(c.nat.port_block);
        let workers = u32::from(c.limits.workers());
        if blocks < workers {
            s.err(
                "nat.port_block",
                format!(
                    "the port range [{lo}, {hi}] holds {blocks} blocks of {} ports but {workers} workers need at least one each",
                    c.nat.port_block
                ),
            );
        }
    }
    let t = &c.nat.timeouts;
    // The same floors the flow table enforces (altroute-flow `Timeouts::validate`), reported here
    // with the key path and line.
    if t.udp < 120 {
        s.err(
            "nat.timeouts.udp",
            format!(
                "{} s is too short: RFC 4787 REQ-5 requires a UDP mapping timeout of at least 120 s (300 s recommended)",
                t.udp
            ),
        );
    }
    for (k, v, min, rule) in [
        ("tcp_established", t.tcp_established, 7440, "RFC 5382 REQ-5"),
        ("tcp_transitory", t.tcp_transitory, 240, "RFC 5382 REQ-5"),
        ("tcp_syn_inbound", t.tcp_syn_inbound, 6, "RFC 5382 REQ-4"),
        ("icmp", t.icmp, 60, "RFC 5508 REQ-1"),
        (
            "tcp_embryonic",
            t.tcp_embryonic,
            10,
            "a SYN's first retransmissions",
        ),
        ("udp_embryonic", t.udp_embryonic, 10, "a resolver's retries"),
    ] {
        if v < min {
            s.err(
                format!("nat.timeouts.{k}"),
                format!("{v} s is too short: {rule} requires at least {min} s"),
            );
        }
    }
    if c.limits.max_flows == 0 || c.limits.max_flows > MAX_FLOWS {
        s.err(
            "limits.max_flows",
            format!("{} is out of range 1..={MAX_FLOWS}", c.limits.max_flows),
        );
    }
    for (k, v) in [
        ("flows_per_host", c.limits.flows_per_host),
        ("ports_per_host", c.limits.ports_per_host),
    ] {
        if v == Some(0) {
            s.err(
                format!("limits.{k}"),
                "must be > 0 (leave it out for the default)",
            );
        }
    }
    if c.limits.workers == Some(0) {
        s.err(
            "limits.workers",
            "must be > 0 (leave it out for one per CPU)",
        );
    }
}

fn misc(c: &Config, s: &mut Sink) {
    for (i, p) in c.private_destinations.iter().enumerate() {
        if p.prefix() == 0 {
            s.err(
                format!("private_destinations[{i}]"),
                format!("{p} would keep every destination off the WAN"),
            );
        }
    }
    let d = &c.datapath;
    if !(1..=1024).contains(&d.batch) {
        s.err(
            "datapath.batch",
            format!("{} is out of range 1..=1024", d.batch),
        );
    }
    if let Some(f) = d.ring_frames
        && (f < 2 || !f.is_power_of_two())
    {
        s.err(
            "datapath.ring_frames",
            format!("{f} must be a power of two >= 2"),
        );
    }
    if d.backend == super::Backend::Pnet {
        if d.vnet_hdr {
            s.err(
                "datapath.vnet_hdr",
                "vnet_hdr needs backend: af-packet (pnet cannot set PACKET_VNET_HDR)",
            );
        }
        for (i, p) in c.ports.iter().enumerate() {
            if p.vlan.is_some() {
                s.err(
                    format!("ports[{i}].vlan"),
                    "a VLAN port needs backend: af-packet (pnet cannot see the VLAN tags the kernel strips)",
                );
            }
        }
    }
    api(c, s);
    let lvl = c.logging.level.to_ascii_lowercase();
    if !["off", "error", "warn", "info", "debug", "trace"].contains(&lvl.as_str()) {
        s.err(
            "logging.level",
            format!(
                "{:?} is not one of off, error, warn, info, debug, trace",
                c.logging.level
            ),
        );
    }
}

fn api(c: &Config, s: &mut Sink) {
    let a = &c.api;
    if a.socket.as_os_str().is_empty() || a.socket.is_relative() {
        s.err(
            "api.socket",
            format!("{:?} must be an absolute path", a.socket),
        );
    }
    if let Some(l) = a.listen
        && !l.ip().is_loopback()
        && a.token_file.is_none()
    {
        s.err(
            "api.listen",
            format!(
                "{l} is not a loopback address: set api.token_file (the bearer token TCP clients must send)"
            ),
        );
    }
}
