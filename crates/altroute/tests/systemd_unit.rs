//! The example systemd unit (`examples/systemd/altroute.service`): `systemd-analyze verify`
//! accepts it with no complaint (unknown keys and bad values only warn, so any output fails the
//! test), and the command lines it runs are ones `altroute` accepts. `systemd-analyze` works
//! offline, without systemd as PID 1. The unit names `/usr/local/bin/altroute`, which verify
//! requires to exist: the test verifies a copy naming the binary under test instead. Without
//! `systemd-analyze` the test skips, unless `CI` is set (then it fails).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_altroute");
const INSTALLED: &str = "/usr/local/bin/altroute";

fn unit_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/systemd/altroute.service"),
    )
    .unwrap()
}

/// `systemd-analyze verify --man=no` on `text` written as `altroute.service` in a directory of
/// its own: (success, everything it printed).
fn verify(text: &str, tag: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("altroute-unit-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit: PathBuf = dir.join("altroute.service");
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn have_systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but systemd-analyze is missing (Debian package `systemd`)"
        );
        eprintln!("skipping: no systemd-analyze");
    }
    ok
}

/// The values of `key=` in the unit, in order.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_verifies_cleanly() {
    if !have_systemd_analyze() {
        return;
    }
    let text = unit_text().replace(INSTALLED, BIN);
    let (ok, said) = verify(&text, "good");
    assert!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    // The check can fail: a misspelt key and a bad value are reported.
    let broken = text
        .replace("Type=notify", "Type=notifyx")
        .replace("ProtectSystem=", "ProtectSystm=");
    let (_, said) = verify(&broken, "bad");
    assert!(
        said.contains("notifyx") && said.contains("ProtectSystm"),
        "{said}"
    );
}

#[test]
fn the_unit_asks_for_what_the_router_needs_and_no_more() {
    let text = unit_text();
    let one = |key: &str| {
        let v = values(&text, key);
        assert_eq!(v.len(), 1, "{key}: {v:?}");
        v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(one("WatchdogSec").ends_with('s'));
    assert_eq!(
        one("CapabilityBoundingSet"),
        "CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_SETPCAP"
    );
    assert_eq!(one("AmbientCapabilities"), one("CapabilityBoundingSet"));
    for (k, v) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("RuntimeDirectory", "altroute"),
        ("ConfigurationDirectory", "altroute"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
}

/// Every command line of the unit parses: the same words with `--help` appended print help and
/// exit 0, while an unknown flag before `--help` is an error.
#[test]
fn the_units_command_lines_parse() {
    let text = unit_text();
    let lines: Vec<&str> = ["ExecStartPre", "ExecStart"]
        .iter()
        .flat_map(|k| values(&text, k))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(INSTALLED), "{line}");
        let args: Vec<&str> = words.collect();
        let out = Command::new(BIN)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(BIN)
            .args(&args)
            .args(["--no-such-flag", "--help"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{line}: unknown flags pass");
    }
}
