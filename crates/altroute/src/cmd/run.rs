//! `altroute run --config FILE`: the router. Checks that the kernel is silent on the ports, opens
//! one port per link and worker (AF_PACKET sockets bound to IPv4, ARP and IPv6, or one
//! `ETH_P_ALL` tap on a VLAN trunk; fanout-steered so both directions of a connection reach the
//! worker that owns it), starts the workers and runs the control loop until SIGINT or SIGTERM.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use altroute::config::{self, Config};
use altroute::worker::{self, WorkerSetup};
use altroute::{build, control, kernel};
use altroute_flow::FlowTable;
use altroute_io::{
    Fanout, FanoutMode, OtherTraffic, Port, PortConfig, RxBind, RxMode, Side, Steering,
};
use altroute_packet::pipeline::Context;
use altroute_packet::wire::MacAddr;
use anyhow::{Context as _, anyhow, bail};
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
    /// Write a JSON status document here every second.
    #[arg(long)]
    status_file: Option<PathBuf>,
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

impl Args {
    /// Runs the router until a signal stops it.
    pub fn run(self) -> anyhow::Result<ExitCode> {
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
        let workers = self.workers.unwrap_or_else(|| cfg.limits.workers()).max(1);
        let links = build::links(&cfg);
        let (mut link_mac, mut link_ifindex) = (Vec::new(), Vec::new());
        for l in &links {
            let info = altroute_io::host::inspect(l)
                .with_context(|| format!("inspecting interface {l}"))?;
            link_mac.push(info.mac.map(MacAddr));
            link_ifindex.push(info.ifindex);
        }
        let mac_of = |iface: &str| {
            links
                .iter()
                .position(|l| l == iface)
                .and_then(|i| link_mac[i])
        };
        let _ingress_drop = if self.kernel_ingress_drop {
            Some(IngressDrop::install(&links).context("--kernel-ingress-drop")?)
        } else {
            None
        };
        let pipeline = build::pipeline_config(&cfg, &links, &mac_of).map_err(|e| anyhow!("{e}"))?;
        let port_link: Vec<u8> = pipeline.ports.iter().map(|p| p.link).collect();
        let port_mac: Vec<MacAddr> = pipeline.ports.iter().map(|p| p.mac).collect();
        // The side of each link decides what its steering program reads.
        let link_side: Vec<Side> = links
            .iter()
            .map(|l| {
                let wan = cfg
                    .ports
                    .iter()
                    .any(|p| &p.interface == l && p.role == config::Role::Wan);
                if wan { Side::Wan } else { Side::Lan }
            })
            .collect();
        let block = NonZeroU32::new(u32::from(cfg.nat.port_block))
            .ok_or_else(|| anyhow!("nat.port_block must not be 0"))?;
        let nworkers =
            NonZeroU32::new(u32::from(workers)).ok_or_else(|| anyhow!("workers must not be 0"))?;
        let vnet = cfg.datapath.vnet_hdr;
        let handoff = match self.fanout.as_deref() {
            Some("handoff") => true,
            Some(_) => false,
            None => cfg.datapath.fanout == config::Fanout::Handoff,
        };
        let pins = pin_list(&self.pin)?;
        let batch = usize::from(self.batch.unwrap_or(cfg.datapath.batch).max(1));
        let ring_frames = self.ring_frames.or(cfg.datapath.ring_frames);
        let rx = match cfg.datapath.rx_ring {
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
        };
        let want_offload = match self.offload.as_deref() {
            Some("tc") => true,
            Some(_) => false,
            None => cfg.datapath.offload == config::Offload::Tc,
        };
        // Declared before the workers' ports: dropped (detached) after them.
        let offload = if want_offload {
            match load_offload(&links, &link_ifindex) {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!("kernel offload unavailable, every frame goes through user space: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .context("installing the signal handlers")?;
        }
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(4096);
        let mut to_workers = Vec::new();
        let mut setups = Vec::new();
        let group_base = (std::process::id() as u16) & 0x7f00;
        let link_bind = link_binds(&cfg, &pipeline.ports, &link_mac, self.kernel_ingress_drop);
        // The links that keep a tap, for the start-up line.
        let taps: Vec<&str> = links
            .iter()
            .zip(&link_bind)
            .filter(|(_, b)| **b == RxBind::All)
            .map(|(l, _)| l.as_str())
            .collect();
        let steering: Vec<Steering> = link_side
            .iter()
            .map(|&side| {
                let mut st = Steering::new(side, block, nworkers);
                st.other = OtherTraffic::Worker0;
                st
            })
            .collect();
        let mut handoffs = if handoff && workers > 1 {
            worker::Handoff::build(workers, steering.clone())
                .context("setting up the handoff queues")?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            Vec::new()
        };
        // Fanout members are numbered in join order: open worker 0's sockets first, and so on.
        for w in 0..workers {
            let table =
                FlowTable::new(build::table_config(&cfg, w, workers).map_err(|e| anyhow!("{e}"))?)
                    .map_err(|e| anyhow!("flow table: {e}"))?;
            back_with_huge_pages(&table, w);
            let ctx =
                Context::new(pipeline.clone(), table).map_err(|e| anyhow!("pipeline: {e}"))?;
            let mut ports = Vec::new();
            for (li, l) in links.iter().enumerate() {
                let mut pc = PortConfig::new(l.clone());
                pc.bind = link_bind[li].clone();
                pc.rx = rx.clone();
                pc.vnet_hdr = vnet;
                pc.batch_max = batch;
                pc.qdisc_bypass = self.qdisc_bypass;
                if let Some(k) = self.sndbuf_kib {
                    pc.sndbuf = Some(k << 10);
                }
                if workers > 1 {
                    pc.fanout = Some(Fanout {
                        group: group_base + GROUPS_PER_LINK * li as u16,
                        mode: if handoff {
                            FanoutMode::Hash
                        } else {
                            FanoutMode::Cbpf(steering[li].program())
                        },
                        defrag: false,
                    });
                }
                let port =
                    Port::open(&pc).with_context(|| format!("opening {l} for worker {w}"))?;
                // A tap sees frames before the tc program redirects them: the filter drops them.
                if let (Some(o), RxBind::All) = (&offload, &pc.bind) {
                    use std::os::fd::AsFd as _;
                    o.progs
                        .attach_filter(port.as_fd())
                        .with_context(|| format!("attaching the offload socket filter on {l}"))?;
                }
                ports.push(port);
            }
            let worker_offload = match &offload {
                Some(o) => Some(worker::WorkerOffload::new(
                    o.progs.map.try_clone().context("sharing the offload map")?,
                    o.ifindex.clone(),
                )),
                None => None,
            };
            let (tx, rx) = crossbeam_channel::unbounded();
            to_workers.push(tx);
            setups.push(WorkerSetup {
                id: w,
                ctx,
                ports,
                vnet: vec![vnet; links.len()],
                batch,
                rx,
                tx: ev_tx.clone(),
                epoch,
                spin: Duration::from_micros(self.spin_us),
                cpu: (!pins.is_empty()).then(|| pins[usize::from(w) % pins.len()]),
                handoff: handoffs.get_mut(usize::from(w)).and_then(Option::take),
                udp_coalesce: cfg.datapath.udp_coalesce && !self.no_udp_coalesce,
                offload: worker_offload,
            });
        }
        drop(ev_tx);
        info!(
            "altroute running: {} port(s) on {} link(s) (ETH_P_ALL taps: {:?}, the others bound to IPv4, ARP and IPv6), {} gateway(s), {workers} worker(s), vnet_hdr {}, fanout {}, batch {batch}, pin {:?}, spin {} us, qdisc bypass {}, offload {}",
            cfg.ports.len(),
            links.len(),
            taps,
            cfg.gateways.len(),
            if vnet { "on" } else { "off" },
            if workers < 2 {
                "none"
            } else if handoff {
                "hash+handoff"
            } else {
                "cbpf"
            },
            pins,
            self.spin_us,
            self.qdisc_bypass,
            if offload.is_some() { "tc" } else { "off" }
        );
        let mut handles = Vec::new();
        for s in setups {
            let id = s.id;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("worker-{id}"))
                    .spawn(move || worker::run(s))
                    .context("starting a worker thread")?,
            );
        }
        let last = control::run(control::ControlSetup {
            cfg,
            port_link,
            port_mac,
            to_workers,
            from_workers: ev_rx,
            epoch,
            stop: Arc::clone(&stop),
            status_file: self.status_file.clone(),
            log_every: Duration::from_secs(self.log_every.max(1)),
        });
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
        for s in &last {
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
