//! The router as a child process (`altroute run --netns … --status-file …`) and what its status
//! file says: gateway states and counters.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::{DemoError, io, nap};

/// One gateway in the router's status file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayStatus {
    /// Gateway name.
    pub name: String,
    /// `up`, `down`, …
    pub state: String,
    /// Router time (ms since start) of the last state change.
    pub since_ms: u64,
    /// Why it is in this state.
    pub reason: String,
    /// Flows on this gateway.
    pub flows: u64,
    /// Packets sent out through it.
    pub out_packets: u64,
    /// Bytes sent out through it.
    pub out_bytes: u64,
    /// Packets received through it.
    pub in_packets: u64,
    /// Bytes received through it.
    pub in_bytes: u64,
}

/// The router's status file (`altroute run --status-file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RouterStatus {
    /// Router time of this snapshot (ms since start).
    pub time_ms: u64,
    /// Gateways in configuration order.
    pub gateways: Vec<GatewayStatus>,
    /// Flows in all tables.
    pub flows: u64,
    /// Drop counters by reason (only non-zero ones).
    pub drops: BTreeMap<String, u64>,
}

impl RouterStatus {
    /// Parses a status document.
    pub fn parse(text: &str) -> Option<RouterStatus> {
        serde_json::from_str(text).ok()
    }

    /// The gateway called `name`.
    pub fn gateway(&self, name: &str) -> Option<&GatewayStatus> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// True when every gateway is up.
    pub fn all_up(&self) -> bool {
        !self.gateways.is_empty() && self.gateways.iter().all(|g| g.state == "up")
    }

    /// One line: `isp1 up flows 12 out 340 pkts in 320 pkts | … | drops: x 3`.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .gateways
            .iter()
            .map(|g| {
                format!(
                    "{} {} flows {} out {} pkts in {} pkts",
                    g.name, g.state, g.flows, g.out_packets, g.in_packets
                )
            })
            .collect();
        let drops: Vec<String> = self.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        parts.push(format!(
            "drops: {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        ));
        parts.join(" | ")
    }
}

/// The router as a child process: `altroute run --config C --netns NS --status-file F`, its
/// output in a log file. Killed (by its own pid) when dropped; [`RouterProcess::stop`] asks it
/// to stop with SIGTERM and returns its exit status.
#[derive(Debug)]
pub struct RouterProcess {
    child: Child,
    status_file: PathBuf,
    log_file: PathBuf,
    exited: Option<ExitStatus>,
    signalled: bool,
}

impl RouterProcess {
    /// Starts `bin run` in namespace `netns`, with the status file and log in `dir`.
    pub fn start(
        bin: &Path,
        config: &Path,
        netns: &str,
        dir: &Path,
    ) -> Result<RouterProcess, DemoError> {
        let status_file = dir.join("status.json");
        let log_file = dir.join("router.log");
        let _ = std::fs::remove_file(&status_file);
        let log =
            File::create(&log_file).map_err(io(format!("creating {}", log_file.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io(format!("opening {}", log_file.display())))?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--netns", netns, "--status-file"])
            .arg(&status_file)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io(format!("starting {} run", bin.display())))?;
        Ok(RouterProcess {
            child,
            status_file,
            log_file,
            exited: None,
            signalled: false,
        })
    }

    /// The router's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (stdout and stderr).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The status file.
    pub fn status_file(&self) -> &Path {
        &self.status_file
    }

    /// The last status written, if any.
    pub fn status(&self) -> Option<RouterStatus> {
        std::fs::read_to_string(&self.status_file)
            .ok()
            .and_then(|t| RouterStatus::parse(&t))
    }

    /// Estimated wall-clock time of router time 0 (from the status file's mtime and `time_ms`).
    pub fn epoch(&self) -> Option<SystemTime> {
        let st = self.status()?;
        let mtime = std::fs::metadata(&self.status_file).ok()?.modified().ok()?;
        mtime.checked_sub(Duration::from_millis(st.time_ms))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .get(lines.len().saturating_sub(n)..)
            .unwrap_or_default()
            .join("\n")
    }

    /// `Ok` while the router runs; its exit as an error otherwise.
    pub fn check_running(&mut self) -> Result<(), DemoError> {
        if self.exited.is_none() {
            match self.child.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(s)) => self.exited = Some(s),
                Err(e) => return Err(io("waiting for the router")(e)),
            }
        }
        Err(DemoError::RouterExited {
            status: self.exited.map_or("?".into(), |s| s.to_string()),
            log: self.log_file.display().to_string(),
            tail: self.log_tail(15),
        })
    }

    /// Waits until a status file reports every gateway up.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<RouterStatus, DemoError> {
        self.wait_for(RouterStatus::all_up, timeout, stop, |r| {
            format!(
                "the router did not report every gateway up within {timeout:?} (status: {}); log {}:\n{}",
                r.status()
                    .map_or("no status file".into(), |s| s.summary()),
                r.log_file.display(),
                r.log_tail(15)
            )
        })
    }

    /// Waits for a status written after router time `after_ms`.
    pub fn fresh_status(
        &mut self,
        after_ms: u64,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<RouterStatus, DemoError> {
        self.wait_for(
            |s| s.time_ms > after_ms,
            timeout,
            stop,
            |_| format!("no new router status within {timeout:?}"),
        )
    }

    /// Polls the status file every 50 ms until a status satisfies `want` (an error when the
    /// router exits, or `late`'s message after `timeout`).
    fn wait_for(
        &mut self,
        want: impl Fn(&RouterStatus) -> bool,
        timeout: Duration,
        stop: &AtomicBool,
        late: impl FnOnce(&Self) -> String,
    ) -> Result<RouterStatus, DemoError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Some(s) = self.status().filter(|s| want(s)) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Step(late(self)));
            }
            nap(Duration::from_millis(50), stop)?;
        }
    }

    /// True when [`RouterProcess::stop`] sent SIGTERM (false: it had exited before).
    pub fn was_signalled(&self) -> bool {
        self.signalled
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit (then SIGKILL). Returns the exit
    /// status of the SIGTERM'd process (or of its earlier exit: see [`RouterProcess::was_signalled`]).
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus, DemoError> {
        if let Some(s) = self.exited {
            return Ok(s);
        }
        if let Ok(Some(s)) = self.child.try_wait() {
            self.exited = Some(s);
            return Ok(s);
        }
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(io("running kill -TERM"))?;
        if !sent.success() {
            return Err(DemoError::Step(format!("kill -TERM {pid} failed: {sent}")));
        }
        self.signalled = true;
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.exited = Some(s);
                    return Ok(s);
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let s = self.child.wait().map_err(io("waiting for the router"))?;
                    self.exited = Some(s);
                    return Err(DemoError::Step(format!(
                        "the router did not exit within {timeout:?} of SIGTERM and was killed"
                    )));
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(io("waiting for the router")(e)),
            }
        }
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A gateway state change seen in the status file.
pub(super) struct StateEvent {
    /// The gateway.
    pub(super) gateway: String,
    /// Its new state.
    pub(super) to: String,
    /// Router time of the change (ms since start).
    pub(super) since_ms: u64,
    /// One line for the output.
    pub(super) text: String,
}

/// Follows gateway states in the status file.
pub(super) struct Watch {
    states: BTreeMap<String, String>,
}

impl Watch {
    /// Starts from the states in the router's last status.
    pub(super) fn new(router: &RouterProcess, names: &[String]) -> Watch {
        let st = router.status();
        Watch {
            states: names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        st.as_ref()
                            .and_then(|s| s.gateway(n))
                            .map_or("?".into(), |g| g.state.clone()),
                    )
                })
                .collect(),
        }
    }

    /// The last state seen of a gateway.
    pub(super) fn state(&self, name: &str) -> Option<&str> {
        self.states.get(name).map(String::as_str)
    }

    /// The state changes since the last call (`Err` when the router has exited).
    pub(super) fn poll(
        &mut self,
        router: &mut RouterProcess,
    ) -> Result<Vec<StateEvent>, DemoError> {
        router.check_running()?;
        let mut evs = Vec::new();
        let Some(st) = router.status() else {
            return Ok(evs);
        };
        for g in &st.gateways {
            let old = self.states.insert(g.name.clone(), g.state.clone());
            if old.as_deref() != Some(g.state.as_str()) {
                evs.push(StateEvent {
                    gateway: g.name.clone(),
                    to: g.state.clone(),
                    since_ms: g.since_ms,
                    text: format!(
                        "{} {} -> {} ({})",
                        g.name,
                        old.unwrap_or_else(|| "?".into()),
                        g.state,
                        g.reason
                    ),
                });
            }
        }
        Ok(evs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = r#"{
  "time_ms": 11237,
  "gateways": [
    {"name": "isp1", "state": "down", "since_ms": 5119, "reason": "target #0: 66% loss", "mac": "02:a7:00:01:00:02", "flows": 24, "out_packets": 88, "out_bytes": 4780, "in_packets": 81, "in_bytes": 4692, "rtt_ms": [null]},
    {"name": "isp2", "state": "up", "since_ms": 210, "reason": "start", "mac": null, "flows": 64, "out_packets": 273, "out_bytes": 14708, "in_packets": 254, "in_bytes": 14936, "rtt_ms": [4]}
  ],
  "flows": 88,
  "drops": {"l2_not_for_us": 13}
}
"#;

    #[test]
    fn status_parses_and_summarises() {
        let s = RouterStatus::parse(STATUS).unwrap();
        assert_eq!(s.time_ms, 11237);
        assert_eq!(s.gateway("isp1").unwrap().state, "down");
        assert!(!s.all_up());
        assert_eq!(
            s.summary(),
            "isp1 down flows 24 out 88 pkts in 81 pkts | isp2 up flows 64 out 273 pkts in 254 pkts | drops: l2_not_for_us 13"
        );
        assert!(RouterStatus::parse("{\"time_ms\": 1").is_none());
    }
}
