//! Every frame of the shared pcap corpus through the whole pipeline, on every port: as captured
//! (their MACs are not the ports', so most stop at the L2 check) and with the destination MAC
//! rewritten to the port's (so they reach classification, NAT, ICMP and ARP handling). One
//! variant runs frame by frame, the other through `process_batch`. Nothing may panic, every
//! frame gets exactly one verdict, and every `Drop` verdict is counted in the pipeline's counters.
//! The replay front end (capture reading, snaplen accounting) runs over every file too.
//!
//! Corpus: `$ALTROUTE_PCAP_CORPUS`, default `../../../shared/pcap-corpus` relative to this
//! crate. Missing: skipped with a printed reason, unless `CI` is set (then a failure).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use altroute::config::Config;
use altroute::replay::{self, CapFrame, Options};
use altroute_flow::Time;
use altroute_packet::DropReason;
use altroute_packet::egress::TxOffload;
use altroute_packet::pipeline::{Context, MAX_FRAME, Packet, Verdict};

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

struct Tally {
    frames: u64,
    verdicts: u64,
    drops: BTreeMap<DropReason, u64>,
    kinds: [u64; 4],
}

impl Tally {
    fn new() -> Tally {
        Tally {
            frames: 0,
            verdicts: 0,
            drops: BTreeMap::new(),
            kinds: [0; 4],
        }
    }

    fn add(&mut self, v: Verdict) {
        self.verdicts += 1;
        let k = match v {
            Verdict::Forward { .. } => 0,
            Verdict::Reply { .. } => 1,
            Verdict::Drop(r) => {
                *self.drops.entry(r).or_default() += 1;
                2
            }
            Verdict::Control(_) => 3,
        };
        self.kinds[k] += 1;
    }

    /// Every frame has a verdict, and every Drop verdict is in the pipeline's counters.
    fn check(&self, ctx: &Context, what: &str) {
        assert_eq!(
            self.verdicts, self.frames,
            "{what}: frames without a verdict"
        );
        assert_eq!(self.kinds.iter().sum::<u64>(), self.frames, "{what}");
        for (r, n) in &self.drops {
            let counted = ctx.counters.drops.get(*r);
            assert!(
                counted >= *n,
                "{what}: {n} Drop({r}) verdicts but the counter says {counted}"
            );
        }
    }
}

fn frame_for(f: &CapFrame, mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut v = f.data.clone();
    if let (Some(m), Some(dst)) = (mac, v.get_mut(..6)) {
        dst.copy_from_slice(&m);
    }
    v
}

#[test]
fn corpus_through_every_port() {
    let Some(paths) = corpus_files() else {
        return;
    };

    let cfg = Config::from_str_named(CONFIG, "corpus.yaml").unwrap();
    let links = altroute::build::links(&cfg);
    let start = std::time::Instant::now();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut all: Vec<(String, Vec<CapFrame>)> = Vec::new();
    let (mut read_frames, mut truncated) = (0u64, 0u64);
    for p in &paths {
        match replay::read_capture(p) {
            Ok(frames) => {
                read_frames += frames.len() as u64;
                truncated += frames.iter().filter(|f| f.is_truncated()).count() as u64;
                // The replay front end over the file, on the first LAN port.
                let r = replay::replay_frames(&cfg, vec![(0, frames.clone())], &Options::default())
                    .unwrap();
                assert_eq!(
                    r.forward + r.reply + r.drop + r.control + r.truncated,
                    r.frames,
                    "{}",
                    p.display()
                );
                all.push((p.display().to_string(), frames));
            }
            Err(e) => {
                // Errors name the file; classify them for the summary.
                let s = e.to_string();
                assert!(s.contains(&p.display().to_string()), "{s}");
                let kind = s
                    .rsplit(": ")
                    .next()
                    .unwrap_or("?")
                    .chars()
                    .take(60)
                    .collect::<String>();
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
    assert!(read_frames > 5000, "only {read_frames} frames read");

    let mut summary = Vec::new();
    for spec in &cfg.ports {
        let link = links.iter().position(|l| *l == spec.interface).unwrap() as u8;
        let mac = spec.mac.unwrap().0;
        for (variant, rewrite) in [("as captured", None), ("dst MAC = port", Some(mac))] {
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
                        let mut verdicts = vec![Verdict::default(); pkts.len()];
                        ctx.process_batch(&mut pkts, Time::from_millis(clock), &mut verdicts);
                        tally.frames += chunk.len() as u64;
                        for v in verdicts {
                            tally.add(v);
                        }
                    }
                } else {
                    for f in frames {
                        clock += 1;
                        let mut v = frame_for(f, rewrite);
                        let n = v.len();
                        v.resize(n + 2048, 0);
                        let verdict = ctx.process(
                            &mut v,
                            n,
                            link,
                            &mut TxOffload::default(),
                            Time::from_millis(clock),
                        );
                        if let Verdict::Forward { len, .. } | Verdict::Reply { len } = verdict {
                            assert!(len <= v.len());
                        }
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
                        tally.frames += 1;
                        tally.add(verdict);
                    }
                }
            }
            tally.check(&ctx, &format!("{} ({variant})", spec.name));
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
        "corpus: {} files, {} readable ({} frames, {} cut by snaplen), unreadable: {errors:?}\n{}\n({:?})",
        paths.len(),
        all.len(),
        read_frames,
        truncated,
        summary.join("\n"),
        start.elapsed()
    );
    assert!(
        all.len() * 10 >= paths.len() * 9,
        "fewer than 90% of the files are readable: {errors:?}"
    );
}
