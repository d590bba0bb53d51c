//! `altroute replay` draws its progress only when stderr is a terminal: under `script(1)` (a
//! pseudo-terminal) the bar appears; with stderr a pipe, stderr stays empty. Skips without
//! `script` (Debian's bsdutils), unless `CI` is set.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");

fn args(out: &Path) -> Vec<String> {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/load-balance");
    vec![
        "replay".into(),
        "--config".into(),
        f.join("config.yaml").display().to_string(),
        "--in".into(),
        f.join("in-lan.pcap").display().to_string(),
        "--out-dir".into(),
        out.display().to_string(),
    ]
}

#[test]
fn progress_on_a_terminal_only() {
    let out = std::env::temp_dir().join(format!("altroute-progress-{}", std::process::id()));
    let piped = Command::new(BIN).args(args(&out)).output().unwrap();
    assert!(piped.status.success());
    assert!(
        piped.stderr.is_empty(),
        "stderr not a terminal, yet: {}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(String::from_utf8_lossy(&piped.stdout).contains("frames: 10000 read"));

    let line = std::iter::once(BIN.to_string())
        .chain(args(&out))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output();
    let _ = std::fs::remove_dir_all(&out);
    let tty = match tty {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but no script(1): {e}"
            );
            eprintln!("skipping the terminal half: no script(1): {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{text}");
    assert!(
        text.contains("replaying ["),
        "no bar on a terminal:\n{text}"
    );
    assert!(text.contains("/10,000 frames"), "{text}");
    assert!(text.contains("frames: 10000 read"), "{text}");
}
