//! One datapath worker thread: its AF_PACKET sockets (one per link, in the links' fanout groups),
//! its pipeline [`Context`] with its own flow table, and the loop that moves frames.
//!
//! The loop, per round: apply control messages; for each link, take a batch from its RX ring,
//! run every frame through the pipeline in place, then transmit the frames grouped by out link
//! (one `sendmmsg` per link) straight from the ring slots; hand the ring slots back. Nothing on
//! this path allocates, locks or logs. Frames for the control plane (probe replies, ARP) are
//! copied into a channel message; that is the only allocation, and it is not on the forwarding
//! path.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use altroute_flow::{DownAction, Failback, GatewayId, GatewayState, Time};
use altroute_io::{IoError, Port, TxFrame, VnetHdr};
use altroute_packet::pipeline::{Context, ControlReason, Counters, FrameMeta, Verdict};
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
    /// Stop after this round.
    Stop,
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
}

/// Everything a worker needs, built by the daemon before the thread starts.
pub struct WorkerSetup {
    /// Worker number (also its fanout member index).
    pub id: u16,
    /// The pipeline with its flow table.
    pub ctx: Context,
    /// One port per link, indexed by link number.
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

/// The L4 checksum location of an untagged-or-tagged IPv4 TCP/UDP frame, for plain-mode frames
/// the kernel marked "checksum not ready" (virtio-net mode carries it in the header instead).
fn partial_offsets(frame: &[u8]) -> Option<(u16, u16)> {
    let l3 = if frame.get(12..14)? == [0x81, 0x00] {
        18
    } else {
        14
    };
    if frame.get(l3 - 2..l3)? != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame.get(l3)? & 0x0f) * 4;
    let off = match *frame.get(l3 + 9)? {
        6 => 16,
        17 => 6,
        _ => return None,
    };
    Some((u16::try_from(l3 + ihl).ok()?, off))
}

/// The IPv4 protocol of an (optionally tagged) Ethernet frame.
fn ip_proto(frame: &[u8]) -> Option<u8> {
    let l3 = if frame.get(12..14)? == [0x81, 0x00] {
        18
    } else {
        14
    };
    frame.get(l3 + 9).copied()
}

/// Run the worker until it is told to stop or its sockets fail. Returns its last counters.
pub fn run(mut w: WorkerSetup) -> Result<WorkerStats, IoError> {
    let links = w.ports.len();
    let mut outs: Vec<Out> = Vec::with_capacity(w.batch);
    let mut tx_failed = vec![0u64; links];
    let mut last_stats = Instant::now();
    let mut last_expire = Instant::now();
    let mut expired = Vec::new();
    let mut idle = false;
    loop {
        // Control messages.
        loop {
            match w.rx.try_recv() {
                Ok(ToWorker::Stop) | Err(TryRecvError::Disconnected) => {
                    return Ok(stats(&w, &tx_failed));
                }
                Ok(m) => apply(&mut w, m, &mut tx_failed),
                Err(TryRecvError::Empty) => break,
            }
        }
        if idle {
            let refs: Vec<&Port> = w.ports.iter().collect();
            altroute_io::wait_any(&refs, Duration::from_millis(20))?;
        }
        idle = true;
        let t = now(w.epoch);
        for link in 0..links {
            let (before, rest) = w.ports.split_at_mut(link);
            let Some((this, after)) = rest.split_first_mut() else {
                continue;
            };
            let (receiver, own_sender) = this.split_mut();
            let mut batch = receiver.rx_batch(w.batch, Duration::ZERO)?;
            if batch.is_empty() {
                continue;
            }
            idle = false;
            outs.clear();
            for i in 0..batch.len() {
                let Some(mut f) = batch.get_mut(i) else {
                    outs.push(Out::None);
                    continue;
                };
                let vnet = f.vnet().copied();
                let mut meta = FrameMeta {
                    partial: match vnet {
                        Some(v) if v.flags & VnetHdr::F_NEEDS_CSUM != 0 => {
                            Some((v.csum_start, v.csum_offset))
                        }
                        Some(_) => None,
                        None if f.meta().csum_not_ready => partial_offsets(f.data()),
                        None => None,
                    },
                    gso: vnet.is_some_and(|v| v.is_gso()),
                };
                let start_before = meta.partial.map(|p| p.0);
                let len = f.len();
                let buf = f.frame_and_tail_mut();
                let verdict = w.ctx.process(buf, len, link as u8, &mut meta, t);
                let out = match verdict {
                    Verdict::Forward { port, len } => {
                        let out_link = w
                            .ctx
                            .config()
                            .ports
                            .get(usize::from(port.0))
                            .map_or(link as u8, |p| p.link);
                        if !f.set_len(len) {
                            f.drop_frame();
                            Out::None
                        } else {
                            Out::Link(out_link)
                        }
                    }
                    Verdict::Reply { len } => {
                        if f.set_len(len) {
                            // A generated answer carries no offload.
                            f.set_vnet(None);
                            meta.partial = None;
                            Out::Link(link as u8)
                        } else {
                            Out::None
                        }
                    }
                    Verdict::Drop(_) => Out::None,
                    Verdict::Control(reason) => {
                        let _ = w.tx.try_send(FromWorker::Frame {
                            worker: w.id,
                            link: link as u8,
                            reason,
                            frame: f.data().to_vec(),
                        });
                        Out::None
                    }
                };
                if let Out::Link(out_link) = out {
                    // Keep the offload header in step with the rewrite (VLAN push/pop moves it).
                    if let (Some(after_start), Some(before_start)) =
                        (meta.partial.map(|p| p.0), start_before)
                        && after_start != before_start
                        && let Some(v) = f.vnet_mut()
                    {
                        let _ = v.shift(i32::from(after_start) - i32::from(before_start));
                    }
                    let out_vnet = w.vnet.get(usize::from(out_link)).copied().unwrap_or(false);
                    if !out_vnet && let Some((s, o)) = meta.partial {
                        // The out link cannot finish the checksum: do it here.
                        let data = f.data_mut();
                        let is_udp = ip_proto(data) == Some(17);
                        let _ = if is_udp {
                            altroute_packet::checksum::complete_partial_udp(
                                data,
                                s.into(),
                                o.into(),
                            )
                        } else {
                            altroute_packet::checksum::complete_partial(data, s.into(), o.into())
                        };
                    }
                }
                if out == Out::None {
                    f.drop_frame();
                }
                outs.push(out);
            }
            // Transmit, grouped by out link, straight from the ring.
            for out_link in 0..links {
                let target = Out::Link(out_link as u8);
                if !outs.contains(&target) {
                    continue;
                }
                let frames = (0..batch.len())
                    .filter(|&i| outs[i] == target)
                    .filter_map(|i| batch.tx_frame(i));
                let sender = if out_link == link {
                    &mut *own_sender
                } else if out_link < link {
                    before[out_link].split_mut().1
                } else {
                    after[out_link - link - 1].split_mut().1
                };
                let r = sender.send(frames);
                tx_failed[out_link] += r.failed as u64;
            }
            drop(batch);
        }
        if last_expire.elapsed() >= Duration::from_millis(250) {
            last_expire = Instant::now();
            expired.clear();
            w.ctx.table.expire(now(w.epoch), 65_536, &mut expired);
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            let _ =
                w.tx.try_send(FromWorker::Stats(Box::new(stats(&w, &tx_failed))));
        }
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
        ToWorker::Stop => {}
    }
}

fn stats(w: &WorkerSetup, tx_failed: &[u64]) -> WorkerStats {
    let per_gw = (0..w.ctx.table.gateways().len())
        .map(|g| u64::from(w.ctx.table.flows_on(GatewayId(g as u8))))
        .collect();
    WorkerStats {
        worker: w.id,
        counters: w.ctx.counters.clone(),
        table: *w.ctx.table.stats(),
        flows: w.ctx.table.len(),
        flows_per_gateway: per_gw,
        tx_failed: tx_failed.to_vec(),
        failures: (0..w.ctx.table.gateways().len())
            .map(|g| w.ctx.table.failure_totals(GatewayId(g as u8), now(w.epoch)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_offsets_of_tcp_udp() {
        let mut f = vec![0u8; 60];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 6;
        assert_eq!(partial_offsets(&f), Some((34, 16)));
        f[23] = 17;
        assert_eq!(partial_offsets(&f), Some((34, 6)));
        f[23] = 1;
        assert_eq!(partial_offsets(&f), None);
        assert_eq!(partial_offsets(&[0u8; 10]), None);
    }
}
