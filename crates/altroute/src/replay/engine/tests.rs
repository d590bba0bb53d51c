//! The replay engine's runs, and the property that ties the workers together: random traffic
//! through 2 and 4 workers — partitioned flow tables, each frame steered by the daemon's steering
//! function, neighbours shared — gives the same frames, frame for frame, as through one.
#![allow(clippy::unwrap_used)]

use super::*;
use altroute_packet::egress::TxOffload;
use etherparse::PacketBuilder;
use proptest::prelude::*;

#[test]
fn a_run_is_one_workers_consecutive_frames() {
    let o = [1, 1, NONE, 1, 0, 0, NONE, 2];
    assert_eq!(run_end(&o, 0, 8), (4, 1));
    assert_eq!(run_end(&o, 0, 2), (2, 1));
    assert_eq!(run_end(&o, 4, 8), (7, 0));
    assert_eq!(run_end(&o, 6, 8), (8, 2));
    assert_eq!(run_end(&[NONE, NONE], 0, 2), (2, 0));
}

/// PROPTEST_CASES when set, else `default` (`with_cases` alone ignores the variable).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const CONFIG: &str = "ports:
  - {name: lan, role: lan, interface: lan0, mac: '02:00:00:00:00:01', addresses: [10.0.0.1/24]}
  - {name: wan1, role: wan, interface: wan1, mac: '02:00:00:00:01:01', addresses: [192.0.2.1/24]}
  - {name: wan2, role: wan, interface: wan2, mac: '02:00:00:00:02:01', addresses: [198.51.100.1/24]}
gateways:
  - {name: isp1, port: wan1, via: 192.0.2.2, mac: '02:00:00:00:01:02'}
  - {name: isp2, port: wan2, via: 198.51.100.2, mac: '02:00:00:00:02:02'}
policy:
  mode: load-balance
  failure_redirect: {enabled: false}
port_forwards:
  - {proto: tcp, port: 8080, to: '10.0.0.3:80'}
  - {proto: udp, port: 5060, to: '10.0.0.3:6020'}
nat:
  port_block: 64
limits:
  max_flows: 4096
";

type Mac = [u8; 6];
/// Most gateway events in a case (each shifts the source ports: they must stay in range).
const MAX_EPOCH: usize = 10;
const LAN_MAC: Mac = [2, 0, 0, 0, 0, 1];
const WAN: [(Mac, Mac, [u8; 4]); 2] = [
    ([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 1, 2], [192, 0, 2, 1]),
    ([2, 0, 0, 0, 2, 1], [2, 0, 0, 0, 2, 2], [198, 51, 100, 1]),
];
const HOSTS: [[u8; 4]; 3] = [[10, 0, 0, 2], [10, 0, 0, 3], [10, 0, 0, 4]];
const SRV: [u8; 4] = [203, 0, 113, 10];
const CLIENTS: [[u8; 4]; 3] = [[203, 0, 113, 50], [198, 18, 0, 9], [93, 184, 216, 34]];

fn host_mac(h: usize) -> Mac {
    [2, 0, 0, 0, 0, 0x40 + h as u8]
}

/// One step of random traffic (no RST, no time passing: a port the router released would be
/// handed out again by a choice that depends on the number of workers).
#[derive(Clone, Debug)]
enum Step {
    /// TCP from LAN host `h`, source port index `p`, with `flags` (SYN, ACK, FIN|ACK).
    LanTcp(u8, u8, u8),
    /// UDP from LAN host `h`, source port index `p`.
    LanUdp(u8, u8),
    /// The Internet's answer to the `n`th frame sent out of a WAN (TCP flags).
    Reply(u16, u8),
    /// A client to the TCP (8080) or UDP (5060) forward, on wan2 rather than wan1: (client, UDP,
    /// wan2, flags).
    Inbound(u8, bool, bool, u8),
    /// LAN host `h` to the TCP forward on isp1's address (hairpin), source port index `p`.
    Hairpin(u8, u8, u8),
    /// The inside host's answer to the `n`th frame delivered to the LAN (TCP flags).
    Answer(u16, u8),
    /// An ICMP error from the Internet about the `n`th frame sent out of a WAN: (n, kind, short).
    WanError(u16, u8, bool),
    /// An ICMP error from the inside host about the `n`th frame delivered: (n, kind, short).
    LanError(u16, u8, bool),
    /// Gateway `g` goes down (its flows reset) or comes back.
    Link(u8, bool),
}

fn flags() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(0x10u8), 2 => Just(0x02), 1 => Just(0x12), 1 => Just(0x11)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..3, 0u8..8, flags()).prop_map(|(h, p, f)| Step::LanTcp(h, p, f)),
        4 => (0u8..3, 0u8..8).prop_map(|(h, p)| Step::LanUdp(h, p)),
        10 => (any::<u16>(), flags()).prop_map(|(n, f)| Step::Reply(n, f)),
        4 => (0u8..3, any::<bool>(), any::<bool>(), flags())
            .prop_map(|(c, u, w, f)| Step::Inbound(c, u, w, f)),
        2 => (0u8..3, 0u8..4, flags()).prop_map(|(h, p, f)| Step::Hairpin(h, p, f)),
        6 => (any::<u16>(), flags()).prop_map(|(n, f)| Step::Answer(n, f)),
        3 => (any::<u16>(), 0u8..4, any::<bool>()).prop_map(|(n, k, s)| Step::WanError(n, k, s)),
        3 => (any::<u16>(), 0u8..4, any::<bool>()).prop_map(|(n, k, s)| Step::LanError(n, k, s)),
        1 => (0u8..2, any::<bool>()).prop_map(|(g, up)| Step::Link(g, up)),
    ]
}

fn tcp(m: (Mac, Mac), a: ([u8; 4], [u8; 4]), p: (u16, u16), flags: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(m.0, m.1)
        .ipv4(a.0, a.1, 64)
        .tcp(p.0, p.1, 1000, 64000);
    let b = if flags & 0x02 != 0 { b.syn() } else { b };
    let b = if flags & 0x01 != 0 { b.fin() } else { b };
    let b = if flags & 0x10 != 0 { b.ack(77) } else { b };
    let mut v = Vec::new();
    b.write(&mut v, b"data").unwrap();
    v
}

fn udp(m: (Mac, Mac), a: ([u8; 4], [u8; 4]), p: (u16, u16)) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(m.0, m.1)
        .ipv4(a.0, a.1, 64)
        .udp(p.0, p.1)
        .write(&mut v, b"data")
        .unwrap();
    v
}

/// Source, destination, protocol, source port, destination port.
type Tuple = ([u8; 4], [u8; 4], u8, u16, u16);

/// The [`Tuple`] of an untagged IPv4 TCP/UDP frame.
fn tuple(f: &[u8]) -> Option<Tuple> {
    if f.get(12..14)? != [8, 0] || !matches!(f.get(23)?, 6 | 17) {
        return None;
    }
    let l4 = 14 + usize::from(f[14] & 15) * 4;
    let p = f.get(l4..l4 + 4)?;
    Some((
        f[26..30].try_into().ok()?,
        f[30..34].try_into().ok()?,
        f[23],
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

fn icmp_error(m: (Mac, Mac), a: ([u8; 4], [u8; 4]), kind: u8, of: &[u8], short: bool) -> Vec<u8> {
    let (t, code, rest) = match kind % 4 {
        0 => (3, 3, [0; 4]),
        1 => (3, 4, [0, 0, 5, 0]),
        2 => (11, 0, [0; 4]),
        _ => (3, 1, [0; 4]),
    };
    let ip = &of[14..];
    let quote = if short {
        &ip[..usize::from(ip[0] & 15) * 4 + 8]
    } else {
        ip
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(m.0, m.1)
        .ipv4(a.0, a.1, 60)
        .icmpv4_raw(t, code, rest)
        .write(&mut v, quote)
        .unwrap();
    v
}

/// What went out so far: TCP/UDP frames sent out of a WAN (frame, WAN index) and delivered to
/// the LAN; and the epoch (bumped by gateway events, whose resets release ports: later
/// connections use fresh source ports, in the same blocks; at most [`MAX_EPOCH`]).
#[derive(Default)]
struct Seen {
    sent: Vec<(Vec<u8>, usize)>,
    delivered: Vec<Vec<u8>>,
    epoch: u16,
}

impl Seen {
    /// The frame of `step` and its link, if it is one.
    fn frame(&self, step: &Step) -> Option<(Vec<u8>, u8)> {
        let pick = |v: usize, n: u16| usize::from(n) % v.max(1);
        let shift = 256 * self.epoch;
        Some(match *step {
            Step::LanTcp(h, p, f) => {
                let h = usize::from(h);
                let sp = 10000 + 6000 * h as u16 + u16::from(p) + shift;
                let m = (host_mac(h), LAN_MAC);
                (tcp(m, (HOSTS[h], SRV), (sp, 443), f), 0)
            }
            Step::LanUdp(h, p) => {
                let h = usize::from(h);
                let sp = 30000 + 6000 * h as u16 + u16::from(p) + shift;
                (udp((host_mac(h), LAN_MAC), (HOSTS[h], SRV), (sp, 53)), 0)
            }
            Step::Reply(n, f) => {
                let (out, w) = self.sent.get(pick(self.sent.len(), n))?;
                let (s, d, pr, sp, dp) = tuple(out)?;
                let m = (WAN[*w].1, WAN[*w].0);
                let fr = if pr == 6 {
                    tcp(m, (d, s), (dp, sp), f)
                } else {
                    udp(m, (d, s), (dp, sp))
                };
                (fr, *w as u8 + 1)
            }
            Step::Inbound(c, is_udp, w2, f) => {
                let w = usize::from(w2);
                let c = usize::from(c);
                let m = (WAN[w].1, WAN[w].0);
                let a = (CLIENTS[c], WAN[w].2);
                let sp = 55000 + c as u16;
                let fr = if is_udp {
                    udp(m, a, (sp, 5060))
                } else {
                    tcp(m, a, (sp, 8080), f)
                };
                (fr, w as u8 + 1)
            }
            Step::Hairpin(h, p, f) => {
                // A block of the forward's worker (8080 / 64 = 126: 2 mod 4) for every N, so
                // that the router keeps the port.
                let h = usize::from(h);
                let sp = 64 * (4 * (188 + u16::from(p) + 4 * self.epoch) + 2) + h as u16;
                let m = (host_mac(h), LAN_MAC);
                (tcp(m, (HOSTS[h], WAN[0].2), (sp, 8080), f), 0)
            }
            Step::Answer(n, f) => {
                let d = self.delivered.get(pick(self.delivered.len(), n))?;
                let (s, dst, pr, sp, dp) = tuple(d)?;
                let h = HOSTS.iter().position(|x| *x == dst)?;
                let m = (host_mac(h), LAN_MAC);
                let fr = if pr == 6 {
                    tcp(m, (dst, s), (dp, sp), f)
                } else {
                    udp(m, (dst, s), (dp, sp))
                };
                (fr, 0)
            }
            Step::WanError(n, kind, short) => {
                let (out, w) = self.sent.get(pick(self.sent.len(), n))?;
                let (s, d, ..) = tuple(out)?;
                let from = if kind % 4 == 0 { d } else { [203, 0, 113, 1] };
                let m = (WAN[*w].1, WAN[*w].0);
                (icmp_error(m, (from, s), kind, out, short), *w as u8 + 1)
            }
            Step::LanError(n, kind, short) => {
                let d = self.delivered.get(pick(self.delivered.len(), n))?;
                let (s, dst, ..) = tuple(d)?;
                let h = HOSTS.iter().position(|x| *x == dst)?;
                (
                    icmp_error((host_mac(h), LAN_MAC), (dst, s), kind, d, short),
                    0,
                )
            }
            Step::Link(..) => return None,
        })
    }

    fn record(&mut self, out: &[u8], port: u8) {
        if tuple(out).is_none() {
            return;
        }
        match port {
            0 => self.delivered.push(out.to_vec()),
            p => self.sent.push((out.to_vec(), usize::from(p) - 1)),
        }
    }
}

/// What each frame became: the verdict, and the bytes sent (empty if none).
type Outcome = Vec<(Verdict, Vec<u8>)>;
/// The frame of each step and its link (`None`: not a frame).
type Frames = Vec<Option<(Vec<u8>, u8)>>;

/// Runs one frame through worker `k` and shares what it learned: the verdict and the bytes sent.
fn one(w: &mut Workers, k: usize, (f, link): (&[u8], u8), cfg: &Config) -> (Verdict, Vec<u8>) {
    let now = Time::from_secs(100);
    let mut buf = f.to_vec();
    buf.resize(f.len() + 128, 0);
    let mut offload = TxOffload::NONE;
    let v = w.ctxs[k].process(&mut buf, f.len(), link, &mut offload, now);
    let len = match v {
        Verdict::Forward { len, .. } | Verdict::Reply { len } => len,
        _ => 0,
    };
    w.share(k, std::iter::once((link, f, v)), cfg, now);
    buf.truncate(len);
    (v, buf)
}

/// One worker, building each frame from what came out before it (replies and errors answer
/// what the router sent): the frames (`None`: not a frame) and what became of them.
fn single(cfg: &Config, steps: &[Step]) -> (Frames, Outcome) {
    let mut w = Workers::new(cfg, 1).unwrap();
    let mut seen = Seen::default();
    let (mut frames, mut out) = (Vec::new(), Vec::new());
    for s in steps {
        if let Step::Link(g, up) = *s {
            w.gateway_event(GatewayId(g), !up, Time::from_secs(100), cfg);
            // A reset releases the ports of the gateway's flows (into their cool-down): nothing
            // answers what came before, and later connections use fresh source ports.
            seen = Seen {
                epoch: seen.epoch + 1,
                ..Seen::default()
            };
            frames.push(None);
            continue;
        }
        let f = seen.frame(s);
        frames.push(f.clone());
        let Some((f, link)) = f else { continue };
        let (v, sent) = one(&mut w, 0, (&f, link), cfg);
        if let Verdict::Forward { port, .. } = v {
            seen.record(&sent, port.0);
        }
        out.push((v, sent));
    }
    (frames, out)
}

/// The same frames through `n` workers, each to the worker the steering picks: what became of
/// them, and how many each worker got.
fn through(cfg: &Config, n: u16, frames: &Frames, steps: &[Step]) -> (Outcome, Vec<u64>) {
    let mut w = Workers::new(cfg, n).unwrap();
    let mut per = vec![0u64; usize::from(n)];
    let mut out = Vec::new();
    for (f, s) in frames.iter().zip(steps) {
        if let Step::Link(g, up) = *s {
            w.gateway_event(GatewayId(g), !up, Time::from_secs(100), cfg);
            continue;
        }
        let Some((f, link)) = f else { continue };
        let k = usize::from(w.worker_of(*link, f));
        per[k] += 1;
        out.push(one(&mut w, k, (f, *link), cfg));
    }
    (out, per)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    /// Random traffic — LAN connections, the Internet's replies, connections to TCP and UDP port
    /// forwards (inside ports in other workers' blocks), hairpin, the inside hosts' answers,
    /// ICMP errors from both sides, gateways going down and up — gives the same verdicts and the
    /// same frames, byte for byte, through 2 and 4 workers as through one.
    #[test]
    fn several_workers_forward_as_one(steps in proptest::collection::vec(step(), 1..120)) {
        let cfg = Config::from_str_named(CONFIG, "workers").unwrap();
        // The forward's target talks first, so that no case depends on ARP rate limits (each
        // worker keeps its own).
        prop_assume!(steps.iter().filter(|s| matches!(s, Step::Link(..))).count() <= MAX_EPOCH);
        let mut all = vec![Step::LanUdp(1, 0)];
        all.extend_from_slice(&steps);
        let (frames, want) = single(&cfg, &all);
        for n in [2u16, 4] {
            let (got, per) = through(&cfg, n, &frames, &all);
            prop_assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert_eq!(g, w, "frame {} of {} with {} workers (per worker {:?})", i, want.len(), n, per);
            }
        }
    }
}
