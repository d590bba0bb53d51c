//! Telling systemd how the daemon is doing (sd_notify(3), through the `sd-notify` crate): ready
//! once the workers run, watchdog pings from the control loop, stopping. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing. A failed notification is logged once at debug
//! level and otherwise ignored: systemd then restarts or times out the service by itself.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How often the watchdog must be pinged: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises; `None` when it is off. Read from the environment once.
static WATCHDOG_EVERY: OnceLock<Option<Duration>> = OnceLock::new();
/// When the watchdog was last pinged.
static WATCHDOG_LAST: Mutex<Option<Instant>> = Mutex::new(None);

fn send(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        log::debug!("sd_notify: {e}");
    }
}

/// The workers run: `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutting down: `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog when it is on and half its interval has passed since the last ping; cheap
/// to call on every turn of a loop.
pub fn watchdog() {
    let every = WATCHDOG_EVERY.get_or_init(|| sd_notify::watchdog_enabled().map(|d| d / 2));
    let (Some(every), Ok(mut last)) = (every, WATCHDOG_LAST.lock()) else {
        return;
    };
    let now = Instant::now();
    if last.is_none_or(|t| now.duration_since(t) >= *every) {
        *last = Some(now);
        send(&[NotifyState::Watchdog]);
    }
}
