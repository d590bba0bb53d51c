//! Operator commands: the command file beside the status file (`S.cmd`), one
//! `GATEWAY force|disable|auto` per line, consumed when read.

use std::path::{Path, PathBuf};

use log::warn;

use crate::health::Admin;

/// An operator command from the command file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCommand {
    /// The gateway's name.
    pub gateway: String,
    /// What to do.
    pub admin: Admin,
}

/// Parses the command file: one `GATEWAY force|disable|auto` per line; blank lines and `#`
/// comments are skipped. Returns the commands and one message per line that is not understood.
pub fn parse_commands(text: &str) -> (Vec<AdminCommand>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let admin = match words.get(1).copied() {
            Some("force" | "forced") => Some(Admin::Forced),
            Some("disable" | "disabled") => Some(Admin::Disabled),
            Some("auto") => Some(Admin::Auto),
            _ => None,
        };
        match (words.first(), admin, words.len()) {
            (Some(g), Some(admin), 2) => ok.push(AdminCommand {
                gateway: (*g).to_string(),
                admin,
            }),
            _ => bad.push(format!(
                "line {}: `{line}`: expected `GATEWAY force|disable|auto`",
                n + 1
            )),
        }
    }
    (ok, bad)
}

/// The command file that goes with a status file: its name with `.cmd` appended.
pub fn command_file(status_file: &Path) -> PathBuf {
    let mut s = status_file.as_os_str().to_owned();
    s.push(".cmd");
    PathBuf::from(s)
}

/// How an operator setting is spelled in the log and the status file.
pub(super) fn admin_name(a: Admin) -> &'static str {
    match a {
        Admin::Auto => "auto",
        Admin::Disabled => "disabled",
        Admin::Forced => "forced",
    }
}

/// Reads and removes the command file (renamed first, so a command written meanwhile waits for
/// the next turn instead of being lost).
pub(super) fn take_commands(path: &Path) -> Vec<AdminCommand> {
    let mut taking = path.as_os_str().to_owned();
    taking.push(".taking");
    let taking = PathBuf::from(taking);
    if std::fs::rename(path, &taking).is_err() {
        return Vec::new();
    }
    let text = std::fs::read_to_string(&taking).unwrap_or_default();
    let _ = std::fs::remove_file(&taking);
    let (cmds, bad) = parse_commands(&text);
    for b in bad {
        warn!("command file {}: {b}", path.display());
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let (ok, bad) = parse_commands(
            "isp2 disable\n# comment\n\n isp1  force \nisp3 auto # x\nisp1\nisp1 reboot\n",
        );
        assert_eq!(
            ok,
            vec![
                AdminCommand {
                    gateway: "isp2".into(),
                    admin: Admin::Disabled
                },
                AdminCommand {
                    gateway: "isp1".into(),
                    admin: Admin::Forced
                },
                AdminCommand {
                    gateway: "isp3".into(),
                    admin: Admin::Auto
                },
            ]
        );
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].starts_with("line 6"), "{bad:?}");
        assert_eq!(
            command_file(Path::new("/run/altroute/status.json")),
            PathBuf::from("/run/altroute/status.json.cmd")
        );
    }

    #[test]
    fn command_file_is_consumed() {
        let dir = std::env::temp_dir().join(format!("altroute-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = command_file(&dir.join("s.json"));
        assert!(take_commands(&f).is_empty(), "no file, no commands");
        std::fs::write(&f, "isp1 disable\n").unwrap();
        let got = take_commands(&f);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].admin, Admin::Disabled);
        assert!(!f.exists());
        assert!(take_commands(&f).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
