//! UDP headers (RFC 768).

use core::net::Ipv4Addr;

use super::{Error, Layer, need, rd16, wr16};
use crate::checksum;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;
/// Byte offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A view of a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checks (accessors read zeros past its end).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps untrusted bytes: 8 bytes present and `8 ≤ length ≤` buffer length. A length of 0
    /// (RFC 2675 jumbograms, IPv6 only) is rejected.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        need(Layer::Udp, b, HEADER_LEN)?;
        let len = usize::from(rd16(b, field::LEN));
        if len < HEADER_LEN {
            return Err(Error::Field {
                layer: Layer::Udp,
                field: "length",
                offset: field::LEN,
                value: len as u32,
            });
        }
        need(Layer::Udp, b, len)?;
        Ok(UdpPacket { buffer })
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::SRC_PORT)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::DST_PORT)
    }
    /// The length field (header plus payload).
    #[inline]
    pub fn len(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::LEN)
    }
    /// True when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }
    /// Checksum as stored (0: none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Payload: from byte 8 to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..usize::from(self.len()))
            .unwrap_or(&[])
    }
    /// True when the checksum is absent (0) or verifies over `length` bytes and the IPv4
    /// pseudo-header.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let Some(d) = self.buffer.as_ref().get(..usize::from(len)) else {
            return false;
        };
        let ph = checksum::pseudo_header_v4(src, dst, 17, len);
        checksum::checksum_with(ph, d) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum untouched).
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        wr16(self.buffer.as_mut(), field::SRC_PORT, p);
    }
    /// Sets the destination port (checksum untouched).
    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        wr16(self.buffer.as_mut(), field::DST_PORT, p);
    }
    /// Sets the length field (checksum untouched).
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        wr16(self.buffer.as_mut(), field::LEN, len);
    }
    /// Stores a checksum value.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        wr16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
    /// Recomputes the checksum over `length` bytes and the IPv4 pseudo-header (a computed 0 is
    /// stored as 0xffff).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let c = self
            .buffer
            .as_ref()
            .get(..len)
            .map_or(0, |d| checksum::l4_checksum_v4(src, dst, 17, d));
        self.set_checksum(checksum::udp_wire(c));
    }
}

/// A UDP header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length (the length field minus 8).
    pub payload_len: u16,
}

impl UdpRepr {
    /// Decodes a checked datagram.
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Self {
        UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: p.len().saturating_sub(HEADER_LEN as u16),
        }
    }

    /// Writes the 8-byte header with a zero checksum; returns 8. Fails when `buf` is short or
    /// the length overflows 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        need(Layer::Udp, buf, HEADER_LEN)?;
        let len = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(Error::Field {
                layer: Layer::Udp,
                field: "length",
                offset: field::LEN,
                value: u32::from(self.payload_len) + HEADER_LEN as u32,
            })?;
        wr16(buf, field::SRC_PORT, self.src_port);
        wr16(buf, field::DST_PORT, self.dst_port);
        wr16(buf, field::LEN, len);
        wr16(buf, field::CHECKSUM, 0);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hand-made DNS query 10.0.0.2:53000 -> 192.0.2.53:53, 4 payload bytes, checksum filled below.
    const DGRAM: [u8; 12] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0x12, 0x34, 0x01, 0x00,
    ];

    #[test]
    fn parse_and_round_trip() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        let r = UdpRepr::parse(&p);
        assert_eq!(
            r,
            UdpRepr {
                src_port: 53000,
                dst_port: 53,
                payload_len: 4
            }
        );
        assert_eq!(p.payload(), &[0x12, 0x34, 1, 0]);
        assert!(p.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)); // 0 = none
        let mut b = [0u8; 12];
        assert_eq!(r.emit(&mut b).unwrap(), 8);
        b[8..].copy_from_slice(&DGRAM[8..]);
        assert_eq!(b, DGRAM);
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 53));
        let mut w = UdpPacket::new_unchecked(&mut b[..]);
        w.fill_checksum(s, d);
        assert_ne!(w.checksum(), 0);
        assert!(w.verify_checksum(s, d));
        assert!(!w.verify_checksum(d, s.to_bits().wrapping_add(1).into()));
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            UdpPacket::new_checked(&DGRAM[..7]),
            Err(Error::Len(l)) if l.needed == 8 && l.got == 7
        ));
        assert!(matches!(
            UdpPacket::new_checked(&DGRAM[..11]),
            Err(Error::Len(l)) if l.needed == 12 && l.got == 11
        ));
        let mut b = DGRAM;
        b[5] = 7;
        assert!(matches!(
            UdpPacket::new_checked(&b[..]),
            Err(Error::Field {
                field: "length",
                value: 7,
                offset: 4,
                ..
            })
        ));
        let r = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: u16::MAX,
        };
        assert!(r.emit(&mut [0u8; 8]).is_err());
    }

    #[test]
    fn parse_real_captures() {
        use crate::wire::captured::{HSRP, VLAN_BFD};
        let p = UdpPacket::new_checked(&HSRP[34..]).unwrap();
        let r = UdpRepr::parse(&p);
        assert_eq!((r.src_port, r.dst_port, r.payload_len), (1985, 1985, 20));
        let (s, d) = (Ipv4Addr::new(192, 168, 0, 30), Ipv4Addr::new(224, 0, 0, 2));
        assert!(p.verify_checksum(s, d));
        let mut o = [0u8; 28];
        r.emit(&mut o).unwrap();
        o[8..].copy_from_slice(p.payload());
        UdpPacket::new_unchecked(&mut o[..]).fill_checksum(s, d);
        assert_eq!(o[..], HSRP[34..]);
        // Checksum 0: none.
        let p = UdpPacket::new_checked(&VLAN_BFD[38..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.checksum()), (49152, 3784, 0));
        assert!(p.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED));
    }
}
