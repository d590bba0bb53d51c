//! `altroute run --config FILE`: the router. In steps ([`Args::run`]): load the configuration and
//! check that the kernel is silent on the ports; resolve the datapath [`Plan`] (config, flags,
//! backend limits); inspect the links; load the kernel offload; open one port per link and
//! worker (AF_PACKET sockets bound to IPv4, ARP and IPv6, or one `ETH_P_ALL` tap on a VLAN trunk;
//! fanout-steered so both directions of a connection reach the worker that owns it) and build
//! each worker's pipeline; drop the capabilities only start-up needed; start the API
//! ([`altroute::api`]) and the workers (and tell systemd, when under it, that the router is
//! ready); run the control loop until SIGINT or SIGTERM (SIGHUP reloads the configuration); join
//! the workers and log their counters.
//!
//! With `datapath.backend: pnet` one worker reads and writes every link through pnet
//! ([`altroute_io::PnetPort`]): no rings, no vnet header, no kernel offload.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use altroute::api::{Api, ApiSetup};
use altroute::config::{self, Config};
use altroute::worker::{self, FromWorker, ToWorker, WorkerSetup, WorkerStats};
use altroute::{build, control, kernel};
use altroute_flow::FlowTable;
use altroute_io::{
    Fanout, FanoutMode, IoError, PnetPort, Port, PortConfig, RxBind, RxMode, Side, Steering,
};
use altroute_packet::pipeline::{Context, PipelineConfig};
use altroute_packet::wire::MacAddr;
use anyhow::{Context as _, anyhow, bail};
use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};

/// Arguments of `run`.
#[derive(clap::Args)]
pub struct Args {
    /// The YAML configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Worker threads (default: `limits.workers`, else one per CPU).
    #[arg(long)]
    workers: Option<u16>,
    /// Start even if the kernel is not silent on the ports (it will answer and forward beside us).
    #[arg(long)]
    skip_kernel_check: bool,
    /// Enter this network namespace (by name, as `ip netns` knows it) before opening sockets.
    #[arg(long)]
    netns: Option<String>,
    /// Write a JSON status document here every second (the API's `GET /api/status` and
    /// `/api/gateways` say more).
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// The API's Unix socket (default: `api.socket`; with `--netns NS` and the default
    /// `api.socket`, `/run/altroute/NS.sock`, so routers in several namespaces do not collide).
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// Log a status line every this many seconds.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Override `datapath.fanout`: `cbpf` (the kernel steers each frame to the worker owning its
    /// NAT port block) or `handoff` (kernel hash fanout; a worker queues frames it does not own
    /// to their owner).
    #[arg(long, value_parser = ["cbpf", "handoff"])]
    fanout: Option<String>,
    /// Pin worker i to CPU `list[i % len]`: `auto` (the CPUs this process may use, in order),
    /// `none`, or a comma-separated list such as `1,0`.
    #[arg(long, default_value = "none")]
    pin: String,
    /// Keep polling the rings this many microseconds after the last frame before sleeping in
    /// poll() (busy polling; costs CPU when idle-ish).
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// PACKET_QDISC_BYPASS on every socket: transmit straight to the device, no qdisc.
    #[arg(long)]
    qdisc_bypass: bool,
    /// Override `datapath.ring_frames` (RX ring slots per socket).
    #[arg(long)]
    ring_frames: Option<u32>,
    /// Turn off `datapath.udp_coalesce` (merging small datagrams of one flow into UDP GSO
    /// frames at transmit).
    #[arg(long)]
    no_udp_coalesce: bool,
    /// Override `datapath.offload`: `tc` (established TCP and answered UDP flows forwarded by a
    /// tc eBPF program in the kernel) or `off`.
    #[arg(long, value_parser = ["off", "tc"])]
    offload: Option<String>,
    /// Override `datapath.batch` (frames per receive batch).
    #[arg(long)]
    batch: Option<u16>,
    /// Socket send buffer in KiB (SO_SNDBUFFORCE); default 4096.
    #[arg(long)]
    sndbuf_kib: Option<usize>,
    /// Drop every received frame at the netdev ingress hook of the router's ports (an nftables
    /// table, removed on exit), so the silent kernel no longer parses and routes (then drops) each
    /// frame itself. EtherType-bound packet sockets get frames after that hook, so with it every
    /// link receives through one ETH_P_ALL tap per worker instead (taps see each frame before
    /// the hook; with the offload, through its socket filter). Needs `nft`.
    #[arg(long)]
    kernel_ingress_drop: bool,
}

/// An nftables netdev ingress chain dropping everything on the router's ports, removed when
/// dropped. ETH_P_ALL taps see a frame before the netdev ingress hook; EtherType-bound packet
/// sockets and the kernel's IP stack after it.
struct IngressDrop {
    table: Option<String>,
}

impl IngressDrop {
    fn nft(script: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running nft")?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(script.as_bytes()).context("writing to nft")?;
        }
        let out = child.wait_with_output().context("running nft")?;
        if !out.status.success() {
            bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    fn install(links: &[String]) -> anyhow::Result<IngressDrop> {
        let table = format!("altroute_silent_{}", std::process::id());
        let devs = links
            .iter()
            .map(|l| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self::nft(&format!(
            "table netdev {table} {{\n  chain in {{\n    type filter hook ingress devices = {{ {devs} }} priority 0; policy drop;\n  }}\n}}\n"
        ))?;
        Ok(IngressDrop { table: Some(table) })
    }
}

impl Drop for IngressDrop {
    fn drop(&mut self) {
        if let Some(t) = self.table.take() {
            let _ = Self::nft(&format!("delete table netdev {t}\n"));
        }
    }
}

/// The loaded kernel offload: programs, map and the tcx attachments (detached on drop).
struct KernelOffload {
    progs: altroute_io::ebpf::Offload,
    _links: Vec<altroute_io::ebpf::TcxLink>,
    ifindex: Vec<u32>,
}

/// Loads the offload programs and attaches the tc program to every link (`ifindex[i]` is the
/// interface index of `links[i]`).
fn load_offload(links: &[String], ifindex: &[u32]) -> anyhow::Result<KernelOffload> {
    let mut progs = altroute_io::ebpf::Offload::load(OFFLOAD_MAP_ENTRIES)
        .context("loading the eBPF programs")?;
    let mut attached = Vec::new();
    for l in links {
        attached.push(
            progs
                .attach_tc(l)
                .with_context(|| format!("attaching the tc program to {l}"))?,
        );
    }
    Ok(KernelOffload {
        progs,
        _links: attached,
        ifindex: ifindex.to_vec(),
    })
}

/// Drops the capabilities only start-up needed (see [`altroute::caps`]): runs before any other
/// thread starts, since each thread has its own sets. Keeps CAP_BPF only where this kernel
/// refuses the offload's map updates without it (tried on a key no frame has: interface 0).
fn drop_capabilities(offload: Option<&KernelOffload>) {
    use altroute::caps::{self, Capability};
    let mut keep = caps::RUNTIME.to_vec();
    let result = (|| -> anyhow::Result<caps::Dropped> {
        if let Some(o) = offload {
            let mut map = o.progs.map.try_clone().context("sharing the offload map")?;
            let nothing = altroute_io::ebpf::OffloadKey {
                ifindex: 0,
                saddr: std::net::Ipv4Addr::UNSPECIFIED,
                daddr: std::net::Ipv4Addr::UNSPECIFIED,
                sport: 0,
                dport: 0,
                proto: 0,
            };
            if !caps::works_without(Capability::CAP_BPF, || map.remove(&nothing).is_ok())? {
                keep.push(Capability::CAP_BPF);
            }
        }
        Ok(caps::drop_all_but(&keep)?)
    })();
    match result {
        Ok(d) => info!("{d}"),
        Err(e) => warn!("keeping every capability: {e:#}"),
    }
}

/// How each link's sockets are bound (`link_mac[i]`: the MAC of link `i`). EtherType-bound
/// sockets (IPv4, ARP, IPv6) get frames after tc ingress, so frames the offload redirects never
/// reach them; but by then the kernel has erased VLAN tags, they only get frames for the
/// interface's own MAC, and the nftables drop of `--kernel-ingress-drop` has run. A link with a
/// VLAN port, a port MAC other than the interface's, or that drop keeps one `ETH_P_ALL` tap
/// instead (with the offload's socket filter).
fn link_binds(
    cfg: &Config,
    ports: &[altroute_packet::pipeline::PortSpec],
    link_mac: &[Option<MacAddr>],
    ingress_drop: bool,
) -> Vec<RxBind> {
    (0..link_mac.len())
        .map(|li| {
            let tap = ingress_drop
                || cfg.ports.iter().zip(ports).any(|(c, p)| {
                    usize::from(p.link) == li
                        && (c.vlan.is_some() || link_mac.get(li) != Some(&Some(p.mac)))
                });
            if tap { RxBind::All } else { RxBind::ip() }
        })
        .collect()
}

/// Fanout group ids each link reserves: its sockets join one group per bound EtherType
/// (`RxBind::ip` binds three).
const GROUPS_PER_LINK: u16 = 4;

/// Map entries (two per offloaded flow).
const OFFLOAD_MAP_ENTRIES: u32 = 1 << 17;

/// Ask for huge pages behind a worker's flow table (at 64k–1M flows nearly every lookup misses
/// the TLB on 4 KiB pages: measured 1.3x faster at 1M flows in `bench/RESULTS.md`). Only the
/// whole 2 MiB pages inside each array can be advised: `altroute_io::mem::HugePageAlloc` would
/// place them all, but as the daemon's global allocator it made `coalesce_lab` lose 4–10 % of
/// its datagram bursts (3 runs of 3; cause not found yet), so the daemon does not use it. Advice
/// only: where the kernel cannot follow it the table works the same, a little slower.
fn back_with_huge_pages(table: &FlowTable, worker: u16) {
    let (mut eligible, mut collapsed) = (0usize, 0usize);
    for (addr, len) in table.memory_regions() {
        match altroute_io::mem::prefer_huge_pages(addr, len) {
            Ok(a) => {
                eligible += a.eligible;
                collapsed += if a.collapsed { a.eligible } else { 0 };
            }
            Err(e) => {
                warn!("worker {worker}: flow table stays on 4 KiB pages: {e}");
                return;
            }
        }
    }
    log::debug!(
        "worker {worker}: flow table: {} MiB on huge pages now, {} MiB advised",
        collapsed >> 20,
        eligible >> 20
    );
}

/// CPUs to pin workers to, from `--pin`.
fn pin_list(spec: &str) -> anyhow::Result<Vec<usize>> {
    match spec {
        "none" | "" => Ok(Vec::new()),
        "auto" => Ok((0..altroute_io::cpu::available()).collect()),
        l => l
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<usize>()
                    .map_err(|e| anyhow!("--pin: {c:?}: {e}"))
            })
            .collect(),
    }
}

/// The datapath this run builds: the configuration with the command-line overrides and the
/// backend's limits applied.
struct Plan {
    backend: config::Backend,
    workers: u16,
    vnet: bool,
    /// Hash fanout with user-space handoff instead of the cBPF steering program.
    handoff: bool,
    batch: usize,
    rx: RxMode,
    pins: Vec<usize>,
    /// Load the tc offload (falls back to none if it cannot be loaded).
    offload: bool,
    udp_coalesce: bool,
    spin: Duration,
    qdisc_bypass: bool,
    sndbuf: Option<usize>,
    ingress_drop: bool,
}

impl Plan {
    fn new(args: &Args, cfg: &Config) -> anyhow::Result<Plan> {
        let dp = &cfg.datapath;
        let vnet = dp.vnet_hdr;
        let ring_frames = args.ring_frames.or(dp.ring_frames);
        let mut plan = Plan {
            backend: dp.backend,
            workers: args.workers.unwrap_or_else(|| cfg.limits.workers()).max(1),
            vnet,
            handoff: match args.fanout.as_deref() {
                Some(f) => f == "handoff",
                None => dp.fanout == config::Fanout::Handoff,
            },
            batch: usize::from(args.batch.unwrap_or(dp.batch).max(1)),
            rx: match dp.rx_ring {
                config::RxRing::V2 => RxMode::V2 {
                    frames: ring_frames.unwrap_or(if vnet { 128 } else { 1024 }),
                },
                // MTU-sized slots; GSO super-frames spill to the socket queue.
                config::RxRing::V2Spill if vnet => RxMode::spill(ring_frames.unwrap_or(4096)),
                config::RxRing::V2Spill => RxMode::V2 {
                    frames: ring_frames.unwrap_or(1024),
                },
                config::RxRing::V3 => RxMode::V3 {
                    block_size: 1 << 20,
                    blocks: 8,
                    retire_ms: 1,
                },
            },
            pins: pin_list(&args.pin)?,
            offload: match args.offload.as_deref() {
                Some(o) => o == "tc",
                None => dp.offload == config::Offload::Tc,
            },
            udp_coalesce: dp.udp_coalesce && !args.no_udp_coalesce,
            spin: Duration::from_micros(args.spin_us),
            qdisc_bypass: args.qdisc_bypass,
            sndbuf: args.sndbuf_kib.map(|k| k << 10),
            ingress_drop: args.kernel_ingress_drop,
        };
        if plan.backend == config::Backend::Pnet {
            plan.limit_to_pnet();
        }
        Ok(plan)
    }

    /// What pnet cannot do is off, each with a log line when it was asked for: one worker (pnet
    /// cannot attach the steering program that sends both directions of a NAT flow to one
    /// worker), no kernel offload (its socket sees every frame before tc), no coalescing (no
    /// vnet header; `check-config` already refuses `vnet_hdr` with pnet).
    fn limit_to_pnet(&mut self) {
        if self.workers > 1 {
            warn!(
                "datapath.backend: pnet runs one worker (pnet cannot steer both directions of a NAT flow to the same worker); {} asked for",
                self.workers
            );
            self.workers = 1;
        }
        if self.offload {
            info!("datapath.backend: pnet: kernel offload off (every frame goes through pnet)");
            self.offload = false;
        }
        self.vnet = false;
        self.udp_coalesce = false;
        self.handoff = false;
    }
}

/// The links (interfaces) the router's ports use, as the host has them.
struct Links {
    names: Vec<String>,
    mac: Vec<Option<MacAddr>>,
    ifindex: Vec<u32>,
    /// The side of each link decides what its steering program reads.
    side: Vec<Side>,
}

impl Links {
    fn inspect(cfg: &Config) -> anyhow::Result<Links> {
        let names = build::links(cfg);
        let (mut mac, mut ifindex) = (Vec::new(), Vec::new());
        for l in &names {
            let info = altroute_io::host::inspect(l)
                .with_context(|| format!("inspecting interface {l}"))?;
            mac.push(info.mac.map(MacAddr));
            ifindex.push(info.ifindex);
        }
        let side = build::link_sides(cfg);
        Ok(Links {
            names,
            mac,
            ifindex,
            side,
        })
    }

    fn mac_of(&self, iface: &str) -> Option<MacAddr> {
        self.names
            .iter()
            .position(|l| l == iface)
            .and_then(|i| self.mac.get(i).copied().flatten())
    }
}

/// A worker ready to start: its setup and, with pnet, its ports.
enum Ready {
    Rings(WorkerSetup),
    Pnet(WorkerSetup, Vec<PnetPort>),
}

/// What the workers are built from.
struct Build<'a> {
    cfg: &'a Config,
    plan: &'a Plan,
    links: &'a Links,
    pipeline: &'a PipelineConfig,
    offload: Option<&'a KernelOffload>,
    epoch: Instant,
}

impl Build<'_> {
    /// Worker `w`'s pipeline with its own flow table.
    fn context(&self, w: u16) -> anyhow::Result<Context> {
        let cfg =
            build::table_config(self.cfg, w, self.plan.workers).map_err(|e| anyhow!("{e}"))?;
        let table = FlowTable::new(cfg).map_err(|e| anyhow!("flow table: {e}"))?;
        back_with_huge_pages(&table, w);
        Context::new(self.pipeline.clone(), table).map_err(|e| anyhow!("pipeline: {e}"))
    }

    /// The setup of worker `w` (ports not included).
    fn setup(
        &self,
        w: u16,
        ports: Vec<Port>,
        rx: Receiver<ToWorker>,
        tx: Sender<FromWorker>,
        handoff: Option<worker::Handoff>,
    ) -> anyhow::Result<WorkerSetup> {
        let p = self.plan;
        let offload = match self.offload {
            Some(o) => Some(worker::WorkerOffload::new(
                o.progs.map.try_clone().context("sharing the offload map")?,
                o.ifindex.clone(),
            )),
            None => None,
        };
        Ok(WorkerSetup {
            id: w,
            ctx: self.context(w)?,
            ports,
            vnet: vec![p.vnet; self.links.names.len()],
            batch: p.batch,
            rx,
            tx,
            epoch: self.epoch,
            spin: p.spin,
            cpu: p.pins.get(usize::from(w) % p.pins.len().max(1)).copied(),
            handoff,
            udp_coalesce: p.udp_coalesce,
            offload,
        })
    }

    /// Every worker with its ports (AF_PACKET: fanout-steered rings per link and worker), in
    /// worker order; `to_workers` gets each one's control channel.
    fn workers(
        &self,
        events: &Sender<FromWorker>,
        to_workers: &mut Vec<Sender<ToWorker>>,
    ) -> anyhow::Result<Vec<Ready>> {
        let p = self.plan;
        let mut ready = Vec::new();
        if p.backend == config::Backend::Pnet {
            let (tx, rx) = crossbeam_channel::unbounded();
            to_workers.push(tx);
            let ports = self.pnet_ports()?;
            ready.push(Ready::Pnet(
                self.setup(0, Vec::new(), rx, events.clone(), None)?,
                ports,
            ));
            return Ok(ready);
        }
        let rings = RingPorts::new(self)?;
        // Fanout members are numbered in join order: open worker 0's sockets first, and so on.
        for (w, handoff) in (0..p.workers).zip(rings.handoffs()?) {
            let ports = rings.open(w)?;
            let (tx, rx) = crossbeam_channel::unbounded();
            to_workers.push(tx);
            ready.push(Ready::Rings(self.setup(
                w,
                ports,
                rx,
                events.clone(),
                handoff,
            )?));
        }
        Ok(ready)
    }

    /// One pnet port per link.
    fn pnet_ports(&self) -> anyhow::Result<Vec<PnetPort>> {
        self.links
            .names
            .iter()
            .map(|l| {
                let mut pc = PortConfig::new(l.clone());
                pc.batch_max = self.plan.batch;
                pc.sndbuf = self.plan.sndbuf.or(pc.sndbuf);
                PnetPort::open(&pc).with_context(|| format!("opening {l} through pnet"))
            })
            .collect()
    }
}

/// How the AF_PACKET ports of every worker are opened: per link, what its sockets bind to and
/// the steering of its fanout group.
struct RingPorts<'a> {
    b: &'a Build<'a>,
    binds: Vec<RxBind>,
    steering: Vec<Steering>,
    group_base: u16,
}

impl<'a> RingPorts<'a> {
    fn new(b: &'a Build<'a>) -> anyhow::Result<RingPorts<'a>> {
        let steering = b
            .links
            .side
            .iter()
            .map(|&side| build::steering(b.cfg, side, b.plan.workers))
            .collect::<Result<Vec<Steering>, _>>()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(RingPorts {
            b,
            binds: link_binds(b.cfg, &b.pipeline.ports, &b.links.mac, b.plan.ingress_drop),
            steering,
            group_base: (std::process::id() as u16) & 0x7f00,
        })
    }

    /// Each worker's handoff queues (`handoff` fanout with several workers), else none.
    fn handoffs(&self) -> anyhow::Result<Vec<Option<worker::Handoff>>> {
        let n = self.b.plan.workers;
        if self.b.plan.handoff && n > 1 {
            Ok(worker::Handoff::build(n, self.steering.clone())
                .context("setting up the handoff queues")?
                .into_iter()
                .map(Some)
                .collect())
        } else {
            Ok((0..n).map(|_| None).collect())
        }
    }

    /// Worker `w`'s ports, one per link.
    fn open(&self, w: u16) -> anyhow::Result<Vec<Port>> {
        let p = self.b.plan;
        let mut ports = Vec::new();
        let links = self
            .b
            .links
            .names
            .iter()
            .zip(&self.binds)
            .zip(&self.steering);
        for (li, ((l, bind), steering)) in links.enumerate() {
            let mut pc = PortConfig::new(l.clone());
            pc.bind = bind.clone();
            pc.rx = p.rx.clone();
            pc.vnet_hdr = p.vnet;
            pc.batch_max = p.batch;
            pc.qdisc_bypass = p.qdisc_bypass;
            pc.sndbuf = p.sndbuf.or(pc.sndbuf);
            if p.workers > 1 {
                pc.fanout = Some(Fanout {
                    group: self.group_base + GROUPS_PER_LINK * li as u16,
                    mode: if p.handoff {
                        FanoutMode::Hash
                    } else {
                        FanoutMode::Cbpf(steering.program())
                    },
                    defrag: false,
                });
            }
            let port = Port::open(&pc).with_context(|| format!("opening {l} for worker {w}"))?;
            // A tap sees frames before the tc program redirects them: the filter drops them.
            if let (Some(o), RxBind::All) = (self.b.offload, &pc.bind) {
                use std::os::fd::AsFd as _;
                o.progs
                    .attach_filter(port.as_fd())
                    .with_context(|| format!("attaching the offload socket filter on {l}"))?;
            }
            ports.push(port);
        }
        Ok(ports)
    }
}

/// Starts one thread per worker.
fn spawn(ready: Vec<Ready>) -> anyhow::Result<Vec<JoinHandle<Result<WorkerStats, IoError>>>> {
    let mut handles = Vec::new();
    for r in ready {
        let (id, run): (u16, Box<dyn FnOnce() -> _ + Send>) = match r {
            Ready::Rings(s) => (s.id, Box::new(move || worker::run(s))),
            Ready::Pnet(s, ports) => (s.id, Box::new(move || worker::pnet::run(s, ports))),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(run)
                .context("starting a worker thread")?,
        );
    }
    Ok(handles)
}

/// Waits for every worker; `true` if one failed.
fn join(handles: Vec<JoinHandle<Result<WorkerStats, IoError>>>) -> bool {
    let mut failed = false;
    for h in handles {
        match h.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!("worker stopped with an error: {e}");
                failed = true;
            }
            Err(_) => {
                warn!("a worker panicked");
                failed = true;
            }
        }
    }
    failed
}

/// The start-up line.
fn log_start(cfg: &Config, plan: &Plan, links: &Links, taps: &[&str], offload: bool) {
    if plan.backend == config::Backend::Pnet {
        info!(
            "altroute running: {} port(s) on {} link(s) through pnet (no rings, no vnet header, no offload), {} gateway(s), 1 worker, batch {}, pin {:?}",
            cfg.ports.len(),
            links.names.len(),
            cfg.gateways.len(),
            plan.batch,
            plan.pins,
        );
        return;
    }
    info!(
        "altroute running: {} port(s) on {} link(s) (ETH_P_ALL taps: {:?}, the others bound to IPv4, ARP and IPv6), {} gateway(s), {} worker(s), vnet_hdr {}, fanout {}, batch {}, pin {:?}, spin {} us, qdisc bypass {}, offload {}",
        cfg.ports.len(),
        links.names.len(),
        taps,
        cfg.gateways.len(),
        plan.workers,
        if plan.vnet { "on" } else { "off" },
        if plan.workers < 2 {
            "none"
        } else if plan.handoff {
            "hash+handoff"
        } else {
            "cbpf"
        },
        plan.batch,
        plan.pins,
        plan.spin.as_micros(),
        plan.qdisc_bypass,
        if offload { "tc" } else { "off" }
    );
}

/// One line per worker with its final counters.
fn log_final(last: &[WorkerStats]) {
    for s in last {
        info!(
            "worker {}: {} flows, created {}, expired {}, drops {}, handed out {} in {} dropped {}, ring drops {:?}, other-host frames skipped {:?}, tx failed {:?}, offload {:?}, udp coalesced {}",
            s.worker,
            s.flows,
            s.table.created,
            s.table.expired,
            s.counters.drops.0.iter().sum::<u64>(),
            s.handoff.handed_out,
            s.handoff.handed_in,
            s.handoff.dropped,
            s.ring_drops,
            s.otherhost_skipped,
            s.tx_failed,
            s.offload,
            s.coalesced
        );
    }
}

impl Args {
    /// Loads the configuration, enters the namespace and checks that the kernel is silent on
    /// the ports (unless told not to).
    fn load_and_check(&self) -> anyhow::Result<Config> {
        let cfg = Config::load(&self.config).map_err(|e| anyhow!("{e}"))?;
        if let Some(ns) = &self.netns {
            altroute_io::netns::enter(ns)
                .with_context(|| format!("entering network namespace {ns}"))?;
        }
        if !self.skip_kernel_check
            && let Err(problems) = kernel::kernel_check_path(&cfg, &self.config)
        {
            for p in &problems {
                eprintln!("error: {p}");
            }
            bail!(
                "the kernel is not silent on the router's ports ({} problem(s)); run `altroute setup --config {}` or pass --skip-kernel-check",
                problems.len(),
                self.config.display()
            );
        }
        Ok(cfg)
    }

    /// The API's Unix socket: `--api-socket`, else `api.socket` (per namespace when it is the
    /// default and `--netns` is given).
    fn api_socket(&self, cfg: &Config) -> PathBuf {
        if let Some(p) = &self.api_socket {
            return p.clone();
        }
        match &self.netns {
            Some(ns) if cfg.api.socket.as_os_str() == config::DEFAULT_SOCKET => {
                PathBuf::from(format!("/run/altroute/{ns}.sock"))
            }
            _ => cfg.api.socket.clone(),
        }
    }

    /// Runs the router until a signal stops it.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let cfg = self.load_and_check()?;
        altroute::logging::set_level(&cfg.logging.level);
        let token = Arc::new(RwLock::new(
            control::read_token(&cfg).map_err(|e| anyhow!("{e}"))?,
        ));
        let plan = Plan::new(&self, &cfg)?;
        let links = Links::inspect(&cfg)?;
        let _ingress_drop = if plan.ingress_drop {
            Some(IngressDrop::install(&links.names).context("--kernel-ingress-drop")?)
        } else {
            None
        };
        let pipeline = build::pipeline_config(&cfg, &links.names, &|i: &str| links.mac_of(i))
            .map_err(|e| anyhow!("{e}"))?;
        // Declared before the workers' ports: dropped (detached) after them.
        let offload = if plan.offload {
            match load_offload(&links.names, &links.ifindex) {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!("kernel offload unavailable, every frame goes through user space: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing the signal handlers")?;
        }
        let reload = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
            .context("installing the signal handlers")?;
        let epoch = Instant::now();
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(4096);
        let mut to_workers = Vec::new();
        let b = Build {
            cfg: &cfg,
            plan: &plan,
            links: &links,
            pipeline: &pipeline,
            offload: offload.as_ref(),
            epoch,
        };
        let ready = b.workers(&ev_tx, &mut to_workers)?;
        drop(ev_tx);
        // The links that keep a tap, for the start-up line.
        let binds = link_binds(&cfg, &pipeline.ports, &links.mac, plan.ingress_drop);
        let taps: Vec<&str> = links
            .names
            .iter()
            .zip(&binds)
            .filter(|(_, b)| **b == RxBind::All)
            .map(|(l, _)| l.as_str())
            .collect();
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let api = Api::bind(ApiSetup {
            socket: self.api_socket(&cfg),
            listen: cfg.api.listen,
            token: Arc::clone(&token),
            control: req_tx,
            workers: to_workers.clone(),
        })
        .context("starting the API")?;
        log_start(&cfg, &plan, &links, &taps, offload.is_some());
        // Before any thread that lives on starts: each keeps the capabilities it started with.
        drop_capabilities(offload.as_ref());
        let _api = api.serve().context("starting the API")?;
        let handles = spawn(ready)?;
        altroute::service::ready(&format!(
            "{} worker(s), {} gateway(s)",
            handles.len(),
            cfg.gateways.len()
        ));
        let last = control::run(control::ControlSetup {
            port_link: pipeline.ports.iter().map(|p| p.link).collect(),
            port_mac: pipeline.ports.iter().map(|p| p.mac).collect(),
            cfg,
            to_workers,
            from_workers: ev_rx,
            epoch,
            stop,
            reload,
            config_path: self.config.clone(),
            requests: req_rx,
            token,
            status_file: self.status_file.clone(),
            log_every: Duration::from_secs(self.log_every.max(1)),
        });
        altroute::service::stopping();
        let failed = join(handles);
        log_final(&last);
        info!("altroute stopped");
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_with_a_vlan_or_foreign_mac_port_keep_a_tap() {
        let cfg = Config::from_str_named(
            "ports:\n  - {name: lan, role: lan, interface: r-lan, addresses: [10.0.0.1/24]}\n  - {name: lan2, role: lan, interface: r-lan2, mac: '02:00:00:00:00:99', addresses: [10.0.1.1/24]}\n  - {name: wan1, role: wan, interface: r-wan1, addresses: [192.0.2.1/24]}\n  - {name: wan1v, role: wan, interface: r-wan1, vlan: 7, addresses: [198.51.100.1/24]}\n  - {name: wan2, role: wan, interface: r-wan2, addresses: [203.0.113.1/24]}\ngateways:\n  - {name: isp1, port: wan1, via: 192.0.2.2}\n",
            "t",
        )
        .expect("config");
        let links = build::links(&cfg);
        let mac = |i: u8| Some(MacAddr([2, 0, 0, 0, 0, i]));
        let link_mac: Vec<Option<MacAddr>> = (1..=links.len() as u8).map(mac).collect();
        let pipeline = build::pipeline_config(&cfg, &links, &|l: &str| {
            links.iter().position(|x| x == l).and_then(|i| link_mac[i])
        })
        .expect("pipeline");
        let want = |l: &str| {
            if matches!(l, "r-lan2" | "r-wan1") {
                RxBind::All
            } else {
                RxBind::ip()
            }
        };
        let got = link_binds(&cfg, &pipeline.ports, &link_mac, false);
        assert_eq!(got, links.iter().map(|l| want(l)).collect::<Vec<_>>());
        let got = link_binds(&cfg, &pipeline.ports, &link_mac, true);
        assert!(got.iter().all(|b| *b == RxBind::All), "{got:?}");
    }
}
