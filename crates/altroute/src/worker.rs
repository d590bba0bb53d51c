//! One datapath worker thread: its ports (one per link: sockets bound to IPv4, ARP and IPv6, or one
//! `ETH_P_ALL` tap, in the links' fanout groups),
//! its pipeline [`Context`] with its own flow table, and the loop that moves frames.
//!
//! The loop, per round: apply control messages; for each link, take a batch from its RX rings,
//! run every frame through the pipeline in place, then transmit the frames grouped by out link
//! (one `sendmmsg` per link) straight from the ring slots; hand the ring slots back. Nothing on
//! this path allocates, locks or logs. Frames for the control plane (probe replies, ARP) are
//! copied into a channel message; that is the only allocation, and it is not on the forwarding
//! path.
//!
//! The worker reads and writes no frame bytes itself: the pipeline and its egress stage
//! (`altroute-packet`) do. `tx.rs` converts the frames' offload metadata to and from the I/O
//! layer's virtio-net headers and keeps the bookkeeping of UDP coalescing over a batch.

pub mod offload;
pub mod pnet;
mod tx;

pub use offload::{OffloadCounters, WorkerOffload};

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use altroute_flow::{DownAction, Failback, GatewayId, GatewayState, Time};
use altroute_io::{IoError, Notifier, Port, Steering, TxFrame, VnetHdr};
use altroute_packet::DropReason;
use altroute_packet::egress::TxOffload;
use altroute_packet::pipeline::{Context, ControlReason, Counters, Packet, Verdict};
use altroute_packet::wire::MacAddr;
use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// Messages from the control thread to a worker.
#[derive(Debug)]
pub enum ToWorker {
    /// A gateway changed state. `action` applies to its flows when it goes down, `failback` when
    /// it comes back up.
    Gateway {
        /// Which.
        gateway: GatewayId,
        /// Its new state.
        state: GatewayState,
        /// What to do with its flows if down.
        action: DownAction,
        /// What to do with moved flows if up.
        failback: Failback,
    },
    /// A neighbour learned by another worker or the control thread (ARP is steered to one worker).
    Neighbor {
        /// Address.
        ip: Ipv4Addr,
        /// MAC.
        mac: MacAddr,
        /// Port index.
        port: u8,
    },
    /// Send these frames out of `link` (probes built by the control thread go through worker 0).
    Transmit {
        /// Link index.
        link: u8,
        /// Frames.
        frames: Vec<Vec<u8>>,
    },
    /// The flow table's new settings (a reload or an operator command): gateways' weights and
    /// tiers (their states stay as the `Gateway` messages set them), policy, overrides, idle
    /// timeouts. Existing flows keep their gateways.
    Table(Box<altroute_flow::TableConfig>),
    /// Run this on the worker's flow table between two batches (the API's flow listings and
    /// explanations: each call does a bounded piece of work and sends its answer itself).
    Inspect(Inspect),
    /// Stop after this round.
    Stop,
}

/// A function that looks at a worker's flow table: called with the table, the worker's id and
/// the time.
pub type InspectFn = Box<dyn FnOnce(&altroute_flow::FlowTable, u16, Time) + Send>;

/// A look at a worker's flow table ([`InspectFn`]).
pub struct Inspect(pub InspectFn);

impl std::fmt::Debug for Inspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inspect(..)")
    }
}

/// Messages from a worker to the control thread.
#[derive(Debug)]
pub enum FromWorker {
    /// A frame for the control plane.
    Frame {
        /// The worker.
        worker: u16,
        /// Link it arrived on.
        link: u8,
        /// Why.
        reason: ControlReason,
        /// The frame's bytes.
        frame: Vec<u8>,
    },
    /// A neighbour the worker learned from a frame the control thread does not see (a LAN
    /// host's IPv4 frame, an ARP request): every worker learns it
    /// ([`Context::take_learned`]).
    Neighbor {
        /// Address.
        ip: Ipv4Addr,
        /// MAC.
        mac: MacAddr,
        /// Port index.
        port: u8,
    },
    /// Periodic counters (about once a second).
    Stats(Box<WorkerStats>),
}

/// A worker's counters, sent to the control thread.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    /// Worker id.
    pub worker: u16,
    /// Pipeline counters.
    pub counters: Counters,
    /// Flow-table counters.
    pub table: altroute_flow::TableStats,
    /// Live flows.
    pub flows: usize,
    /// Live flows per gateway.
    pub flows_per_gateway: Vec<u64>,
    /// Per-link transmit failures (queue full, ...).
    pub tx_failed: Vec<u64>,
    /// Per gateway: TCP connections opened and failed over the failure-redirect window.
    pub failures: Vec<(u32, u32)>,
    /// Handoff counters (zero with the cBPF fanout).
    pub handoff: HandoffStats,
    /// Per link: frames lost on receive: the kernel dropped them because this worker's RX ring
    /// was full, or they arrived cut short (a frame too big for a slot that found the spill
    /// queue full).
    pub ring_drops: Vec<u64>,
    /// Per link: frames for another MAC address (or with a VLAN tag the kernel erased) that
    /// reached an EtherType-bound port's ring and were skipped there
    /// (`PortStats::otherhost_skipped`). Normally 0: those ports carry a socket filter that drops
    /// such frames in the kernel, uncounted; this is the second line of defence. An `ETH_P_ALL`
    /// tap passes them to the pipeline, which counts them as `not_for_us` drops.
    pub otherhost_skipped: Vec<u64>,
    /// Datagrams merged into UDP GSO frames at transmit (see `altroute_packet::egress::coalesce`).
    pub coalesced: u64,
    /// Kernel offload of established flows (zero when off).
    pub offload: OffloadCounters,
}

/// Frame-ownership handoff between workers (`datapath.fanout: handoff`): the kernel spreads
/// frames by its flow hash (`PACKET_FANOUT_HASH`); a worker that receives a frame owned by
/// another worker (by the same port-block rule as the cBPF program, [`Steering::worker`]) copies
/// it into a buffer from its own pool and queues it to the owner, which runs it through its
/// pipeline, transmits it and sends the buffer home. Bounded queues; no allocation per frame.
pub struct Handoff {
    /// Per link: which worker owns a frame.
    pub steering: Vec<Steering>,
    /// Per worker: its inbox (index = worker id; the own entry is unused).
    pub peers: Vec<Sender<Handed>>,
    /// Per worker: wakes it when it sleeps.
    pub wakers: Vec<Arc<Notifier>>,
    /// Per worker: where its pool buffers go back to.
    pub homes: Vec<Sender<Vec<u8>>>,
    /// Frames handed to this worker.
    pub inbox: Receiver<Handed>,
    /// This worker's free buffers.
    pub pool: Receiver<Vec<u8>>,
}

/// A frame handed from the worker that received it to the worker that owns it.
#[derive(Debug)]
pub struct Handed {
    buf: Vec<u8>,
    len: usize,
    link: u8,
    vnet: Option<VnetHdr>,
    csum_not_ready: bool,
    home: u16,
}

/// Frames a worker may have in flight to others at once (buffers in its pool).
pub const HANDOFF_POOL: usize = 256;
/// Inbox depth per worker.
pub const HANDOFF_QUEUE: usize = 1024;
/// Bytes per handoff buffer: the largest GSO frame plus room to grow (answers, a VLAN tag).
pub const HANDOFF_BUF: usize = altroute_io::GSO_MAX_FRAME + 128;

impl Handoff {
    /// The handoff plumbing for `workers` workers over links steered by `steering` (one entry per
    /// link), index = worker id.
    pub fn build(workers: u16, steering: Vec<Steering>) -> Result<Vec<Handoff>, IoError> {
        let n = usize::from(workers);
        let mut peers = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        let mut homes = Vec::with_capacity(n);
        let mut pools = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = crossbeam_channel::bounded(HANDOFF_QUEUE);
            peers.push(tx);
            inboxes.push(rx);
            let (ptx, prx) = crossbeam_channel::bounded(HANDOFF_POOL);
            for _ in 0..HANDOFF_POOL {
                let _ = ptx.try_send(vec![0u8; HANDOFF_BUF]);
            }
            homes.push(ptx);
            pools.push(prx);
            wakers.push(Arc::new(Notifier::new()?));
        }
        Ok(inboxes
            .into_iter()
            .zip(pools)
            .map(|(inbox, pool)| Handoff {
                steering: steering.clone(),
                peers: peers.clone(),
                wakers: wakers.clone(),
                homes: homes.clone(),
                inbox,
                pool,
            })
            .collect())
    }
}

/// Everything a worker needs, built by the daemon before the thread starts.
pub struct WorkerSetup {
    /// Worker number (also its fanout member index).
    pub id: u16,
    /// The pipeline with its flow table.
    pub ctx: Context,
    /// One port per link, indexed by link number (empty with the pnet backend: [`pnet::run`]
    /// takes its ports beside the setup).
    pub ports: Vec<Port>,
    /// Whether each link runs in vnet mode.
    pub vnet: Vec<bool>,
    /// Frames per receive batch.
    pub batch: usize,
    /// Control messages in.
    pub rx: Receiver<ToWorker>,
    /// Events out.
    pub tx: Sender<FromWorker>,
    /// The daemon's clock origin (shared by all workers so times agree).
    pub epoch: Instant,
    /// Keep polling the rings (no syscall) this long after the last frame before sleeping in
    /// `poll`.
    pub spin: Duration,
    /// Pin the thread to this CPU.
    pub cpu: Option<usize>,
    /// Handoff mode (`None`: the kernel's cBPF fanout already delivers each frame to its owner).
    pub handoff: Option<Handoff>,
    /// Merge runs of small datagrams of one flow into UDP GSO frames at transmit (vnet links).
    pub udp_coalesce: bool,
    /// Kernel offload of established flows (`datapath.offload: tc`), if loaded.
    pub offload: Option<WorkerOffload>,
}

/// Where each frame of the current batch goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Link(u8),
}

fn now(epoch: Instant) -> Time {
    Time::from_millis(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// What became of one frame.
enum Step {
    /// Send `len` bytes on `link`, with this vnet header if the link takes one.
    Send {
        link: u8,
        len: usize,
        vnet: Option<VnetHdr>,
    },
    /// For the control thread.
    Control(ControlReason),
    /// Dropped (counted by the pipeline).
    Drop,
}

/// Per received frame of the current batch that this worker processes itself.
#[derive(Clone, Copy)]
struct Pending {
    /// Index in the RX batch.
    idx: usize,
    offload: TxOffload,
}

/// Reuses a vector's allocation for the same type with another lifetime (empty in, empty out;
/// the standard library collects in place when the layouts agree, as they do here).
// `filter_map(|_| None)` is the element type change (`filter` cannot change the lifetime).
#[allow(clippy::unnecessary_filter_map)]
fn recycle<'x, 'y>(mut v: Vec<Packet<'x>>) -> Vec<Packet<'y>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// Counters of the handoff path.
#[derive(Clone, Copy, Debug, Default)]
pub struct HandoffStats {
    /// Frames this worker received but another owns, queued to the owner.
    pub handed_out: u64,
    /// Frames other workers queued to this one.
    pub handed_in: u64,
    /// Frames dropped because no buffer was free or the owner's inbox was full.
    pub dropped: u64,
}

/// Per-thread scratch state of the loop.
struct Scratch {
    outs: Vec<Out>,
    tx_failed: Vec<u64>,
    handed: Vec<Handed>,
    handed_out: Vec<Out>,
    hstats: HandoffStats,
    ring_drops: Vec<u64>,
    otherhost_skipped: Vec<u64>,
    /// Datagrams merged into UDP GSO frames at transmit.
    coalesced: u64,
    pending: Vec<Pending>,
    pkts: Vec<Packet<'static>>,
    verdicts: Vec<Verdict>,
    /// Per worker: something was queued to it in this round (wake it).
    queued_to: Vec<bool>,
}

/// Run the worker until it is told to stop or its sockets fail. Returns its last counters.
pub fn run(mut w: WorkerSetup) -> Result<WorkerStats, IoError> {
    if let Some(cpu) = w.cpu {
        // Pinning is an optimisation: carry on unpinned if the CPU is not allowed.
        let _ = altroute_io::cpu::pin_current_thread(cpu);
    }
    let links = w.ports.len();
    let nworkers = w.handoff.as_ref().map_or(0, |h| h.peers.len());
    let mut s = Scratch {
        outs: Vec::with_capacity(w.batch),
        tx_failed: vec![0u64; links],
        handed: Vec::with_capacity(w.batch),
        handed_out: Vec::with_capacity(w.batch),
        hstats: HandoffStats::default(),
        ring_drops: vec![0u64; links],
        otherhost_skipped: vec![0u64; links],
        coalesced: 0,
        pending: Vec::with_capacity(w.batch),
        pkts: Vec::with_capacity(w.batch),
        verdicts: vec![Verdict::default(); w.batch],
        queued_to: vec![false; nworkers],
    };
    let mut last_stats = Instant::now();
    let mut last_expire = Instant::now();
    let mut last_offload = Instant::now();
    let mut last_busy = Instant::now();
    let mut expired = Vec::new();
    let mut idle = false;
    loop {
        // Control messages.
        loop {
            match w.rx.try_recv() {
                Ok(ToWorker::Stop) | Err(TryRecvError::Disconnected) => {
                    if let Some(o) = w.offload.as_mut() {
                        o.flush();
                    }
                    return Ok(stats(&w, &s));
                }
                Ok(m) => apply(&mut w, m, &mut s.tx_failed),
                Err(TryRecvError::Empty) => break,
            }
        }
        let clock = Instant::now();
        if idle {
            if clock.duration_since(last_busy) >= w.spin {
                let waker = w
                    .handoff
                    .as_ref()
                    .and_then(|h| h.wakers.get(usize::from(w.id)).cloned());
                match &waker {
                    Some(n) => {
                        n.prepare_sleep();
                        if w.handoff.as_ref().is_some_and(|h| h.inbox.is_empty()) {
                            altroute_io::wait_ports(
                                &w.ports,
                                Some(n.as_ref()),
                                Duration::from_millis(20),
                            )?;
                        }
                        n.woke();
                    }
                    None => {
                        altroute_io::wait_ports(&w.ports, None, Duration::from_millis(20))?;
                    }
                }
            } else {
                std::hint::spin_loop();
            }
        } else {
            last_busy = clock;
        }
        idle = true;
        let t = now(w.epoch);
        for link in 0..links {
            if rx_link(&mut w, &mut s, link, t)? {
                idle = false;
            }
        }
        if w.handoff.is_some() && drain_inbox(&mut w, &mut s, t) {
            idle = false;
        }
        share_learned(&mut w);
        if clock.duration_since(last_expire) >= Duration::from_millis(250) {
            last_expire = clock;
            expired.clear();
            w.ctx.table.expire(now(w.epoch), 65_536, &mut expired);
        }
        if let Some(o) = w.offload.as_mut()
            && clock.duration_since(last_offload) >= offload::TICK
        {
            last_offload = clock;
            o.tick(&mut w.ctx, now(w.epoch));
        }
        if clock.duration_since(last_stats) >= Duration::from_secs(1) {
            last_stats = clock;
            for ((d, o), p) in s
                .ring_drops
                .iter_mut()
                .zip(s.otherhost_skipped.iter_mut())
                .zip(w.ports.iter_mut())
            {
                if let Ok(st) = p.stats() {
                    *d = st.ring_drops + st.truncated;
                    *o = st.otherhost_skipped;
                }
            }
            let _ = w.tx.try_send(FromWorker::Stats(Box::new(stats(&w, &s))));
        }
    }
}

/// One receive batch from `link`: pipeline, handoff, transmit grouped by out link. Returns
/// whether any frame arrived.
fn rx_link(w: &mut WorkerSetup, s: &mut Scratch, link: usize, t: Time) -> Result<bool, IoError> {
    let links = w.ports.len();
    let (before, rest) = w.ports.split_at_mut(link);
    let Some((this, after)) = rest.split_first_mut() else {
        return Ok(false);
    };
    let (receiver, own_sender) = this.split_mut();
    let mut batch = receiver.rx_batch(w.batch, Duration::ZERO)?;
    if batch.is_empty() {
        return Ok(false);
    }
    s.outs.clear();
    s.pending.clear();
    let mut sends = 0u32;
    // 1. Hand off what others own; note the offload state of the rest.
    for i in 0..batch.len() {
        let Some(mut f) = batch.get_mut(i) else {
            s.outs.push(Out::None);
            continue;
        };
        if let Some(h) = &w.handoff {
            let owner = h
                .steering
                .get(link)
                .map_or(0, |st| st.worker(f.data(), 0) as usize);
            if owner != usize::from(w.id) {
                hand_off(h, s, w.id, owner, link as u8, &f);
                f.drop_frame();
                s.outs.push(Out::None);
                continue;
            }
        }
        let Some(offload) = tx::rx_offload(f.data(), f.vnet().copied(), f.meta().csum_not_ready)
        else {
            w.ctx.counters.drops.inc(DropReason::UnsupportedGso);
            f.drop_frame();
            s.outs.push(Out::None);
            continue;
        };
        s.pending.push(Pending { idx: i, offload });
        s.outs.push(Out::None);
    }
    // 2. The whole batch through the pipeline at once (parse, batched flow lookups, handle).
    {
        let mut pkts = recycle(std::mem::take(&mut s.pkts));
        let mut next = s.pending.iter().peekable();
        for (i, f) in batch.iter_mut().enumerate() {
            let Some(p) = next.next_if(|p| p.idx == i) else {
                continue;
            };
            let len = f.len();
            pkts.push(Packet {
                buf: f.into_frame_and_tail(),
                len,
                link: link as u8,
                offload: p.offload,
            });
        }
        if s.verdicts.len() < pkts.len() {
            s.verdicts.resize(pkts.len(), Verdict::default());
        }
        w.ctx.process_batch(&mut pkts, t, &mut s.verdicts);
        for (p, pk) in s.pending.iter_mut().zip(&pkts) {
            p.offload = pk.offload;
        }
        s.pkts = recycle(pkts);
    }
    // 3. Verdicts: fix offload headers and lengths, pick the out link.
    for (j, p) in s.pending.iter().enumerate() {
        let Some(mut f) = batch.get_mut(p.idx) else {
            continue;
        };
        let verdict = s.verdicts.get(j).copied().unwrap_or(Verdict::default());
        let step = tx::finish(
            &w.ctx,
            &w.vnet,
            link as u8,
            f.frame_and_tail_mut(),
            verdict,
            p.offload,
        );
        let out = match step {
            Step::Send {
                link: out,
                len,
                vnet,
            } => {
                f.set_vnet(vnet);
                if f.set_len(len) {
                    sends |= 1 << (out & 31);
                    Out::Link(out)
                } else {
                    Out::None
                }
            }
            Step::Control(reason) => {
                let _ = w.tx.try_send(FromWorker::Frame {
                    worker: w.id,
                    link: link as u8,
                    reason,
                    frame: f.data().to_vec(),
                });
                Out::None
            }
            Step::Drop => Out::None,
        };
        if out == Out::None {
            f.drop_frame();
        }
        if let Some(o) = s.outs.get_mut(p.idx) {
            *o = out;
        }
    }
    // Transmit, grouped by out link, straight from the ring.
    for out_link in 0..links {
        if out_link < 32 && sends & (1 << out_link) == 0 {
            continue;
        }
        let target = Out::Link(out_link as u8);
        if w.udp_coalesce && w.vnet.get(out_link).copied().unwrap_or(false) {
            s.coalesced += tx::coalesce_udp(&mut batch, &mut s.outs, target);
        }
        let outs = &s.outs;
        let frames = (0..batch.len())
            .filter(|&i| outs.get(i) == Some(&target))
            .filter_map(|i| batch.tx_frame(i));
        let sender = if out_link == link {
            &mut *own_sender
        } else if out_link < link {
            before[out_link].split_mut().1
        } else {
            after[out_link - link - 1].split_mut().1
        };
        let r = sender.send(frames);
        s.tx_failed[out_link] += r.failed as u64;
    }
    drop(batch);
    wake_peers(w, s);
    Ok(true)
}

/// Copies a frame another worker owns into one of our pool buffers and queues it to the owner.
fn hand_off(
    h: &Handoff,
    s: &mut Scratch,
    me: u16,
    owner: usize,
    link: u8,
    f: &altroute_io::RxFrame<'_>,
) {
    let (Some(peer), Ok(mut buf)) = (h.peers.get(owner), h.pool.try_recv()) else {
        s.hstats.dropped += 1;
        return;
    };
    let data = f.data();
    let Some(dst) = buf.get_mut(..data.len()) else {
        s.hstats.dropped += 1;
        let _ = h.homes.get(usize::from(me)).map(|p| p.try_send(buf));
        return;
    };
    dst.copy_from_slice(data);
    let m = Handed {
        buf,
        len: data.len(),
        link,
        vnet: f.vnet().copied(),
        csum_not_ready: f.meta().csum_not_ready,
        home: me,
    };
    match peer.try_send(m) {
        Ok(()) => {
            s.hstats.handed_out += 1;
            if let Some(q) = s.queued_to.get_mut(owner) {
                *q = true;
            }
        }
        Err(e) => {
            s.hstats.dropped += 1;
            let m = e.into_inner();
            let _ = h.homes.get(usize::from(me)).map(|p| p.try_send(m.buf));
        }
    }
}

fn wake_peers(w: &WorkerSetup, s: &mut Scratch) {
    let Some(h) = &w.handoff else {
        return;
    };
    for (i, q) in s.queued_to.iter_mut().enumerate() {
        if std::mem::take(q)
            && let Some(n) = h.wakers.get(i)
        {
            n.notify();
        }
    }
}

/// Processes up to one batch of frames other workers handed to us and transmits them grouped by
/// out link; the buffers go back to their homes. Returns whether there were any.
fn drain_inbox(w: &mut WorkerSetup, s: &mut Scratch, t: Time) -> bool {
    let Some(h) = &w.handoff else {
        return false;
    };
    s.handed.clear();
    s.handed_out.clear();
    while s.handed.len() < w.batch {
        match h.inbox.try_recv() {
            Ok(m) => s.handed.push(m),
            Err(_) => break,
        }
    }
    if s.handed.is_empty() {
        return false;
    }
    s.hstats.handed_in += s.handed.len() as u64;
    for m in &mut s.handed {
        let step = tx::handle(
            &mut w.ctx,
            &w.vnet,
            m.link,
            &mut m.buf,
            m.len,
            m.vnet,
            m.csum_not_ready,
            t,
        );
        let out = match step {
            Step::Send { link, len, vnet } => {
                m.len = len;
                m.vnet = vnet;
                Out::Link(link)
            }
            Step::Control(reason) => {
                let _ = w.tx.try_send(FromWorker::Frame {
                    worker: w.id,
                    link: m.link,
                    reason,
                    frame: m.buf.get(..m.len).unwrap_or(&[]).to_vec(),
                });
                Out::None
            }
            Step::Drop => Out::None,
        };
        s.handed_out.push(out);
    }
    for (out_link, port) in w.ports.iter_mut().enumerate() {
        let target = Out::Link(out_link as u8);
        if !s.handed_out.contains(&target) {
            continue;
        }
        let frames = s
            .handed
            .iter()
            .zip(&s.handed_out)
            .filter(|(_, o)| **o == target)
            .map(|(m, _)| TxFrame {
                data: m.buf.get(..m.len).unwrap_or(&[]),
                vnet: m.vnet,
            });
        let r = port.send(frames);
        s.tx_failed[out_link] += r.failed as u64;
    }
    for m in s.handed.drain(..) {
        if let Some(home) = h.homes.get(usize::from(m.home)) {
            let _ = home.try_send(m.buf);
        }
    }
    true
}

/// Hands the neighbours the pipeline learned to the control thread, which teaches every worker.
pub(crate) fn share_learned(w: &mut WorkerSetup) {
    for (ip, mac, port) in w.ctx.take_learned() {
        let _ = w.tx.try_send(FromWorker::Neighbor { ip, mac, port });
    }
}

fn apply(w: &mut WorkerSetup, m: ToWorker, tx_failed: &mut [u64]) {
    let t = now(w.epoch);
    match m {
        ToWorker::Gateway {
            gateway,
            state,
            action,
            failback,
        } => {
            let was = w.ctx.table.gateways().get(gateway.index()).map(|g| g.state);
            // Offloaded frames come back to user space, which offloads again as appropriate.
            if let Some(o) = w.offload.as_mut() {
                o.flush();
            }
            match state {
                GatewayState::Down | GatewayState::Disabled => {
                    w.ctx.table.gateway_down(gateway, t, action);
                    w.ctx.table.set_gateway_state(gateway, state);
                }
                GatewayState::Up if was.is_some_and(|s| !s.is_usable()) => {
                    w.ctx.table.gateway_up(gateway, t, failback);
                }
                s => w.ctx.table.set_gateway_state(gateway, s),
            }
        }
        ToWorker::Neighbor { ip, mac, port } => {
            // Offloaded flows may carry a neighbour's old MAC; one this worker did not know
            // cannot be in them (workers now share every neighbour they learn: no flush for
            // those).
            if w.ctx.neighbors.get(ip).is_some_and(|old| old != mac)
                && let Some(o) = w.offload.as_mut()
            {
                o.flush();
            }
            w.ctx.neighbors.learn(ip, mac, port, t);
        }
        ToWorker::Transmit { link, frames } => {
            if let Some(p) = w.ports.get_mut(usize::from(link)) {
                let r = p.send(frames.iter().map(|f| TxFrame::new(f)));
                if let Some(c) = tx_failed.get_mut(usize::from(link)) {
                    *c += r.failed as u64;
                }
            }
        }
        ToWorker::Table(cfg) => table(w, *cfg),
        ToWorker::Inspect(Inspect(f)) => f(&w.ctx.table, w.id, t),
        ToWorker::Stop => {}
    }
}

/// Applies new flow-table settings, keeping each gateway's state.
fn table(w: &mut WorkerSetup, cfg: altroute_flow::TableConfig) {
    let table = &mut w.ctx.table;
    let mut gateways = cfg.gateways;
    for (g, old) in gateways.iter_mut().zip(table.gateways()) {
        g.state = old.state;
    }
    if gateways.len() != table.gateways().len() || table.set_gateways(gateways).is_err() {
        // The control thread refuses such reloads; nothing else changes then.
        return;
    }
    table.set_policy(cfg.policy);
    table.set_overrides(cfg.overrides);
    let _ = table.set_timeouts(cfg.timeouts);
}

fn stats(w: &WorkerSetup, s: &Scratch) -> WorkerStats {
    WorkerStats {
        tx_failed: s.tx_failed.to_vec(),
        handoff: s.hstats,
        ring_drops: s.ring_drops.clone(),
        otherhost_skipped: s.otherhost_skipped.clone(),
        coalesced: s.coalesced,
        ..pipeline_stats(w)
    }
}

/// A worker's pipeline, flow-table and offload counters; the I/O counters left empty.
fn pipeline_stats(w: &WorkerSetup) -> WorkerStats {
    let per_gw = (0..w.ctx.table.gateways().len())
        .map(|g| u64::from(w.ctx.table.flows_on(GatewayId(g as u8))))
        .collect();
    WorkerStats {
        worker: w.id,
        counters: w.ctx.counters.clone(),
        table: *w.ctx.table.stats(),
        flows: w.ctx.table.len(),
        flows_per_gateway: per_gw,
        tx_failed: Vec::new(),
        handoff: HandoffStats::default(),
        ring_drops: Vec::new(),
        otherhost_skipped: Vec::new(),
        coalesced: 0,
        offload: w.offload.as_ref().map(|o| o.counters()).unwrap_or_default(),
        failures: (0..w.ctx.table.gateways().len())
            .map(|g| w.ctx.table.failure_totals(GatewayId(g as u8), now(w.epoch)))
            .collect(),
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_plumbing_connects_every_pair() {
        use std::num::NonZeroU32;
        let st = Steering::new(
            altroute_io::Side::Lan,
            NonZeroU32::new(64).unwrap(),
            NonZeroU32::new(3).unwrap(),
        );
        let hs = Handoff::build(3, vec![st; 2]).unwrap();
        assert_eq!(hs.len(), 3);
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(h.pool.len(), HANDOFF_POOL, "worker {i} pool full");
            assert!(h.inbox.is_empty());
            assert_eq!(h.peers.len(), 3);
            assert_eq!(h.steering.len(), 2);
        }
        // A buffer taken from worker 0's pool, sent to worker 2, goes home to worker 0.
        let buf = hs[0].pool.try_recv().unwrap();
        assert_eq!(buf.len(), HANDOFF_BUF);
        hs[0].peers[2]
            .try_send(Handed {
                buf,
                len: 60,
                link: 1,
                vnet: None,
                csum_not_ready: false,
                home: 0,
            })
            .unwrap();
        let m = hs[2].inbox.try_recv().unwrap();
        assert_eq!((m.len, m.link, m.home), (60, 1, 0));
        hs[2].homes[usize::from(m.home)].try_send(m.buf).unwrap();
        assert_eq!(hs[0].pool.len(), HANDOFF_POOL);
        // The owner of a LAN frame is the block of its source port.
        let f = tx::tests::udp_frame(64 * 5);
        assert_eq!(hs[1].steering[0].worker(&f, 0), 5 % 3);
    }

    #[test]
    fn recycled_packet_vectors_keep_their_allocation() {
        let v: Vec<Packet<'static>> = Vec::with_capacity(64);
        let ptr = v.as_ptr() as usize;
        let mut buf = [0u8; 8];
        let mut w: Vec<Packet<'_>> = recycle(v);
        assert_eq!((w.as_ptr() as usize, w.capacity()), (ptr, 64));
        w.push(Packet {
            buf: &mut buf,
            len: 8,
            link: 0,
            offload: TxOffload::NONE,
        });
        let back: Vec<Packet<'static>> = recycle(w);
        assert!(back.is_empty());
        assert_eq!((back.as_ptr() as usize, back.capacity()), (ptr, 64));
    }
}
