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

    #[test]
    fn hooks_get_their_environment_and_are_killed_on_timeout() {
        let dir = std::env::temp_dir().join(format!("altroute-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env");
        run_hook(
            format!(
                "echo \"$ALTROUTE_GATEWAY $ALTROUTE_STATE $ALTROUTE_REASON\" > {}",
                out.display()
            ),
            "isp1".into(),
            GatewayState::Down,
            "probes lost".into(),
            Duration::from_secs(5),
        );
        let start = Instant::now();
        while !out.exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            "isp1 down probes lost"
        );
        // A hook that hangs is killed and does not block the caller.
        let t = Instant::now();
        run_hook(
            "sleep 30".into(),
            "isp1".into(),
            GatewayState::Up,
            "x".into(),
            Duration::from_millis(100),
        );
        assert!(t.elapsed() < Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
