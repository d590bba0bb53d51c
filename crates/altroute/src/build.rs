//! The one place that maps a validated [`Config`] onto the engine: the flow table's
//! [`TableConfig`] ([`table_config`]) and the pipeline's [`PipelineConfig`] ([`pipeline_config`]).
//!
//! Indices are shared: gateway `i` of the configuration is [`GatewayId`]`(i)` in the flow table and
//! `gateways[i]` in the pipeline; port `i` is [`PortId`]`(i)`. Disabled gateways keep their index
//! (state [`GatewayState::Disabled`]) so that counters and overrides stay aligned.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use altroute_io::{ForwardSteer, Side, Steering};

use altroute_flow::{
    DownAction, Failback, FailureRedirect, Gateway, GatewayId, GatewaySet, GatewayState, Limits,
    Mode, NatConfig, OnDown, Overrides, Pin, Policy, PortPartition, Prefix, Rule, Sticky,
    TableConfig, Timeouts,
};
use altroute_packet::pipeline::{
    GatewaySpec, Options, PipelineConfig, PortForward, PortId, PortSpec, Role,
};
use altroute_packet::wire::MacAddr;

use crate::config::{self, Cidr, Config};

/// Seconds a released NAT port rests before reuse (RFC 6888).
pub const NAT_COOLDOWN_SECS: u32 = 120;

/// Why a configuration could not be mapped onto the engine (a validated configuration only fails
/// here for the things `validate()` cannot know: interfaces and MACs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A name refers to nothing (only possible with an unvalidated configuration).
    #[error("{what} {name:?} is not defined")]
    Unknown {
        /// What kind of name.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A value the engine cannot hold.
    #[error("{path}: {message}")]
    Value {
        /// Key path, e.g. `gateways[1].tier`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A port's interface is not among the links the caller opened.
    #[error("port {port:?}: interface {interface:?} is not among the links ({links})")]
    NoLink {
        /// Port name.
        port: String,
        /// Its interface.
        interface: String,
        /// The links given.
        links: String,
    },
    /// A port has no MAC in the configuration and the lookup found none.
    #[error("port {port:?}: no MAC address (none configured and none found for {interface:?})")]
    NoMac {
        /// Port name.
        port: String,
        /// Its interface.
        interface: String,
    },
    /// The flow table refused the mapped values.
    #[error("flow table: {0}")]
    Flow(altroute_flow::ConfigError),
}

impl From<altroute_flow::ConfigError> for BuildError {
    fn from(e: altroute_flow::ConfigError) -> Self {
        BuildError::Flow(e)
    }
}

fn value(path: String, message: impl Into<String>) -> BuildError {
    BuildError::Value {
        path,
        message: message.into(),
    }
}

fn gateway_id(cfg: &Config, name: &str) -> Result<GatewayId, BuildError> {
    cfg.gateway_index(name)
        .and_then(|i| u8::try_from(i).ok())
        .map(GatewayId)
        .ok_or_else(|| BuildError::Unknown {
            what: "gateway",
            name: name.to_string(),
        })
}

fn prefix(c: &Cidr) -> Result<Prefix, BuildError> {
    Ok(Prefix::new(c.addr(), c.prefix())?)
}

// The configuration's policy enums are the file's spelling (serde, kebab-case) of the engine's;
// these are the one mapping between the two.

impl From<config::Mode> for Mode {
    fn from(m: config::Mode) -> Mode {
        match m {
            config::Mode::LoadBalance => Mode::LoadBalance,
            config::Mode::Failover => Mode::Failover,
            // Manual: the forced gateway, held usable whatever its probes say (the control
            // thread's operator state), takes every new connection; the table's own mode only
            // matters if that gateway is disabled.
            config::Mode::Manual => Mode::Failover,
        }
    }
}

impl From<config::Sticky> for Sticky {
    fn from(s: config::Sticky) -> Sticky {
        match s {
            config::Sticky::Flow => Sticky::Flow,
            config::Sticky::Source => Sticky::Source,
        }
    }
}

impl From<config::OnDown> for OnDown {
    fn from(d: config::OnDown) -> OnDown {
        match d {
            config::OnDown::Fallback => OnDown::Fallback,
            config::OnDown::Reject => OnDown::Reject,
        }
    }
}

impl From<config::OnGatewayDown> for DownAction {
    fn from(d: config::OnGatewayDown) -> DownAction {
        match d {
            config::OnGatewayDown::Reset => DownAction::Reset,
            config::OnGatewayDown::Wait => DownAction::Keep,
        }
    }
}

impl From<config::Failback> for Failback {
    fn from(f: config::Failback) -> Failback {
        match f {
            config::Failback::Stay => Failback::Stay,
            config::Failback::Move => Failback::Move,
        }
    }
}

fn proto_number(p: config::Proto) -> Option<u8> {
    match p {
        config::Proto::Tcp => Some(altroute_flow::proto::TCP),
        config::Proto::Udp => Some(altroute_flow::proto::UDP),
        config::Proto::Icmp => Some(altroute_flow::proto::ICMP),
        config::Proto::Any => None,
    }
}

/// The distinct interfaces of the configuration's ports, in port order: link `i` is the `i`-th.
/// The daemon and `replay` number links this way.
pub fn links(cfg: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &cfg.ports {
        if !out.contains(&p.interface) {
            out.push(p.interface.clone());
        }
    }
    out
}

/// The side of each link (in [`links`] order) as the daemon's steering sees it: WAN if any port
/// on the link has the WAN role, else LAN. The daemon builds each link's fanout program from it
/// and `replay` steers each input frame by its in-link's side.
pub fn link_sides(cfg: &Config) -> Vec<Side> {
    links(cfg)
        .iter()
        .map(|l| {
            let wan = cfg
                .ports
                .iter()
                .any(|p| &p.interface == l && p.role == config::Role::Wan);
            if wan { Side::Wan } else { Side::Lan }
        })
        .collect()
}

/// The fanout steering of a link on `side` over `workers` workers: the NAT's port blocks, and on
/// the LAN side the router's external addresses and port forwards (so that hairpin traffic, a
/// forward's replies and ICMP errors about them reach the worker that holds their flows). The
/// daemon's cBPF programs and `replay`'s distribution of frames over its contexts both come from
/// here.
pub fn steering(cfg: &Config, side: Side, workers: u16) -> Result<Steering, BuildError> {
    let block = NonZeroU32::new(u32::from(cfg.nat.port_block))
        .ok_or_else(|| value("nat.port_block".into(), "must not be 0"))?;
    let n = NonZeroU32::new(u32::from(workers))
        .ok_or_else(|| value("datapath.workers".into(), "must not be 0"))?;
    let mut external: Vec<Ipv4Addr> = Vec::new();
    for g in &cfg.gateways {
        if let Some(a) = cfg.nat_address(g)
            && !external.contains(&a)
        {
            external.push(a);
        }
    }
    let forwards: Vec<ForwardSteer> = cfg
        .port_forwards
        .iter()
        .filter_map(|f| {
            Some(ForwardSteer {
                proto: proto_number(f.proto)?,
                inside: *f.to.0.ip(),
                inside_port: f.to.0.port(),
                outside_port: f.port,
            })
        })
        .collect();
    Ok(Steering::new(side, block, n).with_nat(&external, &forwards))
}

/// The flow table of worker `worker` (of `workers`): gateways with weights, tiers, states and NAT
/// addresses; the policy; overrides; timeouts; the worker's share of the NAT port range and of
/// `limits.max_flows`.
pub fn table_config(cfg: &Config, worker: u16, workers: u16) -> Result<TableConfig, BuildError> {
    let mut gateways = Vec::with_capacity(cfg.gateways.len());
    for (i, g) in cfg.gateways.iter().enumerate() {
        let tier = u8::try_from(g.tier)
            .map_err(|_| value(format!("gateways[{i}].tier"), "must be 0..=255"))?;
        let nat = cfg.nat_address(g).map(IpAddr::V4);
        gateways.push(Gateway {
            name: g.name.clone(),
            weight: g.weight,
            tier,
            state: if g.enabled {
                GatewayState::Up
            } else {
                GatewayState::Disabled
            },
            nat_addr: nat,
        });
    }
    let p = &cfg.policy;
    let syn_retry = if p.syn_retry.enabled {
        Some(
            u8::try_from(p.syn_retry.threshold)
                .map_err(|_| value("policy.syn_retry.threshold".into(), "must be 1..=255"))?,
        )
    } else {
        None
    };
    let failure_redirect = p.failure_redirect.enabled.then(|| FailureRedirect {
        window_ms: u64::from(p.failure_redirect.window_s) * 1000,
        min_samples: p.failure_redirect.min_samples,
        failed_ratio: p.failure_redirect.failed_ratio as f32,
    });
    let policy = Policy {
        mode: p.mode.into(),
        sticky: p.sticky.into(),
        syn_retry,
        failure_redirect,
    };
    let forced = p.force.as_deref().map(|n| gateway_id(cfg, n)).transpose()?;
    let mut rules = Vec::with_capacity(cfg.rules.len());
    for r in &cfg.rules {
        rules.push(Rule {
            name: r.name.clone(),
            src: r.src.as_ref().map(prefix).transpose()?,
            dst: r.dst.as_ref().map(prefix).transpose()?,
            proto: proto_number(r.proto),
            dports: r.dport.map(|d| (d.lo, d.hi)),
            gateway: gateway_id(cfg, &r.gateway)?,
            on_down: r.on_down.into(),
        });
    }
    let mut pins = Vec::with_capacity(cfg.pins.len());
    for pin in &cfg.pins {
        pins.push(Pin {
            client: prefix(&pin.client)?,
            gateway: gateway_id(cfg, &pin.gateway)?,
        });
    }
    let t = &cfg.nat.timeouts;
    let timeouts = Timeouts {
        tcp_established: t.tcp_established,
        tcp_transitory: t.tcp_transitory,
        tcp_syn_inbound: t.tcp_syn_inbound,
        udp: t.udp,
        icmp: t.icmp,
        tcp_embryonic: t.tcp_embryonic,
        udp_embryonic: t.udp_embryonic,
        ..Timeouts::default()
    };
    let [lo, hi] = cfg.nat.port_range;
    let partition = PortPartition::new((lo, hi), cfg.nat.port_block, workers, worker)?;
    let workers = u32::from(workers.max(1));
    // Router-wide per-host limits, shared by the workers (a host's flows spread over them by
    // source port).
    let per_worker = |v: Option<u32>| v.map(|v| v.div_ceil(workers));
    Ok(TableConfig {
        max_flows: (cfg.limits.max_flows / workers).max(1),
        limits: Limits {
            flows_per_source: per_worker(cfg.limits.flows_per_host),
            ports_per_source: per_worker(cfg.limits.ports_per_host),
            high_water: None,
        },
        timeouts,
        nat: NatConfig {
            partition,
            cooldown_secs: NAT_COOLDOWN_SECS,
        },
        gateways,
        policy,
        overrides: Overrides {
            forced,
            rules,
            pins,
        },
        ..TableConfig::default()
    })
}

/// The pipeline: ports (link index of their interface in `links`, VLAN, MAC from the
/// configuration or else from `macs(interface)`, IPv4 addresses, MTU), gateways (port, next hop,
/// static MAC), port forwards and options (private destinations, checksum verification, reject
/// mode = `policy.on_gateway_down: reset`).
pub fn pipeline_config(
    cfg: &Config,
    links: &[String],
    macs: &dyn Fn(&str) -> Option<MacAddr>,
) -> Result<PipelineConfig, BuildError> {
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for p in &cfg.ports {
        let link = links
            .iter()
            .position(|l| *l == p.interface)
            .and_then(|i| u8::try_from(i).ok())
            .ok_or_else(|| BuildError::NoLink {
                port: p.name.clone(),
                interface: p.interface.clone(),
                links: links.join(", "),
            })?;
        let mac = match p.mac {
            Some(m) => MacAddr(m.0),
            None => macs(&p.interface).ok_or_else(|| BuildError::NoMac {
                port: p.name.clone(),
                interface: p.interface.clone(),
            })?,
        };
        ports.push(PortSpec {
            name: p.name.clone(),
            role: match p.role {
                config::Role::Lan => Role::Lan,
                config::Role::Wan => Role::Wan,
            },
            link,
            vlan: p.vlan,
            mac,
            addrs: p
                .addresses
                .iter()
                .filter_map(|c| c.addr_v4().map(|a| (a, c.prefix())))
                .collect(),
            mtu: p.mtu,
        });
    }
    let port_id = |name: &str| -> Result<PortId, BuildError> {
        cfg.ports
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(PortId)
            .ok_or_else(|| BuildError::Unknown {
                what: "port",
                name: name.to_string(),
            })
    };
    let mut gateways = Vec::with_capacity(cfg.gateways.len());
    for g in &cfg.gateways {
        gateways.push(GatewaySpec {
            port: port_id(&g.port)?,
            next_hop: g.via,
            mac: g.mac.map(|m| MacAddr(m.0)),
        });
    }
    let mut port_forwards = Vec::with_capacity(cfg.port_forwards.len());
    for (i, f) in cfg.port_forwards.iter().enumerate() {
        let proto = match f.proto {
            config::Proto::Tcp | config::Proto::Udp => proto_number(f.proto).unwrap_or(0),
            _ => {
                return Err(value(
                    format!("port_forwards[{i}].proto"),
                    "must be tcp or udp",
                ));
            }
        };
        let mut set = GatewaySet::EMPTY;
        if f.gateways.is_empty() {
            for g in 0..cfg.gateways.len() {
                if let Ok(g) = u8::try_from(g) {
                    set.insert(GatewayId(g));
                }
            }
        } else {
            for n in &f.gateways {
                set.insert(gateway_id(cfg, n)?);
            }
        }
        port_forwards.push(PortForward {
            proto,
            port: f.port,
            to: (*f.to.0.ip(), f.to.0.port()),
            gateways: set,
        });
    }
    let mut private = Vec::with_capacity(cfg.private_destinations.len());
    for c in &cfg.private_destinations {
        private.push(prefix(c)?);
    }
    Ok(PipelineConfig {
        ports,
        gateways,
        port_forwards,
        options: Options {
            verify_ipv4_checksum: cfg.datapath.verify_checksums,
            reject: cfg.policy.on_gateway_down == config::OnGatewayDown::Reset,
            private_destinations: private,
            probe_targets: {
                let mut t: Vec<Ipv4Addr> = cfg
                    .gateways
                    .iter()
                    .flat_map(|g| g.probe_targets())
                    .collect();
                t.sort_unstable();
                t.dedup();
                t
            },
            ..Options::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use altroute_flow::FlowTable;
    use altroute_packet::pipeline::Context;
    use std::net::Ipv4Addr;
    use std::path::Path;

    fn example(name: &str) -> Config {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(name);
        Config::load(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fake_mac(iface: &str) -> Option<MacAddr> {
        let n = iface.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        Some(MacAddr([2, 0, 0, 0, 0, n]))
    }

    #[test]
    fn every_example_builds_a_working_context() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let cfg = Config::load(&path).unwrap();
            let workers = cfg.limits.workers.unwrap_or(1);
            for w in 0..workers {
                let t = table_config(&cfg, w, workers).unwrap();
                let p = pipeline_config(&cfg, &links(&cfg), &fake_mac).unwrap();
                let table = FlowTable::new(t).unwrap();
                Context::new(p, table).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            n += 1;
        }
        assert!(n >= 4);
    }

    #[test]
    fn reference_example_maps_every_section() {
        let cfg = example("altroute.yaml");
        let t = table_config(&cfg, 1, 2).unwrap();
        assert_eq!(t.gateways.len(), 2);
        assert_eq!(t.gateways[0].name, "dsl");
        assert_eq!(t.gateways[0].weight, 4);
        assert_eq!(t.gateways[1].tier, 1);
        assert_eq!(t.gateways[0].state, GatewayState::Up);
        assert_eq!(
            t.gateways[0].nat_addr,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
        );
        assert_eq!(t.policy.mode, Mode::Failover);
        assert_eq!(t.policy.syn_retry, Some(2));
        let fr = t.policy.failure_redirect.unwrap();
        assert_eq!((fr.window_ms, fr.min_samples), (60_000, 10));
        assert!((fr.failed_ratio - 0.5).abs() < 1e-6);
        assert_eq!(t.overrides.forced, None);
        assert_eq!(t.overrides.rules.len(), 1);
        let r = &t.overrides.rules[0];
        assert_eq!(r.gateway, GatewayId(0));
        assert_eq!(r.proto, Some(17));
        assert_eq!(r.dports, Some((5060, 5090)));
        assert_eq!(r.src.unwrap().to_string(), "192.168.1.64/28");
        assert_eq!(t.overrides.pins[0].gateway, GatewayId(1));
        assert_eq!(t.timeouts.udp, 300);
        assert_eq!(t.max_flows, (1 << 20) / 2);
        assert_eq!(
            t.nat.partition,
            PortPartition::new((1024, 65535), 64, 2, 1).unwrap()
        );

        let p = pipeline_config(&cfg, &links(&cfg), &fake_mac).unwrap();
        assert_eq!(p.ports.len(), 3);
        assert_eq!(p.ports[1].link, 1);
        assert_eq!(p.ports[0].role, Role::Lan);
        assert_eq!(p.ports[0].addrs, vec![(Ipv4Addr::new(192, 168, 1, 1), 24)]);
        assert_eq!(p.ports[0].mac, fake_mac("eth0").unwrap());
        assert_eq!(p.gateways[1].port, PortId(2));
        assert_eq!(p.gateways[0].next_hop, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.gateways[0].mac, None);
        assert_eq!(p.port_forwards[0].proto, 6);
        assert_eq!(p.port_forwards[0].to, (Ipv4Addr::new(192, 168, 1, 20), 22));
        assert!(p.port_forwards[0].gateways.contains(GatewayId(0)));
        assert!(!p.port_forwards[0].gateways.contains(GatewayId(1)));
        assert!(p.options.reject);
        assert!(p.options.verify_ipv4_checksum);
        assert_eq!(p.options.private_destinations.len(), 9);
    }

    /// A link is on the WAN side if any port on it is a WAN port (a trunk carrying a LAN VLAN
    /// and a WAN VLAN steers as a WAN), else on the LAN side; in link order.
    #[test]
    fn a_link_with_a_wan_port_is_on_the_wan_side() {
        let cfg = Config::from_str_named(
            "ports:\n  - {name: lan, role: lan, interface: eth0, addresses: [10.0.0.1/24]}\n  - {name: lanv, role: lan, interface: trunk, vlan: 7, addresses: [10.0.1.1/24]}\n  - {name: wanv, role: wan, interface: trunk, vlan: 8, addresses: [192.0.2.1/24]}\n  - {name: wan2, role: wan, interface: eth2, addresses: [198.51.100.1/24]}\ngateways:\n  - {name: isp1, port: wanv, via: 192.0.2.2}\n",
            "t",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(links(&cfg), ["eth0", "trunk", "eth2"]);
        assert_eq!(link_sides(&cfg), [Side::Lan, Side::Wan, Side::Wan]);
    }

    #[test]
    fn disabled_force_wait_and_missing_links() {
        let mut cfg = example("lab-policy-rules.yaml");
        cfg.gateways[1].enabled = false;
        cfg.policy.force = Some("isp2".into());
        cfg.policy.on_gateway_down = config::OnGatewayDown::Wait;
        cfg.policy.syn_retry.enabled = false;
        cfg.policy.failure_redirect.enabled = false;
        let t = table_config(&cfg, 0, 1).unwrap();
        assert_eq!(t.gateways[1].state, GatewayState::Disabled);
        assert_eq!(t.overrides.forced, Some(GatewayId(1)));
        assert_eq!(t.overrides.rules[2].on_down, OnDown::Reject);
        assert_eq!(t.policy.syn_retry, None);
        assert_eq!(t.policy.failure_redirect, None);
        let p = pipeline_config(&cfg, &links(&cfg), &fake_mac).unwrap();
        assert!(!p.options.reject);
        assert_eq!(p.port_forwards[0].gateways.iter().count(), 2);
        let e = pipeline_config(&cfg, &["r-lan".to_string()], &fake_mac).unwrap_err();
        assert!(e.to_string().contains("r-wan1"), "{e}");
        let e = pipeline_config(&cfg, &links(&cfg), &|_| None).unwrap_err();
        assert!(matches!(e, BuildError::NoMac { .. }), "{e}");
        assert!(table_config(&cfg, 1, 1).is_err(), "worker out of range");
    }
}
