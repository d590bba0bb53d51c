//! What the kernel does on the router's ports, and whether it will stay silent beside the
//! userspace datapath.
//!
//! The userspace router owns the ports' addresses. If the kernel also has them it answers ARP and
//! ping, sends IPv6 router solicitations and may forward frames itself (measured: see
//! `/work/shared/NOTES.md`). [`read_facts`] gathers the facts of one interface (from
//! `ip -j addr show dev X`, `/proc/sys` and `ethtool -k X`), [`check_facts`] turns them into [`Problem`]s that say
//! exactly what to change, and [`kernel_check`] does both for every port of a configuration
//! (the `run` command calls it at start-up). This is the one place that reads interface facts;
//! the I/O crate may offer the same later.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::config::{Cidr, Config, Mac};

/// Facts about one interface, as seen from the current network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IfaceFacts {
    /// Interface name.
    pub name: String,
    /// False when the interface does not exist (then the other fields are empty).
    pub exists: bool,
    /// Administratively up (`UP` flag).
    pub up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// Link-layer address.
    pub mac: Option<Mac>,
    /// Addresses the kernel holds on it (IPv4 and IPv6, link-local included).
    pub addresses: Vec<Cidr>,
    /// `net.ipv6.conf.X.disable_ipv6` (`None` if the kernel has no IPv6 or the file is missing).
    pub disable_ipv6: Option<bool>,
    /// `net.ipv4.conf.X.forwarding`.
    pub ipv4_forwarding: Option<bool>,
    /// `net.ipv4.conf.X.arp_ignore`.
    pub arp_ignore: Option<u8>,
    /// Offload features from `ethtool -k X` (name → on); `None` when ethtool is unavailable.
    pub offloads: Option<BTreeMap<String, bool>>,
}

/// Why facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// `ip` could not be started.
    #[error("cannot run `ip -j addr show dev {iface}`: {source} (is iproute2 installed?)")]
    Spawn {
        /// Interface.
        iface: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `ip` printed something that is not the expected JSON.
    #[error("cannot parse `ip -j addr show dev {iface}` output: {why}")]
    Parse {
        /// Interface.
        iface: String,
        /// Cause.
        why: String,
    },
}

#[derive(Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
}

/// Parses the JSON printed by `ip -j addr show dev X` into facts (sysctl fields left `None`).
pub fn parse_ip_addr_json(iface: &str, json: &str) -> Result<IfaceFacts, KernelError> {
    let links: Vec<IpLink> = serde_json::from_str(json).map_err(|e| KernelError::Parse {
        iface: iface.to_string(),
        why: e.to_string(),
    })?;
    let Some(link) = links.into_iter().find(|l| l.ifname == iface) else {
        return Ok(IfaceFacts {
            name: iface.to_string(),
            ..IfaceFacts::default()
        });
    };
    let mut addresses = Vec::new();
    for a in &link.addr_info {
        if let (Some(local), Some(p)) = (&a.local, a.prefixlen) {
            if let Ok(ip) = local.parse() {
                if let Some(c) = Cidr::new(ip, p) {
                    addresses.push(c);
                }
            }
        }
    }
    Ok(IfaceFacts {
        name: link.ifname,
        exists: true,
        up: link.flags.iter().any(|f| f == "UP"),
        mtu: link.mtu,
        mac: link.address.as_deref().and_then(|m| m.parse().ok()),
        addresses,
        disable_ipv6: None,
        ipv4_forwarding: None,
        arp_ignore: None,
        offloads: None,
    })
}

/// Parses `ethtool -k X` output (`feature: on|off [fixed]` lines).
pub fn parse_ethtool_features(text: &str) -> BTreeMap<String, bool> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            let on = match v.split_whitespace().next()? {
                "on" => true,
                "off" => false,
                _ => return None,
            };
            Some((k.to_string(), on))
        })
        .collect()
}

fn read_offloads(iface: &str) -> Option<BTreeMap<String, bool>> {
    let out = Command::new("ethtool").args(["-k", iface]).output().ok()?;
    out.status
        .success()
        .then(|| parse_ethtool_features(&String::from_utf8_lossy(&out.stdout)))
}

fn read_sysctl(path: &str) -> Option<u8> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `/proc/sys/net/ipv6/conf/<iface>/disable_ipv6` etc. (interface names with dots stay as they are in /proc).
pub fn sysctl_path(family: &str, iface: &str, key: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{iface}/{key}")
}

/// Reads the facts of `iface` in the current network namespace.
pub fn read_facts(iface: &str) -> Result<IfaceFacts, KernelError> {
    let out = Command::new("ip")
        .args(["-j", "addr", "show", "dev", iface])
        .output()
        .map_err(|source| KernelError::Spawn {
            iface: iface.to_string(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || stdout.trim().is_empty() {
        // `Device "X" does not exist.`
        return Ok(IfaceFacts {
            name: iface.to_string(),
            ..IfaceFacts::default()
        });
    }
    let mut f = parse_ip_addr_json(iface, &stdout)?;
    if f.exists {
        f.disable_ipv6 = read_sysctl(&sysctl_path("ipv6", iface, "disable_ipv6")).map(|v| v != 0);
        f.ipv4_forwarding = read_sysctl(&sysctl_path("ipv4", iface, "forwarding")).map(|v| v != 0);
        f.arp_ignore = read_sysctl(&sysctl_path("ipv4", iface, "arp_ignore"));
        f.offloads = read_offloads(iface);
    }
    Ok(f)
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
    facts: &[IfaceFacts],
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
        if !f.exists {
            p(
                format!("does not exist (ports[{i}] {:?})", port.name),
                format!("create it or fix ports[{i}].interface"),
            );
            continue;
        }
        if !f.up {
            p(
                "is down: the datapath would receive nothing".into(),
                format!("run `{setup}` or `ip link set dev {iface} up`"),
            );
        }
        for a in &f.addresses {
            let why = if a.is_ipv4() {
                "the kernel would answer ARP and ping for it beside the router"
            } else {
                "the kernel would answer neighbour solicitations and send router solicitations"
            };
            p(
                format!("has address {a}: {why}"),
                format!("run `{setup}` or `ip addr flush dev {iface}`"),
            );
        }
        if f.disable_ipv6 == Some(false) {
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
        let merge: &[(&str, &str)] = if config.datapath.vnet_hdr {
            &[("large-receive-offload", "lro")]
        } else {
            &[
                ("large-receive-offload", "lro"),
                ("generic-receive-offload", "gro"),
            ]
        };
        if let Some(off) = &f.offloads {
            for (long, short) in merge {
                if off.get(*long) == Some(&true) {
                    p(
                        format!(
                            "has {long} on: the datapath (vnet_hdr: {}) would receive merged frames larger than the MTU",
                            config.datapath.vnet_hdr
                        ),
                        format!("run `{setup}` or `ethtool -K {iface} {short} off`"),
                    );
                }
            }
        }
        if let Some(mtu) = f.mtu {
            if mtu != u32::from(port.mtu) {
                p(
                    format!("has MTU {mtu} but ports[{i}].mtu is {}", port.mtu),
                    format!(
                        "run `{setup}` or `ip link set dev {iface} mtu {}`",
                        port.mtu
                    ),
                );
            }
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
        match read_facts(&port.interface) {
            Ok(f) => facts.push(f),
            Err(e) => {
                return Err(vec![Problem {
                    interface: port.interface.clone(),
                    what: format!("could not be inspected: {e}"),
                    fix: "install iproute2 (`ip`)".into(),
                }]);
            }
        }
    }
    check_facts(config, &facts, &config_path.display().to_string())
}

/// The MAC of an interface, from `/sys/class/net/X/address` (for ports without `mac:`).
pub fn read_mac(iface: &str) -> Option<Mac> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"[{"ifindex":3,"link_index":2,"ifname":"r-wan1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"02:a7:00:01:00:01","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":1,"addr_info":[{"family":"inet","local":"192.0.2.1","prefixlen":24,"broadcast":"192.0.2.255","scope":"global","label":"r-wan1","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::a7:ff:fe01:1","prefixlen":64,"scope":"link","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;

    fn cfg() -> Config {
        Config::from_str_named(
            "ports:\n  - {name: lan, role: lan, interface: r-lan, addresses: [10.0.0.1/24]}\n  - {name: wan1, role: wan, interface: r-wan1, addresses: [192.0.2.1/24]}\ngateways:\n  - {name: isp1, port: wan1, via: 192.0.2.2}\n",
            "t.yaml",
        )
        .unwrap()
    }

    fn silent(name: &str) -> IfaceFacts {
        IfaceFacts {
            name: name.into(),
            exists: true,
            up: true,
            mtu: Some(1500),
            mac: None,
            addresses: vec![],
            disable_ipv6: Some(true),
            ipv4_forwarding: Some(false),
            arp_ignore: Some(8),
            offloads: Some(parse_ethtool_features(ETHTOOL)),
        }
    }

    const ETHTOOL: &str = "Features for r-lan:\nrx-checksumming: on\ntx-checksumming: on\n\ttx-checksum-ipv4: off [fixed]\ngeneric-segmentation-offload: on\ngeneric-receive-offload: on\nlarge-receive-offload: off [fixed]\n";

    #[test]
    fn offloads_depend_on_vnet_hdr() {
        let f = parse_ethtool_features(ETHTOOL);
        assert_eq!(f.get("generic-receive-offload"), Some(&true));
        assert_eq!(f.get("tx-checksum-ipv4"), Some(&false));
        assert_eq!(f.get("large-receive-offload"), Some(&false));
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
    }

    #[test]
    fn parses_ip_json() {
        let f = parse_ip_addr_json("r-wan1", JSON).unwrap();
        assert!(f.exists && f.up);
        assert_eq!(f.mtu, Some(1500));
        assert_eq!(f.mac.unwrap().to_string(), "02:a7:00:01:00:01");
        let a: Vec<String> = f.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["192.0.2.1/24", "fe80::a7:ff:fe01:1/64"]);
        let f = parse_ip_addr_json("other", JSON).unwrap();
        assert!(!f.exists);
        assert!(parse_ip_addr_json("x", "not json").is_err());
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
        let mut wan = parse_ip_addr_json("r-wan1", JSON).unwrap();
        wan.disable_ipv6 = Some(false);
        wan.ipv4_forwarding = Some(true);
        wan.arp_ignore = Some(0);
        let mut lan = silent("r-lan");
        lan.up = false;
        lan.mtu = Some(9000);
        let p = check_facts(&c, &[lan, wan], "c.yaml").unwrap_err();
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
        let gone = IfaceFacts {
            name: "r-lan".into(),
            ..IfaceFacts::default()
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
}
