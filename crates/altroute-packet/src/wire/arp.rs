//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses only.

use core::net::Ipv4Addr;

use super::{Error, Layer, LenError, MacAddr, need, rd, rd16, wr, wr8, wr16};

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArpOp {
    /// 1: who-has.
    Request,
    /// 2: is-at.
    Reply,
    /// Anything else (RARP, InARP, ...), kept verbatim.
    Other(u16),
}

impl From<u16> for ArpOp {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            o => ArpOp::Other(o),
        }
    }
}

impl From<ArpOp> for u16 {
    fn from(o: ArpOp) -> u16 {
        match o {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
            ArpOp::Other(v) => v,
        }
    }
}

/// A view of an ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checks (accessors read zeros past its end).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps untrusted bytes: 28 bytes, hardware type 1 (Ethernet) with 6-byte addresses,
    /// protocol type 0x0800 (IPv4) with 4-byte addresses. Other combinations are
    /// [`Error::Unsupported`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        need(Layer::Arp, b, PACKET_LEN)?;
        let unsupported = |what, offset| Error::Unsupported {
            layer: Layer::Arp,
            what,
            offset,
        };
        if rd16(b, field::HTYPE) != 1 {
            return Err(unsupported("hardware type (not Ethernet)", field::HTYPE));
        }
        if rd16(b, field::PTYPE) != 0x0800 {
            return Err(unsupported("protocol type (not IPv4)", field::PTYPE));
        }
        if b.get(field::HLEN) != Some(&6) {
            return Err(unsupported("hardware address length", field::HLEN));
        }
        if b.get(field::PLEN) != Some(&4) {
            return Err(unsupported("protocol address length", field::PLEN));
        }
        Ok(ArpPacket { buffer })
    }

    /// The operation.
    #[inline]
    pub fn op(&self) -> ArpOp {
        ArpOp::from(rd16(self.buffer.as_ref(), field::OPER))
    }
    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        MacAddr(rd(self.buffer.as_ref(), field::SHA))
    }
    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd::<4>(self.buffer.as_ref(), field::SPA))
    }
    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> MacAddr {
        MacAddr(rd(self.buffer.as_ref(), field::THA))
    }
    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd::<4>(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the operation.
    #[inline]
    pub fn set_op(&mut self, op: ArpOp) {
        wr16(self.buffer.as_mut(), field::OPER, op.into());
    }
    /// Sets the sender addresses.
    #[inline]
    pub fn set_sender(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        wr(self.buffer.as_mut(), field::SHA, &mac.0);
        wr(self.buffer.as_mut(), field::SPA, &ip.octets());
    }
    /// Sets the target addresses.
    #[inline]
    pub fn set_target(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        wr(self.buffer.as_mut(), field::THA, &mac.0);
        wr(self.buffer.as_mut(), field::TPA, &ip.octets());
    }
}

/// An Ethernet/IPv4 ARP packet, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Operation.
    pub op: ArpOp,
    /// Sender hardware address.
    pub sha: MacAddr,
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: MacAddr,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    /// Decodes a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Self {
        ArpRepr {
            op: p.op(),
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        }
    }

    /// Writes the 28-byte packet at the start of `buf`; returns 28.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, LenError> {
        need(Layer::Arp, buf, PACKET_LEN)?;
        wr16(buf, field::HTYPE, 1);
        wr16(buf, field::PTYPE, 0x0800);
        wr8(buf, field::HLEN, 6);
        wr8(buf, field::PLEN, 4);
        let mut p = ArpPacket::new_unchecked(&mut *buf);
        p.set_op(self.op);
        p.set_sender(self.sha, self.spa);
        p.set_target(self.tha, self.tpa);
        Ok(PACKET_LEN)
    }

    /// True for a gratuitous ARP (sender and target protocol addresses equal).
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.spa == self.tpa
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hand-made who-has 10.0.0.1 tell 10.0.0.2 (after the Ethernet header).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0,
        0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
    ];

    #[test]
    fn parse_hand_made() {
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap());
        assert_eq!(r.op, ArpOp::Request);
        assert_eq!(r.sha, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(r.spa, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(r.tha, MacAddr::ZERO);
        assert_eq!(r.tpa, Ipv4Addr::new(10, 0, 0, 1));
        let mut b = [0u8; 28];
        r.emit(&mut b).unwrap();
        assert_eq!(b, REQUEST);
    }

    #[test]
    fn round_trip() {
        let r = ArpRepr {
            op: ArpOp::Reply,
            sha: MacAddr([2, 0, 0, 0, 0, 1]),
            spa: Ipv4Addr::new(192, 0, 2, 1),
            tha: MacAddr([2, 0, 0, 0, 0, 2]),
            tpa: Ipv4Addr::new(192, 0, 2, 2),
        };
        let mut b = [0u8; 40];
        let n = r.emit(&mut b).unwrap();
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..n]).unwrap()), r);
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            ArpPacket::new_checked(&REQUEST[..27]),
            Err(Error::Len(LenError {
                layer: Layer::Arp,
                needed: 28,
                got: 27,
                ..
            }))
        ));
        let mut b = REQUEST;
        b[5] = 16;
        assert!(matches!(
            ArpPacket::new_checked(&b[..]),
            Err(Error::Unsupported { offset: 5, .. })
        ));
        let mut b = REQUEST;
        b[1] = 6;
        assert!(matches!(
            ArpPacket::new_checked(&b[..]),
            Err(Error::Unsupported { offset: 0, .. })
        ));
    }

    #[test]
    fn parse_real_capture() {
        let b = &crate::wire::captured::ARP_REQ[14..];
        let r = ArpRepr::parse(&ArpPacket::new_checked(b).unwrap());
        assert_eq!(r.op, ArpOp::Request);
        assert_eq!(r.sha.to_string(), "00:1f:29:da:2d:79");
        assert_eq!(r.spa, Ipv4Addr::new(192, 168, 1, 104));
        assert_eq!(r.tpa, Ipv4Addr::new(192, 168, 1, 1));
        assert!(!r.is_gratuitous());
        let mut o = [0u8; 28];
        r.emit(&mut o).unwrap();
        assert_eq!(o[..], b[..28]);
    }
}
