//! Probe frames and what comes back: an ICMP echo per target and an ARP request for the
//! gateway's MAC each round, sent by worker 0; echo replies matched to their round, ARP replies
//! learned and shared with every worker.

use std::net::Ipv4Addr;
use std::time::Instant;

use altroute_packet::build::{self, L2};
use altroute_packet::pipeline::{ControlReason, PROBE_ID_LIMIT};
use altroute_packet::wire::{
    ArpOp, ArpPacket, ArpRepr, EthernetFrame, Icmpv4Packet, Ipv4Packet, MacAddr,
};
use log::info;

use super::Control;
use super::gateway::Gw;
use crate::config::Config;

/// The ICMP identifier of target `t` of gateway `g`: 16 targets per gateway, 63 gateways, always
/// below [`PROBE_ID_LIMIT`] (1024), a range NAT never hands out.
pub(super) fn probe_id(g: usize, t: usize) -> u16 {
    (1 + g * 16 + t.min(15)) as u16
}

/// The frames of gateway `gi`'s current round, sent from `our_mac` (its port's MAC): an ARP
/// request unless its MAC is configured, and once its MAC is known one echo request per target.
pub(super) fn probe_frames(
    gi: usize,
    g: &Gw,
    our_mac: MacAddr,
    scratch: &mut [u8],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // ARP for the gateway: learns (and notices a change of) its MAC.
    if !g.static_mac
        && let Ok(n) = build::arp_request(scratch, g.vlan, our_mac, g.src, g.next_hop)
    {
        out.push(scratch[..n].to_vec());
    }
    let Some(gw_mac) = g.mac else {
        return out;
    };
    let l2 = L2 {
        src: our_mac,
        dst: gw_mac,
        vlan: g.vlan,
    };
    for (ti, &target) in g.targets.iter().enumerate() {
        let payload = *b"altroute-probe..";
        if let Ok(n) = build::icmp_echo_request(
            scratch,
            &l2,
            g.src,
            target,
            probe_id(gi, ti),
            g.round,
            64,
            &payload,
        ) {
            out.push(scratch[..n].to_vec());
        }
    }
    out
}

impl Control {
    /// A frame a worker passed up, received on `link`.
    pub(super) fn on_frame(&mut self, link: u8, reason: ControlReason, frame: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        match reason {
            ControlReason::ArpReply => self.on_arp_reply(link, &eth),
            ControlReason::ProbeReply => on_probe_reply(&mut self.gws, &eth),
        }
    }

    /// An ARP reply (or gratuitous ARP): every worker learns the neighbour; a gateway whose next
    /// hop it is learns its MAC (unless configured).
    fn on_arp_reply(&mut self, link: u8, eth: &EthernetFrame<&[u8]>) {
        let Some((spa, sha, port)) = arp_neighbor(&self.cfg, &self.port_link, link, eth) else {
            return;
        };
        self.workers.neighbor(spa, sha, port);
        for g in self.gws.iter_mut() {
            if g.next_hop != spa || g.link != link {
                continue;
            }
            g.arp_seen = Some(Instant::now());
            if !g.static_mac && g.mac != Some(sha) {
                if g.mac.is_some() {
                    info!("gateway {}: MAC changed to {sha}", g.name);
                } else {
                    info!("gateway {}: {spa} is at {sha}", g.name);
                }
                g.mac = Some(sha);
            }
        }
    }
}

/// The neighbour an ARP reply (or a gratuitous ARP) received on `link` announces, as every
/// worker is told to learn it: its address, its MAC and the index of the port it is on (the
/// port of `link` whose VLAN is the frame's; port 0 if none). `port_link[i]` is the link of
/// port `i`. `None` for any other frame. The control thread shares what this returns with every
/// worker; `replay` models that sharing with the same function.
pub fn arp_neighbor(
    cfg: &Config,
    port_link: &[u8],
    link: u8,
    eth: &EthernetFrame<&[u8]>,
) -> Option<(Ipv4Addr, MacAddr, u8)> {
    let arp = ArpPacket::new_checked(eth.payload()).ok()?;
    let a = ArpRepr::parse(&arp);
    if a.op != ArpOp::Reply && a.spa != a.tpa {
        return None;
    }
    let vlan = eth.vlan().map_or(0, |v| v.id());
    let port = port_link
        .iter()
        .enumerate()
        .find(|(pi, l)| {
            **l == link
                && cfg
                    .ports
                    .get(*pi)
                    .is_some_and(|p| p.vlan.unwrap_or(0) == vlan)
        })
        .map_or(0, |(pi, _)| pi as u8);
    Some((a.spa, a.sha, port))
}

/// An echo reply to one of our probes: records its RTT in the round it answers.
fn on_probe_reply(gws: &mut [Gw], eth: &EthernetFrame<&[u8]>) {
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return;
    };
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return;
    };
    let (id, seq) = (icmp.ident(), icmp.seq());
    if id == 0 || id >= PROBE_ID_LIMIT {
        return;
    }
    let gi = usize::from((id - 1) / 16);
    let ti = usize::from((id - 1) % 16);
    let Some(g) = gws.get_mut(gi) else {
        return;
    };
    if g.targets.get(ti) != Some(&ip.src()) {
        return;
    }
    if let Some(r) = g.pending.iter_mut().find(|r| r.number == seq)
        && let Some(slot) = r.rtt.get_mut(ti)
    {
        *slot = Some(u32::try_from(r.sent.elapsed().as_millis()).unwrap_or(u32::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_ids_stay_below_the_nat_range() {
        assert!(probe_id(62, 15) < PROBE_ID_LIMIT);
        assert_eq!(probe_id(0, 0), 1);
        assert_eq!((probe_id(3, 5) - 1) / 16, 3);
        assert_eq!((probe_id(3, 5) - 1) % 16, 5);
    }
}
