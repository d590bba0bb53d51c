//! A simple fallback backend over `pnet_datalink` (the daemon's `datapath.backend: pnet`), with
//! the same shape as [`crate::Port`] (`open`, `rx_batch`, `send`, `split_mut`, `stats`) but no
//! rings, no vnet header, no fanout and no offloads: pnet reads one frame per `recvfrom` into its
//! own buffer, and each frame is copied from there into a slot of the port's batch buffer (with
//! headroom before it and tail room after it, like a ring slot); each transmitted frame is one
//! `sendto`.
//!
//! What pnet does not report, a router cannot know: no `PACKET_AUXDATA`, so no VLAN tag the
//! kernel stripped (use untagged ports) and no "checksum not ready" mark (the port's peers must
//! send finished checksums, as real NICs deliver them; a veth peer needs its TX offloads off);
//! no packet type, so the socket is opened here with `PACKET_IGNORE_OUTGOING` (our own
//! transmissions never come back) and handed to pnet, which binds it, joins promiscuous mode and
//! does every read and write. Keeping the descriptor number also lets a worker sleep in
//! [`wait_pnet_ports`] on all its ports at once.

use std::os::fd::{IntoRawFd, RawFd};
use std::time::Duration;

use libc::c_int;
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use crate::error::IoError;
use crate::frame::{Desc, FrameMeta, PacketType, RxBatch, TxFrame, TxOutcome};
use crate::port::{PortConfig, PortStats};
use crate::ring::{RingState, RxCounters, TxCounters};
use crate::sys;

/// Socket receive buffer asked for (`SO_RCVBUFFORCE`, else `SO_RCVBUF`): room for bursts while
/// the worker is busy with another port.
const RCVBUF: usize = 4 << 20;
/// Bytes a frame may grow by in its slot (an answer, an ICMP error) beyond the largest frame
/// received.
const TAILROOM: usize = 128;
/// How long a blocking send waits for room ([`PortConfig::tx_blocking`]).
const TX_WAIT: Duration = Duration::from_millis(20);

/// The receive half of a [`PnetPort`].
pub struct PnetReceiver {
    iface: String,
    rx: Box<dyn DataLinkReceiver>,
    descs: Vec<Desc>,
    ring: RingState,
    /// `batch_max` slots of `slot` bytes each.
    buf: Vec<u8>,
    slot: usize,
    headroom: usize,
    max_frame: usize,
    batch_max: usize,
    fd: RawFd,
    counters: RxCounters,
}

/// The transmit half of a [`PnetPort`].
pub struct PnetSender {
    tx: Box<dyn DataLinkSender>,
    counters: TxCounters,
}

/// One interface through pnet: an `ETH_P_ALL` packet socket, read and written by pnet.
pub struct PnetPort {
    rx: PnetReceiver,
    tx: PnetSender,
}

// SAFETY: the raw pointers in `descs` point into `buf`, a heap buffer owned by the receiver that
// moves with it (its address is stable, it is never resized) and is only touched through
// `&mut self`; pnet's receiver is `Send`.
unsafe impl Send for PnetReceiver {}

fn backend(iface: &str, op: &'static str, reason: impl Into<String>) -> IoError {
    IoError::Backend {
        iface: iface.to_owned(),
        op,
        reason: reason.into(),
    }
}

/// `SO_xxxBUFFORCE` (needs CAP_NET_ADMIN), else the plain option (capped by the sysctl).
fn set_buffer(
    fd: &impl std::os::fd::AsRawFd,
    iface: &str,
    force: (c_int, &'static str),
    plain: (c_int, &'static str),
    bytes: usize,
) -> Result<(), IoError> {
    let sz = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    if sys::setsockopt(fd, libc::SOL_SOCKET, force.0, &sz, iface, force.1).is_err() {
        sys::setsockopt(fd, libc::SOL_SOCKET, plain.0, &sz, iface, plain.1)?;
    }
    Ok(())
}

impl PnetPort {
    /// Opens `cfg.iface`. Uses `iface`, `promiscuous`, `headroom`, `max_frame` (default: the MTU
    /// plus 18), `batch_max`, `sndbuf` and `tx_blocking`; refuses `vnet_hdr` and `fanout`, and
    /// ignores the ring options. Our own transmissions are always ignored.
    pub fn open(cfg: &PortConfig) -> Result<PnetPort, IoError> {
        let name = cfg.iface.as_str();
        if cfg.vnet_hdr || cfg.fanout.is_some() {
            return Err(IoError::config(
                name,
                "the pnet backend supports neither vnet headers nor fanout",
            ));
        }
        if cfg.batch_max == 0 {
            return Err(IoError::config(name, "batch_max must be at least 1"));
        }
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| backend(name, "pnet_datalink::interfaces", "no such interface"))?;
        let max_frame = match cfg.max_frame {
            Some(m) => m,
            None => (crate::host::mtu(name)? as usize + 18).max(1518),
        };
        let fd = sys::socket(
            name,
            libc::AF_PACKET,
            libc::SOCK_RAW,
            c_int::from(sys::ETH_P_ALL.to_be()),
            "socket(AF_PACKET, SOCK_RAW)",
        )?;
        sys::setsockopt(
            &fd,
            libc::SOL_PACKET,
            sys::PACKET_IGNORE_OUTGOING,
            &1 as &c_int,
            name,
            "setsockopt(PACKET_IGNORE_OUTGOING)",
        )?;
        set_buffer(
            &fd,
            name,
            (libc::SO_RCVBUFFORCE, "setsockopt(SO_RCVBUFFORCE)"),
            (libc::SO_RCVBUF, "setsockopt(SO_RCVBUF)"),
            RCVBUF,
        )?;
        if let Some(sz) = cfg.sndbuf {
            set_buffer(
                &fd,
                name,
                (libc::SO_SNDBUFFORCE, "setsockopt(SO_SNDBUFFORCE)"),
                (libc::SO_SNDBUF, "setsockopt(SO_SNDBUF)"),
                sz,
            )?;
        }
        // pnet owns the descriptor from here on (it closes it, also when it fails); the number
        // stays valid as long as pnet's sender and receiver live, which is as long as the port.
        let raw = fd.into_raw_fd();
        let pc = pnet_datalink::Config {
            // One byte more than the largest frame: a longer one shows as truncated.
            read_buffer_size: max_frame + 1,
            write_buffer_size: max_frame,
            // Zero: `next` polls without waiting; `rx_batch` waits in `poll` itself.
            read_timeout: Some(Duration::ZERO),
            write_timeout: Some(if cfg.tx_blocking {
                TX_WAIT
            } else {
                Duration::ZERO
            }),
            promiscuous: cfg.promiscuous,
            socket_fd: Some(raw),
            ..pnet_datalink::Config::default()
        };
        let (tx, rx) = match pnet_datalink::channel(&iface, pc) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(backend(
                    name,
                    "pnet_datalink::channel",
                    "not an Ethernet channel",
                ));
            }
            Err(e) => return Err(IoError::os(name, "pnet_datalink::channel", e)),
        };
        let slot = cfg.headroom + max_frame + TAILROOM;
        Ok(PnetPort {
            rx: PnetReceiver {
                iface: name.to_owned(),
                rx,
                descs: Vec::with_capacity(cfg.batch_max),
                ring: RingState::Owned,
                buf: vec![0; slot * cfg.batch_max],
                slot,
                headroom: cfg.headroom,
                max_frame,
                batch_max: cfg.batch_max,
                fd: raw,
                counters: RxCounters::default(),
            },
            tx: PnetSender {
                tx,
                counters: TxCounters::default(),
            },
        })
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.rx.iface
    }

    /// Receives up to `max` frames (capped at `batch_max`), waiting up to `timeout` if none is
    /// ready (`Duration::ZERO`: don't wait). The batch may be empty.
    pub fn rx_batch(&mut self, max: usize, timeout: Duration) -> Result<RxBatch<'_>, IoError> {
        self.rx.rx_batch(max, timeout)
    }

    /// Transmits `frames`, one `sendto` each. Failures are counted in [`PortStats`], never
    /// returned.
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        self.tx.send(frames)
    }

    /// The receive and transmit halves, to send on the port while holding one of its batches.
    pub fn split_mut(&mut self) -> (&mut PnetReceiver, &mut PnetSender) {
        (&mut self.rx, &mut self.tx)
    }

    /// Counters (no ring statistics: those stay zero).
    pub fn stats(&mut self) -> Result<PortStats, IoError> {
        Ok(PortStats::from_parts(&self.rx.counters, &self.tx.counters))
    }
}

impl PnetReceiver {
    /// See [`PnetPort::rx_batch`].
    pub fn rx_batch(&mut self, max: usize, timeout: Duration) -> Result<RxBatch<'_>, IoError> {
        self.descs.clear();
        let max = max.clamp(1, self.batch_max);
        self.read_ready(max)?;
        if self.descs.is_empty() && !timeout.is_zero() {
            let mut pfd = [libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            let ms = c_int::try_from(timeout.as_millis().max(1)).unwrap_or(c_int::MAX);
            if sys::poll_in(&mut pfd, ms, &self.iface)? > 0 {
                self.read_ready(max)?;
            }
        }
        Ok(RxBatch {
            descs: &mut self.descs,
            owner: &mut self.ring,
        })
    }

    /// Reads the frames that are ready, up to `max`, each into its slot.
    fn read_ready(&mut self, max: usize) -> Result<(), IoError> {
        while self.descs.len() < max {
            let frame = match self.rx.next() {
                Ok(f) => f,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(IoError::os(&self.iface, "pnet read", e)),
            };
            if frame.len() > self.max_frame {
                self.counters.truncated += 1;
                continue;
            }
            let off = self.descs.len() * self.slot;
            let len = frame.len();
            // `descs.len() < max <= batch_max` and `buf.len() == slot * batch_max` keep the slot
            // inside `buf`; `len <= max_frame` keeps the frame inside the slot. Checked anyway:
            if off + self.slot > self.buf.len() || self.headroom + len > self.slot {
                return Ok(());
            }
            // Slots are written and described through `Vec::as_mut_ptr`, which makes no
            // reference to the buffer, so the pointers of earlier frames of the batch stay valid.
            let base = self.buf.as_mut_ptr();
            // SAFETY: `off + slot <= buf.len()` (checked above), so `ptr` points to `slot` bytes
            // of `buf`; `frame` is pnet's own read buffer, which does not overlap `buf`, and
            // `headroom + len <= slot`.
            let ptr = unsafe {
                let ptr = base.add(off);
                std::ptr::copy_nonoverlapping(frame.as_ptr(), ptr.add(self.headroom), len);
                ptr
            };
            self.counters.frames += 1;
            self.counters.bytes += len as u64;
            let wire_len = u32::try_from(len).unwrap_or(u32::MAX);
            self.descs.push(Desc {
                ptr,
                cap: self.slot,
                start: self.headroom,
                end: self.headroom + len,
                vnet: None,
                meta: FrameMeta {
                    pkttype: PacketType::Unknown(u8::MAX),
                    wire_len,
                    csum_not_ready: false,
                    csum_valid: false,
                    vlan: None,
                    vlan_in_frame: false,
                    ts_sec: 0,
                    ts_nsec: 0,
                },
                dropped: false,
            });
        }
        Ok(())
    }
}

impl PnetSender {
    /// See [`PnetPort::send`].
    pub fn send<'f>(&mut self, frames: impl IntoIterator<Item = TxFrame<'f>>) -> TxOutcome {
        let mut out = TxOutcome::default();
        for f in frames {
            match self.tx.send_to(f.data, None) {
                Some(Ok(())) => {
                    self.counters.frames += 1;
                    self.counters.bytes += f.data.len() as u64;
                    out.sent += 1;
                }
                Some(Err(e)) => {
                    self.counters.errors += 1;
                    self.counters.last_errno = e.raw_os_error().unwrap_or(0);
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || matches!(self.counters.last_errno, libc::EAGAIN | libc::ENOBUFS)
                    {
                        self.counters.busy += 1;
                    }
                    out.failed += 1;
                }
                None => {
                    self.counters.errors += 1;
                    out.failed += 1;
                }
            }
        }
        out
    }
}

/// Waits until one of `ports` has a frame ready or `timeout` passes; returns how many are ready.
/// Polls the first [`POLL_MAX`](crate::thread::POLL_MAX) ports.
pub fn wait_pnet_ports(ports: &[PnetPort], timeout: Duration) -> Result<usize, IoError> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; crate::thread::POLL_MAX];
    let mut n = 0;
    for (p, pfd) in ports.iter().zip(pfds.iter_mut()) {
        pfd.fd = p.rx.fd;
        n += 1;
    }
    let name = ports.first().map_or("(none)", |p| p.iface());
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    sys::poll_in(&mut pfds[..n], ms, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_pnet_cannot_do() {
        let mut c = PortConfig::new("lo");
        c.vnet_hdr = true;
        assert!(matches!(PnetPort::open(&c), Err(IoError::Config { .. })));
        let mut c = PortConfig::new("lo");
        c.batch_max = 0;
        assert!(PnetPort::open(&c).is_err());
        let c = PortConfig::new("ar-no-such0");
        let e = PnetPort::open(&c).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("no such interface")),
            "{e:?}"
        );
    }
}
