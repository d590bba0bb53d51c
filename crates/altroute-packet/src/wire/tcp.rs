//! TCP headers (RFC 9293). Flags are decoded; options are located by the data offset and kept
//! verbatim, never interpreted.

use core::fmt;
use core::net::Ipv4Addr;

use super::{Error, Layer, need, rd8, rd16, rd32, wr, wr8, wr16, wr32};
use crate::checksum;

/// Verbatim TCP options (at most 40 bytes).
pub type TcpOptions = super::Options;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DOFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of a TCP header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Byte offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;
/// Byte offset of the flags byte.
pub const FLAGS_OFFSET: usize = field::FLAGS;

/// The eight flag bits of byte 13 (CWR, ECE, URG, ACK, PSH, RST, SYN, FIN).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;

    /// True when every bit of `mask` is set.
    #[inline]
    pub const fn has(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.has(Self::RST)
    }
    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.has(Self::ACK)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const N: [(u8, char); 8] = [
            (TcpFlags::CWR, 'C'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ACK, 'A'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::SYN, 'S'),
            (TcpFlags::FIN, 'F'),
        ];
        for (bit, c) in N {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        if self.0 == 0 {
            write!(f, ".")?;
        }
        Ok(())
    }
}

/// A view of a TCP segment (header plus payload; the buffer should end where the IP payload
/// ends, because the checksum covers all of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checks (accessors read zeros past its end).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps untrusted bytes: 20 bytes present, data offset ≥ 5, the whole header (with options)
    /// present.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        need(Layer::Tcp, b, MIN_HEADER_LEN)?;
        let doff = rd8(b, field::DOFF) >> 4;
        if doff < 5 {
            return Err(Error::Field {
                layer: Layer::Tcp,
                field: "data_offset",
                offset: field::DOFF,
                value: u32::from(doff),
            });
        }
        need(Layer::Tcp, b, usize::from(doff) * 4)?;
        Ok(TcpPacket { buffer })
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
    /// Sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        rd32(self.buffer.as_ref(), field::SEQ)
    }
    /// Acknowledgement number.
    #[inline]
    pub fn ack(&self) -> u32 {
        rd32(self.buffer.as_ref(), field::ACK)
    }
    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), field::DOFF) >> 4) * 4
    }
    /// The flag byte.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(rd8(self.buffer.as_ref(), field::FLAGS))
    }
    /// Receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::WINDOW)
    }
    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::URGENT)
    }
    /// Option bytes, verbatim.
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(MIN_HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }
    /// Payload (after the options).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
    /// Segment length in sequence space: payload length plus one for SYN and one for FIN.
    #[inline]
    pub fn segment_len(&self) -> u32 {
        let f = self.flags();
        self.payload().len() as u32 + u32::from(f.syn()) + u32::from(f.fin())
    }
    /// True when the checksum over the whole buffer and the IPv4 pseudo-header verifies.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        let ph = checksum::pseudo_header_v4(src, dst, 6, len);
        checksum::checksum_with(ph, b) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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
    /// Stores a checksum value.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        wr16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
    /// Recomputes the checksum over the whole buffer and the IPv4 pseudo-header.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v4(src, dst, 6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// A TCP header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options, verbatim.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Decodes a checked segment (the checksum is not verified here).
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Self {
        TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
            urgent: p.urgent(),
            options: TcpOptions::from_slice(p.options()).unwrap_or_default(),
        }
    }

    /// Header length this repr emits.
    #[inline]
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// Writes the header at the start of `buf` with a zero checksum (fill it once the payload is
    /// in place: [`TcpPacket::fill_checksum`]); returns the header length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let hl = self.header_len();
        need(Layer::Tcp, buf, hl)?;
        wr16(buf, field::SRC_PORT, self.src_port);
        wr16(buf, field::DST_PORT, self.dst_port);
        wr32(buf, field::SEQ, self.seq);
        wr32(buf, field::ACK, self.ack);
        wr8(buf, field::DOFF, ((hl / 4) as u8) << 4);
        wr8(buf, field::FLAGS, self.flags.0);
        wr16(buf, field::WINDOW, self.window);
        wr16(buf, field::CHECKSUM, 0);
        wr16(buf, field::URGENT, self.urgent);
        wr(buf, MIN_HEADER_LEN, self.options.as_slice());
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hand-made SYN 10.0.0.2:40000 -> 203.0.113.10:443 with MSS 1460 (24-byte header).
    const SYN: [u8; 24] = [
        0x9c, 0x40, 0x01, 0xbb, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn parse_and_round_trip() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        let r = TcpRepr::parse(&p);
        assert_eq!((r.src_port, r.dst_port, r.seq), (40000, 443, 1000));
        assert!(r.flags.syn() && !r.flags.ack());
        assert_eq!(format!("{:?}", r.flags), "S");
        assert_eq!(r.options.as_slice(), &[2, 4, 5, 0xb4]);
        assert_eq!(p.segment_len(), 1);
        let mut b = [0u8; 24];
        assert_eq!(r.emit(&mut b).unwrap(), 24);
        assert_eq!(b, SYN);
        let mut w = TcpPacket::new_unchecked(&mut b[..]);
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(203, 0, 113, 10));
        w.fill_checksum(s, d);
        assert!(w.verify_checksum(s, d));
        assert!(!w.verify_checksum(d, Ipv4Addr::new(1, 1, 1, 1)));
        assert_eq!(TcpRepr::parse(&TcpPacket::new_checked(&b[..]).unwrap()), r);
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            TcpPacket::new_checked(&SYN[..19]),
            Err(Error::Len(l)) if l.layer == Layer::Tcp && l.needed == 20
        ));
        assert!(matches!(
            TcpPacket::new_checked(&SYN[..23]),
            Err(Error::Len(l)) if l.needed == 24 && l.got == 23
        ));
        let mut b = SYN;
        b[12] = 0x40;
        assert!(matches!(
            TcpPacket::new_checked(&b[..]),
            Err(Error::Field {
                field: "data_offset",
                value: 4,
                offset: 12,
                ..
            })
        ));
    }

    #[test]
    fn parse_real_capture() {
        let f = &crate::wire::captured::SYN;
        let (s, d) = (Ipv4Addr::new(1, 0, 2, 2), Ipv4Addr::new(1, 0, 2, 1));
        let p = TcpPacket::new_checked(&f[34..]).unwrap();
        assert!(p.verify_checksum(s, d));
        let r = TcpRepr::parse(&p);
        assert_eq!((r.src_port, r.dst_port, r.seq), (42741, 179, 0x8afa_6c32));
        assert_eq!(r.flags, TcpFlags(TcpFlags::SYN));
        assert_eq!(r.window, 0x7210);
        assert_eq!(r.options.len(), 20);
        assert_eq!(&r.options.as_slice()[..4], &[2, 4, 5, 0xb4]);
        let mut o = [0u8; 40];
        r.emit(&mut o).unwrap();
        let mut w = TcpPacket::new_unchecked(&mut o[..]);
        w.fill_checksum(s, d);
        assert_eq!(o[..], f[34..]);
    }
}
