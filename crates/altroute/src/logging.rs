//! The log line format. On a terminal or in a file: env_logger's own (`[time LEVEL target]
//! message`). Under systemd with stderr still connected to the journal (`JOURNAL_STREAM` names
//! stderr's device and inode, as sd-daemon(3) describes): no timestamp of our own, journald adds
//! one, and each line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info,
//! `<7>` debug and trace), which journald strips and records as the entry's priority
//! (`journalctl -p warning` then works).
//!
//! Which levels are logged is chosen elsewhere (`RUST_LOG`, the configuration); this module only
//! decides how a line looks.

use std::io::Write;

use log::Level;

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
