//! The entry points: [`Context::process`] (one frame) and [`Context::process_batch`] (parse
//! all, look the flows up as one batch, then handle each: the established-flow fast path first,
//! else the full path), and the dispatch of a parsed frame to its port's side
//! ([`Context::classify_lan`], [`Context::classify_wan`]) or, for what the fixed-offset parser
//! leaves, through the slow parser ([`Context::slow`]).

use altroute_flow::{Dir, GatewayId, Hit, PendingLookup, Time};

use super::{Context, Ip4, MAX_FRAME, Packet, PortId, Role, TxOffload, Verdict};
use crate::drop::DropReason;
use crate::fast::{self, FastOptions, FastParse, IcmpQuery};
use crate::slow::{self, SlowKind, SlowL4};
use crate::wire::{EthernetFrame, VlanTci};

impl Context {
    pub(super) fn drop(&mut self, r: DropReason) -> Verdict {
        self.counters.drops.inc(r);
        Verdict::Drop(r)
    }

    /// Process one frame in place. `buf[..len]` is the frame; the rest of `buf` is room for a
    /// larger answer or a VLAN tag. `link` is the I/O link it arrived on.
    pub fn process(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let v = self.process_one(buf, len, link, offload, now, None);
        answered(v, offload)
    }

    /// Process a batch: parse every frame, look its flow up, handle it. `verdicts` receives one
    /// verdict per packet (it must be at least as long as `pkts`).
    ///
    /// The batch goes through in stages, up to 64 frames at a time, so that the memory accesses
    /// of all its lookups overlap: every frame is parsed, then the lookups of all of them are
    /// started ([`FlowTable::lookup_batch_start`](altroute_flow::FlowTable::lookup_batch_start):
    /// buckets, then flows prefetched), then each frame's lookup is finished (`lookup_finish`)
    /// and the frame handled, in order. (Stages run a fixed distance apart, a frame's bucket 16
    /// frames ahead and its flow 8, were 6–7 % slower at 64k flows and 19–22 % at 1M, batches of
    /// 32 to 256, interleaved in one process on a Zen 5 guest: each batch started with nothing in
    /// flight.)
    pub fn process_batch(&mut self, pkts: &mut [Packet<'_>], now: Time, verdicts: &mut [Verdict]) {
        const CHUNK: usize = 64;
        let opts = FastOptions {
            verify_ipv4_checksum: self.cfg.options.verify_ipv4_checksum,
        };
        let n = pkts.len().min(verdicts.len());
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK).min(n);
            let m = end - start;
            let chunk = &mut pkts[start..end];
            let verdicts = &mut verdicts[start..end];
            // Each frame is parsed once, into place; a frame whose length does not fit its buffer
            // stays `Unprocessed` here and is handled (and counted) by `process_one`.
            let mut parsed = [const { FastParse::Drop(DropReason::Unprocessed) }; CHUNK];
            let mut pending = [PendingLookup::NONE; CHUNK];
            // (Parsing all frames before starting any lookup also keeps a key's freshly stored
            // bytes out of the store buffer when the hash reads them.)
            for (p, r) in chunk.iter().zip(&mut parsed) {
                self.parse_ahead(p, opts, r);
            }
            let keys = parsed[..m].iter().map(|r| match r {
                FastParse::Fast(ff) => Some(&ff.key),
                _ => None,
            });
            self.table.lookup_batch_start(keys, &mut pending);
            // A flow created, removed or re-mapped by an earlier frame of the batch makes the
            // pending lookups stale (a freed slot may be reused): after that, frames take the
            // full path, which looks up afresh. The fast path never does any of that.
            let epoch = self.table.epoch();
            let mut fresh = true;
            for i in 0..m {
                let (r, p) = (&parsed[i], &mut chunk[i]);
                let hit = match r {
                    FastParse::Fast(ff) if fresh => self.table.lookup_finish(&ff.key, pending[i]),
                    _ => None,
                };
                if fresh
                    && self.fast_path
                    && let (FastParse::Fast(ff), Some(h)) = (r, hit)
                    && let Some(v) = self.fast_forward(p, now, ff, h)
                {
                    verdicts[i] = v;
                    continue;
                }
                verdicts[i] = if p.len <= p.buf.len() {
                    let pre = match r {
                        FastParse::Fast(_) if fresh => Some(hit),
                        _ => None,
                    };
                    self.process_parsed(p.buf, p.len, p.link, &mut p.offload, now, *r, pre)
                } else {
                    self.process_one(p.buf, p.len, p.link, &mut p.offload, now, None)
                };
                answered(verdicts[i], &mut p.offload);
                // Only the full path changes the table's flows.
                fresh = fresh && self.table.epoch() == epoch;
            }
            start = end;
        }
    }

    /// The first stage of [`Context::process_batch`] for one frame: parse it into `r`.
    #[inline(always)]
    pub(super) fn parse_ahead(&self, p: &Packet<'_>, opts: FastOptions, r: &mut FastParse) {
        if let Some(f) = p.buf.get(..p.len) {
            fast::parse_common_into(f, opts, r);
        }
    }

    pub(super) fn process_one(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        offload: &mut TxOffload,
        now: Time,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        let Some(frame) = buf.get(..len) else {
            return self.drop(DropReason::FrameOverrunsBuffer);
        };
        let opts = FastOptions {
            verify_ipv4_checksum: self.cfg.options.verify_ipv4_checksum,
        };
        // (`process_parsed` checks the length before it looks at the parse.)
        let parsed = fast::parse(frame, opts);
        self.process_parsed(buf, len, link, offload, now, parsed, pre)
    }

    /// [`Context::process_one`] after the fast parse (`parsed` is `fast::parse(&buf[..len])`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn process_parsed(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        offload: &mut TxOffload,
        now: Time,
        parsed: FastParse,
        pre: Option<Option<Hit>>,
    ) -> Verdict {
        if len > buf.len() {
            return self.drop(DropReason::FrameOverrunsBuffer);
        }
        if len > MAX_FRAME {
            return self.drop(DropReason::TooBig);
        }
        let ip = match parsed {
            FastParse::Drop(r) => return self.drop(r),
            FastParse::Fast(ff) => Ip4 {
                key: ff.key,
                l3: usize::from(ff.l3_offset),
                l4: ff.l4_offset(),
                ip_end: ff.ip_end(),
                ttl: ff.ttl,
                flags: ff.tcp_flags.0,
                icmp: ff.icmp,
                df: buf
                    .get(usize::from(ff.l3_offset) + 6)
                    .is_some_and(|b| b & 0x40 != 0),
                vlan: ff.vlan,
            },
            FastParse::Slow(_) => return self.slow(buf, len, link, offload, now),
        };
        let port = match self.ingress(buf, link, ip.vlan) {
            Ok(port) => port,
            Err(v) => return v,
        };
        match self.cfg.ports[usize::from(port.0)].role {
            Role::Lan => self.classify_lan(buf, len, port, ip, offload, now, pre),
            Role::Wan => self.classify_wan(buf, len, port, ip, offload, now, pre),
        }
    }

    /// The port a frame came in on (by link and VLAN tag), counted as received there, if the
    /// frame is addressed to it (its MAC, or broadcast); else the drop.
    #[inline]
    fn ingress(&mut self, buf: &[u8], link: u8, vlan: Option<VlanTci>) -> Result<PortId, Verdict> {
        let Some(port) = self.port_for(link, vlan) else {
            return Err(self.drop(DropReason::WrongVlan));
        };
        self.counters.rx_frames[usize::from(port.0)] += 1;
        let dst_mac = EthernetFrame::new_unchecked(buf).dst();
        if dst_mac != self.cfg.ports[usize::from(port.0)].mac && !dst_mac.is_broadcast() {
            return Err(self.drop(DropReason::NotForUs));
        }
        Ok(port)
    }

    /// A packet of `ip_len` bytes sent out (`Dir::Orig`) or received back through gateway `g`.
    #[inline]
    pub(super) fn count_gateway(&mut self, g: GatewayId, dir: Dir, ip_len: u32) {
        let c = match dir {
            Dir::Orig => self.counters.gw_out.get_mut(g.index()),
            Dir::Reply => self.counters.gw_in.get_mut(g.index()),
        };
        if let Some(c) = c {
            c.0 += 1;
            c.1 += u64::from(ip_len);
        }
    }

    // ----- the slow path -----

    pub(super) fn slow(
        &mut self,
        buf: &mut [u8],
        len: usize,
        link: u8,
        offload: &mut TxOffload,
        now: Time,
    ) -> Verdict {
        let sf = match slow::parse(&buf[..len]) {
            Ok(f) => f,
            Err(r) => return self.drop(r),
        };
        let port = match self.ingress(buf, link, sf.vlan) {
            Ok(port) => port,
            Err(v) => return v,
        };
        match sf.kind {
            SlowKind::Arp(a) => self.arp(buf, port, sf.vlan, a, now),
            SlowKind::Ipv6 => self.drop(DropReason::Ipv6Unsupported),
            SlowKind::Ipv4(v4) => {
                if v4.is_source_routed() {
                    // Neither forwarded nor answered (RFC 7126 §4.3).
                    return self.drop(DropReason::Ipv4OptionsRejected);
                }
                let (key, flags, icmp) = match v4.l4 {
                    SlowL4::LaterFragment => return self.drop(DropReason::FragmentWithoutFlow),
                    SlowL4::Tcp { key, flags } => (key, flags.0, IcmpQuery::None),
                    SlowL4::Udp { key } => (key, 0, IcmpQuery::None),
                    SlowL4::IcmpQuery { key, request } => (
                        key,
                        0,
                        if request {
                            IcmpQuery::Request
                        } else {
                            IcmpQuery::Reply
                        },
                    ),
                    SlowL4::IcmpError { inner, .. } => {
                        return self.icmp_error(
                            buf,
                            len,
                            port,
                            sf.vlan,
                            sf.l3_offset,
                            v4,
                            inner,
                            offload,
                            now,
                        );
                    }
                    SlowL4::IcmpOther { .. } => return self.drop(DropReason::IcmpUnsupported),
                    SlowL4::Other { .. } => return self.drop(DropReason::UnsupportedProtocol),
                };
                let ip = Ip4 {
                    key,
                    l3: sf.l3_offset,
                    l4: v4.l4_offset,
                    ip_end: sf.l3_offset + usize::from(v4.total_len),
                    ttl: v4.ip.ttl,
                    flags,
                    icmp,
                    df: v4.ip.dont_frag,
                    vlan: sf.vlan,
                };
                match self.cfg.ports[usize::from(port.0)].role {
                    Role::Lan => self.classify_lan(buf, len, port, ip, offload, now, None),
                    Role::Wan => self.classify_wan(buf, len, port, ip, offload, now, None),
                }
            }
        }
    }
}

/// A frame the pipeline replaced with an answer it built (an echo reply, an ICMP error, a TCP RST,
/// an ARP reply) has no offload work left: its metadata is reset.
#[inline(always)]
fn answered(v: Verdict, offload: &mut TxOffload) -> Verdict {
    if let Verdict::Reply { .. } = v {
        *offload = TxOffload::NONE;
    }
    v
}
