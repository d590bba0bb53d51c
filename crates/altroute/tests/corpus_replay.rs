//! Every frame of the shared pcap corpus through the whole pipeline, on every port: as captured
//! (their MACs are not the ports', so most stop at the L2 check) and with the destination MAC
//! rewritten to the port's (so they reach classification, NAT, ICMP and ARP handling). One
//! variant runs frame by frame, the other through `process_batch`. Nothing may panic; every frame
//! gets exactly one verdict (verdict slots start as a sentinel the pipeline never returns, and
//! `process_batch` must not write past its frames); an answer or a forwarded frame fits its
//! buffer; and the drop counters move as the verdicts say: a `Drop(r)` verdict counts `r`, and
//! only drops, generated ICMP errors and resets, and ARP requests sent instead of a frame count
//! anything.
//! The replay front end runs over every file too: every file must be readable (none refused),
//! and its outputs, as captured and with the destination MAC rewritten to the first LAN port's,
//! must be written and read back.
//!
//! Corpus: `$ALTROUTE_PCAP_CORPUS`, default `../../../shared/pcap-corpus` relative to this
//! crate. Missing: skipped with a printed reason, unless `CI` is set (then a failure).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use altroute::config::Config;
use altroute::replay::{self, CapFrame, Options};
use altroute_flow::Time;
use altroute_packet::DropCounters;
use altroute_packet::DropReason;
use altroute_packet::egress::TxOffload;
use altroute_packet::pipeline::{MAX_FRAME, Packet, PortId, Verdict};

const CONFIG: &str = "
ports:
  - { name: lan, role: lan, interface: lan0, addresses: [10.0.0.1/24, 192.168.1.1/24], mac: 02:00:00:00:00:01 }
  - { name: office, role: lan, interface: lan1, vlan: 10, addresses: [172.16.0.1/24], mac: 02:00:00:00:00:02 }
  - { name: wan1, role: wan, interface: wan1, addresses: [192.0.2.1/24], mac: 02:00:00:00:01:01 }
  - { name: wan2, role: wan, interface: wan2, addresses: [198.51.100.1/24], mac: 02:00:00:00:02:01 }
gateways:
  - { name: isp1, port: wan1, via: 192.0.2.2, mac: 02:00:00:00:01:02, weight: 3 }
  - { name: isp2, port: wan2, via: 198.51.100.2, weight: 1 }
port_forwards:
  - { proto: tcp, port: 8080, to: '10.0.0.3:80' }
  - { proto: udp, port: 5060, to: '10.0.0.4:5060' }
limits: { max_flows: 65536, workers: 1 }
";

#[path = "../../altroute-packet/tests/support/corpus_files.rs"]
mod corpus_files;
use corpus_files::corpus_files;

/// What no pipeline call returns (no port 255, no frame of `usize::MAX` bytes): the value verdict
/// slots hold until the pipeline writes them.
const UNSET: Verdict = Verdict::Forward {
    port: PortId(u8::MAX),
    len: usize::MAX,
};

struct Tally {
    frames: u64,
    drops: BTreeMap<DropReason, u64>,
    kinds: [u64; 4],
}

impl Tally {
    fn new() -> Tally {
        Tally {
            frames: 0,
            drops: BTreeMap::new(),
            kinds: [0; 4],
        }
    }

    /// Checks and counts the verdicts of frames whose buffers are `bufs` long, given the drop
    /// counters before (`was`) and after (`now`) the call that produced them.
    fn add(
        &mut self,
        verdicts: &[Verdict],
        bufs: &[usize],
        was: &DropCounters,
        now: &DropCounters,
        what: &str,
    ) {
        let mut drops: BTreeMap<DropReason, u64> = BTreeMap::new();
        // Verdicts that may count one drop besides a `Drop` verdict's own: an ICMP error or a
        // reset sent back (`Reply`), an ARP request sent instead of the frame (`Forward`).
        let mut answers = 0u64;
        for (&v, &buf) in verdicts.iter().zip(bufs) {
            assert_ne!(v, UNSET, "{what}: a frame without a verdict");
            self.frames += 1;
            let k = match v {
                Verdict::Forward { len, .. } | Verdict::Reply { len } => {
                    assert!(len <= buf, "{what}: {v:?} past its {buf}-byte buffer");
                    answers += 1;
                    if matches!(v, Verdict::Forward { .. }) {
                        0
                    } else {
                        1
                    }
                }
                Verdict::Drop(r) => {
                    *drops.entry(r).or_default() += 1;
                    2
                }
                Verdict::Control(_) => 3,
            };
            self.kinds[k] += 1;
        }
        for (r, n) in &drops {
            let counted = now.get(*r) - was.get(*r);
            assert!(
                counted >= *n,
                "{what}: {n} Drop({r}) verdicts but the counter moved by {counted}"
            );
            *self.drops.entry(*r).or_default() += n;
        }
        // Beyond that, only an ICMP error not sent for its rate limit counts IcmpRateLimited
        // besides its `Drop` verdict's reason.
        let dropped: u64 = drops.values().sum();
        let rl = DropReason::IcmpRateLimited;
        let rate_limited =
            (now.get(rl) - was.get(rl)).saturating_sub(drops.get(&rl).map_or(0, |n| *n));
        assert!(
            rate_limited <= dropped,
            "{what}: {rate_limited} rate-limited ICMP errors"
        );
        let moved = now.total() - was.total() - rate_limited;
        assert!(
            moved <= dropped + answers,
            "{what}: the drop counters moved by {moved} for {verdicts:?}"
        );
    }

    /// Every frame had a verdict.
    fn check(&self, expected_frames: u64, what: &str) {
        assert_eq!(
            self.frames, expected_frames,
            "{what}: frames without a verdict"
        );
        assert_eq!(self.kinds.iter().sum::<u64>(), self.frames, "{what}");
    }
}

fn frame_for(f: &CapFrame, mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut v = f.data.clone();
    if let (Some(m), Some(dst)) = (mac, v.get_mut(..6)) {
        dst.copy_from_slice(&m);
    }
    v
}

/// A directory removed when dropped (also when the test fails).
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The replay front end over one file's frames: every frame accounted for, the outputs written
/// and read back as they were.
fn front_end(cfg: &Config, frames: Vec<CapFrame>, out: &std::path::Path, what: &str) -> u64 {
    let r = replay::replay_frames(cfg, vec![(0, frames)], &Options::default()).unwrap();
    assert_eq!(
        r.forward + r.reply + r.drop + r.control + r.truncated,
        r.frames,
        "{what}"
    );
    let written = r
        .write(out)
        .unwrap_or_else(|e| panic!("{what}: writing the output: {e}"));
    let mut sent = 0;
    for (path, frames) in written.iter().zip(&r.outputs) {
        let back = replay::read_capture(path).unwrap();
        assert_eq!(back.len(), frames.len(), "{what}: {}", path.display());
        for (b, f) in back.iter().zip(frames) {
            assert_eq!(b.data, f.data, "{what}: {}", path.display());
        }
        sent += frames.len() as u64;
    }
    sent
}

#[test]
fn corpus_through_every_port() {
    let Some(paths) = corpus_files() else {
        return;
    };

    let cfg = Config::from_str_named(CONFIG, "corpus.yaml").unwrap();
    let links = altroute::build::links(&cfg);
    let lan_mac = cfg.ports[0].mac.unwrap().0;
    let start = std::time::Instant::now();
    let out = TempDir(
        std::env::temp_dir().join(format!("altroute-corpus-replay-{}", std::process::id())),
    );
    let mut refused = Vec::new();
    let mut all: Vec<(String, Vec<CapFrame>)> = Vec::new();
    let (mut read_frames, mut truncated, mut sent) = (0u64, 0u64, 0u64);
    for p in &paths {
        let name = p.display().to_string();
        match replay::read_capture(p) {
            Ok(frames) => {
                read_frames += frames.len() as u64;
                truncated += frames.iter().filter(|f| f.is_truncated()).count() as u64;
                // The replay front end over the file, on the first LAN port: as captured, and
                // addressed to the port (so that frames are forwarded and answered, and their
                // capture times reach the written files).
                let to_port: Vec<CapFrame> = frames
                    .iter()
                    .map(|f| CapFrame {
                        data: frame_for(f, Some(lan_mac)),
                        ..f.clone()
                    })
                    .collect();
                sent += front_end(&cfg, frames.clone(), &out.0, &name);
                sent += front_end(&cfg, to_port, &out.0, &format!("{name} (dst MAC = port)"));
                all.push((name, frames));
            }
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains(&name), "the error names the file: {s}");
                refused.push(s);
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} files refused:\n{}",
        refused.len(),
        paths.len(),
        refused.join("\n")
    );
    assert!(read_frames > 5000, "only {read_frames} frames read");
    assert!(sent > 0, "the replay front end sent nothing");

    let mut summary = Vec::new();
    for spec in &cfg.ports {
        let link = links.iter().position(|l| *l == spec.interface).unwrap() as u8;
        let mac = spec.mac.unwrap().0;
        for (variant, rewrite) in [("as captured", None), ("dst MAC = port", Some(mac))] {
            let what = format!("{} ({variant})", spec.name);
            let mut ctx = replay::context(&cfg).unwrap();
            let mut tally = Tally::new();
            let mut clock = 0u64;
            let batch = rewrite.is_some();
            for (_, frames) in &all {
                if batch {
                    for chunk in frames.chunks(32) {
                        clock += 1;
                        let mut bufs: Vec<Vec<u8>> = chunk
                            .iter()
                            .map(|f| {
                                let mut v = frame_for(f, rewrite);
                                let n = v.len();
                                v.resize(n.max(MAX_FRAME.min(n + 2048)) + 64, 0);
                                v
                            })
                            .collect();
                        let sizes: Vec<usize> = bufs.iter().map(Vec::len).collect();
                        let mut pkts: Vec<Packet<'_>> = bufs
                            .iter_mut()
                            .zip(chunk)
                            .map(|(b, f)| Packet {
                                buf: b.as_mut_slice(),
                                len: f.data.len(),
                                link,
                                offload: TxOffload::NONE,
                            })
                            .collect();
                        // One slot more than frames: it must stay unwritten.
                        let mut verdicts = vec![UNSET; pkts.len() + 1];
                        let was = ctx.counters.drops.clone();
                        ctx.process_batch(&mut pkts, Time::from_millis(clock), &mut verdicts);
                        assert_eq!(
                            verdicts.pop(),
                            Some(UNSET),
                            "{what}: a verdict past the batch"
                        );
                        tally.add(&verdicts, &sizes, &was, &ctx.counters.drops, &what);
                    }
                } else {
                    for f in frames {
                        clock += 1;
                        let mut v = frame_for(f, rewrite);
                        let n = v.len();
                        v.resize(n + 2048, 0);
                        let was = ctx.counters.drops.clone();
                        let verdict = ctx.process(
                            &mut v,
                            n,
                            link,
                            &mut TxOffload::default(),
                            Time::from_millis(clock),
                        );
                        if std::env::var_os("ALTROUTE_CORPUS_VERBOSE").is_some()
                            && matches!(verdict, Verdict::Reply { .. })
                        {
                            eprintln!(
                                "{} reply to {:02x?} -> {:02x?}",
                                spec.name,
                                &f.data[..f.data.len().min(42)],
                                &v[..42]
                            );
                        }
                        tally.add(&[verdict], &[v.len()], &was, &ctx.counters.drops, &what);
                    }
                }
            }
            tally.check(read_frames, &what);
            summary.push(format!(
                "{:>6} {variant:<15}: forward {}, reply {}, drop {}, control {}; top drops {:?}",
                spec.name,
                tally.kinds[0],
                tally.kinds[1],
                tally.kinds[2],
                tally.kinds[3],
                {
                    let mut d: Vec<_> = tally.drops.iter().map(|(r, n)| (r.name(), *n)).collect();
                    d.sort_by_key(|x| std::cmp::Reverse(x.1));
                    d.truncate(5);
                    d
                }
            ));
        }
    }
    eprintln!(
        "corpus: {} files, all readable ({} frames, {} cut by snaplen); the replay front end sent \
         {sent} frames\n{}\n({:?})",
        paths.len(),
        read_frames,
        truncated,
        summary.join("\n"),
        start.elapsed()
    );
}
