//! The worker of the pnet backend (`datapath.backend: pnet`): one thread, one
//! [`PnetPort`] per link, the same pipeline as the ring worker, the same control messages and
//! counters, and none of its I/O machinery (no rings, vnet headers, offload, coalescing, handoff).
//!
//! The loop, per round: apply control messages; for each link, take a batch of frames (copies
//! of what pnet read), run each through the pipeline in place (the worker's `handle`, as frames
//! handed over between ring workers are) and send it out of its link (one `sendto` each); sleep
//! in `poll` on every port when all were idle. It runs alone: pnet cannot attach the steering program that
//! sends both directions of a NAT flow to the worker owning it, so the daemon starts one worker.

use std::time::{Duration, Instant};

use altroute_flow::Time;
use altroute_io::{IoError, PnetPort, TxFrame};
use crossbeam_channel::TryRecvError;

use super::{FromWorker, Step, ToWorker, WorkerSetup, WorkerStats};

/// How long the worker sleeps in `poll` when no port had a frame.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often expired flows are swept.
const EXPIRE_EVERY: Duration = Duration::from_millis(250);
/// How often counters go to the control thread.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Runs the pnet worker until it is told to stop or a port fails. `w.ports` is unused (empty);
/// `ports` holds one port per link. Returns its last counters.
pub fn run(mut w: WorkerSetup, mut ports: Vec<PnetPort>) -> Result<WorkerStats, IoError> {
    if let Some(cpu) = w.cpu {
        // Pinning is an optimisation: carry on unpinned if the CPU is not allowed.
        let _ = altroute_io::cpu::pin_current_thread(cpu);
    }
    let mut tx_failed = vec![0u64; ports.len()];
    let mut last_stats = Instant::now();
    let mut last_expire = Instant::now();
    let mut expired = Vec::new();
    loop {
        if !control_messages(&mut w, &mut ports, &mut tx_failed) {
            return Ok(stats(&w, &mut ports, &tx_failed));
        }
        let t = super::now(w.epoch);
        let mut busy = false;
        for link in 0..ports.len() {
            busy |= forward_batch(&mut w, &mut ports, link, t, &mut tx_failed)?;
        }
        super::share_learned(&mut w);
        if !busy {
            altroute_io::wait_pnet_ports(&ports, IDLE_WAIT)?;
        }
        let clock = Instant::now();
        if clock.duration_since(last_expire) >= EXPIRE_EVERY {
            last_expire = clock;
            expired.clear();
            w.ctx
                .table
                .expire(super::now(w.epoch), 65_536, &mut expired);
        }
        if clock.duration_since(last_stats) >= STATS_EVERY {
            last_stats = clock;
            let s = stats(&w, &mut ports, &tx_failed);
            let _ = w.tx.try_send(FromWorker::Stats(Box::new(s)));
        }
    }
}

/// Applies the pending control messages; `false` when told to stop (or orphaned).
fn control_messages(w: &mut WorkerSetup, ports: &mut [PnetPort], tx_failed: &mut [u64]) -> bool {
    loop {
        match w.rx.try_recv() {
            Ok(ToWorker::Stop) | Err(TryRecvError::Disconnected) => return false,
            Ok(ToWorker::Transmit { link, frames }) => {
                let l = usize::from(link);
                if let (Some(p), Some(c)) = (ports.get_mut(l), tx_failed.get_mut(l)) {
                    *c += p.send(frames.iter().map(|f| TxFrame::new(f))).failed as u64;
                }
            }
            Ok(m) => super::apply(w, m, tx_failed),
            Err(TryRecvError::Empty) => return true,
        }
    }
}

/// One batch from `link` through the pipeline and out. Returns whether any frame arrived.
fn forward_batch(
    w: &mut WorkerSetup,
    ports: &mut [PnetPort],
    link: usize,
    t: Time,
    tx_failed: &mut [u64],
) -> Result<bool, IoError> {
    let (before, rest) = ports.split_at_mut(link);
    let Some((this, after)) = rest.split_first_mut() else {
        return Ok(false);
    };
    let (receiver, own_sender) = this.split_mut();
    let mut batch = receiver.rx_batch(w.batch, Duration::ZERO)?;
    if batch.is_empty() {
        return Ok(false);
    }
    for i in 0..batch.len() {
        let Some(mut f) = batch.get_mut(i) else {
            continue;
        };
        let len = f.len();
        let step = super::tx::handle(
            &mut w.ctx,
            &w.vnet,
            link as u8,
            f.frame_and_tail_mut(),
            len,
            None,
            false,
            t,
        );
        match step {
            Step::Send { link: out, len, .. } => {
                let out = usize::from(out);
                if !f.set_len(len) {
                    continue;
                }
                let sender = if out == link {
                    Some(&mut *own_sender)
                } else if out < link {
                    before.get_mut(out).map(|p| p.split_mut().1)
                } else {
                    after.get_mut(out - link - 1).map(|p| p.split_mut().1)
                };
                if let (Some(s), Some(c)) = (sender, tx_failed.get_mut(out)) {
                    *c += s.send([f.tx()]).failed as u64;
                }
            }
            Step::Control(reason) => {
                let _ = w.tx.try_send(FromWorker::Frame {
                    worker: w.id,
                    link: link as u8,
                    reason,
                    frame: f.data().to_vec(),
                });
            }
            Step::Drop => {}
        }
    }
    Ok(true)
}

/// The worker's counters, with the ports' receive losses.
fn stats(w: &WorkerSetup, ports: &mut [PnetPort], tx_failed: &[u64]) -> WorkerStats {
    let ring_drops = ports
        .iter_mut()
        .map(|p| p.stats().map_or(0, |s| s.ring_drops + s.truncated))
        .collect();
    WorkerStats {
        tx_failed: tx_failed.to_vec(),
        otherhost_skipped: vec![0; ports.len()],
        ring_drops,
        ..super::pipeline_stats(w)
    }
}
