//! Maps key paths such as `gateways[1].port` to the line and column where they are written.
//!
//! `serde_norway::Value` carries no source positions, so errors found after parsing (by
//! `validate()`) would have no line. This module scans the YAML text with a small
//! indentation-aware tracker that understands the block style used by configuration files:
//! block mappings (`key: value`, `key:` followed by a nested block), block sequences
//! (`- item`, `- key: value`, sequences at the same indentation as their key), comments,
//! quoted keys and `---` document markers. Flow collections (`[a, b]`, `{a: 1}`) and multi-line
//! scalars are treated as opaque values: their path is the key that holds them. A lookup for
//! a path that was not recorded falls back to the nearest recorded ancestor, so every error
//! gets the best line available.

use std::collections::HashMap;

/// A 1-based position in the configuration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, 1-based.
    pub line: usize,
    /// Column, 1-based.
    pub column: usize,
}

/// Key path → position of the key (or of the `-` of a sequence item).
#[derive(Debug, Default, Clone)]
pub struct KeyLines {
    map: HashMap<String, Pos>,
}

#[derive(Debug)]
enum Frame {
    /// A mapping (root or a sequence item's mapping) whose keys are deeper than `indent`.
    Container { indent: isize, path: String },
    /// A key with no inline value: its children are deeper, or a sequence at the same indent.
    Key { indent: isize, path: String },
    /// A block sequence whose `-` markers sit at `indent`.
    Seq {
        indent: isize,
        path: String,
        next: usize,
    },
}

impl KeyLines {
    /// Scans `text` and records where each key path is written.
    pub fn scan(text: &str) -> Self {
        let mut map = HashMap::new();
        let mut stack: Vec<Frame> = vec![Frame::Container {
            indent: -1,
            path: String::new(),
        }];
        for (lineno, raw) in text.lines().enumerate() {
            let line = strip_comment(raw);
            let trimmed = line.trim_start_matches(' ');
            if trimmed.trim().is_empty() {
                continue;
            }
            if trimmed.starts_with("---") || trimmed.starts_with("...") {
                stack.truncate(1);
                continue;
            }
            let col = (line.len() - trimmed.len()) as isize;
            process(&mut stack, &mut map, lineno + 1, col, trimmed);
        }
        Self { map }
    }

    /// Position of `path`, or of its nearest recorded ancestor (`a.b[2].c` → `a.b[2]` → `a.b` → `a`).
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
            if p.is_empty() {
                return None;
            }
        }
    }

    /// Position of exactly `path` (no fallback).
    pub fn exact(&self, path: &str) -> Option<Pos> {
        self.map.get(path).copied()
    }
}

fn is_seq_item(s: &str) -> bool {
    s == "-" || s.starts_with("- ")
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn process(
    stack: &mut Vec<Frame>,
    map: &mut HashMap<String, Pos>,
    line: usize,
    col: isize,
    rest: &str,
) {
    let seq = is_seq_item(rest);
    // Pop frames this line does not belong to.
    while let Some(top) = stack.last() {
        let keep = match top {
            Frame::Container { indent, .. } => col > *indent,
            Frame::Key { indent, .. } => col > *indent || (col == *indent && seq),
            Frame::Seq { indent, .. } => col == *indent && seq,
        };
        if keep || stack.len() == 1 {
            break;
        }
        stack.pop();
    }
    if seq {
        // Make sure there is a Seq frame for this `-`.
        let needs_seq = !matches!(stack.last(), Some(Frame::Seq { indent, .. }) if *indent == col);
        if needs_seq {
            let path = match stack.last() {
                Some(Frame::Key { path, .. }) | Some(Frame::Container { path, .. }) => path.clone(),
                Some(Frame::Seq { path, .. }) => path.clone(),
                None => String::new(),
            };
            stack.push(Frame::Seq {
                indent: col,
                path,
                next: 0,
            });
        }
        let item_path = match stack.last_mut() {
            Some(Frame::Seq { path, next, .. }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                p
            }
            _ => return,
        };
        map.entry(item_path.clone()).or_insert(Pos {
            line,
            column: col as usize + 1,
        });
        stack.push(Frame::Container {
            indent: col,
            path: item_path,
        });
        let after = &rest[1..];
        let inner = after.trim_start_matches(' ');
        if inner.trim().is_empty() {
            return;
        }
        let inner_col = col + 1 + (after.len() - inner.len()) as isize;
        process(stack, map, line, inner_col, inner);
        return;
    }
    let Some((key, value)) = split_key(rest) else {
        return; // a scalar continuation line or a flow collection: nothing to record
    };
    let parent = match stack.last() {
        Some(Frame::Key { path, .. }) | Some(Frame::Container { path, .. }) => path.clone(),
        _ => return,
    };
    let path = join(&parent, &key);
    map.entry(path.clone()).or_insert(Pos {
        line,
        column: col as usize + 1,
    });
    if value.trim().is_empty() {
        stack.push(Frame::Key { indent: col, path });
    }
}

/// Splits `key: value` (key possibly quoted); `None` if the line is not a mapping entry.
fn split_key(s: &str) -> Option<(String, &str)> {
    let first = s.chars().next()?;
    if first == '"' || first == '\'' {
        let end = s[1..].find(first)? + 1;
        let key = s[1..end].to_string();
        let rest = s[end + 1..].trim_start();
        let value = rest.strip_prefix(':')?;
        return Some((key, value));
    }
    if matches!(first, '[' | '{' | '|' | '>' | '&' | '*' | '!') {
        return None;
    }
    // A key ends at the first ": " or a trailing ":".
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = s[..i].trim_end().to_string();
            return Some((key, &s[i + 1..]));
        }
        i += 1;
    }
    None
}

/// Removes a `# comment` that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => return &line[..i],
            None => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
ports:
  - name: lan
    role: lan
    addresses: [10.0.0.1/24]   # inline
  - name: wan1
    role: wan
gateways:
- name: isp1
  port: wan1
  probe:
    targets:
      - 203.0.113.10
      - 203.0.113.11
    down: {loss_pct: 50}
- name: \"isp2\"
  'port': wan2
policy:
  mode: failover
  syn_retry:
    threshold: 2
";

    fn at(k: &KeyLines, p: &str) -> (usize, usize) {
        let pos = k.exact(p).unwrap_or_else(|| panic!("no {p}"));
        (pos.line, pos.column)
    }

    #[test]
    fn records_paths() {
        let k = KeyLines::scan(DOC);
        assert_eq!(at(&k, "ports"), (2, 1));
        assert_eq!(at(&k, "ports[0]"), (3, 3));
        assert_eq!(at(&k, "ports[0].name"), (3, 5));
        assert_eq!(at(&k, "ports[0].role"), (4, 5));
        assert_eq!(at(&k, "ports[0].addresses"), (5, 5));
        assert_eq!(at(&k, "ports[1].role"), (7, 5));
        assert_eq!(at(&k, "gateways[0].port"), (10, 3));
        assert_eq!(at(&k, "gateways[0].probe.targets[1]"), (14, 7));
        assert_eq!(at(&k, "gateways[0].probe.down"), (15, 5));
        assert_eq!(at(&k, "gateways[1].name"), (16, 3));
        assert_eq!(at(&k, "gateways[1].port"), (17, 3));
        assert_eq!(at(&k, "policy.mode"), (19, 3));
        assert_eq!(at(&k, "policy.syn_retry.threshold"), (21, 5));
    }

    #[test]
    fn falls_back_to_ancestor() {
        let k = KeyLines::scan(DOC);
        let p = k.find("ports[0].addresses[0]").unwrap();
        assert_eq!(p.line, 5);
        let p = k.find("gateways[0].probe.down.loss_pct").unwrap();
        assert_eq!(p.line, 15);
        assert!(k.find("nothing").is_none());
    }

    #[test]
    fn comments_and_colons_in_values() {
        let k = KeyLines::scan("a: \"x # not a comment\"\nb: http://x:1 # c\nc:\n  d: 1\n");
        assert_eq!(at(&k, "b"), (2, 1));
        assert_eq!(at(&k, "c.d"), (4, 3));
    }
}
