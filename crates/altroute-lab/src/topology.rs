//! The lab's shape: its namespaces, veth links, addresses, and who forwards in the router
//! namespace. Only documentation ranges are used outside the LAN (10.0.0.0/24 exists only inside
//! the lab).

/// Namespace roles, in creation order.
pub const NAMESPACES: [&str; 5] = ["lan", "rtr", "isp1", "isp2", "inet"];

/// The lab's veth pairs: (namespace, interface, MAC, namespace, interface, MAC).
pub const LINKS: [(&str, &str, &str, &str, &str, &str); 5] = [
    (
        "lan",
        "lan0",
        "02:a7:00:00:00:02",
        "rtr",
        "r-lan",
        "02:a7:00:00:00:01",
    ),
    (
        "rtr",
        "r-wan1",
        "02:a7:00:01:00:01",
        "isp1",
        "i1-rtr",
        "02:a7:00:01:00:02",
    ),
    (
        "rtr",
        "r-wan2",
        "02:a7:00:02:00:01",
        "isp2",
        "i2-rtr",
        "02:a7:00:02:00:02",
    ),
    (
        "isp1",
        "i1-inet",
        "02:a7:00:03:00:01",
        "inet",
        "n-i1",
        "02:a7:00:03:00:02",
    ),
    (
        "isp2",
        "i2-inet",
        "02:a7:00:04:00:01",
        "inet",
        "n-i2",
        "02:a7:00:04:00:02",
    ),
];

/// LAN client addresses on `lan0` (the first is the primary source address).
pub const LAN_CLIENTS: [&str; 8] = [
    "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9",
];

/// Server addresses on the `inet` namespace's loopback.
pub const SERVERS: [&str; 3] = ["203.0.113.10", "203.0.113.11", "203.0.113.12"];

/// The router's addresses (owned by the userspace router in router mode, by the kernel in kernel mode).
pub const ROUTER_ADDRS: [(&str, &str); 3] = [
    ("r-lan", "10.0.0.1/24"),
    ("r-wan1", "192.0.2.1/24"),
    ("r-wan2", "198.51.100.1/24"),
];

/// The default namespace prefix.
pub const DEFAULT_PREFIX: &str = "ar-";

/// Who forwards in the router namespace.
///
/// With [`Forwarder::Router`] the router namespace's ports hold no addresses, IPv6 is disabled and
/// forwarding is off, so a userspace router on `r-lan`, `r-wan1`, `r-wan2` owns 10.0.0.1,
/// 192.0.2.1 and 198.51.100.1. With [`Forwarder::Kernel`] the kernel routes instead (addresses,
/// weighted multipath default route with an L4 hash, nftables masquerade per WAN): the baseline to
/// compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarder {
    /// The kernel stays silent; a userspace router owns the ports.
    Router,
    /// The kernel routes and masquerades (baseline), multipath weights isp1:isp2.
    Kernel {
        /// Weight of the isp1 next hop (1..=255).
        w1: u8,
        /// Weight of the isp2 next hop (1..=255).
        w2: u8,
    },
}

/// One of the two ISPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isp {
    /// isp1 (192.0.2.0/24).
    One,
    /// isp2 (198.51.100.0/24).
    Two,
}

impl std::str::FromStr for Isp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "isp1" | "1" => Ok(Isp::One),
            "isp2" | "2" => Ok(Isp::Two),
            _ => Err(format!("{s:?} is not isp1 or isp2")),
        }
    }
}

impl Isp {
    /// The ISP's namespace role.
    pub(crate) fn ns(self) -> &'static str {
        match self {
            Isp::One => "isp1",
            Isp::Two => "isp2",
        }
    }
    /// The ISP's two interfaces: towards the router, towards the Internet.
    pub(crate) fn ifaces(self) -> [&'static str; 2] {
        match self {
            Isp::One => ["i1-rtr", "i1-inet"],
            Isp::Two => ["i2-rtr", "i2-inet"],
        }
    }
}
