//! The log: which levels (`logging.level` from the configuration, unless `RUST_LOG` is set —
//! then it rules, with its per-module directives, and reloads leave it alone) and how a line
//! looks. On a terminal or in a file: env_logger's own (`[time LEVEL target] message`). Under
//! systemd with stderr still connected to the journal (`JOURNAL_STREAM` names stderr's device and
//! inode, as sd-daemon(3) describes): no timestamp of our own, journald adds one, and each line
//! starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and
//! trace), which journald strips and records as the entry's priority (`journalctl -p warning`
//! then works).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter};

/// Whether `RUST_LOG` chose the filter.
static FROM_ENV: AtomicBool = AtomicBool::new(false);

/// Starts the logger: `RUST_LOG`'s filter if set; else every record reaches the logger and the
/// level (`info` until a configuration is loaded) is [`set_level`]'s. The line format is
/// [`format()`]'s.
pub fn init() {
    let mut builder = if std::env::var_os("RUST_LOG").is_some() {
        FROM_ENV.store(true, Ordering::Relaxed);
        env_logger::Builder::from_env(env_logger::Env::default())
    } else {
        let mut b = env_logger::Builder::new();
        b.filter_level(LevelFilter::Trace);
        b
    };
    format(&mut builder);
    builder.init();
    if !FROM_ENV.load(Ordering::Relaxed) {
        log::set_max_level(LevelFilter::Info);
    }
}

/// The level of `off|error|warn|info|debug|trace` (validated by the configuration; anything
/// else is `info`).
pub fn level_of(level: &str) -> LevelFilter {
    level.parse().unwrap_or(LevelFilter::Info)
}

/// Applies `logging.level` (at start and on reload) unless `RUST_LOG` chose the filter.
pub fn set_level(level: &str) {
    if !FROM_ENV.load(Ordering::Relaxed) {
        log::set_max_level(level_of(level));
    }
}

/// Sets the line format on `builder`: the journal's when stderr is the journal stream.
pub fn format(builder: &mut env_logger::Builder) {
    if stderr_is_journal() {
        builder.format(|buf, record| {
            journal_line(buf, record.level(), record.target(), record.args())
        });
    }
}

/// One log line as journald reads it: `<priority>target: message`.
pub fn journal_line(
    w: &mut impl Write,
    level: Level,
    target: &str,
    args: &std::fmt::Arguments<'_>,
) -> std::io::Result<()> {
    writeln!(w, "<{}>{target}: {args}", syslog_priority(level))
}

/// The syslog priority of a log level (sd-daemon(3): `<3>` SD_ERR … `<7>` SD_DEBUG).
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` is set and
/// names stderr's device and inode (a service that redirects stderr elsewhere keeps the variable,
/// so its presence alone is not enough).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// `JOURNAL_STREAM`'s `DEVICE:INODE` (both decimal).
pub fn parse_journal_stream(s: &str) -> Option<(u64, u64)> {
    let (dev, ino) = s.split_once(':')?;
    Some((dev.trim().parse().ok()?, ino.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        assert_eq!(level_of("debug"), LevelFilter::Debug);
        assert_eq!(level_of("WARN"), LevelFilter::Warn);
        assert_eq!(level_of("off"), LevelFilter::Off);
        assert_eq!(level_of("chatty"), LevelFilter::Info);
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_time() {
        let line = |level| {
            let mut out = Vec::new();
            journal_line(
                &mut out,
                level,
                "altroute::control",
                &format_args!("gateway isp1 down ({} lost)", 12),
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(Level::Error),
            "<3>altroute::control: gateway isp1 down (12 lost)\n"
        );
        assert!(line(Level::Warn).starts_with("<4>"));
        assert!(line(Level::Info).starts_with("<6>"));
        assert!(line(Level::Debug).starts_with("<7>"));
        assert!(line(Level::Trace).starts_with("<7>"));
    }

    #[test]
    fn journal_stream_parses_device_and_inode() {
        assert_eq!(parse_journal_stream("8:123456"), Some((8, 123456)));
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("x:1"), None);
        assert_eq!(parse_journal_stream(""), None);
    }
}
