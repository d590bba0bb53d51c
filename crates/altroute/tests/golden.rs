//! Golden tests: every scenario under `fixtures/` is replayed (the library behind
//! `altroute replay`) and every port's output is compared, frame by frame and byte for byte, with
//! the independently built `expected-<port>.pcap`. Every frame of every expected and actual file
//! must also carry valid IPv4/TCP/UDP/ICMP checksums by a full recompute written here.
//!
//! A scenario directory holds `config.yaml`, `in-<port>.pcap` (each replayed on `<port>`),
//! `expected-<port>.pcap` for every port, and optionally `args` (extra replay arguments, one
//! per line, e.g. `--down` / `isp1@6`). Regenerate with `cargo run -p altroute-fixtures`.
#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use altroute::replay::{self, CapFrame, OutFrame, Report};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: replay::ReplayArgs,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn scenario_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.yaml").is_file())
        .collect();
    v.sort();
    assert!(v.len() >= 13, "fixtures missing: {v:?}");
    v
}

fn files_with(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let port = name
                .strip_prefix(prefix)?
                .strip_suffix(".pcap")?
                .to_string();
            Some((port, p))
        })
        .collect();
    v.sort();
    v
}

/// How a scenario is replayed: the clock, the batch size and the number of workers.
#[derive(Clone, Copy, Debug)]
struct Mode {
    time_from_capture: bool,
    batch: usize,
    workers: u16,
}

impl Mode {
    const ONE: Mode = Mode {
        time_from_capture: false,
        batch: 1,
        workers: 1,
    };
}

/// Every way a scenario is replayed: with 1, 2 and 4 workers, frame by frame and in batches of
/// 32, each with the default clock and with `--time-from-capture`.
const WORKERS: [u16; 3] = [1, 2, 4];

fn modes() -> Vec<Mode> {
    let mut v = Vec::new();
    for workers in WORKERS {
        for (time_from_capture, batch) in [(false, 1), (true, 1), (false, 32), (true, 32)] {
            v.push(Mode {
                time_from_capture,
                batch,
                workers,
            });
        }
    }
    v
}

/// The replay command line of a scenario, as a user would type it.
fn command_line(dir: &Path, out: &Path, m: Mode) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![
        "replay".into(),
        "--config".into(),
        dir.join("config.yaml").into(),
    ];
    for (port, path) in files_with(dir, "in-") {
        a.extend(["--in".into(), path.into(), "--in-port".into(), port.into()]);
    }
    if let Ok(extra) = std::fs::read_to_string(dir.join("args")) {
        a.extend(extra.split_whitespace().map(OsString::from));
    }
    a.extend(["--out-dir".into(), out.into()]);
    if m.time_from_capture {
        a.push("--time-from-capture".into());
    }
    if m.batch > 1 {
        a.extend(["--batch".into(), m.batch.to_string().into()]);
    }
    a.extend(["--workers".into(), m.workers.to_string().into()]);
    a
}

fn run(dir: &Path, m: Mode) -> (Report, replay::ReplayArgs) {
    let out = std::env::temp_dir().join(format!(
        "altroute-golden-{}-{}",
        std::process::id(),
        dir.file_name().unwrap().to_string_lossy()
    ));
    let cli = Cli::try_parse_from(command_line(dir, &out, m)).unwrap();
    let (cfg, opts) = cli.args.resolve().unwrap();
    (replay::replay(&cfg, &opts).unwrap(), cli.args)
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, x) in b.iter().enumerate() {
        if i > 0 && i % 16 == 0 {
            s.push_str("\n      ");
        } else if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Frame-by-frame comparison; a readable report of every difference.
fn diff(what: &str, expected: &[CapFrame], actual: &[OutFrame]) -> Option<String> {
    let mut s = String::new();
    if expected.len() != actual.len() {
        let _ = writeln!(
            s,
            "{what}: {} frames expected, {} produced",
            expected.len(),
            actual.len()
        );
    }
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) => {
                if e.data != a.data {
                    let at = e
                        .data
                        .iter()
                        .zip(&a.data)
                        .position(|(x, y)| x != y)
                        .unwrap_or(e.data.len().min(a.data.len()));
                    let _ = writeln!(
                        s,
                        "{what}: frame {} differs at offset {at} (lengths {} expected, {} actual)\n  \
                         expected: {}\n  actual:   {}",
                        i + 1,
                        e.data.len(),
                        a.data.len(),
                        hex(&e.data),
                        hex(&a.data)
                    );
                } else if e.ts_ns != a.ts_ns {
                    let _ = writeln!(
                        s,
                        "{what}: frame {} time {} ns expected, {} ns actual",
                        i + 1,
                        e.ts_ns,
                        a.ts_ns
                    );
                }
            }
            (Some(e), None) => {
                let _ = writeln!(
                    s,
                    "{what}: frame {} missing\n  expected: {}",
                    i + 1,
                    hex(&e.data)
                );
            }
            (None, Some(a)) => {
                let _ = writeln!(
                    s,
                    "{what}: frame {} unexpected\n  actual:   {}",
                    i + 1,
                    hex(&a.data)
                );
            }
            (None, None) => {}
        }
    }
    (!s.is_empty()).then_some(s)
}

/// The `established` scenario's data rounds do take the fast path when batched, with one worker
/// and with several.
#[test]
fn batched_replay_takes_the_fast_path() {
    let dir = fixtures_dir().join("established");
    for workers in WORKERS {
        let m = Mode {
            workers,
            ..Mode::ONE
        };
        let (one, _) = run(&dir, m);
        let (batched, _) = run(&dir, Mode { batch: 32, ..m });
        assert_eq!(one.counters.fast_path, 0);
        assert!(batched.counters.fast_path >= 90, "{}", batched.summary());
        assert_eq!(batched.forward, batched.frames, "{}", batched.summary());
    }
}

/// Each scenario is replayed with 1, 2 and 4 workers, one frame at a time (`process`: the full
/// path) and in batches of 32 (`process_batch`: batched lookups and the established-flow fast
/// path, as the daemon's workers run it); every way must give the same expected frames.
#[test]
fn every_scenario_matches_its_expected_output() {
    let mut failures = String::new();
    for dir in scenario_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for m in modes() {
            let (report, _) = run(&dir, m);
            let expected = files_with(&dir, "expected-");
            assert_eq!(
                expected
                    .iter()
                    .map(|e| e.0.clone())
                    .collect::<Vec<_>>()
                    .len(),
                report.ports.len(),
                "{name}: one expected file per port"
            );
            for (port, path) in expected {
                let want = replay::read_capture(&path).unwrap();
                let got = report
                    .output(&port)
                    .unwrap_or_else(|| panic!("{name}: no port {port}"));
                if let Some(d) = diff(
                    &format!(
                        "{name}/{port} (time-from-capture {}, batch {}, workers {})",
                        m.time_from_capture, m.batch, m.workers
                    ),
                    &want,
                    got,
                ) {
                    failures.push_str(&d);
                }
            }
            // Nothing is lost: every frame has exactly one verdict.
            assert_eq!(
                report.forward + report.reply + report.drop + report.control + report.truncated,
                report.frames,
                "{name}"
            );
        }
    }
    assert!(failures.is_empty(), "golden mismatches:\n{failures}");
}

/// With 2 and 4 workers the scenarios about ICMP errors, port forwards and hairpin do use
/// workers other than 0, the forwards and hairpin more than one (their ports are placed for it in
/// the generator's `ports.rs`), and the frames processed add up.
#[test]
fn error_forward_and_hairpin_scenarios_use_several_workers() {
    for name in ["icmp", "forward", "hairpin", "inbound"] {
        let dir = fixtures_dir().join(name);
        for workers in [2, 4] {
            let (r, _) = run(
                &dir,
                Mode {
                    workers,
                    ..Mode::ONE
                },
            );
            assert_eq!(r.per_worker.len(), usize::from(workers));
            // Frames reach workers other than 0 (where the first steering sent every ICMP
            // error), and the forward and hairpin scenarios use more than one worker.
            let busy = r.per_worker.iter().filter(|&&n| n > 0).count();
            assert!(
                r.per_worker[1..].iter().any(|&n| n > 0) && (name == "icmp" || busy >= 2),
                "{name} at {workers} workers: {:?}",
                r.per_worker
            );
            assert_eq!(r.per_worker.iter().sum::<u64>(), r.frames - r.truncated);
        }
    }
}

#[test]
fn scenario_summaries_say_what_happened() {
    let dir = fixtures_dir();
    let (r, _) = run(&dir.join("load-balance"), Mode::ONE);
    let n1 = r.output("wan1").unwrap().len() as f64;
    let n2 = r.output("wan2").unwrap().len() as f64;
    assert_eq!(n1 + n2, 10_000.0);
    assert!((n1 / (n1 + n2) - 0.75).abs() < 0.02, "{n1}:{n2}");
    assert_eq!(r.gateways[0].flows as f64, n1);
    assert_eq!(r.gateways[1].out.0 as f64, n2);
    let (r, _) = run(&dir.join("reject"), Mode::ONE);
    assert_eq!(r.counters.rejects, 2);
    assert!(r.summary().contains("gateway_down"), "{}", r.summary());
    let (r, _) = run(&dir.join("vlan"), Mode::ONE);
    assert_eq!(r.drops.get("vlan_unknown"), Some(&2), "{}", r.summary());
    let (r, _) = run(&dir.join("mtu"), Mode::ONE);
    assert_eq!(
        r.drops.get("too_long_for_egress"),
        Some(&1),
        "{}",
        r.summary()
    );
    assert_eq!(r.counters.icmp_errors, 1);
    let (r, _) = run(&dir.join("inbound"), Mode::ONE);
    assert_eq!(r.counters.arp_requests, 1, "{}", r.summary());
    // The host's ARP reply is learned (and shared with the other workers), not handed to the
    // control thread: only WAN ports' ARP goes up whole.
    assert_eq!(
        r.drops.get("arp_learned"),
        Some(&1),
        "the ARP reply is learned: {}",
        r.summary()
    );
    assert_eq!(r.control, 0, "{}", r.summary());
    assert_eq!(r.gateways[1].back.0, 1, "{}", r.summary());
    let (r, _) = run(&dir.join("syn-retry"), Mode::ONE);
    assert_eq!(r.drops.get("unsolicited"), Some(&1), "{}", r.summary());
}

#[test]
fn written_files_read_back_and_tcpdump_reads_them() {
    let dir = fixtures_dir().join("nat");
    let (report, args) = run(&dir, Mode::ONE);
    let files = report.write(&args.out_dir).unwrap();
    assert_eq!(files.len(), 3);
    for f in &files {
        let port = f.file_stem().unwrap().to_string_lossy().to_string();
        let back = replay::read_capture(f).unwrap();
        let out = report.output(&port).unwrap();
        assert_eq!(back.len(), out.len());
        for (b, o) in back.iter().zip(out) {
            assert_eq!(b.data, o.data);
        }
    }
    match std::process::Command::new("tcpdump")
        .arg("-nn")
        .arg("-r")
        .arg(&files[1])
        .output()
    {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "tcpdump: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                text.contains("192.0.2.1.40000 > 203.0.113.10.443"),
                "{text}"
            );
        }
        Err(e) => eprintln!("tcpdump not run ({e}): skipping the tcpdump check"),
    }
    let _ = std::fs::remove_dir_all(&args.out_dir);
}

// ----- checksums, recomputed from scratch -----

fn sum(data: &[u8], init: u32) -> u16 {
    let mut s = init;
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        s += u32::from(c[0]) << 8 | u32::from(c[1]);
    }
    if let [last] = it.remainder() {
        s += u32::from(*last) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo(ip: &[u8], proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for w in ip[12..20].chunks(2) {
        s += u32::from(w[0]) << 8 | u32::from(w[1]);
    }
    s + u32::from(proto) + len as u32
}

/// Checks an IPv4 packet's header checksum and its L4 checksum (when the whole L4 is present);
/// for ICMP errors, also the quoted packet's (recursively, as far as it is quoted).
fn check_ip(ip: &[u8], what: &str) -> Result<(), String> {
    let ihl = usize::from(ip[0] & 15) * 4;
    if ip.len() < ihl || ihl < 20 {
        return Err(format!("{what}: short IPv4 header"));
    }
    if sum(&ip[..ihl], 0) != 0xffff {
        return Err(format!("{what}: IPv4 header checksum"));
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let Some(l4) = ip.get(ihl..total) else {
        return Ok(()); // a quote cut short: the L4 checksum cannot be checked
    };
    match ip[9] {
        6 if sum(l4, pseudo(ip, 6, l4.len())) != 0xffff => {
            return Err(format!("{what}: TCP checksum"));
        }
        17 if l4.len() >= 8
            && l4[6..8] != [0, 0]
            && sum(l4, pseudo(ip, 17, l4.len())) != 0xffff =>
        {
            return Err(format!("{what}: UDP checksum"));
        }
        1 => {
            if sum(l4, 0) != 0xffff {
                return Err(format!("{what}: ICMP checksum"));
            }
            if matches!(l4.first(), Some(3 | 4 | 5 | 11 | 12)) && l4.len() >= 28 {
                check_ip(&l4[8..], &format!("{what} (quoted)"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_frame(f: &[u8], what: &str) -> Result<(), String> {
    let (et, l3) = if f[12..14] == [0x81, 0x00] {
        (u16::from_be_bytes([f[16], f[17]]), 18)
    } else {
        (u16::from_be_bytes([f[12], f[13]]), 14)
    };
    if et != 0x0800 {
        return Ok(());
    }
    check_ip(&f[l3..], what)
}

#[test]
fn every_expected_and_actual_frame_has_valid_checksums() {
    let mut bad = Vec::new();
    let mut n = 0;
    for dir in scenario_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for (port, path) in files_with(&dir, "expected-")
            .into_iter()
            .chain(files_with(&dir, "in-"))
        {
            for f in replay::read_capture(&path).unwrap() {
                n += 1;
                if let Err(e) = check_frame(&f.data, &format!("{name}/{port} #{}", f.number)) {
                    bad.push(format!("{} {e}", path.display()));
                }
            }
        }
        let (report, _) = run(&dir, Mode::ONE);
        for (port, frames) in report.ports.iter().zip(&report.outputs) {
            for (i, f) in frames.iter().enumerate() {
                n += 1;
                if let Err(e) = check_frame(&f.data, &format!("{name}/{port} actual #{}", i + 1)) {
                    bad.push(e);
                }
            }
        }
    }
    assert!(n > 20_000, "only {n} frames checked");
    assert!(
        bad.is_empty(),
        "{} bad checksums:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_checker_catches_a_bad_checksum() {
    let dir = fixtures_dir().join("nat");
    let f = &replay::read_capture(&dir.join("expected-wan1.pcap")).unwrap()[0];
    assert!(check_frame(&f.data, "ok").is_ok());
    let mut bad = f.data.clone();
    bad[14 + 20 + 16] ^= 1; // TCP checksum
    assert!(check_frame(&bad, "tcp").is_err());
    let mut bad = f.data.clone();
    bad[14 + 8] ^= 1; // TTL: IP header checksum no longer holds
    assert!(check_frame(&bad, "ip").is_err());
}

#[test]
fn the_binary_replays_a_shipped_fixture() {
    let dir = fixtures_dir().join("nat");
    let out = std::env::temp_dir().join(format!("altroute-golden-bin-{}", std::process::id()));
    // Without `--workers` (the configuration says `workers: 2`), and with 4.
    for workers in [None, Some("4")] {
        let mut args = command_line(&dir, &out, Mode::ONE);
        args.remove(0);
        let at = args.iter().position(|a| a == "--workers").unwrap();
        args.drain(at..at + 2);
        if let Some(n) = workers {
            args.extend(["--workers".into(), n.into()]);
        }
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_altroute"))
            .arg("replay")
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains("verdicts: forward 5, reply 0, drop 1, control 0"),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("workers: {}", workers.unwrap_or("2"))),
            "{stdout}"
        );
        assert!(stdout.contains("unsolicited"), "{stdout}");
        // What the binary wrote is what the expected files hold: the same frames, bytes and
        // times, in the same order (5 frames in all).
        let mut frames = 0;
        for port in ["lan", "wan1", "wan2"] {
            let got = replay::read_capture(&out.join(format!("{port}.pcap"))).unwrap();
            let want = replay::read_capture(&dir.join(format!("expected-{port}.pcap"))).unwrap();
            let got: Vec<OutFrame> = got
                .into_iter()
                .map(|f| OutFrame {
                    ts_ns: f.ts_ns,
                    data: f.data,
                })
                .collect();
            if let Some(d) = diff(&format!("binary, nat/{port}, {workers:?}"), &want, &got) {
                panic!("{d}");
            }
            frames += got.len();
        }
        assert_eq!(frames, 5);
    }
    // A damaged capture: a clear error naming the file and the packet, exit status 1.
    let cut = out.join("cut.pcap");
    let bytes = std::fs::read(dir.join("in-lan.pcap")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_altroute"))
        .args(["replay", "--config"])
        .arg(dir.join("config.yaml"))
        .arg("--in")
        .arg(&cut)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("cut.pcap: packet 3:").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}
