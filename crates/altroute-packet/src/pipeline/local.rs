//! Frames for the router itself, and the frames it generates in answer: echo replies, ARP
//! replies, ICMP errors (time exceeded, fragmentation needed, prohibited), TCP RSTs for flows of
//! dead gateways, and the ARP requests that resolve a next hop. Generated ICMP errors share one
//! token bucket ([`Bucket`]).

use core::net::Ipv4Addr;

use altroute_flow::{Time, proto};

use super::{Context, ControlReason, Counters, Ip4, PortId, Role, TxOffload, Verdict, in_prefix};
use crate::build::{self, L2};
use crate::drop::DropReason;
use crate::fast::IcmpQuery;
use crate::neigh::Learned;
use crate::wire::{self, ArpOp, MacAddr, VlanTci};

/// A token bucket for generated ICMP errors.
#[derive(Clone, Debug)]
pub(super) struct Bucket {
    rate: u32,
    tokens: u32,
    last_ms: u64,
}

impl Bucket {
    /// A full bucket of `rate` tokens, refilled at `rate` per second.
    pub(super) fn new(rate: u32) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            last_ms: 0,
        }
    }

    pub(super) fn take(&mut self, now: Time) -> bool {
        let elapsed = now.millis().saturating_sub(self.last_ms);
        if elapsed > 0 {
            let add = elapsed.saturating_mul(u64::from(self.rate)) / 1000;
            if add > 0 {
                self.tokens =
                    (u64::from(self.tokens) + add).min(u64::from(self.rate.max(1))) as u32;
                self.last_ms = now.millis();
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

impl Context {
    /// A packet for one of the router's own addresses: echo requests are answered (on a WAN
    /// port at most [`Options::wan_echo_replies_per_sec`](super::Options)); anything else has no
    /// service here.
    pub(super) fn local(
        &mut self,
        buf: &mut [u8],
        _len: usize,
        port: PortId,
        ip: Ip4,
        now: Time,
    ) -> Verdict {
        if ip.icmp == IcmpQuery::Request {
            if self.cfg.ports[usize::from(port.0)].role == Role::Wan
                && !self.wan_echo_bucket.take(now)
            {
                return self.drop(DropReason::EchoRateLimited);
            }
            return self.echo_reply(buf, port, ip);
        }
        self.drop(DropReason::LocalNoService)
    }

    pub(super) fn l2_back(&self, buf: &[u8], port: PortId, vlan: Option<VlanTci>) -> L2 {
        L2 {
            src: self.cfg.ports[usize::from(port.0)].mac,
            dst: MacAddr([buf[6], buf[7], buf[8], buf[9], buf[10], buf[11]]),
            vlan,
        }
    }

    pub(super) fn port_ip(&self, port: PortId) -> Ipv4Addr {
        self.cfg.ports[usize::from(port.0)]
            .addrs
            .first()
            .map_or(Ipv4Addr::UNSPECIFIED, |a| a.0)
    }

    /// Copy the answer in `scratch[..n]` over the frame.
    /// Copy the answer in `scratch[..n]` over the frame and `count` it. An answer larger than the
    /// frame's buffer is not sent: the frame counts as `NoBuffer` only (not also under the reason
    /// it was answering, nor as an answer sent).
    pub(super) fn answer(
        &mut self,
        buf: &mut [u8],
        n: usize,
        count: impl FnOnce(&mut Counters),
    ) -> Verdict {
        match buf.get_mut(..n) {
            Some(dst) => {
                dst.copy_from_slice(&self.scratch[..n]);
                count(&mut self.counters);
                Verdict::Reply { len: n }
            }
            None => self.drop(DropReason::NoBuffer),
        }
    }

    pub(super) fn echo_reply(&mut self, buf: &mut [u8], port: PortId, ip: Ip4) -> Verdict {
        let l2 = self.l2_back(buf, port, ip.vlan);
        let Some(request) = buf.get(ip.l3..ip.ip_end) else {
            // (The parsers checked that the packet fits the frame.)
            return self.drop(DropReason::Ipv4BadTotalLength);
        };
        match build::icmp_echo_reply(&mut self.scratch, &l2, request) {
            Ok(n) => self.answer(buf, n, |c| c.replies += 1),
            Err(_) => self.drop(DropReason::NoBuffer),
        }
    }

    pub(super) fn time_exceeded(
        &mut self,
        buf: &mut [u8],
        port: PortId,
        ip: Ip4,
        now: Time,
    ) -> Verdict {
        let repr = wire::Icmpv4Repr::TimeExceeded { code: 0 };
        self.send_icmp_error(buf, port, ip, now, &repr, DropReason::TtlExpired)
    }

    /// Answer the packet with an ICMP error from `port`'s address (rate limited, and never about
    /// an ICMP error, a fragment or a broadcast: RFC 1812 §4.3.2.7). The packet itself is dropped
    /// and counted under `reason` either way.
    pub(super) fn send_icmp_error(
        &mut self,
        buf: &mut [u8],
        port: PortId,
        ip: Ip4,
        now: Time,
        repr: &wire::Icmpv4Repr,
        reason: DropReason,
    ) -> Verdict {
        if !self.icmp_bucket.take(now) {
            self.counters.drops.inc(DropReason::IcmpRateLimited);
            return self.drop(reason);
        }
        let l2 = self.l2_back(buf, port, ip.vlan);
        let router = self.port_ip(port);
        let Some(original) = buf.get(ip.l3..ip.ip_end) else {
            // No error to send: the packet is dropped for its reason all the same.
            return self.drop(reason);
        };
        if !build::may_send_icmp_error(original) {
            return self.drop(reason);
        }
        match build::icmp_error(&mut self.scratch, &l2, router, repr, original) {
            Ok(n) => self.answer(buf, n, |c| {
                c.icmp_errors += 1;
                c.drops.inc(reason);
            }),
            Err(_) => self.drop(reason),
        }
    }

    /// A packet of a flow whose gateway died: RST for TCP, ICMP prohibited for the rest.
    pub(super) fn reject(&mut self, buf: &mut [u8], port: PortId, ip: Ip4, now: Time) -> Verdict {
        if !self.cfg.options.reject {
            return self.drop(DropReason::GatewayDown);
        }
        let l2 = self.l2_back(buf, port, ip.vlan);
        let Some(original) = buf.get(ip.l3..ip.ip_end) else {
            // No answer to build: dropped for its gateway all the same.
            return self.drop(DropReason::GatewayDown);
        };
        let built = if ip.key.proto == proto::TCP {
            build::tcp_rst(&mut self.scratch, &l2, original)
        } else if self.icmp_bucket.take(now) {
            let router = self.port_ip(port);
            build::icmp_admin_prohibited(&mut self.scratch, &l2, router, original)
        } else {
            return self.drop(DropReason::IcmpRateLimited);
        };
        match built {
            Ok(n) => self.answer(buf, n, |c| {
                c.rejects += 1;
                c.drops.inc(DropReason::GatewayDown);
            }),
            Err(_) => self.drop(DropReason::GatewayDown),
        }
    }

    #[inline]
    pub(super) fn mtu_check(
        &mut self,
        buf: &mut [u8],
        in_port: PortId,
        out: PortId,
        ip: Ip4,
        offload: &TxOffload,
        now: Time,
    ) -> Option<Verdict> {
        let mtu = self.cfg.ports.get(usize::from(out.0)).map_or(0, |p| p.mtu);
        if offload.gso.is_some() || ip.ip_end - ip.l3 <= usize::from(mtu) {
            return None;
        }
        self.mtu_exceeded(buf, in_port, ip, now, usize::from(mtu))
    }

    /// The rest of [`Context::mtu_check`], for a packet larger than the out port's MTU.
    #[cold]
    #[inline(never)]
    pub(super) fn mtu_exceeded(
        &mut self,
        buf: &mut [u8],
        in_port: PortId,
        ip: Ip4,
        now: Time,
        mtu: usize,
    ) -> Option<Verdict> {
        if !ip.df {
            return Some(self.drop(DropReason::TooLongForEgress));
        }
        let repr = wire::Icmpv4Repr::DstUnreachable {
            code: wire::UnreachableCode::FragNeeded,
            next_hop_mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        };
        Some(self.send_icmp_error(buf, in_port, ip, now, &repr, DropReason::FragNeeded))
    }

    /// Replace the frame by an ARP request for `target` on `out` (at most one per target per
    /// second) and count the packet as dropped. The request carries none of the packet's offload
    /// work (`offload` is reset).
    pub(super) fn resolve(
        &mut self,
        buf: &mut [u8],
        out: PortId,
        target: Ipv4Addr,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        self.counters.drops.inc(DropReason::NeighborUnresolved);
        let t = u32::from(target);
        if let Some(e) = self.arp_last_ms.iter_mut().find(|(ip, _)| *ip == t) {
            if now.millis().saturating_sub(e.1) < 1000 {
                return Verdict::Drop(DropReason::NeighborUnresolved);
            }
            e.1 = now.millis();
        } else {
            if self.arp_last_ms.len() >= 256 {
                self.arp_last_ms.remove(0);
            }
            self.arp_last_ms.push((t, now.millis()));
        }
        let spec = &self.cfg.ports[usize::from(out.0)];
        let vlan = spec.vlan.map(VlanTci::with_id);
        let our_ip = spec
            .addrs
            .iter()
            .find(|(net, len)| in_prefix(target, *net, *len))
            .or(spec.addrs.first())
            .map_or(Ipv4Addr::UNSPECIFIED, |a| a.0);
        match build::arp_request(&mut self.scratch, vlan, spec.mac, our_ip, target) {
            Ok(n) => match buf.get_mut(..n) {
                Some(d) => {
                    d.copy_from_slice(&self.scratch[..n]);
                    *offload = TxOffload::NONE;
                    self.counters.arp_requests += 1;
                    self.counters.tx_frames[usize::from(out.0)] += 1;
                    self.counters.tx_bytes[usize::from(out.0)] += n as u64;
                    Verdict::Forward { port: out, len: n }
                }
                None => Verdict::Drop(DropReason::NeighborUnresolved),
            },
            Err(_) => Verdict::Drop(DropReason::NeighborUnresolved),
        }
    }

    pub(super) fn arp(
        &mut self,
        buf: &mut [u8],
        port: PortId,
        vlan: Option<VlanTci>,
        a: wire::ArpRepr,
        now: Time,
    ) -> Verdict {
        if a.sha.is_multicast() {
            // A group sender address is never valid (RFC 1812 §3.3.2): neither learned nor
            // answered (an answer would go to a multicast group).
            return self.drop(DropReason::BadSrcMac);
        }
        let spec = &self.cfg.ports[usize::from(port.0)];
        let on_link = spec.addrs.iter().any(|&(n, l)| in_prefix(a.spa, n, l));
        let ours = spec.addrs.iter().any(|&(x, _)| x == a.tpa);
        let mac = spec.mac;
        let mut learned = false;
        let mut fresh = false;
        if on_link
            && !a.spa.is_unspecified()
            && !a.sha.is_multicast()
            && spec.addrs.iter().all(|&(x, _)| x != a.spa)
        {
            let l = self.neighbors.learn(a.spa, a.sha, port.0, now);
            if let Learned::Changed { .. } = l {
                self.counters.neighbor_changes += 1;
            }
            learned = true;
            fresh = l != Learned::Same;
        }
        let wan = spec.role == Role::Wan;
        match a.op {
            ArpOp::Request if ours && a.spa != a.tpa => {
                if fresh {
                    self.note_learned(a.spa, a.sha, port.0, now);
                }
                match build::arp_reply(&mut self.scratch, vlan, mac, a.tpa, &a) {
                    Ok(n) => self.answer(buf, n, |c| c.replies += 1),
                    Err(_) => self.drop(DropReason::NoBuffer),
                }
            }
            // A reply, or a gratuitous ARP, learned above. On a WAN port the control thread gets
            // every one whole (gateways' liveness and MACs, shared with every worker); on a LAN
            // port the other workers are told of new or changed neighbours only, at a bounded
            // rate (`note_learned`), so a LAN flood cannot crowd the probes' replies out of the
            // control thread's queue.
            _ if learned && (a.op == ArpOp::Reply || a.spa == a.tpa) => {
                if wan {
                    self.counters.control += 1;
                    Verdict::Control(ControlReason::ArpReply)
                } else {
                    if fresh {
                        self.note_learned(a.spa, a.sha, port.0, now);
                    }
                    self.drop(DropReason::ArpLearned)
                }
            }
            _ => {
                if fresh {
                    self.note_learned(a.spa, a.sha, port.0, now);
                }
                self.drop(DropReason::ArpNotForUs)
            }
        }
    }
}
