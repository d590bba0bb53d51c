//! Traffic in the lab through the `altroute` binary's `lab-tool`: the whoami server in the
//! Internet namespace and the counting client in the LAN.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::{DemoError, SERVER_TCP, SERVER_UDP, nap};
use crate::tool::Tally;
use crate::{Background, Lab};

/// Runs the whoami client in the lab's LAN: `n` TCP connections to `dest`, `parallel` at a time.
pub fn tcp_clients(
    lab: &Lab,
    bin: &Path,
    dest: &str,
    n: usize,
    parallel: usize,
    timeout_ms: u64,
) -> Result<Tally, DemoError> {
    let bin = bin.to_string_lossy();
    let (n, p, t) = (n.to_string(), parallel.to_string(), timeout_ms.to_string());
    let limit = Duration::from_secs(30) + Duration::from_millis(timeout_ms.saturating_mul(4));
    let out = lab.exec(
        "lan",
        &[
            &bin,
            "lab-tool",
            "client",
            "--tcp",
            dest,
            "-n",
            &n,
            "--parallel",
            &p,
            "--timeout-ms",
            &t,
        ],
        limit,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    Tally::parse(&text).ok_or_else(|| {
        DemoError::Step(format!(
            "the lab client printed no tally ({}): {text} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// Starts the whoami server in `inet` and waits until it answers there.
pub fn start_whoami(lab: &Lab, bin: &Path, stop: &AtomicBool) -> Result<Background, DemoError> {
    let b = bin.to_string_lossy();
    let server = lab.spawn(
        "inet",
        &[
            &b, "lab-tool", "serve", "--tcp", SERVER_TCP, "--udp", SERVER_UDP,
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = lab.exec(
            "inet",
            &[
                &b, "lab-tool", "client", "--tcp", SERVER_TCP, "-n", "1", "--min-ok", "1",
            ],
            Duration::from_secs(10),
        )?;
        if out.status.success() {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            return Err(DemoError::Step(
                "the whoami server did not start within 15 s".into(),
            ));
        }
        nap(Duration::from_millis(50), stop)?;
    }
}
