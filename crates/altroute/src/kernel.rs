//! Whether the kernel will stay silent on the router's ports beside the userspace datapath.
//!
//! The userspace router owns the ports' addresses. If the kernel also has them it answers ARP and
//! ping, sends IPv6 router solicitations and may forward frames itself (measured in the netns lab
//! before the datapath was written). The facts come from the I/O crate's host inspection
//! ([`altroute_io::host`], the one place that reads them); [`check_facts`] turns them into
//! [`Problem`]s that say exactly what to change, and [`kernel_check`] does both for every port of
//! a configuration (the `run` command calls it at start-up). Changing what it finds is
//! [`crate::setup`]'s job.

use std::fmt;
use std::path::Path;

use altroute_io::host::{self, InterfaceInfo};

use crate::config::Config;

/// One port interface as inspected in the current network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Interface name.
    pub name: String,
    /// What the host has configured on it; `None` when it does not exist.
    pub info: Option<InterfaceInfo>,
}

/// Inspects `iface` in the current network namespace.
pub fn inspect(iface: &str) -> Result<Inspected, altroute_io::IoError> {
    Ok(Inspected {
        name: iface.to_string(),
        info: host::find(iface)?,
    })
}

/// Something the kernel would do on a router port that it must not, and how to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Interface.
    pub interface: String,
    /// What is wrong and why it matters.
    pub what: String,
    /// The command(s) that fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interface {} {}; {}",
            self.interface, self.what, self.fix
        )
    }
}

/// `sysctl -w` notation for a per-interface key (dots in interface names become slashes).
fn sysctl_name(family: &str, iface: &str, key: &str) -> String {
    format!("net.{family}.conf.{}.{key}", iface.replace('.', "/"))
}

/// Compares facts with what the configuration needs. Pure: `setup_hint` is the config path shown in
/// the suggested `altroute setup --config …` command.
pub fn check_facts(
    config: &Config,
    facts: &[Inspected],
    setup_hint: &str,
) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let setup = format!("altroute setup --config {setup_hint}");
    let mut done: Vec<&str> = Vec::new();
    for (i, port) in config.ports.iter().enumerate() {
        let iface = port.interface.as_str();
        if done.contains(&iface) {
            continue;
        }
        done.push(iface);
        let mut p = |what: String, fix: String| {
            problems.push(Problem {
                interface: iface.to_string(),
                what,
                fix,
            })
        };
        let Some(f) = facts.iter().find(|f| f.name == iface) else {
            p(
                "was not inspected".into(),
                "this is a bug in altroute".into(),
            );
            continue;
        };
        let Some(f) = &f.info else {
            p(
                format!("does not exist (ports[{i}] {:?})", port.name),
                format!("create it or fix ports[{i}].interface"),
            );
            continue;
        };
        if !f.up {
            p(
                "is down: the datapath would receive nothing".into(),
                format!("run `{setup}` or `ip link set dev {iface} up`"),
            );
        }
        let v4 = f.ipv4.iter().map(|a| (a.addr.to_string(), a.prefix, true));
        let v6 = f.ipv6.iter().map(|a| (a.addr.to_string(), a.prefix, false));
        for (addr, prefix, is_v4) in v4.chain(v6) {
            let why = if is_v4 {
                "the kernel would answer ARP and ping for it beside the router"
            } else {
                "the kernel would answer neighbour solicitations and send router solicitations"
            };
            p(
                format!("has address {addr}/{prefix}: {why}"),
                format!("run `{setup}` or `ip addr flush dev {iface}`"),
            );
        }
        if f.ipv6_disabled == Some(false) {
            p(
                "has IPv6 enabled (disable_ipv6=0): the kernel would configure a link-local address, send router solicitations and answer NDP".into(),
                format!(
                    "run `{setup}` or `sysctl -w {}=1`",
                    sysctl_name("ipv6", iface, "disable_ipv6")
                ),
            );
        }
        if f.ipv4_forwarding == Some(true) {
            p(
                "has IPv4 forwarding on: the kernel would route frames the router also forwards (duplicates)".into(),
                format!(
                    "run `{setup}` or `sysctl -w {}=0`",
                    sysctl_name("ipv4", iface, "forwarding")
                ),
            );
        }
        if f.arp_ignore.is_some_and(|v| v < 8) {
            p(
                format!(
                    "has arp_ignore={}: the kernel would answer ARP on it for the host's other addresses",
                    f.arp_ignore.unwrap_or(0)
                ),
                format!(
                    "run `{setup}` or `sysctl -w {}=8`",
                    sysctl_name("ipv4", iface, "arp_ignore")
                ),
            );
        }
        // Receive offloads that merge frames: LRO always (no metadata survives it); GRO too when
        // the datapath runs without PACKET_VNET_HDR (it would see frames larger than the MTU).
        let lro = ("large-receive-offload", "lro", f.offloads.lro);
        let gro = ("generic-receive-offload", "gro", f.offloads.gro);
        let merge: &[_] = if config.datapath.vnet_hdr {
            &[lro]
        } else {
            &[lro, gro]
        };
        for (long, short, on) in merge {
            if *on == Some(true) {
                p(
                    format!(
                        "has {long} on: the datapath (vnet_hdr: {}) would receive merged frames larger than the MTU",
                        config.datapath.vnet_hdr
                    ),
                    format!("run `{setup}` or `ethtool -K {iface} {short} off`"),
                );
            }
        }
        if f.mtu != u32::from(port.mtu) {
            p(
                format!("has MTU {} but ports[{i}].mtu is {}", f.mtu, port.mtu),
                format!(
                    "run `{setup}` or `ip link set dev {iface} mtu {}`",
                    port.mtu
                ),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Reads every port's interface and checks that the kernel stays silent on it.
pub fn kernel_check(config: &Config) -> Result<(), Vec<Problem>> {
    kernel_check_path(config, Path::new("FILE"))
}

/// [`kernel_check`] with the configuration path used in the suggested fix.
pub fn kernel_check_path(config: &Config, config_path: &Path) -> Result<(), Vec<Problem>> {
    let mut facts = Vec::new();
    for port in &config.ports {
        match inspect(&port.interface) {
            Ok(f) => facts.push(f),
            Err(e) => {
                return Err(vec![Problem {
                    interface: port.interface.clone(),
                    what: format!("could not be inspected: {e}"),
                    fix: "check the interface name and that altroute runs with CAP_NET_ADMIN"
                        .into(),
                }]);
            }
        }
    }
    check_facts(config, &facts, &config_path.display().to_string())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use altroute_io::host::{IfAddr, Offloads};

    use super::*;

    fn cfg() -> Config {
        Config::from_str_named(
            "ports:\n  - {name: lan, role: lan, interface: r-lan, addresses: [10.0.0.1/24]}\n  - {name: wan1, role: wan, interface: r-wan1, addresses: [192.0.2.1/24]}\ngateways:\n  - {name: isp1, port: wan1, via: 192.0.2.2}\n",
            "t.yaml",
        )
        .unwrap()
    }

    /// An interface the way `altroute setup` leaves it (veth offloads: GRO on, LRO off).
    fn silent_info(name: &str) -> InterfaceInfo {
        InterfaceInfo {
            name: name.into(),
            ifindex: 3,
            mac: Some([2, 0xa7, 0, 1, 0, 1]),
            mtu: 1500,
            up: true,
            running: true,
            promiscuous: false,
            ipv4: vec![],
            ipv6: vec![],
            ipv6_disabled: Some(true),
            ipv4_forwarding: Some(false),
            ip_forward: Some(false),
            arp_ignore: Some(8),
            offloads: Offloads {
                tx_csum: Some(true),
                rx_csum: Some(true),
                sg: Some(true),
                tso: Some(true),
                gso: Some(true),
                gro: Some(true),
                lro: Some(false),
            },
        }
    }

    fn silent(name: &str) -> Inspected {
        Inspected {
            name: name.into(),
            info: Some(silent_info(name)),
        }
    }

    #[test]
    fn offloads_depend_on_vnet_hdr() {
        let c = cfg();
        assert!(check_facts(&c, &[silent("r-lan"), silent("r-wan1")], "c.yaml").is_ok());
        let mut c2 = c.clone();
        c2.datapath.vnet_hdr = false;
        let p = check_facts(&c2, &[silent("r-lan"), silent("r-wan1")], "c.yaml").unwrap_err();
        assert_eq!(p.len(), 2);
        assert!(
            p[0].to_string().contains("generic-receive-offload on"),
            "{}",
            p[0]
        );
        assert!(
            p[0].to_string().contains("ethtool -K r-lan gro off"),
            "{}",
            p[0]
        );
        let mut lro = silent("r-lan");
        if let Some(i) = lro.info.as_mut() {
            i.offloads.lro = Some(true);
        }
        let p = check_facts(&c, &[lro, silent("r-wan1")], "c.yaml").unwrap_err();
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_string().contains("ethtool -K r-lan lro off"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn silent_ports_pass() {
        let c = cfg();
        assert_eq!(
            check_facts(&c, &[silent("r-lan"), silent("r-wan1")], "c.yaml"),
            Ok(())
        );
    }

    #[test]
    fn problems_name_the_fix() {
        let c = cfg();
        let mut wan = silent_info("r-wan1");
        wan.ipv4 = vec![IfAddr {
            addr: Ipv4Addr::new(192, 0, 2, 1),
            prefix: 24,
        }];
        wan.ipv6 = vec![IfAddr {
            addr: Ipv6Addr::new(0xfe80, 0, 0, 0, 0xa7, 0xff, 0xfe01, 1),
            prefix: 64,
        }];
        wan.ipv6_disabled = Some(false);
        wan.ipv4_forwarding = Some(true);
        wan.arp_ignore = Some(0);
        let mut lan = silent_info("r-lan");
        lan.up = false;
        lan.mtu = 9000;
        let facts = [
            Inspected {
                name: "r-lan".into(),
                info: Some(lan),
            },
            Inspected {
                name: "r-wan1".into(),
                info: Some(wan),
            },
        ];
        let p = check_facts(&c, &facts, "c.yaml").unwrap_err();
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        assert_eq!(p.len(), 7, "{all}");
        assert!(all.contains("interface r-lan is down"), "{all}");
        assert!(all.contains("ip link set dev r-lan mtu 1500"), "{all}");
        assert!(
            all.contains("interface r-wan1 has address 192.0.2.1/24: the kernel would answer ARP and ping for it beside the router; run `altroute setup --config c.yaml` or `ip addr flush dev r-wan1`"),
            "{all}"
        );
        assert!(
            all.contains(
                "has address fe80::a7:ff:fe01:1/64: the kernel would answer neighbour solicitations"
            ),
            "{all}"
        );
        assert!(
            all.contains("sysctl -w net.ipv6.conf.r-wan1.disable_ipv6=1"),
            "{all}"
        );
        assert!(
            all.contains("sysctl -w net.ipv4.conf.r-wan1.forwarding=0"),
            "{all}"
        );
        assert!(
            all.contains("sysctl -w net.ipv4.conf.r-wan1.arp_ignore=8"),
            "{all}"
        );
    }

    #[test]
    fn missing_interface() {
        let c = cfg();
        let gone = Inspected {
            name: "r-lan".into(),
            info: None,
        };
        let p = check_facts(&c, &[gone, silent("r-wan1")], "c.yaml").unwrap_err();
        assert_eq!(p.len(), 1);
        assert!(
            p[0].to_string()
                .contains("does not exist (ports[0] \"lan\")")
        );
        assert_eq!(
            sysctl_name("ipv4", "eth0.10", "forwarding"),
            "net.ipv4.conf.eth0/10.forwarding"
        );
    }

    #[test]
    fn inspects_loopback_and_a_missing_interface() {
        let lo = inspect("lo").unwrap();
        assert!(lo.info.is_some_and(|i| i.mtu >= 1280));
        assert_eq!(inspect("ar-no-such0").unwrap().info, None);
    }
}
