//! What the demo prints: numbered step lines, and the split of connections per gateway as the
//! server saw it.

use std::io::Write;
use std::time::Instant;

use super::DemoConfig;
use crate::tool::Tally;

/// Gateway name ↔ NAT address (what the server sees), from the configuration.
#[derive(Debug, Clone)]
pub struct GatewayAddrs(pub Vec<(String, String)>);

impl GatewayAddrs {
    /// From a configuration: each gateway's NAT address.
    pub fn from_config(cfg: &DemoConfig) -> GatewayAddrs {
        GatewayAddrs(
            cfg.gateways
                .iter()
                .map(|g| (g.name.clone(), g.nat_address.clone()))
                .collect(),
        )
    }

    /// The gateway whose address the server saw.
    pub fn name_of(&self, ip: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, a)| a == ip)
            .map(|(n, _)| n.as_str())
    }

    /// The NAT address of a gateway.
    pub fn addr_of(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
    }

    /// Connections through `gateway` in a tally.
    pub fn count(&self, t: &Tally, gateway: &str) -> usize {
        self.addr_of(gateway).map_or(0, |a| t.count(a))
    }

    /// The split as lines: gateway, address, count, percent, a bar; then failures and strangers.
    pub fn render_split(&self, t: &Tally) -> Vec<String> {
        let total = t.ok().max(1);
        let mut lines = Vec::new();
        for (name, addr) in &self.0 {
            let n = t.count(addr);
            let pct = n as f64 * 100.0 / total as f64;
            let bar = "#".repeat(((pct / 2.5).round() as usize).min(40));
            lines.push(format!("{name:<6} {addr:<15} {n:>5}  {pct:5.1} %  {bar}"));
        }
        for (ip, n) in &t.seen {
            if self.name_of(ip).is_none() {
                lines.push(format!("?      {ip:<15} {n:>5}  (not a gateway address)"));
            }
        }
        if t.failed > 0 {
            lines.push(format!("failed {:>21}  ({})", t.failed, kinds(t)));
        }
        lines
    }
}

/// A printer of numbered steps.
pub(super) struct Out<'a> {
    /// Where the lines go.
    pub(super) w: &'a mut dyn Write,
    /// When the demo started.
    pub(super) start: Instant,
}

impl Out<'_> {
    /// `[step/6]  time  text`.
    pub(super) fn line(&mut self, step: u8, text: &str) {
        let t = self.start.elapsed().as_secs_f64();
        let _ = writeln!(self.w, "[{step}/6] {t:5.1}s  {text}");
        let _ = self.w.flush();
    }
    /// A continuation line, indented under the text of the last step line.
    pub(super) fn more(&mut self, text: &str) {
        let _ = writeln!(self.w, "              {text}");
        let _ = self.w.flush();
    }
}

/// `timeout 3, refused 1`: a tally's failures by kind.
pub(super) fn kinds(t: &Tally) -> String {
    t.errors
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tests::weighted;

    #[test]
    fn split_lines() {
        let g = GatewayAddrs::from_config(&weighted());
        let mut t = Tally::default();
        t.seen.insert("192.0.2.1".into(), 160);
        t.seen.insert("198.51.100.1".into(), 40);
        t.seen.insert("10.9.9.9".into(), 1);
        t.failed = 2;
        t.errors.insert("timeout".into(), 2);
        let lines = g.render_split(&t);
        assert!(
            lines[0].starts_with("isp1   192.0.2.1         160   79.6 %  "),
            "{lines:?}"
        );
        assert!(lines[1].contains("   40   19.9 %"), "{lines:?}");
        assert!(lines[2].contains("not a gateway address"));
        assert!(lines[3].contains("(timeout 2)"));
        assert_eq!(g.count(&t, "isp2"), 40);
    }
}
