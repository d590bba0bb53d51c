//! A portable fallback backend over `pnet_datalink`, with the same shape as [`crate::Port`]
//! (`open`, `rx_batch`, `send`, `stats`) but no rings, no vnet header, no fanout: one frame per
//! batch, copied into a buffer with headroom. For debugging and for platforms without AF_PACKET.
//!
//! pnet does not report `PACKET_OUTGOING`, so the port remembers fingerprints of the last frames
//! it sent and skips identical frames it reads back (counted as `outgoing_skipped`).

use std::time::{Duration, Instant};

use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use crate::error::IoError;
use crate::frame::{Desc, FrameMeta, PacketType, RxBatch, TxFrame, TxOutcome};
use crate::port::{PortConfig, PortStats};
use crate::ring::{RingState, RxCounters, TxCounters};

/// How long one blocking read in pnet lasts; `rx_batch` loops over these up to its timeout.
const READ_STEP: Duration = Duration::from_millis(10);
/// Fingerprints of recently sent frames kept to recognise them when they come back.
const RECENT: usize = 256;

/// The pnet-based port.
pub struct PnetPort {
    iface: String,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
    descs: Vec<Desc>,
    ring: RingState,
    buf: Vec<u8>,
    headroom: usize,
    rxc: RxCounters,
    txc: TxCounters,
    recent: Vec<u64>,
    recent_pos: usize,
}

// SAFETY: the raw pointers in `descs` point into `buf`, owned by the port and moving with it
// (a heap buffer, so its address is stable); pnet's sender and receiver are `Send`.
unsafe impl Send for PnetPort {}

fn fingerprint(b: &[u8]) -> u64 {
    // FNV-1a.
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl PnetPort {
    /// Opens `cfg.iface` through pnet. Uses `iface`, `promiscuous`, `headroom`, `max_frame`
    /// (default 65,553) and ignores the ring, vnet, fanout and TX options.
    pub fn open(cfg: &PortConfig) -> Result<PnetPort, IoError> {
        let name = cfg.iface.as_str();
        if cfg.vnet_hdr || cfg.fanout.is_some() {
            return Err(IoError::config(
                name,
                "the pnet backend supports neither vnet headers nor fanout",
            ));
        }
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| IoError::Backend {
                iface: name.to_owned(),
                op: "pnet_datalink::interfaces",
                reason: "no such interface".into(),
            })?;
        let max_frame = cfg.max_frame.unwrap_or(crate::port::GSO_MAX_FRAME);
        let pc = pnet_datalink::Config {
            read_buffer_size: max_frame,
            write_buffer_size: max_frame,
            read_timeout: Some(READ_STEP),
            promiscuous: cfg.promiscuous,
            ..pnet_datalink::Config::default()
        };
        let (tx, rx) = match pnet_datalink::channel(&iface, pc) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(IoError::Backend {
                    iface: name.to_owned(),
                    op: "pnet_datalink::channel",
                    reason: "not an Ethernet channel".into(),
                });
            }
            Err(e) => return Err(IoError::os(name, "pnet_datalink::channel", e)),
        };
        Ok(PnetPort {
            iface: name.to_owned(),
            tx,
            rx,
            descs: Vec::with_capacity(1),
            ring: RingState::Owned,
            buf: vec![0; cfg.headroom + max_frame],
            headroom: cfg.headroom,
            rxc: RxCounters::default(),
            txc: TxCounters::default(),
            recent: vec![0; RECENT],
            recent_pos: 0,
        })
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Receives at most one frame (pnet reads one at a time), waiting up to `timeout` (at least
    /// one 10 ms read step).
    pub fn rx_batch(&mut self, _max: usize, timeout: Duration) -> Result<RxBatch<'_>, IoError> {
        self.descs.clear();
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.next() {
                Ok(frame) => {
                    let fp = fingerprint(frame);
                    if fp != 0 && self.recent.contains(&fp) {
                        self.rxc.outgoing_skipped += 1;
                    } else if frame.len() > self.buf.len() - self.headroom {
                        self.rxc.truncated += 1;
                    } else {
                        let end = self.headroom + frame.len();
                        self.buf[self.headroom..end].copy_from_slice(frame);
                        self.rxc.frames += 1;
                        self.rxc.bytes += frame.len() as u64;
                        self.descs.push(Desc {
                            ptr: self.buf.as_mut_ptr(),
                            cap: end,
                            start: self.headroom,
                            end,
                            vnet: None,
                            meta: FrameMeta {
                                pkttype: PacketType::Unknown(u8::MAX),
                                wire_len: frame.len() as u32,
                                csum_not_ready: false,
                                csum_valid: false,
                                vlan: None,
                                vlan_in_frame: false,
                                ts_sec: 0,
                                ts_nsec: 0,
                            },
                            dropped: false,
                        });
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(IoError::os(&self.iface, "pnet read", e)),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(RxBatch {
            descs: &mut self.descs,
            owner: &mut self.ring,
        })
    }

    /// Sends each frame with one `send_to` (no batching, no vnet header).
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        let mut out = TxOutcome::default();
        for f in frames {
            self.recent[self.recent_pos] = fingerprint(f.data);
            self.recent_pos = (self.recent_pos + 1) % RECENT;
            match self.tx.send_to(f.data, None) {
                Some(Ok(())) => {
                    self.txc.frames += 1;
                    self.txc.bytes += f.data.len() as u64;
                    out.sent += 1;
                }
                Some(Err(e)) => {
                    self.txc.errors += 1;
                    self.txc.last_errno = e.raw_os_error().unwrap_or(0);
                    if matches!(self.txc.last_errno, libc::EAGAIN | libc::ENOBUFS) {
                        self.txc.busy += 1;
                    }
                    out.failed += 1;
                }
                None => {
                    self.txc.errors += 1;
                    out.failed += 1;
                }
            }
        }
        out
    }

    /// Counters (no ring statistics: always zero here).
    pub fn stats(&mut self) -> Result<PortStats, IoError> {
        Ok(PortStats::from_parts(&self.rxc, &self.txc))
    }
}
