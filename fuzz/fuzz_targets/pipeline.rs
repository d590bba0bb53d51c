//! The whole packet pipeline over a sequence of frames with time, on any port: a LAN port (and
//! a VLAN port on the same link), two WAN ports (one gateway with a static MAC, one resolved by
//! ARP), a link without a port, two port forwards, a small flow table and NAT port range (so it
//! fills up), gateways going down and up.
//!
//! Input: one byte of settings (bit 0: IPv4 checksums not verified, 1: no reject answers, 2: the
//! second gateway's MAC configured, 3: no loose TCP pickup, 4: MTU 576, 5: one ICMP error a
//! second, 7: the second pipeline runs frame by frame), then records. A record is
//! `b0 b1 len_lo len_hi frame...`:
//! - `b0 & 0x80`: a gateway event instead of a frame (`b0 & 1` the gateway, `b0 & 2` up or
//!   down, `b0 & 4` failback move / down keep);
//! - else `b0 & 3` the link, `b0 & 4` ends the batch here, `b0 & 8` rewrites the destination MAC
//!   to the port's (so frames pass the L2 check), `(b0 >> 4) & 3` the room after the frame (none,
//!   64 bytes, 2 KiB, a whole ring slot), `b0 & 0x40` reads one more byte of offload metadata
//!   (GSO, a partial checksum, a length claiming more than the buffer);
//! - `b1` advances the clock (below 128: milliseconds; above: seconds, up to two minutes);
//! - `len` bytes of frame (fewer if the input ends).
//!
//! Each batch runs through two pipelines built alike: `process_batch` with the established-flow
//! fast path (as the daemon runs it), and, as the settings' top bit says, `process_batch` without
//! the fast path or `process` frame by frame. They must agree on every verdict, every output byte
//! and metadata, and their drop counters and flow tables. After each
//! batch: every frame has one verdict and nothing is written past the batch; what is sent fits
//! the buffer and carries the sending port's MAC; a forwarded frame whose checksums verified
//! still verifies, and an answer's always do; the drop counters move as the verdicts say; and
//! the flow table is consistent (live count, per-gateway counts, both directions of every flow
//! found).
#![no_main]

use std::net::Ipv4Addr;

use altroute_flow::{
    DownAction, Failback, FlowTable, Gateway, GatewayId, GatewaySet, NatConfig, PortPartition,
    TableConfig, Time, proto,
};
use altroute_packet::DropReason;
use altroute_packet::egress::{Gso, GsoKind, PartialChecksum, TxOffload};
use altroute_packet::pipeline::{
    Context, GatewaySpec, MAX_FRAME, Options, Packet, PipelineConfig, PortForward, PortId,
    PortSpec, Role, Verdict,
};
use altroute_packet::wire::MacAddr;
use libfuzzer_sys::fuzz_target;

const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const OFFICE_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const W1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 1]);
const W2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 1]);
const G1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 2]);
const G2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 2]);
const EXT1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EXT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Links: 0 the LAN (and the office VLAN 10), 1 and 2 the WANs, 3 no port.
const LINKS: u8 = 4;
/// The largest room a frame gets (a ring slot of the daemon).
const SLOT: usize = MAX_FRAME + 64;
/// What no call returns: the value verdict slots hold until written.
const UNSET: Verdict = Verdict::Forward {
    port: PortId(u8::MAX),
    len: usize::MAX,
};

fn context(settings: u8) -> Context {
    let table = FlowTable::new(TableConfig {
        max_flows: 48,
        nat: NatConfig {
            partition: PortPartition::new((1024, 1024 + 127), 64, 1, 0).expect("a partition"),
            cooldown_secs: 120,
        },
        tcp_loose: settings & 8 == 0,
        gateways: vec![
            Gateway::new("isp1", Some(EXT1.into())).weight(3),
            Gateway::new("isp2", Some(EXT2.into())),
        ],
        ..TableConfig::default()
    })
    .expect("a table");
    let port = |name: &str, role, link, vlan, mac, addrs: Vec<(Ipv4Addr, u8)>| PortSpec {
        name: name.into(),
        role,
        link,
        vlan,
        mac,
        addrs,
        mtu: if settings & 16 != 0 { 576 } else { 1500 },
    };
    let both = {
        let mut s = GatewaySet::EMPTY;
        s.insert(GatewayId(0));
        s.insert(GatewayId(1));
        s
    };
    let isp2 = {
        let mut s = GatewaySet::EMPTY;
        s.insert(GatewayId(1));
        s
    };
    let cfg = PipelineConfig {
        ports: vec![
            port(
                "lan",
                Role::Lan,
                0,
                None,
                LAN_MAC,
                vec![
                    (Ipv4Addr::new(10, 0, 0, 1), 24),
                    (Ipv4Addr::new(192, 168, 1, 1), 24),
                ],
            ),
            port(
                "office",
                Role::Lan,
                0,
                Some(10),
                OFFICE_MAC,
                vec![(Ipv4Addr::new(172, 16, 0, 1), 24)],
            ),
            port("wan1", Role::Wan, 1, None, W1_MAC, vec![(EXT1, 24)]),
            port("wan2", Role::Wan, 2, None, W2_MAC, vec![(EXT2, 24)]),
        ],
        gateways: vec![
            GatewaySpec {
                port: PortId(2),
                next_hop: Ipv4Addr::new(192, 0, 2, 2),
                mac: Some(G1_MAC),
            },
            GatewaySpec {
                port: PortId(3),
                next_hop: Ipv4Addr::new(198, 51, 100, 2),
                // Resolved by ARP unless the settings give it.
                mac: (settings & 4 != 0).then_some(G2_MAC),
            },
        ],
        port_forwards: vec![
            PortForward {
                proto: proto::TCP,
                port: 8080,
                to: (Ipv4Addr::new(10, 0, 0, 3), 80),
                gateways: both,
            },
            PortForward {
                proto: proto::UDP,
                port: 5060,
                to: (Ipv4Addr::new(172, 16, 0, 4), 5060),
                gateways: isp2,
            },
        ],
        options: Options {
            verify_ipv4_checksum: settings & 1 == 0,
            reject: settings & 2 == 0,
            icmp_errors_per_sec: if settings & 32 != 0 { 1 } else { 100 },
            ..Options::default()
        },
    };
    Context::new(cfg, table).expect("a pipeline")
}

/// The MAC of the port a frame on `link` reaches (the VLAN port if the frame is tagged 10).
fn port_mac(link: u8, frame: &[u8]) -> MacAddr {
    match link {
        0 if frame.get(12..16) == Some(&[0x81, 0x00, 0x00, 0x0a]) => OFFICE_MAC,
        0 => LAN_MAC,
        1 => W1_MAC,
        2 => W2_MAC,
        _ => MacAddr([2, 0, 0, 0, 9, 9]),
    }
}

/// One frame of a batch as read from the input.
struct Frame {
    link: u8,
    bytes: Vec<u8>,
    room: usize,
    meta: TxOffload,
    /// The length handed to the pipeline exceeds the buffer.
    overclaim: bool,
}

/// What one pipeline made of a batch.
#[derive(Debug, PartialEq)]
struct Result {
    verdicts: Vec<Verdict>,
    /// The sent bytes (forward or reply) and the metadata, per frame.
    sent: Vec<(Vec<u8>, TxOffload)>,
}

/// `FUZZ_TRACE=1` prints every batch's verdicts and counted drops (to read a crasher).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

fn run(ctx: &mut Context, frames: &[Frame], now: Time, how: u8) -> Result {
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = f.bytes.clone();
            b.resize(f.bytes.len() + f.room, 0);
            b
        })
        .collect();
    let mut metas: Vec<TxOffload> = frames.iter().map(|f| f.meta).collect();
    let lens: Vec<usize> = frames
        .iter()
        .map(|f| f.bytes.len() + usize::from(f.overclaim) * (f.room + 1))
        .collect();
    let was = ctx.counters.drops.clone();
    let mut verdicts = vec![UNSET; frames.len() + 1];
    if how == 2 {
        for (i, f) in frames.iter().enumerate() {
            verdicts[i] = ctx.process(&mut bufs[i], lens[i], f.link, &mut metas[i], now);
        }
    } else {
        ctx.set_fast_path(how == 0);
        let mut pkts: Vec<Packet<'_>> = bufs
            .iter_mut()
            .zip(frames)
            .zip(&lens)
            .map(|((buf, f), &len)| Packet {
                buf: buf.as_mut_slice(),
                len,
                link: f.link,
                offload: f.meta,
            })
            .collect();
        ctx.process_batch(&mut pkts, now, &mut verdicts);
        for (m, p) in metas.iter_mut().zip(&pkts) {
            *m = p.offload;
        }
    }
    assert_eq!(
        verdicts.pop(),
        Some(UNSET),
        "a verdict written past the batch"
    );
    let now_drops = &ctx.counters.drops;
    let mut dropped = 0u64;
    let mut answers = 0u64;
    let mut sent = Vec::with_capacity(frames.len());
    for (i, &v) in verdicts.iter().enumerate() {
        assert_ne!(v, UNSET, "frame {i} has no verdict");
        let buf = &bufs[i];
        let out = match v {
            Verdict::Forward { port, len } => {
                let spec = ctx
                    .config()
                    .ports
                    .get(usize::from(port.0))
                    .expect("forwarded to a port that exists");
                assert!(
                    (14..=buf.len()).contains(&len),
                    "{v:?} in a {}-byte buffer",
                    buf.len()
                );
                assert_eq!(
                    buf[6..12],
                    spec.mac.0,
                    "forwarded without the out port's MAC"
                );
                // Translation keeps valid checksums valid (frames whose L4 checksum the kernel
                // finishes, or segments, aside).
                let f = &frames[i];
                let whole =
                    f.meta.partial.is_none() && metas[i].partial.is_none() && f.meta.gso.is_none();
                // (An ARP request sent instead of the frame has none.)
                if let (true, Some((ip_in, l4_in)), Some((ip_out, l4_out))) =
                    (whole, checksums(&f.bytes), checksums(&buf[..len]))
                {
                    assert!(
                        !ip_in || ip_out,
                        "a valid IPv4 header checksum made invalid"
                    );
                    if l4_in == Some(true) {
                        assert_eq!(l4_out, Some(true), "a valid L4 checksum made invalid");
                    }
                }
                answers += 1;
                buf[..len].to_vec()
            }
            Verdict::Reply { len } => {
                assert!(
                    (14..=buf.len()).contains(&len),
                    "{v:?} in a {}-byte buffer",
                    buf.len()
                );
                let mac = port_mac(frames[i].link, &frames[i].bytes);
                assert_eq!(buf[6..12], mac.0, "answered without the in port's MAC");
                // What the router builds carries valid checksums.
                if let Some((ip, l4)) = checksums(&buf[..len]) {
                    assert!(ip, "an answer with a bad IPv4 header checksum");
                    assert_ne!(l4, Some(false), "an answer with a bad L4 checksum");
                }
                answers += 1;
                buf[..len].to_vec()
            }
            Verdict::Drop(r) => {
                dropped += 1;
                assert!(now_drops.get(r) > was.get(r), "Drop({r}) not counted");
                Vec::new()
            }
            Verdict::Control(_) => Vec::new(),
        };
        sent.push((out, metas[i]));
    }
    if trace() {
        let moved: Vec<_> = now_drops
            .iter()
            .filter(|&(r, n)| n != was.get(r))
            .map(|(r, n)| (r.name(), n - was.get(r)))
            .collect();
        eprintln!("way {how} at {now:?}: {verdicts:?}; drops counted: {moved:?}");
    }
    let rl = DropReason::IcmpRateLimited;
    let limited = (now_drops.get(rl) - was.get(rl)).min(dropped);
    let moved = now_drops.total() - was.total();
    assert!(
        moved <= dropped + answers + limited,
        "drop counters moved by {moved} for {verdicts:?}"
    );
    check_table(&ctx.table);
    Result { verdicts, sent }
}

/// The one's-complement sum of `data` (as 16-bit big-endian words) added to `sum`.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    sum
}

fn folds_to_ones(mut sum: u32) -> bool {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Whether an IPv4 frame's header checksum and (TCP, UDP, ICMP; whole datagrams only) L4
/// checksum verify: (header, L4); `None` where there is nothing to verify. Written here,
/// independent of the pipeline's checksum code.
fn checksums(frame: &[u8]) -> Option<(bool, Option<bool>)> {
    let mut l3 = 14;
    if frame.get(12..14) == Some(&[0x81, 0x00]) {
        l3 = 18;
    }
    if frame.get(l3 - 2..l3) != Some(&[0x08, 0x00]) {
        return None;
    }
    let ip = frame.get(l3..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if *ip.first()? >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    let header = folds_to_ones(sum16(0, &ip[..ihl]));
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let l4 = &ip[ihl..total];
    let proto = ip[9];
    let l4_ok = match proto {
        _ if frag => None,
        1 if l4.len() >= 8 => Some(folds_to_ones(sum16(0, l4))),
        17 if l4.len() >= 8 && l4[6..8] == [0, 0] => None,
        6 | 17 if l4.len() >= if proto == 6 { 20 } else { 8 } => {
            let pseudo = sum16(0, &ip[12..20]) + u32::from(proto) + l4.len() as u32;
            Some(folds_to_ones(sum16(pseudo, l4)))
        }
        _ => None,
    };
    Some((header, l4_ok))
}

fn check_table(t: &FlowTable) {
    let flows: Vec<_> = t.iter().collect();
    assert_eq!(t.len(), flows.len(), "live count");
    assert!(t.len() <= t.config().max_flows as usize);
    for g in 0..t.gateways().len() {
        let g = GatewayId(g as u8);
        let on = flows.iter().filter(|f| f.gateway == Some(g)).count();
        assert_eq!(t.flows_on(g) as usize, on, "flows on {g}");
    }
    for f in &flows {
        let h = t.lookup(&f.key).expect("a flow is found from its key");
        assert_eq!(h.flow, f.id);
        if !t.flow(f.id).expect("live").is_rejected() {
            let h = t
                .lookup(&f.reply_key)
                .expect("a flow is found from its reply key");
            assert_eq!(h.flow, f.id);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut rest)) = data.split_first() else {
        return;
    };
    let mut ctxs = [context(settings), context(settings)];
    // How the second pipeline runs: 1 = batch without the fast path, 2 = frame by frame.
    let other = if settings & 0x80 != 0 { 2 } else { 1 };
    let mut now = Time::from_secs(1000);
    let mut batch: Vec<Frame> = Vec::new();
    let mut batch_now = now;
    let mut records = 0;
    let flush = |batch: &mut Vec<Frame>, at: Time, ctxs: &mut [Context; 2]| {
        if batch.is_empty() {
            return;
        }
        let results: Vec<Result> = [0u8, other]
            .into_iter()
            .zip(ctxs.iter_mut())
            .map(|(how, ctx)| {
                let mut expired = Vec::new();
                ctx.table.expire(at, 256, &mut expired);
                run(ctx, batch, at, how)
            })
            .collect();
        assert_eq!(
            results[0], results[1],
            "the fast path and the full path (way {other}) differ"
        );
        assert_eq!(ctxs[0].counters.drops, ctxs[1].counters.drops);
        assert_eq!(ctxs[0].table.len(), ctxs[1].table.len());
        batch.clear();
    };
    while rest.len() >= 2 && records < 256 {
        records += 1;
        let (b0, b1) = (rest[0], rest[1]);
        rest = &rest[2..];
        now = if b1 < 128 {
            now.plus_millis(u64::from(b1))
        } else {
            now.plus_secs(u64::from(b1 - 127))
        };
        if b0 & 0x80 != 0 {
            // A gateway event ends the batch.
            flush(&mut batch, batch_now, &mut ctxs);
            let g = GatewayId(b0 & 1);
            for ctx in &mut ctxs {
                if b0 & 2 != 0 {
                    let fb = if b0 & 4 != 0 {
                        Failback::Move
                    } else {
                        Failback::Stay
                    };
                    ctx.table.gateway_up(g, now, fb);
                } else {
                    let action = if b0 & 4 != 0 {
                        DownAction::Keep
                    } else {
                        DownAction::Reset
                    };
                    ctx.table.gateway_down(g, now, action);
                }
            }
            continue;
        }
        if batch.is_empty() {
            batch_now = now;
        }
        let mut meta = TxOffload::default();
        let mut overclaim = false;
        if b0 & 0x40 != 0 {
            let (&m, r) = rest.split_first().unwrap_or((&0, &[]));
            rest = r;
            if m & 1 != 0 {
                meta.gso = Some(Gso {
                    kind: if m & 0x20 != 0 {
                        GsoKind::UdpL4
                    } else {
                        GsoKind::TcpV4
                    },
                    ecn: false,
                    size: 1448,
                    hdr_len: 0,
                });
            }
            if m & 2 != 0 {
                // csum_start and csum_offset near where an L4 checksum would be.
                meta.partial = Some(PartialChecksum {
                    start: 14 + u16::from(m >> 4) * 4,
                    offset: [16, 6, 2, 0][usize::from(m >> 2 & 3)],
                });
            }
            overclaim = m & 0x80 != 0;
        }
        let len = rest
            .get(..2)
            .map_or(0, |l| usize::from(u16::from_le_bytes([l[0], l[1]])));
        rest = rest.get(2..).unwrap_or_default();
        let (frame, r) = rest.split_at(len.min(rest.len()));
        rest = r;
        let link = b0 & 3;
        let mut bytes = frame.to_vec();
        if b0 & 8 != 0 && bytes.len() >= 6 {
            let mac = port_mac(link, &bytes);
            bytes[..6].copy_from_slice(&mac.0);
        }
        let room = match (b0 >> 4) & 3 {
            0 => 0,
            1 => 64,
            2 => 2048,
            _ => SLOT.saturating_sub(bytes.len()),
        };
        batch.push(Frame {
            link: link % LINKS,
            bytes,
            room,
            meta,
            overclaim,
        });
        if b0 & 4 != 0 || batch.len() >= 64 {
            flush(&mut batch, batch_now, &mut ctxs);
        }
    }
    flush(&mut batch, batch_now, &mut ctxs);
});
