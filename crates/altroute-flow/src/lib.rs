//! # altroute-flow: the connection table of a multi-WAN NAT router
//!
//! This crate decides, for every connection crossing a router with several Internet links,
//! **which link it takes** and **which external address and port it gets**, and remembers both for
//! the connection's lifetime. It does no I/O and reads no clock: the caller hands it packets' keys
//! and the time. It is the table inside `altroute`, and it is meant to be embedded in other routers.
//!
//! - [`FlowKey`]: one direction of a connection (40 bytes, `Copy`, IPv4 or IPv6).
//! - [`FlowTable`]: one worker thread's table. Lookups find a connection from either side
//!   ([`Dir::Orig`] from the inside host, [`Dir::Reply`] from the Internet) in about one cache
//!   miss; [`FlowTable::lookup_batch`] overlaps the misses of a batch.
//!   [`FlowTable::update`] counts a packet, runs the TCP state machine ([`tcp`]) and applies SYN-retry
//!   failover; [`FlowTable::insert`] creates a connection; [`FlowTable::expire`] retires idle ones.
//!   A packet fast path splits `update` in two: [`FlowTable::established`] (read only: is this the
//!   common case?) and [`FlowTable::touch`] (account it), so the caller can make its own checks in
//!   between and fall back to `update` with nothing changed.
//! - [`policy`]: gateway selection as a pure function — weighted load balancing with minimal
//!   disruption, failover tiers, SYN-retry rotation, failure-rate redirect, and the overrides that
//!   beat them (forced gateway, rules, per-client pins). [`FlowTable::explain`] says why.
//! - NAT: endpoint-independent mappings, source port kept when free, port parity kept, released
//!   ports cooling down 120 s, ports partitioned between workers ([`PortPartition`]).
//! - Link events: [`FlowTable::gateway_down`] touches only that gateway's flows.
//! - Floods: per-source [`Limits`] of flows and NAT ports, a shorter timeout for flows never
//!   answered ([`Timeouts`]), and early drop of those, heaviest hosts first (below).
//!
//! ## Example
//!
//! ```
//! use altroute_flow::*;
//! use std::net::Ipv4Addr;
//!
//! let mut table = FlowTable::new(TableConfig {
//!     gateways: vec![
//!         Gateway::new("dsl", Some(Ipv4Addr::new(192, 0, 2, 1).into())).weight(4),
//!         Gateway::new("lte", Some(Ipv4Addr::new(198, 51, 100, 1).into())).weight(1),
//!     ],
//!     ..TableConfig::default()
//! })
//! .unwrap();
//!
//! let now = Time::from_secs(1);
//! // A SYN from a LAN host: create the connection.
//! let out = FlowKey::v4(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(203, 0, 113, 10), proto::TCP, 40000, 443);
//! let (hit, choice) = table.insert(out, now, true, tcp::flags::SYN).unwrap();
//! let flow = table.flow(hit.flow).unwrap();
//! let gw = flow.gateway().unwrap();
//! let (ext, port) = flow.nat().unwrap();
//! assert_eq!(port, 40000, "the source port is kept when free");
//! println!("{out} leaves by {} because {}", table.gateways()[gw.index()].name, choice.reason);
//!
//! // The server's answer, addressed to the external address and port, finds the same connection.
//! let ext_ip = Ipv4Addr::new(ext[0], ext[1], ext[2], ext[3]);
//! let back = FlowKey::v4(Ipv4Addr::new(203, 0, 113, 10), ext_ip, proto::TCP, 443, port);
//! let hit2 = table.lookup(&back).unwrap();
//! assert_eq!((hit2.flow, hit2.dir), (hit.flow, Dir::Reply));
//! table.update(hit2, now, tcp::flags::SYN | tcp::flags::ACK, 60);
//!
//! // The link dies: only its flows are touched, and they are handed back.
//! let dropped = table.gateway_down(gw, now, DownAction::Reset);
//! assert_eq!(dropped.len(), 1);
//! ```
//!
//! ## One host cannot take the table
//!
//! A LAN host flooding SYNs (or UDP, or ICMP) to addresses that never answer creates one flow,
//! and usually one NAT mapping, per packet. Three things keep it from filling the table and the
//! port pools for everyone else:
//!
//! - **Per-source limits** ([`Limits`], in [`TableConfig::limits`]; defaults scale with the
//!   table and the port range): a host at its limit of flows or of NAT mappings gets
//!   [`InsertError::SourceFlowLimit`] or [`InsertError::SourcePortLimit`] for a new flow; its
//!   existing flows, and every other host, carry on. Accounting is O(1) per creation and
//!   removal and never on the packet fast path.
//! - **Embryonic timeout**: a flow opened from the inside and never answered expires after
//!   [`Timeouts::tcp_embryonic`] (120 s) or [`Timeouts::udp_embryonic`] (30 s) instead of 4 or
//!   5 minutes. Its NAT port is free again at once (nothing was ever received on it; ports of
//!   answered mappings still cool down 120 s).
//! - **Early drop**: when the table is full (or at [`Limits::high_water`]), a new flow first
//!   drops the oldest unanswered flow of the host with the most of them — O(1) amortised, never
//!   an answered flow, and it only fails when no unanswered flow is left
//!   ([`InsertError::TableFull`]).
//!
//! What a packet path does with it:
//!
//! - An insert error for which [`InsertError::is_resource_limit`] holds (`TableFull`,
//!   `PortsExhausted`, `SourceFlowLimit`, `SourcePortLimit`) is a counted drop answered with
//!   ICMP destination unreachable, code 13 (communication administratively prohibited), to the
//!   sender (RFC 5508 REQ-8) — the client's connection attempt fails at once instead of
//!   retrying. Rate-limit those
//!   ICMP errors: the sender may be the flooder. Every variant names its cause; map each to
//!   its own drop reason.
//! - The counters are in [`TableStats`]: `refused_source_flows`, `refused_source_ports`,
//!   `refused_full`, `ports_exhausted`, `early_dropped`, `embryonic_expired`.
//! - [`FlowTable::limits`] gives the limits in force, [`FlowTable::source_usage`] and
//!   [`FlowTable::sources`] what each host holds (flows, ports, unanswered flows): the heaviest
//!   hosts, for the control plane.
//! - Nothing changes on the packet fast path ([`FlowTable::established`], [`FlowTable::touch`]:
//!   the same instructions as before). A flow whose first answer takes it is taken off its
//!   host's unanswered flows when the table next looks at it — its expiry check, within the
//!   embryonic timeout — or when early drop passes over it (which never drops an answered flow).
//! - Limits are per table, so per worker: a daemon setting a per-host limit for the whole
//!   router divides it by the number of workers, as it does `max_flows`.
//!
//! ```
//! use altroute_flow::*;
//! use std::net::Ipv4Addr;
//!
//! let mut table = FlowTable::new(TableConfig {
//!     limits: Limits { flows_per_source: Some(2), ..Limits::default() },
//!     gateways: vec![Gateway::new("dsl", Some(Ipv4Addr::new(192, 0, 2, 1).into()))],
//!     ..TableConfig::default()
//! })
//! .unwrap();
//! let syn = |p| FlowKey::v4(Ipv4Addr::new(10, 0, 0, 66), Ipv4Addr::new(203, 0, 113, 10), proto::TCP, p, 80);
//! let now = Time::from_secs(1);
//! for p in [1000, 1001] {
//!     table.insert(syn(p), now, true, tcp::flags::SYN).unwrap();
//! }
//! let e = table.insert(syn(1002), now, true, tcp::flags::SYN).unwrap_err();
//! assert!(matches!(e, InsertError::SourceFlowLimit { limit: 2, .. }));
//! assert!(e.is_resource_limit()); // drop, count, ICMP 3/13
//! assert_eq!(table.stats().refused_source_flows, 1);
//! assert_eq!(table.source_usage(Ipv4Addr::new(10, 0, 0, 66).into()).unwrap().unanswered, 2);
//! ```
//!
//! ## Threads
//!
//! A table is owned by one thread. Run one per worker and steer packets so that both directions of
//! a connection reach the same worker: by the source port on the LAN side and by the destination
//! port on the WAN side, through [`PortPartition::owner`] (the NAT only hands out ports the worker
//! owns, and keeps the source port when it can).

mod failure;
mod gateway;
mod hash;
pub mod key;
mod nat;
pub mod policy;
mod prefix;
mod table;
pub mod tcp;
mod time;
mod timeouts;

pub use failure::FailureWindow;
pub use gateway::{Gateway, GatewayId, GatewaySet, GatewayState, MAX_GATEWAYS};
pub use key::{Family, FlowKey, proto};
pub use nat::PortPartition;
pub use policy::{
    Choice, FailureRedirect, Mode, NoGateway, OnDown, Overrides, Pin, Policy, Reason, Rule, Sticky,
};
pub use prefix::Prefix;
pub use table::{
    Dir, DownAction, Explanation, Failback, FlowCounters, FlowId, FlowInfo, FlowRef, FlowTable,
    Hit, InsertError, Limits, MAX_FLOWS, NatConfig, PendingLookup, ReasonKind, SCRATCH,
    SourceUsage, TableConfig, TableStats, Update,
};
pub use tcp::TcpState;
pub use time::Time;
pub use timeouts::Timeouts;

/// A configuration the table cannot work with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A timeout below its RFC floor.
    #[error("timeout {field} = {value} s is below the minimum of {min} s ({rule})")]
    TimeoutTooShort {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u32,
        /// The floor.
        min: u32,
        /// The rule that sets it.
        rule: &'static str,
    },
    /// A prefix that does not parse or whose length is too long.
    #[error("bad prefix {0:?}: expected ADDRESS/LENGTH, e.g. 10.0.0.0/24")]
    BadPrefix(String),
    /// `max_flows` out of range.
    #[error("max_flows = {max} is out of range 1..={limit}")]
    TooManyFlows {
        /// The value given.
        max: u32,
        /// The limit.
        limit: u32,
    },
    /// Too many gateways or NAT addresses.
    #[error("{count} gateways or NAT addresses: at most {limit}")]
    TooManyGateways {
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An empty or zero-based port range.
    #[error("NAT port range {lo}-{hi} is empty or includes port 0")]
    BadPortRange {
        /// Low end.
        lo: u16,
        /// High end.
        hi: u16,
    },
    /// A bad worker partition.
    #[error("bad port partition: block {block}, worker {worker} of {workers}")]
    BadPartition {
        /// Block size.
        block: u16,
        /// Workers.
        workers: u16,
        /// This worker.
        worker: u16,
    },
    /// A NAT address the table cannot translate to (IPv6: routed, not translated).
    #[error("NAT address {0} is not IPv4")]
    NatAddress(core::net::IpAddr),
    /// A per-source limit or the high-water mark out of range ([`Limits`]).
    #[error("limits.{field} = {value} is out of range 1..={max}")]
    BadLimit {
        /// The field.
        field: &'static str,
        /// The value given.
        value: u32,
        /// The largest value allowed.
        max: u32,
    },
}
