//! A running lab: built from the plan, commands and background processes in its namespaces,
//! faults on an ISP, and the teardown.
//!
//! Namespaces (`P` is the prefix, default `ar-`): `Plan`, `Prtr`, `Pisp1`, `Pisp2`, `Pinet`.
//! Interfaces, addresses and MACs are listed in [`LINKS`](crate::LINKS) and in the `lab up` help.
//! A [`Lab`] deletes its namespaces when dropped, also when set-up failed half-way. Nothing outside
//! the namespaces the lab creates is ever touched.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::error::LabError;
use crate::exec::{list_namespaces, run_cmd, run_with_timeout};
use crate::plan::{check_prefix, cmd, plan_up};
use crate::topology::{Forwarder, Isp, NAMESPACES};

/// Deletes every lab namespace with this prefix (only the five lab names, nothing else).
/// Returns the names deleted.
pub fn teardown(prefix: &str) -> Result<Vec<String>, LabError> {
    check_prefix(prefix)?;
    let wanted: Vec<String> = NAMESPACES.iter().map(|n| format!("{prefix}{n}")).collect();
    let mut deleted = Vec::new();
    let mut first_err = None;
    for name in list_namespaces()? {
        if wanted.contains(&name) {
            match run_cmd(
                &cmd(None, &["ip", "netns", "del", &name]),
                Duration::from_secs(10),
            ) {
                Ok(_) => deleted.push(name),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

/// A running lab. Dropping it deletes its namespaces unless [`Lab::persist`] was called.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    forwarder: Forwarder,
    keep: bool,
}

/// A process started in a lab namespace; killed (by its own pid) when dropped.
#[derive(Debug)]
pub struct Background {
    child: Child,
    line: String,
}

impl Background {
    /// The command line.
    pub fn command_line(&self) -> &str {
        &self.line
    }
    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

impl Lab {
    /// Builds the lab. On failure everything created so far is deleted.
    pub fn up(prefix: &str, forwarder: Forwarder) -> Result<Lab, LabError> {
        check_prefix(prefix)?;
        let existing = list_namespaces()?;
        for n in NAMESPACES {
            let name = format!("{prefix}{n}");
            if existing.contains(&name) {
                return Err(LabError::Exists(name));
            }
        }
        let lab = Lab {
            prefix: prefix.to_string(),
            forwarder,
            keep: false,
        };
        for c in plan_up(prefix, forwarder) {
            run_cmd(&c, STEP_TIMEOUT)?;
        }
        Ok(lab)
    }

    /// A handle on a lab that already runs (e.g. made by `altroute lab up`); dropping it leaves the
    /// namespaces in place. Fails if one of the five namespaces is missing.
    pub fn attach(prefix: &str, forwarder: Forwarder) -> Result<Lab, LabError> {
        check_prefix(prefix)?;
        let existing = list_namespaces()?;
        for n in NAMESPACES {
            let name = format!("{prefix}{n}");
            if !existing.contains(&name) {
                return Err(LabError::Missing(name));
            }
        }
        Ok(Lab {
            prefix: prefix.to_string(),
            forwarder,
            keep: true,
        })
    }

    /// Keeps the namespaces after this value is dropped (for `altroute lab up`).
    pub fn persist(mut self) {
        self.keep = true;
    }

    /// Deletes the namespaces now, reporting errors.
    pub fn down(mut self) -> Result<Vec<String>, LabError> {
        self.keep = true;
        teardown(&self.prefix)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Who forwards in the router namespace.
    pub fn forwarder(&self) -> Forwarder {
        self.forwarder
    }

    /// Full namespace name of a role (`"lan"`, `"rtr"`, `"isp1"`, `"isp2"`, `"inet"`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// Runs `argv` in namespace `role` with a timeout; returns its output whatever the exit status.
    pub fn exec(&self, role: &str, argv: &[&str], timeout: Duration) -> Result<Output, LabError> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(argv);
        run_with_timeout(c, None, timeout)
    }

    /// Like [`Lab::exec`] but a non-zero exit is an error.
    pub fn exec_ok(
        &self,
        role: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<Output, LabError> {
        run_cmd(&cmd(Some(&self.ns(role)), argv), timeout)
    }

    /// Starts `argv` in namespace `role` in the background (output discarded).
    pub fn spawn(&self, role: &str, argv: &[&str]) -> Result<Background, LabError> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(argv);
        let line = format!("ip netns exec {} {}", self.ns(role), argv.join(" "));
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn {
                cmd: line.clone(),
                source,
            })?;
        Ok(Background { child, line })
    }

    fn nft(&self, isp: Isp, script: String) -> Result<(), LabError> {
        let mut c = cmd(Some(&self.ns(isp.ns())), &["nft", "-f", "-"]);
        c.stdin = Some(script);
        run_cmd(&c, STEP_TIMEOUT).map(|_| ())
    }

    fn fault_chain(body: &str, policy: &str) -> String {
        // Create-then-delete makes the replacement idempotent and atomic.
        format!(
            "table inet altroute_fault {{}}\ndelete table inet altroute_fault\ntable inet altroute_fault {{\n  chain forward {{\n    type filter hook forward priority 0; policy {policy};\n{body}  }}\n}}\n"
        )
    }

    /// Drops everything the ISP forwards (its links stay up, ARP still answered).
    pub fn blackhole(&self, isp: Isp) -> Result<(), LabError> {
        self.nft(isp, Self::fault_chain("", "drop"))
    }

    /// Drops `pct` % of what the ISP forwards, at random.
    pub fn loss(&self, isp: Isp, pct: u8) -> Result<(), LabError> {
        // nft rejects `< 100` (the value must be inside `mod 100`): 100 % is a plain drop.
        let rule = match pct {
            0 => String::new(),
            1..=99 => format!("    numgen random mod 100 < {pct} drop\n"),
            _ => "    drop\n".to_string(),
        };
        self.nft(isp, Self::fault_chain(&rule, "accept"))
    }

    /// Limits the ISP to `mbit` Mbit/s in each direction (tc tbf on both of its links).
    pub fn rate_limit(&self, isp: Isp, mbit: u32) -> Result<(), LabError> {
        let rate = format!("{}mbit", mbit.max(1));
        // At least 10 ms worth of bytes per burst, and at least 32 KiB.
        let burst = (u64::from(mbit.max(1)) * 1_000_000 / 8 / 100)
            .max(32 * 1024)
            .to_string();
        for dev in isp.ifaces() {
            self.exec_ok(
                isp.ns(),
                &[
                    "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
                    &burst, "latency", "50ms",
                ],
                STEP_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Removes every fault (nft table and tc qdiscs) from the ISP.
    pub fn restore(&self, isp: Isp) -> Result<(), LabError> {
        self.nft(
            isp,
            "table inet altroute_fault {}\ndelete table inet altroute_fault\n".into(),
        )?;
        for dev in isp.ifaces() {
            // "No such file or directory" when there is no root qdisc: nothing to undo.
            let _ = self.exec(
                isp.ns(),
                &["tc", "qdisc", "del", "dev", dev, "root"],
                STEP_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Turns TX checksum/TSO/GSO offloads on or off on the router's peers (`lan0`, `i1-rtr`,
    /// `i2-rtr`), so the router receives finished frames when its datapath runs without vnet_hdr.
    pub fn set_peer_offloads(&self, on: bool) -> Result<(), LabError> {
        let v = if on { "on" } else { "off" };
        for (role, dev) in [("lan", "lan0"), ("isp1", "i1-rtr"), ("isp2", "i2-rtr")] {
            self.exec_ok(
                role,
                &["ethtool", "-K", dev, "tx", v, "tso", v, "gso", v],
                STEP_TIMEOUT,
            )?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep
            && let Err(e) = teardown(&self.prefix)
        {
            log::warn!("lab teardown for prefix {} failed: {e}", self.prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_scripts() {
        let s = Lab::fault_chain("    numgen random mod 100 < 30 drop\n", "accept");
        assert!(s.contains("delete table inet altroute_fault"));
        assert!(s.contains("numgen random mod 100 < 30 drop"));
    }
}
