//! The router's YAML configuration: typed structs, defaults, loading with precise error locations,
//! and a `validate()` pass for cross-references and value ranges.
//!
//! # YAML library
//!
//! Parsing uses [`serde_norway`], a maintained fork of `serde_yaml` with the same API.
//! `serde_yaml` itself is archived upstream (0.9.34+deprecated); `serde_yml` declares itself
//! deprecated and `noyalib` is 0.0.x. serde_norway 0.9.42 builds here and round-trips the same
//! structs, and its errors carry a line/column ([`serde_norway::Error::location`]). Key paths of
//! parse errors come from [`serde_path_to_error`]; lines of `validate()` errors come from
//! [`locate::KeyLines`], a small indentation-aware scanner of the YAML text (the `Value` tree
//! has no spans).
//!
//! Every error is a [`Diagnostic`]: WHAT is wrong, WHERE (key path such as `gateways[1].port`)
//! and the line/column in the file.
//!
//! # Schema
//!
//! Unknown keys are errors everywhere (`deny_unknown_fields`). Times are in the unit their name
//! says (`_ms`, `_s`, plain seconds for `nat.timeouts`).
//!
//! ## `ports:` (required; at least one `lan` and one `wan`)
//! | key | meaning | default |
//! |---|---|---|
//! | `name` | unique port name referenced by gateways | required |
//! | `role` | `lan` or `wan` | required |
//! | `interface` | Linux interface the datapath opens (≤ 15 chars) | required |
//! | `vlan` | 802.1Q tag handled in userspace, 1..=4094 | untagged |
//! | `addresses` | the router's own addresses on this port, as CIDR (`192.0.2.1/24`). The kernel must NOT have them (`altroute setup`). A `wan` port needs one IPv4 address (NAT source); a `lan` port needs one IPv4 address (the clients' gateway). | required |
//! | `mac` | the port's MAC | read from the interface |
//! | `mtu` | 576..=9216 | 1500 |
//!
//! ## `gateways:` (required; at least one enabled)
//! | key | meaning | default |
//! |---|---|---|
//! | `name` | unique gateway name | required |
//! | `port` | name of a `wan` port | required |
//! | `via` | next-hop IPv4; must be inside one of the port's subnets | required |
//! | `mac` | next-hop MAC | resolved by ARP |
//! | `weight` | load-balance weight, > 0 (4 and 1 give a 4:1 split) | 1 |
//! | `tier` | failover tier 0..=255, lower is preferred (used by `policy.mode: failover`) | 0 |
//! | `enabled` | `false` keeps the gateway configured but unused | true |
//! | `comment` | free text | none |
//! | `nat_address` | IPv4 source for NAT; must be one of the port's addresses | the port's first IPv4 address |
//! | `probe.targets` | IPv4 addresses pinged through this gateway | the gateway (`via`) |
//! | `probe.interval_ms` | one probe round (one echo per target) every… (≥ 10) | 500 |
//! | `probe.timeout_ms` | a reply later than this counts as lost (> 0) | 1000 |
//! | `probe.down.loss_pct` / `rtt_ms` / `rounds` | a target fails when, over the last `rounds` rounds, loss ≥ `loss_pct` or (if set) mean RTT ≥ `rtt_ms` | 50 / none / 4 |
//! | `probe.up.loss_pct` / `rtt_ms` / `rounds` | a failed target recovers when, over the last `rounds` rounds, loss ≤ `loss_pct` and (if set) mean RTT ≤ `rtt_ms`; must be stricter than `down` | 0 / none / 6 |
//! | `probe.quorum` | the gateway is up while at least this many targets are healthy (1..=number of targets) | 1 |
//! | `probe.failback_stable_ms` | a recovered gateway must stay up this long before it is preferred again | 10000 |
//! | `hooks.up` / `hooks.down` | shell command run (`sh -c`) on state change; env `ALTROUTE_GATEWAY`, `ALTROUTE_STATE` | none |
//! | `hooks.timeout_ms` | a hook still running after this is killed | 5000 |
//!
//! ## `policy:`
//! | key | meaning | default |
//! |---|---|---|
//! | `mode` | `load-balance` (every usable gateway, in proportion to its weight), `failover` (only the best tier that has a usable gateway; weights apply inside it) or `manual` (every new connection takes the `force` gateway, whatever its probes say: nothing moves by itself; needs `force`) | `load-balance` |
//! | `sticky` | what the hash keeps on one gateway: `flow` (5-tuple) or `source` (client address) | `flow` |
//! | `syn_retry.enabled` / `threshold` | when a client repeats a TCP SYN more than `threshold` (1..=255) times, move that connection attempt to the next gateway (rotating) | true / 2 |
//! | `failure_redirect.enabled` / `window_s` / `min_samples` / `failed_ratio` | when at least `min_samples` new connections through a gateway ended in the last `window_s` seconds and the share that failed is ≥ `failed_ratio`, new connections avoid it | true / 60 / 10 / 0.5 |
//! | `on_gateway_down` | flows of a dead gateway: `reset` (answer them with TCP RST / ICMP prohibited so clients reconnect) or `wait` (keep the mapping; packets are dropped until the gateway returns or the flow times out) | `reset` |
//! | `failback` | when a preferred gateway comes back: `stay` (existing flows stay where they are; new ones go back) or `move` (flows on a backup are reset so clients reconnect via the preferred one) | `stay` |
//! | `force` | a gateway name: every new connection uses it (before rules and pins) while it is up or degraded; while it is down or disabled the other gateways take new connections as the mode says, and they come back to it when it recovers (in `manual` mode: whatever its probes say) | none |
//!
//! ## `rules:` (ordered; first match wins; before pins and the policy)
//! `name` (unique), `src` (CIDR), `dst` (CIDR), `proto` (`tcp|udp|icmp|any`, default `any`),
//! `dport` (`443` or `"8000-8100"`; needs `proto: tcp` or `udp`), `gateway` (name), `on_down`
//! (`fallback`: use the policy when the gateway is down; `reject`: refuse the connection with
//! ICMP prohibited; default `fallback`). At least one of `src`, `dst`, `dport`, or a `proto`
//! other than `any` is required.
//!
//! ## `pins:`
//! `client` (CIDR), `gateway` (name): connections from these clients use that gateway while it is
//! up (per-machine gateway choice). Rules take precedence over pins.
//!
//! ## `port_forwards:`
//! `proto` (`tcp|udp`), `port` (the public port), `to` (`"IP:PORT"` inside a LAN subnet),
//! `gateways` (names whose NAT address accepts the forward; default all). Replies leave through the
//! gateway the connection came in on.
//!
//! ## `nat:`
//! `port_range: [lo, hi]` (default `[1024, 65535]`); `port_block` (default 64: NAT ports are
//! handed to workers in blocks of this many; the range must hold at least one block per worker);
//! `timeouts` in seconds, each with the floor the flow table enforces: `tcp_established` 7440
//! (≥ 7440, RFC 5382 REQ-5), `tcp_transitory` 240 (≥ 240, RFC 5382 REQ-5), `udp` 300 (≥ 120,
//! RFC 4787 REQ-5), `icmp` 60 (≥ 60, RFC 5508 REQ-1), `tcp_syn_inbound` 6 (≥ 6, RFC 5382 REQ-4),
//! `tcp_embryonic` 120 and `udp_embryonic` 30 (≥ 10: flows never answered).
//!
//! ## `limits:`
//! `max_flows` (1..=16777216, default 1048576), `workers` (default: one per CPU, at least 2),
//! `flows_per_host` and `ports_per_host` (one LAN host's share, all workers together; default: an
//! eighth of each worker's table and a quarter of its NAT ports). A host over them, or a full
//! table, is answered with ICMP "communication administratively prohibited" (RFC 5508).
//!
//! At most 64 gateways (the flow table's gateway set is a 64-bit mask).
//!
//! ## `private_destinations:`
//! CIDRs never sent out of a WAN (dropped with ICMP unreachable). Default: 10/8, 172.16/12,
//! 192.168/16, 127/8, 169.254/16, 224/4, 240/4, 0/8, 100.64/10. The documentation ranges
//! (192.0.2/24, 198.51.100/24, 203.0.113/24) are deliberately not in the default.
//!
//! ## `datapath:`
//! `backend` (`af-packet|pnet`, default `af-packet`; `pnet`: a simple, slower fallback through
//! `pnet_datalink`, one `recvfrom`/`sendto` per frame: one worker whatever `limits.workers` says
//! (pnet cannot steer both directions of a NAT flow to one worker), no rings, no kernel offload;
//! it needs `vnet_hdr: false`, untagged ports (no `vlan`: pnet cannot see the tags the kernel
//! strips) and peers that send finished checksums, as real NICs deliver them: a veth peer needs
//! its TX checksum offload off), `vnet_hdr` (default true: receive GSO
//! super-frames with their offload metadata), `rx_ring` (`v2|v2-spill|v3`, default `v2`: TPACKET_V2,
//! with `vnet_hdr` every slot sized for a 64 KiB super-frame; `v2-spill`: MTU-sized slots, larger
//! GSO super-frames spilled to the socket queue and read whole, many more small frames per MiB
//! but measured ~0.8x TCP single-stream throughput; `v3`: TPACKET_V3 blocks, up to 1 ms added
//! latency when quiet), `ring_frames` (RX ring slots per socket, a power of two; default 128 for
//! `v2` with `vnet_hdr`, 4096 for `v2-spill` with `vnet_hdr`, else 1024; ignored by `v3`),
//! `batch` (1..=1024, default 64),
//! `fanout` (`cbpf|handoff`, default `cbpf`), `verify_checksums` (default true), `udp_coalesce`
//! (default true; vnet mode only: consecutive small datagrams of one flow in a batch, atomic
//! IPv4 with DF and equal sizes, leave as one UDP GSO frame that the kernel segments back into
//! the same datagrams; only their IPv4 identification is renumbered), `offload` (`off|tc`,
//! default `tc`: established TCP and answered UDP flows that carried a few packets are forwarded
//! by a tc (tcx ingress) eBPF program in the kernel, GSO super-frames whole and uncopied; their
//! frames never reach the IPv4/ARP/IPv6-bound AF_PACKET sockets (an eBPF socket filter keeps
//! them out of the `ETH_P_ALL` tap that a link keeps when it carries a VLAN port or a port MAC
//! other than the interface's, and every link with `--kernel-ingress-drop`); the flow table stays the
//! authority; falls back to plain AF_PACKET with a warning if the programs cannot be loaded).
//!
//! ## `logging:`
//! `level`: `off|error|warn|info|debug|trace` (default `info`; `RUST_LOG` overrides; a reload
//! changes it).
//!
//! ## `api:`
//! The HTTP API, its web page (`/`) and Prometheus metrics (`/metrics`): `socket` (a Unix
//! socket, root only: mode 0600, its directory created; default `/run/altroute/altroute.sock`;
//! `altroute run --api-socket` overrides it), `listen` (`IP:PORT`: a TCP address as well;
//! default none), `token_file` (a file whose first line is the bearer token TCP clients send as
//! `Authorization: Bearer TOKEN`; required when `listen` is not a loopback address, read again
//! on reload; default none: a loopback `listen` then needs no token). The Unix socket never
//! asks for the token (its mode guards it).

mod api;
mod datapath;
mod diagnostic;
pub mod locate;
mod nat;
mod policy;
mod ports;
pub mod types;
mod validate;

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use api::{Api, DEFAULT_SOCKET};
pub use datapath::{Backend, Datapath, Fanout, Logging, Offload, RxRing};
pub use diagnostic::{ConfigError, Diagnostic};
use diagnostic::{strip_location, strip_path};
pub use locate::{KeyLines, Pos};
pub use nat::{Limits, Nat, Timeouts, default_private};
pub use policy::{
    Failback, FailureRedirect, Mode, OnDown, OnGatewayDown, Pin, Policy, PortForward, Proto, Rule,
    Sticky, SynRetry,
};
pub use ports::{Gateway, Hooks, Port, Probe, Role, Threshold};
pub use types::{Cidr, Mac, PortRange, SocketV4, ValueError};
pub use validate::Issue;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Router ports (LAN and WAN).
    pub ports: Vec<Port>,
    /// Upstream gateways.
    pub gateways: Vec<Gateway>,
    /// Gateway selection policy.
    #[serde(default)]
    pub policy: Policy,
    /// Ordered policy-routing rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Per-client gateway pins.
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Inbound port forwards.
    #[serde(default)]
    pub port_forwards: Vec<PortForward>,
    /// NAT settings.
    #[serde(default)]
    pub nat: Nat,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Destinations never sent out of a WAN.
    #[serde(default = "default_private")]
    pub private_destinations: Vec<Cidr>,
    /// Packet I/O settings.
    #[serde(default)]
    pub datapath: Datapath,
    /// Logging settings.
    #[serde(default)]
    pub logging: Logging,
    /// The HTTP API.
    #[serde(default)]
    pub api: Api,
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            diagnostics: vec![Diagnostic {
                path: ".".into(),
                pos: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::from_str_named(&text, &file)
    }

    /// Parses and validates configuration text; `name` is used in error messages.
    pub fn from_str_named(text: &str, name: &str) -> Result<Config, ConfigError> {
        let lines = KeyLines::scan(text);
        let de = serde_norway::Deserializer::from_str(text);
        let cfg: Config = match serde_path_to_error::deserialize(de) {
            Ok(c) => c,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.inner();
                let pos = inner
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        column: l.column(),
                    })
                    .or_else(|| lines.find(&path));
                let message = strip_path(&strip_location(&inner.to_string()), &path);
                return Err(ConfigError {
                    file: name.to_string(),
                    diagnostics: vec![Diagnostic { path, pos, message }],
                });
            }
        };
        match cfg.validate() {
            Ok(()) => Ok(cfg),
            Err(issues) => {
                let mut diagnostics: Vec<Diagnostic> = issues
                    .into_iter()
                    .map(|i| Diagnostic {
                        pos: lines.find(&i.path),
                        path: i.path,
                        message: i.message,
                    })
                    .collect();
                diagnostics.sort_by_key(|d| d.pos.map_or((usize::MAX, 0), |p| (p.line, p.column)));
                Err(ConfigError {
                    file: name.to_string(),
                    diagnostics,
                })
            }
        }
    }

    /// Checks cross-references and values; every problem found, each with its key path.
    pub fn validate(&self) -> Result<(), Vec<Issue>> {
        validate::validate(self)
    }

    /// Looks up a port by name.
    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Looks up a gateway by name.
    pub fn gateway(&self, name: &str) -> Option<&Gateway> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// Index of a gateway in `gateways` (the id the flow table and pipeline use).
    pub fn gateway_index(&self, name: &str) -> Option<usize> {
        self.gateways.iter().position(|g| g.name == name)
    }

    /// The NAT source address of a gateway, with the default (port's first IPv4 address) applied.
    pub fn nat_address(&self, gw: &Gateway) -> Option<Ipv4Addr> {
        gw.nat_address
            .or_else(|| self.port(&gw.port).and_then(Port::first_v4))
    }

    /// Short summary used by `check-config`.
    pub fn summary(&self) -> String {
        let lan = self.ports.iter().filter(|p| p.role == Role::Lan).count();
        let wan = self.ports.len() - lan;
        let enabled = self.gateways.iter().filter(|g| g.enabled).count();
        format!(
            "{} ports ({lan} lan, {wan} wan), {} gateways ({enabled} enabled), {} rules, {} pins, {} port forwards, policy {}",
            self.ports.len(),
            self.gateways.len(),
            self.rules.len(),
            self.pins.len(),
            self.port_forwards.len(),
            self.policy.mode.name()
        )
    }
}

/// `true`, for `#[serde(default = "super::yes")]` in the section modules.
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests;
