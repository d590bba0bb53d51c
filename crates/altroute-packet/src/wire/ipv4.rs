//! IPv4 headers (RFC 791), options allowed (kept verbatim, located by IHL).

use core::net::Ipv4Addr;

use super::{Error, Layer, need, rd, rd8, rd16, wr, wr8, wr16};
use crate::checksum;

/// Verbatim IPv4 options (at most 40 bytes).
pub type Ipv4Options = super::Options;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// IPv4 option types that route the packet by the sender's list: loose and strict source route
/// (RFC 791 §3.1; RFC 1812 §5.2.4.1 lets a router refuse them, RFC 7126 §4.3 says to).
pub const OPT_LSRR: u8 = 0x83;
/// Strict source and record route.
pub const OPT_SSRR: u8 = 0x89;

/// True when the option bytes of an IPv4 header carry a loose or strict source route. Walks the
/// TLVs (End of list: 0, No operation: 1, else type, length, data) and stops at the end of the
/// list, the end of the bytes or a length that does not fit; a malformed list counts as no source
/// route (the packet is dropped for it elsewhere if at all).
pub fn source_routed(options: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&t) = options.get(i) {
        match t {
            0 => return false,
            1 => i += 1,
            OPT_LSRR | OPT_SSRR => return true,
            _ => match options.get(i + 1) {
                Some(&len) if len >= 2 => i += usize::from(len),
                _ => return false,
            },
        }
    }
    false
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Byte offset of the header checksum.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;
/// Byte offset of the source address.
pub const SRC_OFFSET: usize = field::SRC;
/// Byte offset of the destination address.
pub const DST_OFFSET: usize = field::DST;
/// Byte offset of the TTL.
pub const TTL_OFFSET: usize = field::TTL;

/// A view of an IPv4 packet.
///
/// After [`new_checked`](Self::new_checked) the buffer holds at least `total_len` bytes; bytes
/// past `total_len` (Ethernet padding) are ignored by [`payload`](Self::payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checks (accessors read zeros past its end).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps untrusted bytes. Checks, in order: 20 bytes present, version 4, IHL ≥ 5, the whole
    /// header present, `total_len ≥` header length, `total_len ≤` buffer length. The header
    /// checksum is *not* checked here: see [`verify_checksum`](Self::verify_checksum).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        need(Layer::Ipv4, b, MIN_HEADER_LEN)?;
        let vi = rd8(b, field::VER_IHL);
        if vi >> 4 != 4 {
            return Err(Error::Field {
                layer: Layer::Ipv4,
                field: "version",
                offset: field::VER_IHL,
                value: u32::from(vi >> 4),
            });
        }
        let hl = usize::from(vi & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(Error::Field {
                layer: Layer::Ipv4,
                field: "ihl",
                offset: field::VER_IHL,
                value: u32::from(vi & 0x0f),
            });
        }
        need(Layer::Ipv4, b, hl)?;
        let total = usize::from(rd16(b, field::LEN));
        if total < hl {
            return Err(Error::Field {
                layer: Layer::Ipv4,
                field: "total_len",
                offset: field::LEN,
                value: total as u32,
            });
        }
        need(Layer::Ipv4, b, total)?;
        Ok(Ipv4Packet { buffer })
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }
    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }
    /// The DSCP/ECN byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::TOS)
    }
    /// Total length (header plus payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::LEN)
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::IDENT)
    }
    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x4000 != 0
    }
    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x2000 != 0
    }
    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff
    }
    /// True for an atomic datagram (RFC 6864): DF set, MF clear, fragment offset zero, and the
    /// reserved flag clear. Its identification field carries no meaning.
    #[inline]
    pub fn is_atomic(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) == 0x4000
    }
    /// True when this packet is a fragment (first or later).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & 0x3fff != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::TTL)
    }
    /// Payload protocol number.
    #[inline]
    pub fn proto(&self) -> u8 {
        rd8(self.buffer.as_ref(), field::PROTO)
    }
    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd::<4>(self.buffer.as_ref(), field::SRC))
    }
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd::<4>(self.buffer.as_ref(), field::DST))
    }
    /// The option bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(MIN_HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }
    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        self.buffer
            .as_ref()
            .get(..self.header_len())
            .is_some_and(checksum::verify)
    }
    /// The payload: bytes from the end of the header to `total_len` (empty if out of range).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the TTL (the checksum is not touched: use [`checksum::update16`] or
    /// [`fill_checksum`](Self::fill_checksum)).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        wr8(self.buffer.as_mut(), field::TTL, ttl);
    }
    /// Sets the source address (checksum untouched).
    #[inline]
    pub fn set_src(&mut self, a: Ipv4Addr) {
        wr(self.buffer.as_mut(), field::SRC, &a.octets());
    }
    /// Sets the destination address (checksum untouched).
    #[inline]
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        wr(self.buffer.as_mut(), field::DST, &a.octets());
    }
    /// Sets the total length (checksum untouched).
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        wr16(self.buffer.as_mut(), field::LEN, len);
    }
    /// Stores a checksum value.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        wr16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = self.buffer.as_ref().get(..hl).map_or(0, checksum::checksum);
        self.set_checksum(c);
    }
    /// The payload, mutable (bytes from the end of the header to `total_len`).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        self.buffer.as_mut().get_mut(hl..tl).unwrap_or(&mut [])
    }
}

/// An IPv4 header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Payload protocol number.
    pub proto: u8,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// More-fragments flag.
    pub more_frags: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub frag_offset: u16,
    /// Payload length (`total_len` minus the header).
    pub payload_len: u16,
    /// Options, verbatim.
    pub options: Ipv4Options,
}

impl Ipv4Repr {
    /// A plain header: no options, not fragmented, DF set, TOS 0, ident 0.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload_len: u16) -> Self {
        Ipv4Repr {
            src,
            dst,
            proto,
            ttl,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            payload_len,
            options: Ipv4Options::EMPTY,
        }
    }

    /// Decodes a checked packet (the checksum is not verified here).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Self {
        Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            proto: p.proto(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            payload_len: p.total_len().saturating_sub(p.header_len() as u16),
            options: Ipv4Options::from_slice(p.options()).unwrap_or_default(),
        }
    }

    /// Header length this repr emits.
    #[inline]
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len()
    }

    /// Writes the header (with its checksum) at the start of `buf`; returns its length. The
    /// payload is not written. Fails when `buf` is shorter than the header or the total length
    /// exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let hl = self.header_len();
        need(Layer::Ipv4, buf, hl)?;
        let total = hl + usize::from(self.payload_len);
        let total = u16::try_from(total).map_err(|_| Error::Field {
            layer: Layer::Ipv4,
            field: "total_len",
            offset: field::LEN,
            value: total as u32,
        })?;
        wr8(buf, field::VER_IHL, 0x40 | (hl / 4) as u8);
        wr8(buf, field::TOS, self.tos);
        wr16(buf, field::LEN, total);
        wr16(buf, field::IDENT, self.ident);
        let flags = (u16::from(self.dont_frag) << 14)
            | (u16::from(self.more_frags) << 13)
            | (self.frag_offset & 0x1fff);
        wr16(buf, field::FLG_OFF, flags);
        wr8(buf, field::TTL, self.ttl);
        wr8(buf, field::PROTO, self.proto);
        wr16(buf, field::CHECKSUM, 0);
        wr(buf, field::SRC, &self.src.octets());
        wr(buf, field::DST, &self.dst.octets());
        wr(buf, MIN_HEADER_LEN, self.options.as_slice());
        let c = buf.get(..hl).map_or(0, checksum::checksum);
        wr16(buf, field::CHECKSUM, c);
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_routes_are_found_in_any_position() {
        assert!(!source_routed(&[]));
        assert!(!source_routed(&[1, 1, 1, 0]));
        assert!(source_routed(&[OPT_LSRR, 7, 4, 192, 0, 2, 1, 0]));
        assert!(source_routed(&[1, OPT_SSRR, 7, 4, 192, 0, 2, 1]));
        // Record route (7), then LSRR.
        assert!(source_routed(&[7, 7, 4, 0, 0, 0, 0, OPT_LSRR, 3, 4, 0, 0]));
        // After End of list: nothing more is read.
        assert!(!source_routed(&[0, OPT_LSRR, 3, 4]));
        // A length that cannot be right stops the walk.
        assert!(!source_routed(&[7, 1, OPT_LSRR, 3]));
        assert!(!source_routed(&[7]));
        // Router alert (0x94) alone is fine.
        assert!(!source_routed(&[0x94, 4, 0, 0]));
    }

    use super::*;

    // The widely cited example header: 192.168.0.1 -> 192.168.0.199 UDP, total 0x73, checksum b861 (header only here,
    // so total_len is reduced to 20 for parsing the view).
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn parse_known_header() {
        let mut b = [0u8; 0x73];
        b[..20].copy_from_slice(&HDR);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p);
        assert_eq!(r.src, Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(r.dst, Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(r.proto, 17);
        assert_eq!(r.ttl, 64);
        assert!(r.dont_frag && !r.more_frags && r.frag_offset == 0);
        assert_eq!(r.payload_len, 0x73 - 20);
        let mut o = [0u8; 20];
        r.emit(&mut o).unwrap();
        assert_eq!(o, HDR);
    }

    #[test]
    fn round_trip_with_options() {
        let mut r = Ipv4Repr::new(
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(203, 0, 113, 10),
            6,
            64,
            4,
        );
        // Router alert option (RFC 2113).
        r.options = Ipv4Options::from_slice(&[0x94, 0x04, 0, 0]).unwrap();
        r.more_frags = true;
        r.frag_offset = 185;
        r.ident = 0xbeef;
        r.tos = 0xb8;
        let mut b = [0u8; 28];
        assert_eq!(r.emit(&mut b).unwrap(), 24);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(p.is_fragment());
        assert_eq!(p.options(), &[0x94, 4, 0, 0]);
        assert_eq!(Ipv4Repr::parse(&p), r);
    }

    #[test]
    fn rejects() {
        let mut b = [0u8; 40];
        b[..20].copy_from_slice(&HDR);
        b[2..4].copy_from_slice(&40u16.to_be_bytes());
        let e = |b: &[u8]| Ipv4Packet::new_checked(b).err();
        assert!(matches!(e(&b[..19]), Some(Error::Len(l)) if l.needed == 20 && l.got == 19));
        assert!(matches!(e(&b[..39]), Some(Error::Len(l)) if l.needed == 40 && l.got == 39));
        let mut v = b;
        v[0] = 0x65;
        assert!(matches!(
            e(&v),
            Some(Error::Field {
                field: "version",
                value: 6,
                ..
            })
        ));
        let mut v = b;
        v[0] = 0x44;
        assert!(matches!(
            e(&v),
            Some(Error::Field {
                field: "ihl",
                value: 4,
                ..
            })
        ));
        let mut v = b;
        v[0] = 0x4f;
        assert!(matches!(e(&v), Some(Error::Len(l)) if l.needed == 60));
        let mut v = b;
        v[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(
            e(&v),
            Some(Error::Field {
                field: "total_len",
                offset: 2,
                ..
            })
        ));
        let r = Ipv4Repr::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6, 1, u16::MAX);
        assert!(r.emit(&mut [0u8; 20]).is_err());
    }

    #[test]
    fn setters_and_fill() {
        let mut b = HDR;
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_src(Ipv4Addr::new(198, 51, 100, 1));
        p.set_dst(Ipv4Addr::new(203, 0, 113, 7));
        p.set_ttl(3);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 3);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn parse_real_captures() {
        use crate::wire::captured::{IGMP_RA, SYN};
        // Options (router alert), Ethernet padding after total_len.
        let p = Ipv4Packet::new_checked(&IGMP_RA[14..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload().len(), 8);
        let r = Ipv4Repr::parse(&p);
        assert_eq!(
            (r.src, r.dst),
            (Ipv4Addr::new(10, 0, 200, 151), Ipv4Addr::new(224, 0, 0, 1))
        );
        assert_eq!((r.proto, r.ttl, r.ident), (2, 1, 2));
        let mut o = [0u8; 24];
        r.emit(&mut o).unwrap();
        assert_eq!(o[..], IGMP_RA[14..38]);
        // No options, DF, TOS 0xc0.
        let p = Ipv4Packet::new_checked(&SYN[14..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p);
        assert!(r.dont_frag && r.tos == 0xc0 && r.payload_len == 40);
        let mut o = [0u8; 20];
        r.emit(&mut o).unwrap();
        assert_eq!(o[..], SYN[14..34]);
    }
}
