//! Deterministic traffic for the pipeline benches: a two-WAN router [`Context`], flows
//! established through it (both directions seen), and a *trace* of small TCP/UDP frames (64–80 B)
//! that visits those flows in shuffled order from both sides. Everything is generated at bench
//! time from a seed; nothing is committed.
//!
//! Frames are replayed through a small *ring* of 128-byte slots, like an RX ring: before a batch is
//! processed, each of its frames is copied (a fixed [`COPY`] bytes) from the pristine trace into
//! the next ring slot. That copy is part of what the benches time, so they also time it alone
//! ([`Replay::reset_batch`] without processing) and report both.

use std::net::Ipv4Addr;

use altroute_flow::tcp::flags::{ACK, SYN};
use altroute_flow::{FlowKey, FlowTable, Gateway, TableConfig, Time, proto};
use altroute_packet::checksum;
use altroute_packet::egress::TxOffload;
use altroute_packet::pipeline::{
    Context, GatewaySpec, Options, Packet, PipelineConfig, PortId, PortSpec, Role, Verdict,
};
use altroute_packet::wire::MacAddr;

use crate::Rng;

/// Bytes between frames in the trace and in the ring.
pub const STRIDE: usize = 128;
/// Bytes copied per frame when a ring slot is refilled (every trace frame is at most this long).
pub const COPY: usize = 80;
/// Slots in the replay ring (128 KiB).
pub const RING: usize = 1024;
/// The router's LAN MAC.
pub const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// WAN MACs (ports 1 and 2).
pub const WAN_MAC: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 1, 1]), MacAddr([2, 0, 0, 0, 2, 1])];
/// Gateway (ISP router) MACs.
pub const GW_MAC: [MacAddr; 2] = [MacAddr([2, 0, 0, 0, 1, 2]), MacAddr([2, 0, 0, 0, 2, 2])];
/// External (NAT) addresses of the two gateways.
pub const EXT: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1)];
/// The time every bench runs at.
pub const NOW: Time = Time::from_secs(100);

/// The MAC of an inside host (derived from its address).
pub fn host_mac(a: Ipv4Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([2, 0xaa, o[0], o[1], o[2], o[3]])
}

/// A two-WAN router (LAN on link 0 with 10.255.255.254/8, WANs on links 1 and 2) whose flow
/// table holds up to `max_flows` flows, accounting on, default options (IPv4 header checksums
/// verified).
pub fn context(max_flows: u32) -> Context {
    context_with(max_flows, true)
}

/// [`context`] with per-flow accounting (packet and byte counters) on or off.
pub fn context_with(max_flows: u32, accounting: bool) -> Context {
    let table = FlowTable::new(TableConfig {
        max_flows,
        accounting,
        gateways: vec![
            Gateway::new("isp1", Some(EXT[0].into())).weight(4),
            Gateway::new("isp2", Some(EXT[1].into())),
        ],
        ..TableConfig::default()
    })
    .expect("valid bench table config");
    let port = |name: &str, role, link, mac, addr| PortSpec {
        name: name.into(),
        role,
        link,
        vlan: None,
        mac,
        addrs: vec![addr],
        mtu: 1500,
    };
    let cfg = PipelineConfig {
        ports: vec![
            port(
                "lan",
                Role::Lan,
                0,
                LAN_MAC,
                (Ipv4Addr::new(10, 255, 255, 254), 8),
            ),
            port("wan1", Role::Wan, 1, WAN_MAC[0], (EXT[0], 24)),
            port("wan2", Role::Wan, 2, WAN_MAC[1], (EXT[1], 24)),
        ],
        gateways: vec![
            GatewaySpec {
                port: PortId(1),
                next_hop: Ipv4Addr::new(192, 0, 2, 2),
                mac: Some(GW_MAC[0]),
            },
            GatewaySpec {
                port: PortId(2),
                next_hop: Ipv4Addr::new(198, 51, 100, 2),
                mac: Some(GW_MAC[1]),
            },
        ],
        port_forwards: Vec::new(),
        options: Options::default(),
    };
    // (Its arrays are on huge pages already: the bench binaries' global allocator,
    // `altroute_io::mem::HugePageAlloc`, put them there.)
    Context::new(cfg, table).expect("valid bench pipeline config")
}

/// Longest steady-state trace (frames): 32 MiB of pristine frames.
pub const MAX_TRACE: usize = 1 << 18;

/// The steady-state setup of the pipeline benches: a [`context_with`] of `n` flows (the keys of
/// [`lan_keys`](crate::lan_keys), seed 1), every one [`establish`]ed, and their
/// [`steady_trace`] (at most [`MAX_TRACE`] frames, seed 2).
pub fn steady_setup(n: usize, accounting: bool) -> (Context, Trace) {
    let keys = crate::lan_keys(n, 1);
    let mut ctx = context_with(n as u32, accounting);
    let flows = establish(&mut ctx, &keys);
    let trace = steady_trace(&flows, MAX_TRACE, 2);
    (ctx, trace)
}

/// One IPv4 TCP or UDP frame of exactly `len` bytes (54 ≤ len for TCP, 42 ≤ len for UDP; the
/// payload fills the rest), with correct IP and L4 checksums, written into `out[..len]`.
#[allow(clippy::too_many_arguments)]
pub fn write_frame(
    out: &mut [u8],
    len: usize,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    key: &FlowKey,
    tcp_flags: u8,
    ttl: u8,
    salt: u32,
) {
    let src = key.src_v4().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let dst = key.dst_v4().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let f = &mut out[..len];
    f.fill(0);
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&(salt as u16).to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = ttl;
    ip[9] = key.proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let l4 = &mut f[34..];
    l4[0..2].copy_from_slice(&key.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&key.dport.to_be_bytes());
    let csum_at = if key.proto == proto::TCP {
        l4[4..8].copy_from_slice(&salt.to_be_bytes());
        l4[8..12].copy_from_slice(&salt.rotate_left(7).to_be_bytes());
        l4[12] = 0x50;
        l4[13] = tcp_flags;
        l4[14..16].copy_from_slice(&64000u16.to_be_bytes());
        for (i, b) in l4[20..].iter_mut().enumerate() {
            *b = (salt as u8).wrapping_add(i as u8);
        }
        16
    } else {
        l4[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        for (i, b) in l4[8..].iter_mut().enumerate() {
            *b = (salt as u8).wrapping_add(i as u8);
        }
        6
    };
    let c = checksum::udp_wire(checksum::l4_checksum_v4(src, dst, key.proto, l4));
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A flow as the router translated it.
#[derive(Clone, Copy, Debug)]
pub struct Mapped {
    /// The inside host's key (LAN → WAN).
    pub key: FlowKey,
    /// The key of the remote side's packets (WAN → LAN, after translation).
    pub reply: FlowKey,
    /// The WAN link (1 or 2) its replies arrive on.
    pub link: u8,
}

/// Pass one LAN frame of `key` (flags `flags`) through `ctx`; on success returns the translated
/// reply key and WAN link.
fn send_lan(ctx: &mut Context, key: &FlowKey, flags: u8) -> Option<Mapped> {
    let mut buf = [0u8; STRIDE];
    let src = key.src_v4()?;
    write_frame(&mut buf, 64, host_mac(src), LAN_MAC, key, flags, 64, 1);
    let mut meta = TxOffload::NONE;
    match ctx.process(&mut buf, 64, 0, &mut meta, NOW) {
        Verdict::Forward { port, .. } => {
            let ext = Ipv4Addr::new(buf[26], buf[27], buf[28], buf[29]);
            let nport = u16::from_be_bytes([buf[34], buf[35]]);
            let reply = FlowKey::v4(key.dst_v4()?, ext, key.proto, key.dport, nport);
            Some(Mapped {
                key: *key,
                reply,
                link: port.0,
            })
        }
        _ => None,
    }
}

fn send_wan(ctx: &mut Context, m: &Mapped, flags: u8) -> bool {
    let mut buf = [0u8; STRIDE];
    let w = usize::from(m.link - 1);
    write_frame(&mut buf, 64, GW_MAC[w], WAN_MAC[w], &m.reply, flags, 60, 2);
    let mut meta = TxOffload::NONE;
    matches!(
        ctx.process(&mut buf, 64, m.link, &mut meta, NOW),
        Verdict::Forward { .. }
    )
}

/// Establish every key through `ctx`: TCP SYN, SYN-ACK, ACK; UDP out and back. Panics if any
/// packet is not forwarded (the bench would measure the wrong path).
pub fn establish(ctx: &mut Context, keys: &[FlowKey]) -> Vec<Mapped> {
    keys.iter()
        .map(|k| {
            let tcp = k.proto == proto::TCP;
            let m = send_lan(ctx, k, if tcp { SYN } else { 0 })
                .unwrap_or_else(|| panic!("LAN packet of {k} not forwarded"));
            assert!(
                send_wan(ctx, &m, if tcp { SYN | ACK } else { 0 }),
                "reply of {k}"
            );
            if tcp {
                assert!(send_lan(ctx, k, ACK).is_some(), "ACK of {k}");
            }
            m
        })
        .collect()
}

/// Pristine frames in the order they are replayed, `STRIDE` bytes apart.
pub struct Trace {
    /// The frames.
    pub frames: Vec<u8>,
    /// Each frame's length.
    pub lens: Vec<u16>,
    /// Each frame's arrival link.
    pub links: Vec<u8>,
}

impl Trace {
    /// Frames in the trace.
    pub fn len(&self) -> usize {
        self.lens.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}

/// Frames a steady-state trace holds at least (when `max` allows): small flow counts get several
/// passes over their pairs, each in its own order.
pub const MIN_TRACE: usize = 1 << 16;

/// A trace over established flows: passes over every (flow, direction) pair, each pass in its own
/// shuffled order, until the trace holds `2 × flows` or [`MIN_TRACE`] frames, whichever is more, or
/// `max`, whichever is less. Data frames: TCP ACK with payload, UDP; 64–80 bytes.
///
/// Why several passes: a trace of one pass over 1k flows repeats every 2 048 frames, and a
/// branch predictor learns that sequence (seen here: 29 ns per frame at 1k flows on one repeated
/// pass, 39 on passes in fresh orders, same flows and frames), which no real traffic lets it do.
pub fn steady_trace(flows: &[Mapped], max: usize, seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let total = (flows.len() * 2).max(MIN_TRACE).min(max);
    let order = passes(flows.len() * 2, total, &mut rng);
    let mut t = Trace {
        frames: vec![0u8; order.len() * STRIDE],
        lens: Vec::with_capacity(order.len()),
        links: Vec::with_capacity(order.len()),
    };
    for (i, &o) in order.iter().enumerate() {
        let m = &flows[(o / 2) as usize];
        let len = 64 + rng.below(17) as usize;
        let out = &mut t.frames[i * STRIDE..(i + 1) * STRIDE];
        let salt = rng.next_u64() as u32;
        if o % 2 == 0 {
            let src = m.key.src_v4().unwrap_or(Ipv4Addr::UNSPECIFIED);
            write_frame(out, len, host_mac(src), LAN_MAC, &m.key, ACK, 64, salt);
            t.links.push(0);
        } else {
            let w = usize::from(m.link - 1);
            write_frame(out, len, GW_MAC[w], WAN_MAC[w], &m.reply, ACK, 60, salt);
            t.links.push(m.link);
        }
        t.lens.push(len as u16);
    }
    t
}

/// `total` numbers below `pairs` (none when `pairs` is 0): passes over `0..pairs`, each in its own
/// shuffled order, the last one cut short.
fn passes(pairs: usize, total: usize, rng: &mut Rng) -> Vec<u32> {
    let mut order = Vec::with_capacity(total);
    let mut pass: Vec<u32> = (0..pairs as u32).collect();
    while order.len() < total && pairs > 0 {
        for i in (1..pass.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            pass.swap(i, j);
        }
        let take = (total - order.len()).min(pass.len());
        order.extend_from_slice(&pass[..take]);
    }
    order
}

/// SYN frames (64–80 B) of new connections from the inside, one per key, in key order.
pub fn syn_trace(keys: &[FlowKey], seed: u64) -> Trace {
    let mut rng = Rng::new(seed);
    let mut t = Trace {
        frames: vec![0u8; keys.len() * STRIDE],
        lens: Vec::with_capacity(keys.len()),
        links: Vec::with_capacity(keys.len()),
    };
    for (i, k) in keys.iter().enumerate() {
        let len = 64 + rng.below(17) as usize;
        let src = k.src_v4().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let flags = if k.proto == proto::TCP { SYN } else { 0 };
        let out = &mut t.frames[i * STRIDE..(i + 1) * STRIDE];
        write_frame(out, len, host_mac(src), LAN_MAC, k, flags, 64, i as u32);
        t.links.push(0);
        t.lens.push(len as u16);
    }
    t
}

/// The ring a trace is replayed through, and the verdicts of the last batch.
pub struct Replay<'a> {
    /// One packet per ring slot.
    pub pkts: Vec<Packet<'a>>,
    /// Verdicts of the last batch.
    pub verdicts: Vec<Verdict>,
    /// Next trace frame.
    pub pos: usize,
    /// Next ring slot.
    pub slot: usize,
}

impl<'a> Replay<'a> {
    /// A replay over `ring` (`RING * STRIDE` bytes).
    pub fn new(ring: &'a mut [u8]) -> Replay<'a> {
        Replay {
            pkts: ring
                .chunks_mut(STRIDE)
                .map(|buf| Packet {
                    buf,
                    len: 0,
                    link: 0,
                    offload: TxOffload::NONE,
                })
                .collect(),
            verdicts: vec![Verdict::default(); 256],
            pos: 0,
            slot: 0,
        }
    }

    /// Copy the next `b` trace frames (wrapping) into the next `b` ring slots; returns the first
    /// slot. `b` must divide [`RING`].
    #[inline]
    pub fn reset_batch(&mut self, t: &Trace, b: usize) -> usize {
        if self.slot + b > self.pkts.len() {
            self.slot = 0;
        }
        let first = self.slot;
        for p in &mut self.pkts[first..first + b] {
            if self.pos == t.len() {
                self.pos = 0;
            }
            let at = self.pos * STRIDE;
            p.buf[..COPY].copy_from_slice(&t.frames[at..at + COPY]);
            p.len = usize::from(t.lens[self.pos]);
            p.link = t.links[self.pos];
            p.offload = TxOffload::NONE;
            self.pos += 1;
        }
        self.slot += b;
        first
    }

    /// [`Replay::run`] timing only the pipeline: the wall-clock time spent inside
    /// `process_batch`, read around each batch, is returned with the number forwarded. The refill
    /// before each batch is not timed, so the frames are in the cache when the pipeline reads
    /// them, as an RX ring's frames are right after the kernel copied them in; the flows they
    /// visit still span the whole table. The two clock readings per batch are included: 25 ns
    /// on the Zen 4 guest of sessions 1–6, 54 ns on the Zen 5 one since (1.7 ns per frame at
    /// batch 32, 0.8 at 64).
    pub fn run_ring(
        &mut self,
        ctx: &mut Context,
        t: &Trace,
        b: usize,
        frames: usize,
        now: Time,
    ) -> (usize, std::time::Duration) {
        let mut busy = std::time::Duration::ZERO;
        let fwd = self.replay(t, b, frames, |pkts, verdicts| {
            let t0 = std::time::Instant::now();
            ctx.process_batch(pkts, now, verdicts);
            busy += t0.elapsed();
        });
        (fwd, busy)
    }

    /// Replay `frames` frames of `t` through `ctx` in batches of `b` at time `now`; returns how
    /// many were forwarded.
    pub fn run(
        &mut self,
        ctx: &mut Context,
        t: &Trace,
        b: usize,
        frames: usize,
        now: Time,
    ) -> usize {
        self.replay(t, b, frames, |pkts, verdicts| {
            ctx.process_batch(pkts, now, verdicts)
        })
    }

    /// Refill and `process` batches of `b` until `frames` frames of `t` have gone through;
    /// returns how many were forwarded.
    fn replay(
        &mut self,
        t: &Trace,
        b: usize,
        frames: usize,
        mut process: impl FnMut(&mut [Packet<'a>], &mut [Verdict]),
    ) -> usize {
        let mut fwd = 0;
        let mut left = frames;
        while left > 0 {
            let n = b.min(left);
            let first = self.reset_batch(t, n);
            process(&mut self.pkts[first..first + n], &mut self.verdicts[..n]);
            fwd += self.verdicts[..n]
                .iter()
                .filter(|v| matches!(v, Verdict::Forward { .. }))
                .count();
            left -= n;
        }
        fwd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_visit_every_pair_once_each_in_a_fresh_order() {
        let mut rng = Rng::new(2);
        let order = passes(128, 1000, &mut rng);
        assert_eq!(order.len(), 1000);
        let blocks: Vec<&[u32]> = order.chunks(128).collect();
        for b in &blocks[..7] {
            let mut sorted = b.to_vec();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..128).collect::<Vec<u32>>(),
                "a pass is a permutation"
            );
        }
        assert_ne!(blocks[0], blocks[1], "each pass in its own order");
        assert!(blocks[7].len() == 1000 - 7 * 128);
        assert!(passes(0, 10, &mut rng).is_empty());
    }

    #[test]
    fn one_pass_traces_are_the_single_shuffle_they_always_were() {
        // 64k and 1M flows: the first pass, cut to `total`, is the one shuffle of 0..pairs that
        // the trace was before it grew passes (same generator, same draws), so figures of those
        // sizes stay comparable with earlier runs.
        let mut a = Rng::new(2);
        let mut want: Vec<u32> = (0..4096).collect();
        for i in (1..want.len()).rev() {
            let j = a.below(i as u64 + 1) as usize;
            want.swap(i, j);
        }
        want.truncate(3000);
        assert_eq!(passes(4096, 3000, &mut Rng::new(2)), want);
    }

    #[test]
    fn small_flow_counts_get_a_trace_of_at_least_min_trace_frames() {
        let keys = crate::lan_keys(64, 1);
        let mut ctx = context(64);
        let flows = establish(&mut ctx, &keys);
        let t = steady_trace(&flows, 1 << 18, 2);
        assert_eq!(t.len(), MIN_TRACE);
        assert_eq!(steady_trace(&flows, 100, 2).len(), 100);
        // Every frame is forwarded (all of them take the steady-state path).
        let mut ring = vec![0u8; RING * STRIDE];
        let mut r = Replay::new(&mut ring);
        assert_eq!(r.run(&mut ctx, &t, 32, 4096, NOW), 4096);
    }
}
