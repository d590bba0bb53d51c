//! Why a frame was dropped: [`DropReason`], one variant per reason, and [`DropCounters`], one
//! `u64` per reason.
//!
//! The parsers in this crate return the malformation reasons; the later ones (routing, NAT,
//! policy, health) are for the pipeline and the flow table, listed here so that every drop in
//! altroute is counted in one array. Every drop has its own reason: there is no catch-all.
//! [`DropReason::name`] gives a stable snake-case name usable as a Prometheus label value; the
//! names are part of the metrics contract (do not rename).

use core::fmt;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $v:ident => $name:literal, )*) => {
        /// Why a frame was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum DropReason {
            $( $(#[$doc])* $v, )*
        }

        impl DropReason {
            /// Every reason, in declaration (and counter index) order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$v,)*];
            /// Number of reasons (the length of [`DropCounters`]).
            pub const COUNT: usize = [$(DropReason::$v,)*].len();

            /// The stable snake-case name (a Prometheus label value).
            pub const fn name(self) -> &'static str {
                match self {
                    $( DropReason::$v => $name, )*
                }
            }
        }
    };
}

reasons! {
    // --- L2 ---------------------------------------------------------------------------------
    /// Shorter than an Ethernet header (14 bytes; 18 with an 802.1Q tag).
    Runt => "runt",
    /// The EtherType is neither IPv4, ARP nor IPv6 (LLC/SNAP, LLDP, MPLS, PPPoE, ...).
    UnsupportedEthertype => "unsupported_ethertype",
    /// 802.1ad (QinQ) service tag or a second 802.1Q tag.
    Qinq => "vlan_qinq",
    /// Tagged with a VLAN the interface is not configured for.
    WrongVlan => "vlan_unknown",
    /// Frame not addressed to this interface (unicast to another MAC).
    NotForUs => "l2_not_for_us",
    /// Source MAC is a group address.
    BadSrcMac => "l2_bad_src_mac",
    // --- ARP --------------------------------------------------------------------------------
    /// ARP shorter than 28 bytes.
    ArpTruncated => "arp_truncated",
    /// ARP for hardware other than Ethernet or protocol other than IPv4.
    ArpUnsupported => "arp_unsupported",
    /// ARP not concerning this router (target is not one of our addresses).
    ArpNotForUs => "arp_not_for_us",
    /// An ARP reply or gratuitous ARP from a LAN host: learned (and, if new, shared with the
    /// other workers through the control thread at a bounded rate); nothing to forward.
    ArpLearned => "arp_learned",
    // --- IPv4 -------------------------------------------------------------------------------
    /// Shorter than an IPv4 header, or than the header's IHL says.
    Ipv4Truncated => "ipv4_truncated",
    /// Version field is not 4 under EtherType IPv4.
    Ipv4BadVersion => "ipv4_bad_version",
    /// IHL below 5.
    Ipv4BadIhl => "ipv4_bad_ihl",
    /// `total_len` smaller than the header, or larger than the frame.
    Ipv4BadTotalLength => "ipv4_bad_total_length",
    /// Header checksum does not verify.
    Ipv4BadChecksum => "ipv4_bad_checksum",
    /// Frame larger than any IPv4 packet (> 64 KiB of IP, e.g. BIG TCP with `total_len` 0).
    TooBig => "too_big",
    /// Source address is invalid as a source (multicast, broadcast, 0.0.0.0 off-link, loopback).
    Ipv4BadSrc => "ipv4_bad_src",
    /// Destination is loopback, 0.0.0.0 or otherwise never routable.
    Ipv4BadDst => "ipv4_bad_dst",
    /// Source address spoofed for the ingress interface (reverse-path check): a LAN packet whose
    /// source is in none of its port's prefixes.
    Martian => "ipv4_martian",
    /// Packet with options the pipeline refuses: a loose or strict source route.
    Ipv4OptionsRejected => "ipv4_options_rejected",
    /// TTL would reach 0 when forwarded (an ICMP time exceeded may be sent).
    TtlExpired => "ttl_expired",
    /// Too big for the egress MTU with DF set (an ICMP frag-needed may be sent).
    FragNeeded => "frag_needed",
    /// Non-first fragment whose flow is unknown (its first fragment was not seen).
    FragmentWithoutFlow => "fragment_without_flow",
    /// Fragment tracking state is full.
    FragmentTableFull => "fragment_table_full",
    /// Fragment with an invalid offset/length (overlap, past 64 KiB, tiny first fragment).
    BadFragment => "fragment_bad",
    /// IPv6 frame (IPv6 forwarding not enabled).
    Ipv6Unsupported => "ipv6_unsupported",
    /// IP protocol that cannot be translated (no ports and no address-only NAT policy).
    UnsupportedProtocol => "unsupported_protocol",
    // --- L4 ---------------------------------------------------------------------------------
    /// Shorter than the L4 header (TCP 20 bytes, UDP 8, ICMP 8) within `total_len`.
    L4Truncated => "l4_truncated",
    /// TCP data offset below 5 or past the IP payload.
    TcpBadHeaderLength => "tcp_bad_header_length",
    /// UDP length field below 8 or larger than the IP payload.
    UdpBadLength => "udp_bad_length",
    /// L4 checksum does not verify (when checked).
    L4BadChecksum => "l4_bad_checksum",
    /// TCP flag combination never valid (SYN+FIN, SYN+RST, no flags, ...).
    TcpBadFlags => "tcp_bad_flags",
    /// Source or destination port 0.
    PortZero => "port_zero",
    /// ICMP error whose quoted datagram is too short or not IPv4 (RFC 5508 needs IP header + 8).
    IcmpBadEmbedded => "icmp_bad_embedded",
    /// ICMP error quoting a datagram no flow matches.
    IcmpErrorNoFlow => "icmp_error_no_flow",
    /// ICMP type that is neither a supported query nor a supported error.
    IcmpUnsupported => "icmp_unsupported",
    /// ICMP error in reply to an ICMP error, a fragment or a broadcast (RFC 1812 §4.3.2.7).
    IcmpErrorSuppressed => "icmp_error_suppressed",
    /// Rate limit for generated ICMP errors reached.
    IcmpRateLimited => "icmp_rate_limited",
    /// Rate limit for echo replies from a WAN address reached (a ping flood).
    EchoRateLimited => "echo_rate_limited",
    // --- NAT / flow table -------------------------------------------------------------------
    /// Inbound packet on a WAN matching no flow and no port forward.
    Unsolicited => "unsolicited",
    /// TCP segment without SYN for an unknown flow (would need a new flow; not created).
    TcpNoFlowNoSyn => "tcp_no_flow_no_syn",
    /// TCP segment outside the tracked state (e.g. after RST/closing).
    TcpInvalidState => "tcp_invalid_state",
    /// Flow table full.
    TableFull => "table_full",
    /// No free NAT port on the chosen WAN address.
    PortsExhausted => "ports_exhausted",
    /// Per-host connection limit reached (the flow table's `limits.flows_per_source`).
    HostLimit => "host_limit",
    /// Per-host NAT port limit reached (`limits.ports_per_source`).
    HostPortLimit => "host_port_limit",
    /// A new flow's key, or its translated reply key, is already another flow's (a connection to
    /// a port forward colliding with a live mapping of the same remote end).
    FlowExists => "flow_exists",
    /// A flow the lookup found was gone when the pipeline read it (a bug if it counts).
    StaleFlow => "flow_stale",
    /// A WAN packet matched a flow in the direction only the inside host sends (its original
    /// key).
    FlowWrongDirection => "flow_wrong_direction",
    /// A LAN packet to a gateway's NAT address that is none of the router's port addresses:
    /// hairpinning reaches only the ports' addresses. Also an ICMP error from the LAN sent to one
    /// of the router's own or NAT addresses (about hairpinned traffic: not translated).
    HairpinUnsupported => "hairpin_unsupported",
    /// A hairpinned packet matched an existing flow in the other direction than its half needs.
    HairpinConflict => "hairpin_conflict",
    /// The sender's half of a hairpin has no translation to reach the target with.
    HairpinWithoutNat => "hairpin_without_nat",
    // --- routing / policy -------------------------------------------------------------------
    /// No route for the destination.
    NoRoute => "no_route",
    /// Every eligible gateway is down.
    GatewayDown => "gateway_down",
    /// A flow or a flow insertion names a gateway the pipeline does not know (its configuration
    /// out of step with the flow table's; a bug if it counts).
    UnknownGateway => "gateway_unknown",
    /// The gateway's MAC is not resolved (ARP pending or failed).
    NeighborUnresolved => "neighbor_unresolved",
    /// ARP resolution queue full.
    NeighborQueueFull => "neighbor_queue_full",
    /// Private/reserved destination leaving through a WAN (RFC 1918, 6598, ...).
    PrivateDestination => "private_destination",
    /// Private/reserved source arriving on a WAN (bogon).
    BogonSource => "bogon_source",
    /// Denied by a firewall/policy rule.
    Policy => "policy",
    /// Rate limited by a policer.
    RateLimited => "rate_limited",
    // --- datapath ---------------------------------------------------------------------------
    /// The frame carries an unfinished checksum the pipeline cannot complete (bad start/offset).
    BadPartialChecksum => "bad_partial_checksum",
    /// GSO super-frame the pipeline cannot handle (unknown gso type).
    UnsupportedGso => "unsupported_gso",
    /// No buffer to build a reply or to queue the frame.
    NoBuffer => "no_buffer",
    /// TX queue full.
    TxQueueFull => "tx_queue_full",
    /// Frame too long for the egress interface (after adding a VLAN tag, ...).
    TooLongForEgress => "too_long_for_egress",
    /// The frame's length is past the end of the buffer it was handed in (the caller's bug: the
    /// I/O layer never hands such a frame over).
    FrameOverrunsBuffer => "frame_overruns_buffer",
    /// Addressed to the router itself, and neither something the pipeline answers (ARP, echo)
    /// nor something a kernel twin of the port would take.
    LocalNoService => "local_no_service",
    /// Not a drop: the value a verdict or parse slot holds before the pipeline has handled its
    /// frame (`Verdict::default()`). Never counted.
    Unprocessed => "unprocessed",
}

impl DropReason {
    /// The counter index of this reason.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One counter per [`DropReason`], indexed by it. Plain `u64`s: keep one per worker and sum them
/// when exporting.
#[derive(Clone, PartialEq, Eq)]
pub struct DropCounters(pub [u64; DropReason::COUNT]);

impl DropCounters {
    /// All zero.
    pub const fn new() -> Self {
        DropCounters([0; DropReason::COUNT])
    }

    /// Counts one drop.
    #[inline]
    pub fn inc(&mut self, r: DropReason) {
        self.add(r, 1);
    }

    /// Counts `n` drops.
    #[inline]
    pub fn add(&mut self, r: DropReason, n: u64) {
        if let Some(c) = self.0.get_mut(r.index()) {
            *c = c.wrapping_add(n);
        }
    }

    /// The count for `r`.
    #[inline]
    pub fn get(&self, r: DropReason) -> u64 {
        self.0.get(r.index()).copied().unwrap_or(0)
    }

    /// Adds another set of counters (e.g. another worker's) into this one.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// Sum over every reason.
    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// `(reason, count)` for every reason, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

impl core::ops::Index<DropReason> for DropCounters {
    type Output = u64;
    #[inline]
    fn index(&self, r: DropReason) -> &u64 {
        // In bounds: every reason's index is below COUNT, the array's length.
        &self.0[r.index()]
    }
}

impl core::ops::IndexMut<DropReason> for DropCounters {
    #[inline]
    fn index_mut(&mut self, r: DropReason) -> &mut u64 {
        &mut self.0[r.index()]
    }
}

impl Default for DropCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DropCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .filter(|(_, n)| *n != 0)
                    .map(|(r, n)| (r.name(), n)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_and_indexed() {
        assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn names_are_unique_prometheus_labels() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            let n = r.name();
            assert!(seen.insert(n), "duplicate {n}");
            assert!(!n.is_empty());
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n}"
            );
            assert_eq!(r.to_string(), n);
        }
        assert_eq!(DropReason::Ipv4BadChecksum.to_string(), "ipv4_bad_checksum");
    }

    #[test]
    fn counters() {
        let mut c = DropCounters::new();
        c.inc(DropReason::Runt);
        c.add(DropReason::TableFull, 3);
        let mut d = DropCounters::default();
        d.inc(DropReason::Runt);
        c.merge(&d);
        assert_eq!(c.get(DropReason::Runt), 2);
        c[DropReason::Runt] += 1;
        c[DropReason::Runt] -= 1;
        assert_eq!(c[DropReason::Runt], 2);
        assert_eq!(c.total(), 5);
        assert_eq!(format!("{c:?}"), r#"{"runt": 2, "table_full": 3}"#);
    }
}
