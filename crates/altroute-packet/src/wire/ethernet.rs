//! Ethernet II frames with at most one IEEE 802.1Q tag. 802.1ad (QinQ) is rejected.

use core::fmt;

use super::{Error, Layer, LenError, need, rd, rd16, wr, wr16};

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00` (the ARP request's unknown target).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for the broadcast address.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for group (multicast or broadcast) addresses: the I/G bit is set.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EtherType values altroute distinguishes.
pub struct EtherType;

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ outer tag some switches use.
    pub const QINQ_OLD: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;

    /// True for the TPIDs that introduce a service (outer) tag or a second tag.
    #[inline]
    pub const fn is_qinq(t: u16) -> bool {
        matches!(t, Self::QINQ | Self::QINQ_OLD | Self::VLAN)
    }
}

/// An 802.1Q Tag Control Information word: PCP (3 bits), DEI (1 bit), VLAN id (12 bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTci(pub u16);

impl VlanTci {
    /// A TCI with the given VLAN id (low 12 bits), PCP 0, DEI 0.
    #[inline]
    pub const fn with_id(id: u16) -> Self {
        VlanTci(id & 0x0fff)
    }
    /// The 12-bit VLAN identifier.
    #[inline]
    pub const fn id(self) -> u16 {
        self.0 & 0x0fff
    }
    /// The 3-bit priority code point.
    #[inline]
    pub const fn pcp(self) -> u8 {
        (self.0 >> 13) as u8
    }
    /// The drop-eligible indicator.
    #[inline]
    pub const fn dei(self) -> bool {
        self.0 & 0x1000 != 0
    }
}

impl fmt::Debug for VlanTci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vlan {} pcp {}", self.id(), self.pcp())
    }
}

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const TYPE: usize = 12;
    pub const TCI: usize = 14;
    pub const INNER_TYPE: usize = 16;
    pub const UNTAGGED_LEN: usize = 14;
    pub const TAGGED_LEN: usize = 18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::UNTAGGED_LEN;
/// Length of an Ethernet II header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = field::TAGGED_LEN;

/// A view of an Ethernet II frame, possibly carrying one 802.1Q tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checks (accessors read zeros past its end).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps untrusted bytes: the header (and the 802.1Q tag if any) must fit; a second tag
    /// (802.1ad / QinQ, or a stacked 802.1Q) is [`Error::Unsupported`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        need(Layer::Ethernet, b, field::UNTAGGED_LEN)?;
        let outer = rd16(b, field::TYPE);
        if outer == EtherType::QINQ || outer == EtherType::QINQ_OLD {
            return Err(Error::Unsupported {
                layer: Layer::Ethernet,
                what: "802.1ad (QinQ) service tag",
                offset: field::TYPE,
            });
        }
        if outer == EtherType::VLAN {
            need(Layer::Vlan, b, field::TAGGED_LEN)?;
            if EtherType::is_qinq(rd16(b, field::INNER_TYPE)) {
                return Err(Error::Unsupported {
                    layer: Layer::Vlan,
                    what: "stacked VLAN tag (QinQ)",
                    offset: field::INNER_TYPE,
                });
            }
        }
        Ok(EthernetFrame { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr(rd(self.buffer.as_ref(), field::DST))
    }

    /// The source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr(rd(self.buffer.as_ref(), field::SRC))
    }

    /// True when the frame carries an 802.1Q tag.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        rd16(self.buffer.as_ref(), field::TYPE) == EtherType::VLAN
    }

    /// The 802.1Q tag, if any.
    #[inline]
    pub fn vlan(&self) -> Option<VlanTci> {
        self.is_tagged()
            .then(|| VlanTci(rd16(self.buffer.as_ref(), field::TCI)))
    }

    /// The EtherType of the payload (after the tag, if any).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        if self.is_tagged() {
            rd16(b, field::INNER_TYPE)
        } else {
            rd16(b, field::TYPE)
        }
    }

    /// Header length: 14, or 18 with a tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            field::TAGGED_LEN
        } else {
            field::UNTAGGED_LEN
        }
    }

    /// The bytes after the header (empty if the buffer is shorter).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, a: MacAddr) {
        wr(self.buffer.as_mut(), field::DST, &a.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, a: MacAddr) {
        wr(self.buffer.as_mut(), field::SRC, &a.0);
    }

    /// Sets the payload EtherType (after the tag, if any).
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        let at = if self.is_tagged() {
            field::INNER_TYPE
        } else {
            field::TYPE
        };
        wr16(self.buffer.as_mut(), at, t);
    }

    /// Rewrites the TCI of a tagged frame; does nothing on an untagged one (adding or removing a
    /// tag changes the frame length and is the pipeline's job).
    #[inline]
    pub fn set_vlan_tci(&mut self, tci: VlanTci) {
        if self.is_tagged() {
            wr16(self.buffer.as_mut(), field::TCI, tci.0);
        }
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }
}

/// An Ethernet II header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// The 802.1Q tag, if any.
    pub vlan: Option<VlanTci>,
    /// The payload EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Decodes a checked frame.
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Self {
        EthernetRepr {
            src: f.src(),
            dst: f.dst(),
            vlan: f.vlan(),
            ethertype: f.ethertype(),
        }
    }

    /// Header length this repr emits: 14 or 18.
    #[inline]
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            field::TAGGED_LEN
        } else {
            field::UNTAGGED_LEN
        }
    }

    /// Writes the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, LenError> {
        let hl = self.header_len();
        need(Layer::Ethernet, buf, hl)?;
        wr(buf, field::DST, &self.dst.0);
        wr(buf, field::SRC, &self.src.0);
        match self.vlan {
            Some(tci) => {
                wr16(buf, field::TYPE, EtherType::VLAN);
                wr16(buf, field::TCI, tci.0);
                wr16(buf, field::INNER_TYPE, self.ethertype);
            }
            None => wr16(buf, field::TYPE, self.ethertype),
        }
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hand-made broadcast ARP request header (real captures: `parse_real_capture`).
    const ARP_HDR: [u8; 14] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
    ];
    // Tagged (vlan 5, pcp 3) IPv4 header.
    const TAGGED: [u8; 18] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x81, 0x00, 0x60,
        0x05, 0x08, 0x00,
    ];

    #[test]
    fn parse_hand_made() {
        let f = EthernetFrame::new_checked(&ARP_HDR[..]).unwrap();
        let r = EthernetRepr::parse(&f);
        assert!(r.dst.is_broadcast());
        assert_eq!(r.src.to_string(), "52:54:00:12:34:56");
        assert_eq!(r.ethertype, EtherType::ARP);
        assert_eq!(r.vlan, None);

        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        let r = EthernetRepr::parse(&f);
        assert_eq!(r.vlan.map(|v| (v.id(), v.pcp())), Some((5, 3)));
        assert_eq!(r.ethertype, EtherType::IPV4);
        assert_eq!(f.header_len(), 18);
    }

    #[test]
    fn round_trip() {
        for vlan in [None, Some(VlanTci(0x6005))] {
            let r = EthernetRepr {
                src: MacAddr([2, 0, 0, 0, 0, 1]),
                dst: MacAddr([2, 0, 0, 0, 0, 2]),
                vlan,
                ethertype: EtherType::IPV4,
            };
            let mut b = [0u8; 18];
            let n = r.emit(&mut b).unwrap();
            let f = EthernetFrame::new_checked(&b[..n]).unwrap();
            assert_eq!(EthernetRepr::parse(&f), r);
        }
        assert_eq!(
            EthernetRepr::parse(&EthernetFrame::new_checked(&TAGGED[..]).unwrap())
                .emit(&mut [0u8; 18]),
            Ok(18)
        );
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            EthernetFrame::new_checked(&TAGGED[..13]),
            Err(Error::Len(LenError {
                layer: Layer::Ethernet,
                needed: 14,
                got: 13,
                ..
            }))
        ));
        assert!(matches!(
            EthernetFrame::new_checked(&TAGGED[..17]),
            Err(Error::Len(LenError {
                layer: Layer::Vlan,
                needed: 18,
                got: 17,
                ..
            }))
        ));
        let mut q = TAGGED;
        q[12..14].copy_from_slice(&EtherType::QINQ.to_be_bytes());
        assert!(matches!(
            EthernetFrame::new_checked(&q[..]),
            Err(Error::Unsupported { offset: 12, .. })
        ));
        let mut q = TAGGED;
        q[16..18].copy_from_slice(&EtherType::VLAN.to_be_bytes());
        assert!(matches!(
            EthernetFrame::new_checked(&q[..]),
            Err(Error::Unsupported { offset: 16, .. })
        ));
        assert!(EthernetRepr::parse(&EthernetFrame::new_unchecked(&[][..])).src == MacAddr::ZERO);
    }

    #[test]
    fn setters() {
        let mut b = TAGGED;
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_src(MacAddr([1; 6]));
        f.set_dst(MacAddr([2; 6]));
        f.set_vlan_tci(VlanTci::with_id(7));
        f.set_ethertype(EtherType::ARP);
        let r = EthernetRepr::parse(&f);
        assert_eq!(r.src, MacAddr([1; 6]));
        assert_eq!(r.dst, MacAddr([2; 6]));
        assert_eq!(r.vlan, Some(VlanTci(7)));
        assert_eq!(r.ethertype, EtherType::ARP);
    }

    #[test]
    fn parse_real_capture() {
        use crate::wire::captured::{ARP_REQ, VLAN_BFD};
        let f = EthernetFrame::new_checked(&VLAN_BFD[..]).unwrap();
        let r = EthernetRepr::parse(&f);
        assert_eq!(r.dst.to_string(), "e4:6d:7f:54:b9:08");
        assert_eq!(r.src.to_string(), "94:43:4d:c0:17:85");
        assert_eq!(
            r.vlan.map(|v| (v.pcp(), v.dei(), v.id())),
            Some((7, false, 11))
        );
        assert_eq!(r.ethertype, EtherType::IPV4);
        assert_eq!(f.payload().len(), 52);
        let mut b = [0u8; 18];
        r.emit(&mut b).unwrap();
        assert_eq!(b[..], VLAN_BFD[..18]);
        let a = EthernetRepr::parse(&EthernetFrame::new_checked(&ARP_REQ[..]).unwrap());
        assert!(a.dst.is_broadcast() && a.vlan.is_none() && a.ethertype == EtherType::ARP);
    }
}
