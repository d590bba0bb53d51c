//! The JSON documents of the API, shared by the daemon (which builds them) and the CLI (which
//! reads them back to print tables). Every counter is 64-bit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One gateway: `GET /api/gateways` returns a list of these.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    /// Its name.
    pub name: String,
    /// The state in force: `up`, `degraded`, `down`, `disabled` or `forced` (held usable by
    /// `manual` mode whatever the probes say).
    pub state: String,
    /// Why it is in that state (the last transition's reason).
    pub reason: String,
    /// When it entered that state, milliseconds of router time (see `uptime_s` in the status).
    pub since_ms: u64,
    /// What the probes alone say.
    pub probed: String,
    /// `gateways[].enabled` in force (the file's, or the operator's `enable` / `disable`).
    pub enabled: bool,
    /// Whether this is the forced gateway (`policy.force`): new connections go here while it
    /// is usable.
    pub forced: bool,
    /// Load-balance weight.
    pub weight: u32,
    /// Failover tier.
    pub tier: u32,
    /// Probe targets.
    pub targets: Vec<String>,
    /// Per target: failed or not.
    pub target_failed: Vec<bool>,
    /// Mean RTT of the answered probes over the recent rounds, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Probe loss over the recent rounds, in percent.
    pub loss_pct: f64,
    /// Probes sent (one per target and round) since start.
    pub probes_sent: u64,
    /// Probes that went unanswered since start.
    pub probes_lost: u64,
    /// Live connections (flows) through it now.
    pub flows: u64,
    /// TCP connections opened through it over the last `window_s` seconds.
    pub opened: u64,
    /// Of those, the ones that failed (SYN retried or reset).
    pub failed: u64,
    /// The window of `opened` and `failed` (`policy.failure_redirect.window_s`, 60 by default).
    pub window_s: u64,
    /// Packets sent out through it (from the LAN).
    pub out_packets: u64,
    /// Bytes sent out through it.
    pub out_bytes: u64,
    /// Packets received back through it.
    pub in_packets: u64,
    /// Bytes received back through it.
    pub in_bytes: u64,
    /// The next hop's MAC, once known.
    pub mac: Option<String>,
}

/// A gateway state change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// When, milliseconds of router time.
    pub at_ms: u64,
    /// Which gateway.
    pub gateway: String,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// A per-client pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The client prefix (a single host for the API's pins).
    pub client: String,
    /// The gateway.
    pub gateway: String,
}

/// Flow-table totals over every worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Flows created.
    pub created: u64,
    /// Flows expired by timeout.
    pub expired: u64,
    /// Flows removed (link events, resets).
    pub removed: u64,
    /// New flows refused because the table was full.
    pub refused_full: u64,
    /// Unanswered flows evicted early to make room.
    pub evicted: u64,
    /// New flows refused for lack of NAT ports.
    pub ports_exhausted: u64,
    /// New flows refused because no gateway could take them.
    pub no_gateway: u64,
    /// SYN-retry rotations.
    pub syn_rotations: u64,
}

/// The kernel offload of established flows, every worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offload {
    /// Flows offloaded.
    pub installed: u64,
    /// Flows taken back.
    pub removed: u64,
    /// Flows offloaded now.
    pub active: u64,
    /// Frames the kernel forwarded.
    pub kernel_frames: u64,
    /// Bytes the kernel forwarded.
    pub kernel_bytes: u64,
    /// Map operations that failed.
    pub errors: u64,
}

/// One worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Worker id.
    pub worker: u16,
    /// Live flows in its table.
    pub flows: u64,
    /// Frames received (all links).
    pub rx_frames: u64,
    /// Frames sent (all links).
    pub tx_frames: u64,
    /// Frames forwarded by the established-flow fast path.
    pub fast_path_frames: u64,
    /// Frames dropped (all reasons).
    pub drops: u64,
    /// Frames the kernel dropped because its receive ring was full.
    pub ring_drops: u64,
    /// Transmissions that failed.
    pub tx_failed: u64,
}

/// `GET /api/status`: the router as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Seconds since the router started (router time).
    pub uptime_s: f64,
    /// The configuration file.
    pub config_file: String,
    /// Worker threads.
    pub workers: u16,
    /// `policy.mode` in force.
    pub mode: String,
    /// `policy.force` in force.
    pub forced: Option<String>,
    /// Live flows, every worker.
    pub flows: u64,
    /// `limits.max_flows`.
    pub max_flows: u64,
    /// Flow-table totals.
    pub table: Table,
    /// Drops by reason (the reasons that counted any).
    pub drops: BTreeMap<String, u64>,
    /// Kernel offload.
    pub offload: Offload,
    /// Per worker.
    pub worker_stats: Vec<Worker>,
    /// Pins in force.
    pub pins: Vec<Pin>,
    /// The latest gateway transitions, oldest first.
    pub transitions: Vec<Transition>,
    /// The last reload: when (router time, ms) and its outcome.
    pub last_reload: Option<String>,
}

/// One flow, as `GET /api/flows` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// The worker holding it.
    pub worker: u16,
    /// `tcp`, `udp`, `icmp` or the protocol number.
    pub proto: String,
    /// The inside host's address (the opener's, for an outbound flow).
    pub src: String,
    /// Its port (or ICMP id).
    pub sport: u16,
    /// The remote address.
    pub dst: String,
    /// The remote port.
    pub dport: u16,
    /// The gateway, if it goes through one.
    pub gateway: Option<String>,
    /// How the gateway was chosen (`Policy`, `Forced`, `Rule`, `Pin`, `SynRetry`, ...).
    pub reason: String,
    /// The external address and port, if translated.
    pub nat: Option<String>,
    /// TCP state.
    pub tcp: String,
    /// Whether the remote side answered.
    pub replied: bool,
    /// Opened from outside (port forward).
    pub inbound: bool,
    /// Seconds since it was created.
    pub age_s: u64,
    /// Seconds since its last packet.
    pub idle_s: u64,
    /// Packets from the inside host.
    pub out_packets: u64,
    /// Bytes from the inside host.
    pub out_bytes: u64,
    /// Packets from the remote host.
    pub in_packets: u64,
    /// Bytes from the remote host.
    pub in_bytes: u64,
}

/// `GET /api/flows`: one page of the flows that match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowPage {
    /// The page (from 0).
    pub page: usize,
    /// Flows per page.
    pub per_page: usize,
    /// Flows that match, every page.
    pub total: u64,
    /// This page's.
    pub flows: Vec<Flow>,
}

/// One LAN client, as `GET /api/clients` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Client {
    /// Its address.
    pub ip: String,
    /// Its live flows.
    pub flows: u64,
    /// Its flows per gateway.
    pub gateways: BTreeMap<String, u64>,
    /// The gateway it is pinned to, if any (a pin of this host alone).
    pub pinned: Option<String>,
}

/// `GET /api/clients`: the clients that have flows, and the pins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clients {
    /// Clients with live flows (and pinned hosts without any), by address.
    pub clients: Vec<Client>,
    /// Every pin in force (prefixes too).
    pub pins: Vec<Pin>,
    /// The gateways a client can be pinned to.
    pub gateways: Vec<String>,
}

/// `GET /api/explain`: which gateway a flow takes, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    /// In words.
    pub text: String,
    /// The live flow the 5-tuple belongs to, if any.
    pub flow: Option<Flow>,
    /// The gateway a new flow with this 5-tuple would take now, if any.
    pub would_take: Option<String>,
    /// Why (or why it would be refused).
    pub why: String,
}

/// The answer of a command (`POST`, `PUT`, `DELETE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    /// What was done.
    pub message: String,
}

/// A configuration problem, as `check-config` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Key path such as `gateways[1].port`.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Error {
    /// What went wrong.
    pub error: String,
    /// The configuration's problems (a refused reload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// `POST /api/mode`'s body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModeBody {
    /// `load-balance`, `failover` or `manual`.
    pub mode: String,
}

/// `PUT /api/clients/{ip}`'s body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinBody {
    /// The gateway.
    pub gateway: String,
}
