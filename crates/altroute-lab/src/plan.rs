//! The commands that build a lab, as data: [`plan_up`] is pure, `Lab::up` runs its commands and
//! `altroute lab up --dry-run` prints them.

use crate::error::LabError;
use crate::topology::{Forwarder, LAN_CLIENTS, LINKS, NAMESPACES, ROUTER_ADDRS, SERVERS};

/// One command of a lab plan: `ip netns exec NS argv…` when `ns` is set, with optional stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Namespace (full name) to run in, or `None` for the current one.
    pub ns: Option<String>,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Text fed to stdin (e.g. an nft script).
    pub stdin: Option<String>,
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ns) = &self.ns {
            write!(f, "ip netns exec {ns} ")?;
        }
        let quoted: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                if a.contains([' ', '>', '"', '<']) {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        f.write_str(&quoted.join(" "))?;
        if let Some(s) = &self.stdin {
            write!(f, " <<< {s:?}")?;
        }
        Ok(())
    }
}

/// A command in namespace `ns` (full name), or in the current one.
pub(crate) fn cmd(ns: Option<&str>, argv: &[&str]) -> Cmd {
    Cmd {
        ns: ns.map(str::to_string),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

fn sysctl(ns: &str, key: &str, value: &str) -> Cmd {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    cmd(Some(ns), &["sh", "-c", &format!("echo {value} > {path}")])
}

/// Checks that a prefix is safe to use in namespace names.
pub fn check_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Prefix(prefix.to_string()))
    }
}

/// The commands that build a lab (pure; `Lab::up` runs them, `lab up --dry-run` prints them).
pub fn plan_up(prefix: &str, forwarder: Forwarder) -> Vec<Cmd> {
    let mut plan = Plan {
        prefix,
        cmds: Vec::new(),
    };
    plan.namespaces();
    plan.links();
    plan.lan();
    plan.isps();
    plan.internet();
    match forwarder {
        Forwarder::Router => plan.silent_router(),
        Forwarder::Kernel { w1, w2 } => plan.kernel_router(w1, w2),
    }
    plan.cmds
}

/// A plan being written: the prefix and the commands so far.
struct Plan<'a> {
    prefix: &'a str,
    cmds: Vec<Cmd>,
}

impl Plan<'_> {
    /// Full namespace name of a role.
    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn sysctl(&mut self, role: &str, key: &str, value: &str) {
        let c = sysctl(&self.ns(role), key, value);
        self.cmds.push(c);
    }

    fn addr(&mut self, role: &str, addr: &str, dev: &str) {
        let ns = self.ns(role);
        self.cmds.push(cmd(
            None,
            &["ip", "-n", &ns, "addr", "add", addr, "dev", dev],
        ));
    }

    fn route(&mut self, role: &str, dst: &str, via: &str) {
        let ns = self.ns(role);
        self.cmds.push(cmd(
            None,
            &["ip", "-n", &ns, "route", "add", dst, "via", via],
        ));
    }

    /// The five namespaces with their loopbacks up, and IPv6 off in the router's.
    fn namespaces(&mut self) {
        for n in NAMESPACES {
            let ns = self.ns(n);
            self.cmds.push(cmd(None, &["ip", "netns", "add", &ns]));
            self.cmds
                .push(cmd(None, &["ip", "-n", &ns, "link", "set", "lo", "up"]));
        }
        // Before the router's ports exist, so they never get an IPv6 link-local address.
        self.sysctl("rtr", "net.ipv6.conf.all.disable_ipv6", "1");
        self.sysctl("rtr", "net.ipv6.conf.default.disable_ipv6", "1");
    }

    /// The veth pairs of [`LINKS`], up on both ends.
    fn links(&mut self) {
        for (a_ns, a_if, a_mac, b_ns, b_if, b_mac) in LINKS {
            let (a, b) = (self.ns(a_ns), self.ns(b_ns));
            self.cmds.push(cmd(
                None,
                &[
                    "ip", "link", "add", a_if, "netns", &a, "address", a_mac, "type", "veth",
                    "peer", "name", b_if, "netns", &b, "address", b_mac,
                ],
            ));
            self.cmds
                .push(cmd(None, &["ip", "-n", &a, "link", "set", a_if, "up"]));
            self.cmds
                .push(cmd(None, &["ip", "-n", &b, "link", "set", b_if, "up"]));
        }
    }

    /// The LAN clients' addresses, and their default route via the router.
    fn lan(&mut self) {
        for c in LAN_CLIENTS {
            self.addr("lan", &format!("{c}/24"), "lan0");
        }
        self.route("lan", "default", "10.0.0.1");
    }

    /// Both ISPs: an address towards the router and one towards the Internet, forwarding on.
    fn isps(&mut self) {
        self.addr("isp1", "192.0.2.2/24", "i1-rtr");
        self.addr("isp1", "203.0.113.129/30", "i1-inet");
        self.route("isp1", "default", "203.0.113.130");
        self.sysctl("isp1", "net.ipv4.ip_forward", "1");
        self.addr("isp2", "198.51.100.2/24", "i2-rtr");
        self.addr("isp2", "203.0.113.133/30", "i2-inet");
        self.route("isp2", "default", "203.0.113.134");
        self.sysctl("isp2", "net.ipv4.ip_forward", "1");
    }

    /// The Internet: its links to both ISPs, the servers on its loopback, routes back to each ISP.
    fn internet(&mut self) {
        self.addr("inet", "203.0.113.130/30", "n-i1");
        self.addr("inet", "203.0.113.134/30", "n-i2");
        for s in SERVERS {
            self.addr("inet", &format!("{s}/32"), "lo");
        }
        self.route("inet", "192.0.2.0/24", "203.0.113.129");
        self.route("inet", "198.51.100.0/24", "203.0.113.133");
    }

    /// [`Forwarder::Router`]: the kernel forwards nothing, ignores ARP and has no IPv6 on the
    /// router's ports.
    fn silent_router(&mut self) {
        self.sysctl("rtr", "net.ipv4.ip_forward", "0");
        for (dev, _) in ROUTER_ADDRS {
            self.sysctl("rtr", &format!("net.ipv4.conf.{dev}.forwarding"), "0");
            self.sysctl("rtr", &format!("net.ipv4.conf.{dev}.arp_ignore"), "8");
            self.sysctl("rtr", &format!("net.ipv6.conf.{dev}.disable_ipv6"), "1");
        }
    }

    /// [`Forwarder::Kernel`]: the router's addresses, forwarding with an L4 multipath hash, a
    /// default route over both ISPs weighted `w1:w2`, and masquerade on each WAN.
    fn kernel_router(&mut self, w1: u8, w2: u8) {
        for (dev, a) in ROUTER_ADDRS {
            self.addr("rtr", a, dev);
        }
        self.sysctl("rtr", "net.ipv4.ip_forward", "1");
        self.sysctl("rtr", "net.ipv4.fib_multipath_hash_policy", "1");
        let rtr = self.ns("rtr");
        let (w1, w2) = (w1.max(1).to_string(), w2.max(1).to_string());
        self.cmds.push(cmd(
            None,
            &[
                "ip",
                "-n",
                &rtr,
                "route",
                "add",
                "default",
                "nexthop",
                "via",
                "192.0.2.2",
                "dev",
                "r-wan1",
                "weight",
                &w1,
                "nexthop",
                "via",
                "198.51.100.2",
                "dev",
                "r-wan2",
                "weight",
                &w2,
            ],
        ));
        let mut nft = cmd(Some(&rtr), &["nft", "-f", "-"]);
        nft.stdin = Some(
            "table ip altroute_lab {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"r-wan1\" masquerade\n    oifname \"r-wan2\" masquerade\n  }\n}\n"
                .into(),
        );
        self.cmds.push(nft);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("ar-").is_ok());
        assert!(check_prefix("ar1234k-").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("../x").is_err());
    }

    #[test]
    fn router_plan_is_silent_and_prefixed() {
        let p = plan_up("t1-", Forwarder::Router);
        let text: Vec<String> = p.iter().map(|c| c.to_string()).collect();
        let all = text.join("\n");
        for n in NAMESPACES {
            assert!(all.contains(&format!("ip netns add t1-{n}")));
        }
        // No address is ever given to the router's ports in router mode.
        assert!(
            !text.iter().any(|l| l.contains("-n t1-rtr addr add")),
            "{all}"
        );
        assert!(
            all.contains("sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'"),
            "{all}"
        );
        assert!(all.contains("echo 0 > /proc/sys/net/ipv4/conf/r-wan1/forwarding"));
        // Every namespace-scoped command names one of this lab's namespaces.
        for c in &p {
            if let Some(ns) = &c.ns {
                assert!(ns.starts_with("t1-"), "{c}");
            }
            if c.argv.first().is_some_and(|a| a == "ip") && c.argv.get(1).is_some_and(|a| a == "-n")
            {
                assert!(c.argv[2].starts_with("t1-"), "{c}");
            }
        }
        // IPv6 is disabled before the router's links are created.
        let v6 = text
            .iter()
            .position(|l| l.contains("default/disable_ipv6"))
            .unwrap();
        let link = text.iter().position(|l| l.contains("type veth")).unwrap();
        assert!(v6 < link);
    }

    #[test]
    fn kernel_plan_routes_and_masquerades() {
        let p = plan_up("t2-", Forwarder::Kernel { w1: 4, w2: 1 });
        let all: String = p.iter().map(|c| format!("{c}\n")).collect();
        assert!(all.contains("ip -n t2-rtr addr add 192.0.2.1/24 dev r-wan1"));
        assert!(all.contains(
            "nexthop via 192.0.2.2 dev r-wan1 weight 4 nexthop via 198.51.100.2 dev r-wan2 weight 1"
        ));
        assert!(all.contains("fib_multipath_hash_policy"));
        assert!(
            p.iter()
                .any(|c| c.stdin.as_deref().is_some_and(|s| s.contains("masquerade")))
        );
    }
}
