//! Gateway hooks: the `hooks.up` / `hooks.down` shell commands run when a gateway becomes usable
//! or unusable, each in its own thread and killed after `hooks.timeout_ms`.

use std::process::Command;
use std::time::{Duration, Instant};

use altroute_flow::GatewayState;
use log::warn;

use crate::config;
use crate::health::Transition;

/// Runs the hook that goes with a transition of gateway `name`, if any: `up` when it becomes
/// usable, `down` when it stops being usable (a degraded <-> up change is not an edge).
pub(super) fn on_transition(hooks: &config::Hooks, name: &str, tr: &Transition) {
    let cmd = match tr.to {
        GatewayState::Up | GatewayState::Degraded | GatewayState::Forced => hooks.up.clone(),
        GatewayState::Down | GatewayState::Disabled => hooks.down.clone(),
    };
    let edge = tr.from.is_usable() != tr.to.is_usable();
    if let Some(cmd) = cmd.filter(|_| edge) {
        run_hook(
            cmd,
            name.to_string(),
            tr.to,
            tr.reason.clone(),
            Duration::from_millis(u64::from(hooks.timeout_ms)),
        );
    }
}

/// Run a hook in its own thread, killed after `timeout`; never blocks the caller.
pub fn run_hook(
    cmd: String,
    gateway: String,
    state: GatewayState,
    reason: String,
    timeout: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name(format!("hook-{gateway}"))
        .spawn(move || {
            let child = Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .env("ALTROUTE_GATEWAY", &gateway)
                .env("ALTROUTE_STATE", state.to_string())
                .env("ALTROUTE_REASON", &reason)
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    warn!("hook for {gateway} ({cmd}): cannot start: {e}");
                    return;
                }
            };
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            warn!("hook for {gateway} ({cmd}) exited with {status}");
                        }
                        return;
                    }
                    Ok(None) if start.elapsed() >= timeout => {
                        let _ = child.kill();
                        let _ = child.wait();
                        warn!(
                            "hook for {gateway} ({cmd}) killed after {} ms",
                            timeout.as_millis()
                        );
                        return;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        warn!("hook for {gateway} ({cmd}): {e}");
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start a hook thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(what: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("altroute-hook-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits up to `limit` for `cond`; whether it held.
    fn wait_for(limit: Duration, cond: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        cond()
    }

    #[test]
    fn hooks_get_their_environment() {
        let dir = temp_dir("env");
        let out = dir.join("env");
        let tmp = dir.join("env.tmp");
        run_hook(
            format!(
                "echo \"$ALTROUTE_GATEWAY $ALTROUTE_STATE $ALTROUTE_REASON\" > {t} && mv {t} {o}",
                t = tmp.display(),
                o = out.display()
            ),
            "isp1".into(),
            GatewayState::Down,
            "probes lost".into(),
            Duration::from_secs(5),
        );
        assert!(wait_for(Duration::from_secs(10), || out.exists()));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "isp1 down probes lost"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A hook that outlives its timeout is killed: the shell it runs in is gone soon after the
    /// timeout (it would live 3 s), the command after its `sleep` never runs, and the caller was
    /// never blocked.
    #[test]
    fn hooks_are_killed_on_timeout() {
        let dir = temp_dir("kill");
        let (pid_file, done) = (dir.join("pid"), dir.join("done"));
        let timeout = Duration::from_millis(500);
        let t = Instant::now();
        run_hook(
            format!(
                "echo $$ > {p}.tmp && mv {p}.tmp {p}; sleep 3; touch {d}",
                p = pid_file.display(),
                d = done.display()
            ),
            "isp1".into(),
            GatewayState::Up,
            "x".into(),
            timeout,
        );
        assert!(t.elapsed() < Duration::from_millis(100), "run_hook blocked");
        assert!(
            wait_for(Duration::from_secs(2), || pid_file.exists()),
            "the hook never started"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
        // Killed and reaped by the timeout plus a generous margin for a loaded machine, well
        // before the 3 s it would take on its own.
        let gone = wait_for(Duration::from_millis(2000), || !proc_dir.exists());
        let at = t.elapsed();
        assert!(
            gone,
            "the hook's shell ({}) still runs after {at:?}",
            pid.trim()
        );
        assert!(at >= timeout, "gone before its timeout ({at:?})");
        // Past the point where it would have finished: its last command never ran.
        std::thread::sleep(
            Duration::from_secs(3).saturating_sub(t.elapsed()) + Duration::from_millis(500),
        );
        assert!(!done.exists(), "the hook ran to its end: not killed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
