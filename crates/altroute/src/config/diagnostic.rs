//! Errors of a configuration file: each [`Diagnostic`] says what is wrong, where (key path) and
//! at which line/column; [`ConfigError`] holds all of a file's.

use std::fmt;

use super::locate::Pos;

/// One problem in a configuration file: what, where (key path) and the line/column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Key path such as `gateways[1].port` (`.` for the document itself).
    pub path: String,
    /// 1-based line and column, when known.
    pub pos: Option<Pos>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(
                f,
                "line {} column {}: {}: {}",
                p.line, p.column, self.path, self.message
            ),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// All problems found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// File name as given (or `<string>`).
    pub file: String,
    /// The problems, in file order where known.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in &self.diagnostics {
            if !first {
                writeln!(f)?;
            }
            first = false;
            match d.pos {
                Some(p) => write!(
                    f,
                    "{}:{}:{}: {}: {}",
                    self.file, p.line, p.column, d.path, d.message
                )?,
                None => write!(f, "{}: {}: {}", self.file, d.path, d.message)?,
            }
        }
        Ok(())
    }
}

/// Removes serde_norway's leading "path: " (the path is reported separately).
pub(super) fn strip_path(msg: &str, path: &str) -> String {
    match msg.split_once(": ") {
        Some((pre, rest)) if !pre.contains(' ') && path.starts_with(pre) => rest.to_string(),
        _ => msg.to_string(),
    }
}

/// Removes serde_norway's trailing " at line N column M" (the position is reported separately).
pub(super) fn strip_location(msg: &str) -> String {
    if let Some(i) = msg.rfind(" at line ") {
        let tail = &msg[i + " at line ".len()..];
        let mut parts = tail.split(' ');
        let ok = parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
            && parts.next() == Some("column")
            && parts.next().is_some_and(|n| n.parse::<usize>().is_ok())
            && parts.next().is_none();
        if ok {
            return msg[..i].to_string();
        }
    }
    msg.to_string()
}
