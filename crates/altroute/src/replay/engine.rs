//! The replay's workers: one pipeline context per worker, each with its own share of the flow
//! table and the NAT port range ([`build::table_config`]`(cfg, w, N)`), fed the frames the
//! daemon's default (cBPF) fanout steering gives it ([`build::steering`] of the in-link's side,
//! [`build::link_sides`]; `skb->hash` 0). Frames are processed in the merged input order: a run
//! of consecutive frames steered to the same worker (at most `--batch` of them) is one call,
//! so the outputs come out in input order whatever the number of workers.
//!
//! The control plane between runs does what the daemon's control thread does: gateway events
//! reach every worker, and a neighbour one worker learned is learned by every worker — announced
//! by an ARP reply the worker passed up ([`crate::control::arp_neighbor`], the daemon's own
//! function) or heard from another frame ([`Context::take_learned`]). The daemon does that
//! asynchronously; replay does it before the next run, so the result does not depend on thread
//! timing.

use altroute_flow::{DownAction, Failback, GatewayId, Time};
use altroute_io::Steering;
use altroute_packet::egress::TxOffload;
use altroute_packet::pipeline::{Context, ControlReason, MAX_FRAME, Packet, Verdict};
use altroute_packet::wire::EthernetFrame;

use super::{CapFrame, OutFrame, ReplayError, Report, count};
use crate::build;
use crate::config::Config;

/// A frame's place in the merged stream: (capture time, file, index in the file).
pub(super) type Slot = (u64, usize, usize);

/// No worker: the frame is cut by the capture's snaplen and not processed.
const NONE: u16 = u16::MAX;

/// Every worker's context and what decides which one gets a frame.
pub(super) struct Workers {
    /// One context per worker.
    pub ctxs: Vec<Context>,
    /// The steering of each link (by link index).
    steering: Vec<Steering>,
    /// The link of each port (by port index), for [`crate::control::arp_neighbor`].
    port_link: Vec<u8>,
}

impl Workers {
    /// `n` workers (at least one) for `cfg`.
    pub fn new(cfg: &Config, n: u16) -> Result<Workers, ReplayError> {
        let n = n.max(1);
        let [lo, hi] = cfg.nat.port_range;
        let blocks = (u32::from(hi) + 1).saturating_sub(u32::from(lo))
            / u32::from(cfg.nat.port_block.max(1));
        if blocks < u32::from(n) {
            return Err(ReplayError::Usage(format!(
                "{n} workers: the port range [{lo}, {hi}] holds {blocks} blocks of {} ports, at least one per worker is needed",
                cfg.nat.port_block
            )));
        }
        let ctxs = (0..n)
            .map(|w| super::worker_context(cfg, w, n))
            .collect::<Result<Vec<_>, _>>()?;
        let steering = build::link_sides(cfg)
            .into_iter()
            .map(|side| build::steering(cfg, side, n))
            .collect::<Result<Vec<_>, _>>()?;
        let port_link = ctxs
            .first()
            .map(|c| c.config().ports.iter().map(|p| p.link).collect())
            .unwrap_or_default();
        Ok(Workers {
            ctxs,
            steering,
            port_link,
        })
    }

    /// The worker of every frame of `order` ([`NONE`] for frames not processed), as the kernel
    /// would steer it on its in-link (`file_link[f]`: the link of file `f`).
    pub fn owners(
        &self,
        order: &[Slot],
        files: &[(usize, Vec<CapFrame>)],
        file_link: &[u8],
    ) -> Vec<u16> {
        order
            .iter()
            .map(|&(_, f, i)| {
                let frame = &files[f].1[i];
                if frame.is_truncated() {
                    return NONE;
                }
                self.worker_of(file_link[f], &frame.data)
            })
            .collect()
    }

    /// The worker the kernel would deliver `frame` to on link `link`.
    pub fn worker_of(&self, link: u8, frame: &[u8]) -> u16 {
        match self.steering.get(usize::from(link)) {
            Some(s) => s.worker(frame, 0) as u16,
            None => 0,
        }
    }

    /// Every worker learns gateway `g`'s new state.
    pub fn gateway_event(&mut self, g: GatewayId, down: bool, now: Time, cfg: &Config) {
        let action = DownAction::from(cfg.policy.on_gateway_down);
        let failback = Failback::from(cfg.policy.failback);
        for ctx in &mut self.ctxs {
            if down {
                ctx.table.gateway_down(g, now, action);
            } else {
                ctx.table.gateway_up(g, now, failback);
            }
        }
    }

    /// Every worker expires its idle flows.
    pub fn expire(&mut self, now: Time, scratch: &mut Vec<altroute_flow::FlowInfo>) {
        for ctx in &mut self.ctxs {
            scratch.clear();
            ctx.table.expire(now, 256, scratch);
        }
    }

    /// The control plane after worker `w`'s run: every neighbour an ARP reply of the run
    /// announced, and every neighbour the worker learned from other frames
    /// ([`Context::take_learned`]), is learned by every worker.
    pub fn share_neighbors(&mut self, w: usize, b: &Batch, cfg: &Config, now: Time) {
        let run = b
            .taken
            .iter()
            .enumerate()
            .filter_map(|(j, &(_, link, len))| Some((link, b.bufs[j].get(..len)?, b.verdicts[j])));
        self.share(w, run, cfg, now);
    }

    /// [`Workers::share_neighbors`] for `(link, frame as received, verdict)` of each frame of
    /// the run.
    pub fn share<'a>(
        &mut self,
        w: usize,
        run: impl Iterator<Item = (u8, &'a [u8], Verdict)>,
        cfg: &Config,
        now: Time,
    ) {
        let mut heard: Vec<_> = match self.ctxs.get_mut(w) {
            Some(ctx) => ctx.take_learned().collect(),
            None => Vec::new(),
        };
        for (link, frame, v) in run {
            if v != Verdict::Control(ControlReason::ArpReply) {
                continue;
            }
            let Ok(eth) = EthernetFrame::new_checked(frame) else {
                continue;
            };
            heard.extend(crate::control::arp_neighbor(
                cfg,
                &self.port_link,
                link,
                &eth,
            ));
        }
        for (ip, mac, port) in heard {
            for ctx in &mut self.ctxs {
                ctx.neighbors.learn(ip, mac, port, now);
            }
        }
    }
}

/// The end of the run starting at `n`: frames `n..end` (at most `limit`) steered to one worker
/// (frames not processed go with any); and that worker.
pub(super) fn run_end(owners: &[u16], n: usize, limit: usize) -> (usize, u16) {
    let mut w = NONE;
    for (k, &o) in owners.iter().enumerate().take(limit).skip(n) {
        if o == NONE {
            continue;
        }
        if w == NONE {
            w = o;
        } else if o != w {
            return (k, w);
        }
    }
    (limit, if w == NONE { 0 } else { w })
}

/// The buffers of one run and what became of its frames.
pub(super) struct Batch {
    bufs: Vec<Vec<u8>>,
    /// (index into the capture order, link, length) of each frame handed to the pipeline.
    taken: Vec<(usize, u8, usize)>,
    verdicts: Vec<Verdict>,
}

impl Batch {
    pub fn new(size: usize) -> Batch {
        Batch {
            bufs: vec![vec![0u8; MAX_FRAME + 64]; size],
            taken: Vec::with_capacity(size),
            verdicts: vec![Verdict::default(); size],
        }
    }

    /// Copies frames `range` of `order` into the buffers (truncated ones are counted and
    /// skipped); returns the latest capture time seen, in ms since `first_ts`, at least `last_ms`.
    pub fn fill(
        &mut self,
        (order, range): (&[Slot], std::ops::Range<usize>),
        files: &[(usize, Vec<CapFrame>)],
        file_link: &[u8],
        report: &mut Report,
        (first_ts, mut last_ms, from_capture): (u64, u64, bool),
    ) -> u64 {
        self.taken.clear();
        for (k, &(ts, f, i)) in order.iter().enumerate().take(range.end).skip(range.start) {
            if from_capture {
                last_ms = (ts.saturating_sub(first_ts) / 1_000_000).max(last_ms);
            }
            let frame = &files[f].1[i];
            if frame.is_truncated() {
                report.truncated += 1;
                continue;
            }
            let len = frame.data.len();
            let buf = &mut self.bufs[self.taken.len()];
            if buf.len() < len + 64 {
                // Larger than any frame the pipeline accepts: it drops and counts it (too_big).
                buf.resize(len + 64, 0);
            }
            buf[..len].copy_from_slice(&frame.data);
            self.taken.push((k, file_link[f], len));
        }
        last_ms
    }

    /// Runs the taken frames through `ctx`: one at a time (`process`) for batches of one, else
    /// `process_batch`.
    pub fn run(&mut self, ctx: &mut Context, now: Time) {
        if self.bufs.len() == 1 {
            if let Some(&(_, link, len)) = self.taken.first() {
                let mut offload = TxOffload::NONE;
                self.verdicts[0] = ctx.process(&mut self.bufs[0], len, link, &mut offload, now);
            }
            return;
        }
        let mut pkts: Vec<Packet<'_>> = self
            .bufs
            .iter_mut()
            .zip(&self.taken)
            .map(|(buf, &(_, link, len))| Packet {
                len,
                buf: buf.as_mut_slice(),
                link,
                offload: TxOffload::NONE,
            })
            .collect();
        ctx.process_batch(&mut pkts, now, &mut self.verdicts);
    }

    /// Counts the verdicts and appends the frames that leave to their port's output.
    pub fn emit(&self, order: &[Slot], files: &[(usize, Vec<CapFrame>)], report: &mut Report) {
        for (j, &(k, _, _)) in self.taken.iter().enumerate() {
            let (ts, f, _) = order[k];
            let in_port = files[f].0;
            let v = self.verdicts[j];
            count(report, v);
            let out = match v {
                Verdict::Forward { port, len } => Some((usize::from(port.0), len)),
                Verdict::Reply { len } => Some((in_port, len)),
                Verdict::Drop(_) | Verdict::Control(_) => None,
            };
            if let Some((port, len)) = out
                && let (Some(out), Some(data)) =
                    (report.outputs.get_mut(port), self.bufs[j].get(..len))
            {
                out.push(OutFrame {
                    ts_ns: ts,
                    data: data.to_vec(),
                });
            }
        }
    }

    /// Frames handed to the pipeline in this run.
    pub fn taken(&self) -> usize {
        self.taken.len()
    }
}

#[cfg(test)]
mod tests;
