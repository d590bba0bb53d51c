//! The `virtio_net_hdr` that a `PACKET_VNET_HDR` socket puts before every frame it receives and
//! expects before every frame it sends: how the kernel tells us (and we tell it) that a frame is a
//! GSO super-frame to be segmented and/or carries a partial checksum to be finished.
//!
//! Layout (10 bytes, host byte order for a legacy virtio header on this host, which is what
//! `af_packet` uses): `flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16,
//! csum_offset u16`.

/// Size of the header on the wire of a `PACKET_VNET_HDR` socket.
pub const VNET_HDR_LEN: usize = 10;

/// A `virtio_net_hdr`, as plain data. Raw fields round-trip losslessly; typed accessors decode them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*` bits ([`VnetHdr::F_NEEDS_CSUM`], [`VnetHdr::F_DATA_VALID`]).
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` type, optionally or-ed with [`VnetHdr::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (L2 + L3 + L4) that are copied onto every segment.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// Offset from the start of the frame where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Offset from `csum_start` of the 16-bit checksum field to fill in.
    pub csum_offset: u16,
}

/// Decoded `gso_type` (without the ECN bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoType {
    /// Not a GSO frame.
    None,
    /// TCP over IPv4 (TSO).
    TcpV4,
    /// UFO (deprecated, UDP fragmentation offload).
    Udp,
    /// TCP over IPv6.
    TcpV6,
    /// UDP segmentation (`UDP_L4`, USO).
    UdpL4,
    /// A value this crate does not know.
    Other(u8),
}

impl VnetHdr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum field holds only the pseudo-header sum; the
    /// checksum over `[csum_start..]` must be finished and stored at `csum_start + csum_offset`.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
    pub const F_DATA_VALID: u8 = 2;
    /// `VIRTIO_NET_HDR_F_RSC_INFO`.
    pub const F_RSC_INFO: u8 = 4;
    /// `VIRTIO_NET_HDR_GSO_NONE`.
    pub const GSO_NONE: u8 = 0;
    /// `VIRTIO_NET_HDR_GSO_TCPV4`.
    pub const GSO_TCPV4: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_UDP`.
    pub const GSO_UDP: u8 = 3;
    /// `VIRTIO_NET_HDR_GSO_TCPV6`.
    pub const GSO_TCPV6: u8 = 4;
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`.
    pub const GSO_UDP_L4: u8 = 5;
    /// `VIRTIO_NET_HDR_GSO_ECN` (or-ed into `gso_type`: the TCP segments carry CWR).
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the first [`VNET_HDR_LEN`] bytes; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        })
    }

    /// The header as the kernel expects it.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut o = [0u8; VNET_HDR_LEN];
        o[0] = self.flags;
        o[1] = self.gso_type;
        o[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        o[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        o[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        o[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        o
    }

    /// The decoded GSO type.
    pub fn gso(&self) -> GsoType {
        match self.gso_type & !Self::GSO_ECN {
            Self::GSO_NONE => GsoType::None,
            Self::GSO_TCPV4 => GsoType::TcpV4,
            Self::GSO_UDP => GsoType::Udp,
            Self::GSO_TCPV6 => GsoType::TcpV6,
            Self::GSO_UDP_L4 => GsoType::UdpL4,
            o => GsoType::Other(o),
        }
    }

    /// True for a GSO super-frame (the kernel segments it on transmit).
    pub fn is_gso(&self) -> bool {
        self.gso() != GsoType::None
    }

    /// True if the ECN bit is set in `gso_type`.
    pub fn ecn(&self) -> bool {
        self.gso_type & Self::GSO_ECN != 0
    }

    /// True if the L4 checksum is partial (see [`VnetHdr::F_NEEDS_CSUM`]).
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }

    /// True if the checksum was already validated.
    pub fn data_valid(&self) -> bool {
        self.flags & Self::F_DATA_VALID != 0
    }

    /// Adjusts the offsets after `delta` bytes were inserted (positive) or removed (negative) in
    /// front of the L3 header, e.g. +4 after pushing an 802.1Q tag. Fields that are zero (unused)
    /// stay zero. Returns `false` (and changes nothing) if an offset would leave `u16`.
    #[must_use]
    pub fn shift(&mut self, delta: i32) -> bool {
        let adj = |v: u16| -> Option<u16> {
            if v == 0 {
                Some(0)
            } else {
                u16::try_from(i32::from(v) + delta).ok()
            }
        };
        let (Some(cs), Some(hl)) = (
            if self.needs_csum() {
                adj(self.csum_start)
            } else {
                Some(self.csum_start)
            },
            adj(self.hdr_len),
        ) else {
            return false;
        };
        self.csum_start = cs;
        self.hdr_len = hl;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_tso_header_seen_on_veth() {
        // flags NEEDS_CSUM, TCPV4, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16.
        let mut b = [0u8; 12];
        b[0] = 1;
        b[1] = 1;
        b[2..4].copy_from_slice(&66u16.to_ne_bytes());
        b[4..6].copy_from_slice(&1448u16.to_ne_bytes());
        b[6..8].copy_from_slice(&34u16.to_ne_bytes());
        b[8..10].copy_from_slice(&16u16.to_ne_bytes());
        let h = VnetHdr::parse(&b).unwrap();
        assert_eq!(
            h,
            VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: VnetHdr::GSO_TCPV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        assert_eq!(h.gso(), GsoType::TcpV4);
        assert!(h.is_gso() && h.needs_csum() && !h.data_valid() && !h.ecn());
        assert_eq!(&h.to_bytes()[..], &b[..10]);
    }

    #[test]
    fn decodes_types_and_ecn() {
        let h = VnetHdr {
            gso_type: VnetHdr::GSO_TCPV6 | VnetHdr::GSO_ECN,
            ..VnetHdr::default()
        };
        assert_eq!(h.gso(), GsoType::TcpV6);
        assert!(h.ecn());
        let u = VnetHdr {
            gso_type: VnetHdr::GSO_UDP_L4,
            flags: VnetHdr::F_DATA_VALID,
            ..VnetHdr::default()
        };
        assert_eq!(u.gso(), GsoType::UdpL4);
        assert!(u.data_valid());
        assert_eq!(VnetHdr::default().gso(), GsoType::None);
        assert!(!VnetHdr::default().is_gso());
        let o = VnetHdr {
            gso_type: 9,
            ..VnetHdr::default()
        };
        assert_eq!(o.gso(), GsoType::Other(9));
        assert_eq!(VnetHdr::parse(&[0u8; 9]), None);
    }

    #[test]
    fn shift_moves_offsets_for_a_vlan_push() {
        let mut h = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert!(h.shift(4));
        assert_eq!((h.csum_start, h.hdr_len, h.csum_offset), (38, 70, 16));
        assert!(h.shift(-4));
        assert_eq!((h.csum_start, h.hdr_len), (34, 66));
        let mut z = VnetHdr::default();
        assert!(z.shift(4));
        assert_eq!(z, VnetHdr::default());
        let mut big = VnetHdr {
            hdr_len: 65535,
            ..VnetHdr::default()
        };
        assert!(!big.shift(1));
        assert_eq!(big.hdr_len, 65535);
    }

    proptest! {
        #[test]
        fn bytes_round_trip(b in proptest::array::uniform10(any::<u8>())) {
            let h = VnetHdr::parse(&b).unwrap();
            prop_assert_eq!(h.to_bytes(), b);
            prop_assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
        }
    }
}
