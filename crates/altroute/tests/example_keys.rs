//! `examples/altroute.yaml` promises every configuration key with its default. This test keeps
//! the promise against the configuration types, through serde only (so it does not depend on
//! how the types are laid out):
//!
//! - The key paths of the example (its commented-out optional keys included) are exactly those
//!   of the [`Config`] it parses into, serialised back: a key missing from the example or a key
//!   the types do not know fails. Every list has an entry, so its entries' keys are compared too.
//! - The example parses and validates, as written and with its commented-out keys uncommented.
//! - Each comment's claim holds. `required`: the file no longer parses without the key.
//!   `default X`: without the key, the parsed configuration holds X there. `default: ...`:
//!   without the key, it holds nothing (null or an empty list). `the default`: the value written
//!   is what the parsed configuration holds without the key.
//! - Every key of the first entry of each list, and every key outside lists, makes one of these
//!   claims (or sits inside a value claimed as `the default`).
//!
//! Commented-out keys are the comment lines indented under a section that read `# key: value`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use altroute::config::Config;
use serde_norway::Value;

const EXAMPLE: &str = include_str!("../../../examples/altroute.yaml");
const NAME: &str = "examples/altroute.yaml";

/// One step of a key path.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// What the comment beside a key says about it.
#[derive(Clone, Debug, PartialEq)]
enum Claim {
    /// `required`: the key has no default.
    Required,
    /// `default X`: leaving the key out gives X.
    Default(Value),
    /// `default: ...`: leaving the key out leaves it unset.
    Unset,
    /// `the default`: the value written is the default.
    AsShown,
}

/// A `key:` line of the example.
#[derive(Debug)]
struct KeyLine {
    number: usize,
    path: Vec<Seg>,
    /// The value is on the line itself (not a block below it).
    leaf: bool,
    claim: Option<Claim>,
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An indented `# key: value` comment line: the line with the key uncommented.
fn uncomment(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start().strip_prefix("# ")?;
    let (key, _) = rest.split_once(':')?;
    (indent > 0 && is_key(key)).then(|| format!("{}{rest}", " ".repeat(indent)))
}

/// The example with its commented-out keys uncommented (same line numbers).
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| uncomment(l).unwrap_or_else(|| l.to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits a line's content at the `#` that starts its comment (not one inside quotes).
fn split_comment(content: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in content.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev_space => {
                return (content[..i].trim_end(), Some(content[i + 1..].trim()));
            }
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (content.trim_end(), None)
}

/// The value a `default X` comment names: a flow sequence, or the first word.
fn stated_value(text: &str) -> Value {
    let token = match text.find(']') {
        Some(end) if text.starts_with('[') => &text[..=end],
        _ => text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_end_matches([',', ';']),
    };
    serde_norway::from_str(token).unwrap()
}

fn claim(comment: &str) -> Option<Claim> {
    if comment.starts_with("required") {
        Some(Claim::Required)
    } else if comment.starts_with("default:") {
        Some(Claim::Unset)
    } else if let Some(rest) = comment.strip_prefix("default ") {
        Some(Claim::Default(stated_value(rest)))
    } else if comment.starts_with("the default") {
        Some(Claim::AsShown)
    } else {
        None
    }
}

/// The `key:` lines of a block-style YAML text, each with its key path (list entries indexed).
fn key_lines(text: &str) -> Vec<KeyLine> {
    let mut stack: Vec<(usize, Seg)> = Vec::new();
    let mut next_index: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let mut indent = raw.len() - raw.trim_start().len();
        let content = raw.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (mut body, comment) = split_comment(content);
        if let Some(item) = body.strip_prefix("- ") {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            let parent: Vec<Seg> = stack.iter().map(|(_, s)| s.clone()).collect();
            let index = next_index.entry(render(&parent)).or_insert(0);
            stack.push((indent, Seg::Index(*index)));
            *index += 1;
            body = item.trim_start();
            indent += 2;
        }
        let Some((key, value)) = body.split_once(':') else {
            continue;
        };
        if !is_key(key) {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, Seg::Key(key.to_string())));
        out.push(KeyLine {
            number: n + 1,
            path: stack.iter().map(|(_, s)| s.clone()).collect(),
            leaf: !value.trim().is_empty(),
            claim: comment.and_then(claim),
        });
    }
    out
}

fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.as_mapping()?.get(k.as_str()),
        Seg::Index(i) => v.as_sequence()?.get(*i),
    })
}

fn remove(v: &mut Value, path: &[Seg]) -> bool {
    let Some((Seg::Key(last), parent)) = path.split_last() else {
        return false;
    };
    let mut v = v;
    for seg in parent {
        let next = match seg {
            Seg::Key(k) => v.as_mapping_mut().and_then(|m| m.get_mut(k.as_str())),
            Seg::Index(i) => v.as_sequence_mut().and_then(|s| s.get_mut(*i)),
        };
        let Some(next) = next else {
            return false;
        };
        v = next;
    }
    v.as_mapping_mut()
        .and_then(|m| m.remove(last.as_str()))
        .is_some()
}

/// Every key path (list entries as `[]`), and for every list path whether any instance of it
/// has an entry.
fn key_paths(
    v: &Value,
    prefix: &str,
    keys: &mut BTreeSet<String>,
    lists: &mut BTreeMap<String, bool>,
) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                let path = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                keys.insert(path.clone());
                key_paths(v, &path, keys, lists);
            }
        }
        Value::Sequence(s) => {
            *lists.entry(prefix.to_string()).or_insert(false) |= !s.is_empty();
            let path = format!("{prefix}[]");
            for v in s {
                key_paths(v, &path, keys, lists);
            }
        }
        _ => {}
    }
}

/// Null values dropped from mappings (an unset optional key serialises as null).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.iter().map(without_nulls).collect()),
        v => v.clone(),
    }
}

fn parse(text: &str) -> Result<Value, String> {
    serde_norway::from_str(text).map_err(|e| format!("{NAME} is not YAML: {e}"))
}

/// What the parsed configuration holds at `path` when the key is left out of `base`.
fn default_at(base: &Value, path: &[Seg]) -> Result<Value, String> {
    let mut v = base.clone();
    if !remove(&mut v, path) {
        return Err("no such key in the parsed example".into());
    }
    let cfg: Config = serde_norway::from_value(v).map_err(|e| e.to_string())?;
    let out = serde_norway::to_value(&cfg).map_err(|e| e.to_string())?;
    Ok(get(&out, path).cloned().unwrap_or(Value::Null))
}

/// Keys in the example (commented-out ones included) against the keys of the parsed config.
fn key_problems(text: &str) -> Vec<String> {
    let full = uncommented(text);
    let value = match parse(&full) {
        Ok(v) => v,
        Err(e) => return vec![e],
    };
    let cfg: Config = match serde_norway::from_value(value.clone()) {
        Ok(c) => c,
        Err(e) => return vec![format!("{NAME} does not parse into Config: {e}")],
    };
    let typed = serde_norway::to_value(&cfg).unwrap();
    let (mut example_keys, mut type_keys) = (BTreeSet::new(), BTreeSet::new());
    let (mut example_lists, mut type_lists) = (BTreeMap::new(), BTreeMap::new());
    key_paths(&value, "", &mut example_keys, &mut example_lists);
    key_paths(&typed, "", &mut type_keys, &mut type_lists);
    let mut problems: Vec<String> = type_keys
        .difference(&example_keys)
        .map(|k| format!("{NAME} does not list the key {k}"))
        .collect();
    problems.extend(
        example_keys
            .difference(&type_keys)
            .map(|k| format!("{NAME} lists {k}, which the config types do not know")),
    );
    problems.extend(
        type_lists
            .iter()
            .filter(|(_, any)| !**any)
            .map(|(l, _)| format!("{NAME}: the list {l} has no entry, so its keys go unchecked")),
    );
    problems
}

/// Each comment's claim against the configuration types.
fn claim_problems(text: &str) -> Vec<String> {
    let full = uncommented(text);
    let (base, written) = match (parse(&full), parse(text)) {
        (Ok(b), Ok(w)) => (b, w),
        (Err(e), _) | (_, Err(e)) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut claims = 0;
    for line in key_lines(&full) {
        let Some(claim) = &line.claim else { continue };
        claims += 1;
        let at = format!("{NAME}:{}: {}", line.number, render(&line.path));
        let default = default_at(&base, &line.path);
        match (claim, default) {
            (Claim::Required, Ok(_)) => {
                problems.push(format!("{at} is marked required but parses without it"));
            }
            (Claim::Required, Err(_)) => {}
            (_, Err(e)) => problems.push(format!("{at} claims a default, but without it: {e}")),
            (Claim::Default(stated), Ok(d)) => {
                if *stated != d {
                    problems.push(format!(
                        "{at}: the comment says default {stated:?}, the types give {d:?}"
                    ));
                }
            }
            (Claim::Unset, Ok(d)) => {
                let empty = d.is_null() || d.as_sequence().is_some_and(Vec::is_empty);
                if !empty {
                    problems.push(format!(
                        "{at}: the comment says unset by default, the types give {d:?}"
                    ));
                }
            }
            (Claim::AsShown, Ok(d)) => {
                let shown = get(&written, &line.path).cloned().unwrap_or(Value::Null);
                if without_nulls(&shown) != without_nulls(&d) {
                    problems.push(format!("{at}: the comment says this is the default; written {shown:?}, the types give {d:?}"));
                }
            }
        }
    }
    if claims == 0 {
        problems.push(format!("{NAME}: no comment states a default"));
    }
    problems
}

/// Keys that state nothing: outside lists or in the first entry of each, every key on a line
/// of its own value claims something, unless a key above it is claimed as `the default`.
fn silent_keys(text: &str) -> Vec<String> {
    let lines = key_lines(&uncommented(text));
    let shown: Vec<Vec<Seg>> = lines
        .iter()
        .filter(|l| l.claim == Some(Claim::AsShown))
        .map(|l| l.path.clone())
        .collect();
    lines
        .iter()
        .filter(|l| l.leaf && l.claim.is_none())
        .filter(|l| !l.path.iter().any(|s| matches!(s, Seg::Index(i) if *i > 0)))
        .filter(|l| !shown.iter().any(|p| l.path.starts_with(p)))
        .map(|l| format!("{NAME}:{}: {} states no default", l.number, render(&l.path)))
        .collect()
}

#[test]
fn the_example_lists_every_key_the_config_types_know() {
    let problems = key_problems(EXAMPLE);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_example_parses_and_validates_with_and_without_its_optional_keys() {
    Config::from_str_named(EXAMPLE, NAME).unwrap();
    Config::from_str_named(&uncommented(EXAMPLE), NAME).unwrap();
}

#[test]
fn the_defaults_the_example_states_are_the_real_ones() {
    let problems = claim_problems(EXAMPLE);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_key_of_the_example_states_its_default() {
    let problems = silent_keys(EXAMPLE);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checks above catch what they are for, on copies of the example broken on purpose.
#[test]
fn the_checks_catch_a_broken_example() {
    let edit = |from: &str, to: &str| {
        assert!(EXAMPLE.contains(from), "the example no longer has {from:?}");
        EXAMPLE.replacen(from, to, 1)
    };
    // A key left out.
    let missing = edit("  offload: tc ", "  # (offload left out) ");
    assert!(
        key_problems(&missing)
            .iter()
            .any(|p| p.contains("key datapath.offload"))
    );
    // A commented-out key left out.
    let missing = edit("    # dst: ", "    # (dst left out) ");
    assert!(
        key_problems(&missing)
            .iter()
            .any(|p| p.contains("key rules[].dst"))
    );
    // A key the types do not know.
    let unknown = edit("  batch: 64 ", "  batch_size: 64\n  batch: 64 ");
    assert!(!key_problems(&unknown).is_empty());
    // A wrong default, a wrong "unset", a wrong "required" and a wrong "the default".
    let wrong = edit("# default 1500 ", "# default 9000 ");
    assert!(
        claim_problems(&wrong)
            .iter()
            .any(|p| p.contains("ports[0].mtu"))
    );
    let wrong = edit(
        "weight: 4                      # default 1",
        "weight: 4 # default: one",
    );
    assert!(
        claim_problems(&wrong)
            .iter()
            .any(|p| p.contains("gateways[0].weight"))
    );
    let wrong = edit(
        "tier: 0                        # default 0",
        "tier: 0 # required",
    );
    assert!(
        claim_problems(&wrong)
            .iter()
            .any(|p| p.contains("gateways[0].tier"))
    );
    let wrong = edit(
        "  - 100.64.0.0/10\n",
        "  - 100.64.0.0/10\n  - 198.18.0.0/15\n",
    );
    assert!(
        claim_problems(&wrong)
            .iter()
            .any(|p| p.contains("private_destinations"))
    );
    // A key that states nothing.
    let silent = edit("# default 64 (1..=1024)", "# frames per batch");
    assert!(
        silent_keys(&silent)
            .iter()
            .any(|p| p.contains("datapath.batch"))
    );
}

#[test]
fn key_lines_follow_lists_and_commented_keys() {
    let lines = key_lines(&uncommented(EXAMPLE));
    let find = |path: &str| {
        lines
            .iter()
            .find(|l| render(&l.path) == path)
            .unwrap_or_else(|| panic!("no line for {path}"))
    };
    assert_eq!(find("gateways[1].comment").claim, None);
    assert_eq!(find("ports[0].vlan").claim, Some(Claim::Unset));
    assert_eq!(
        find("gateways[0].probe.down.rtt_ms").claim,
        Some(Claim::Unset)
    );
    assert_eq!(
        find("nat.port_range").claim,
        Some(Claim::Default(
            serde_norway::from_str("[1024, 65535]").unwrap()
        ))
    );
    assert_eq!(
        find("gateways[0].hooks.down").claim,
        Some(Claim::Unset),
        "a # inside quotes is not a comment"
    );
    assert!(!find("gateways[0].probe").leaf);
}
