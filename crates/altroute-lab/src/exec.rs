//! Running commands for the lab: with a timeout, in a namespace, and the check that the host can
//! run a lab at all.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::plan::{Cmd, cmd};

/// Runs `command` with an optional stdin text, killing it after `timeout`.
pub fn run_with_timeout(
    mut command: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<Output, LabError> {
    let line = format!("{command:?}").replace('"', "");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| LabError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failed write shows up as the command's own error.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out_reader = reader(child.stdout.take());
    let err_reader = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout {
                    cmd: line,
                    after: timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(LabError::Spawn { cmd: line, source }),
        }
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs a plan command and fails on a non-zero exit.
pub fn run_cmd(c: &Cmd, timeout: Duration) -> Result<Output, LabError> {
    let mut command;
    if let Some(ns) = &c.ns {
        command = Command::new("ip");
        command.args(["netns", "exec", ns]).args(&c.argv);
    } else {
        let Some((prog, args)) = c.argv.split_first() else {
            return Err(LabError::Failed {
                cmd: String::new(),
                status: "empty".into(),
                stderr: String::new(),
            });
        };
        command = Command::new(prog);
        command.args(args);
    }
    let out = run_with_timeout(command, c.stdin.as_deref(), timeout)?;
    if !out.status.success() {
        return Err(LabError::Failed {
            cmd: c.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Names of existing network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let out = run_cmd(
        &cmd(None, &["ip", "netns", "list"]),
        Duration::from_secs(10),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// True when the effective user is root (from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `Ok` when root and the tools `(program, version flag)` run; `Err(reason)` otherwise.
pub fn prerequisites(tools: &[(&str, &str)]) -> Result<(), String> {
    if !is_root() {
        return Err("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    for (t, arg) in tools {
        let ok = Command::new(t)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("`{t}` is missing or does not run"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_kills() {
        let mut c = Command::new("sleep");
        c.arg("5");
        let t = Instant::now();
        let e = run_with_timeout(c, None, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, LabError::Timeout { .. }));
        assert!(t.elapsed() < Duration::from_secs(2));
        let mut c = Command::new("cat");
        c.arg("-");
        let o = run_with_timeout(c, Some("hello"), Duration::from_secs(5)).unwrap();
        assert_eq!(o.stdout, b"hello");
    }
}
