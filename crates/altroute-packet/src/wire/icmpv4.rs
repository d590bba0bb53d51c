//! ICMPv4 messages (RFC 792, RFC 1191): echo request/reply, destination unreachable (including
//! fragmentation-needed with the next-hop MTU and administratively prohibited), time exceeded,
//! parameter problem. Other types are carried verbatim.

use super::{Error, Layer, need, rd, rd8, rd16, wr, wr8, wr16};
use crate::checksum;

/// ICMPv4 type numbers.
pub mod types {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, RFC 6633).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;

    /// True for the error messages that quote an offending datagram (RFC 1812 §4.3.2.3 list,
    /// RFC 5508 §3.2: unreachable, source quench, redirect, time exceeded, parameter problem).
    #[inline]
    pub const fn is_error(t: u8) -> bool {
        matches!(
            t,
            DEST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
}

/// Length of the fixed ICMPv4 header (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;
/// Byte offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 2;
/// Byte offset of the query identifier (echo, timestamp).
pub const IDENT_OFFSET: usize = 4;

/// Destination-unreachable codes (RFC 792, RFC 1122, RFC 1812).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnreachableCode {
    /// 0: net unreachable.
    Net,
    /// 1: host unreachable.
    Host,
    /// 2: protocol unreachable.
    Protocol,
    /// 3: port unreachable.
    Port,
    /// 4: fragmentation needed and DF set (carries the next-hop MTU, RFC 1191).
    FragNeeded,
    /// 5: source route failed.
    SourceRoute,
    /// 13: communication administratively prohibited (RFC 1812).
    AdminProhibited,
    /// Any other code, verbatim.
    Other(u8),
}

impl From<u8> for UnreachableCode {
    fn from(c: u8) -> Self {
        match c {
            0 => Self::Net,
            1 => Self::Host,
            2 => Self::Protocol,
            3 => Self::Port,
            4 => Self::FragNeeded,
            5 => Self::SourceRoute,
            13 => Self::AdminProhibited,
            o => Self::Other(o),
        }
    }
}

impl From<UnreachableCode> for u8 {
    fn from(c: UnreachableCode) -> u8 {
        match c {
            UnreachableCode::Net => 0,
            UnreachableCode::Host => 1,
            UnreachableCode::Protocol => 2,
            UnreachableCode::Port => 3,
            UnreachableCode::FragNeeded => 4,
            UnreachableCode::SourceRoute => 5,
            UnreachableCode::AdminProhibited => 13,
            UnreachableCode::Other(o) => o,
        }
    }
}

/// A view of an ICMPv4 message (the buffer should end where the IP payload ends: the checksum
/// covers all of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checks (accessors read zeros past its end).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps untrusted bytes: the 8-byte header must be present.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        need(Layer::Icmpv4, buffer.as_ref(), HEADER_LEN)?;
        Ok(Icmpv4Packet { buffer })
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        rd8(self.buffer.as_ref(), 0)
    }
    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        rd8(self.buffer.as_ref(), 1)
    }
    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), CHECKSUM_OFFSET)
    }
    /// Bytes 4..8 (type-specific "rest of header").
    #[inline]
    pub fn rest(&self) -> [u8; 4] {
        rd(self.buffer.as_ref(), 4)
    }
    /// Query identifier (echo, timestamp): bytes 4..6.
    #[inline]
    pub fn ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), IDENT_OFFSET)
    }
    /// Query sequence number: bytes 6..8.
    #[inline]
    pub fn seq(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }
    /// Next-hop MTU of a fragmentation-needed message (RFC 1191): bytes 6..8.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }
    /// The data after the 8-byte header (for errors: the quoted datagram).
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
    /// True when the checksum over the whole buffer verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the query identifier (checksum untouched).
    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        wr16(self.buffer.as_mut(), IDENT_OFFSET, id);
    }
    /// Stores a checksum value.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        wr16(self.buffer.as_mut(), CHECKSUM_OFFSET, c);
    }
    /// Recomputes the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
    /// The data after the header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// The 8-byte header of an ICMPv4 message, decoded. The data that follows (echo payload, quoted
/// datagram) is not part of the repr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr {
    /// Type 8.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Type 0.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
    },
    /// Type 3.
    DstUnreachable {
        /// Code.
        code: UnreachableCode,
        /// Next-hop MTU (meaningful for [`UnreachableCode::FragNeeded`]; 0 otherwise).
        next_hop_mtu: u16,
    },
    /// Type 11 (code 0: TTL exceeded in transit; 1: reassembly time exceeded).
    TimeExceeded {
        /// Code.
        code: u8,
    },
    /// Type 12.
    ParamProblem {
        /// Code.
        code: u8,
        /// Octet where the problem was found (code 0).
        pointer: u8,
    },
    /// Any other type, verbatim.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Bytes 4..8.
        rest: [u8; 4],
    },
}

impl Icmpv4Repr {
    /// Decodes a checked message (the checksum is not verified here).
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>) -> Self {
        let code = p.code();
        match p.msg_type() {
            types::ECHO_REQUEST if code == 0 => Self::EchoRequest {
                ident: p.ident(),
                seq: p.seq(),
            },
            types::ECHO_REPLY if code == 0 => Self::EchoReply {
                ident: p.ident(),
                seq: p.seq(),
            },
            types::DEST_UNREACHABLE if rd16(&p.rest(), 0) == 0 => {
                let code = UnreachableCode::from(code);
                let mtu = p.next_hop_mtu();
                if code == UnreachableCode::FragNeeded || mtu == 0 {
                    Self::DstUnreachable {
                        code,
                        next_hop_mtu: mtu,
                    }
                } else {
                    Self::Other {
                        msg_type: types::DEST_UNREACHABLE,
                        code: code.into(),
                        rest: p.rest(),
                    }
                }
            }
            types::TIME_EXCEEDED if p.rest() == [0; 4] => Self::TimeExceeded { code },
            types::PARAM_PROBLEM if p.rest()[1..] == [0; 3] => Self::ParamProblem {
                code,
                pointer: p.rest()[0],
            },
            t => Self::Other {
                msg_type: t,
                code,
                rest: p.rest(),
            },
        }
    }

    /// The (type, code, rest-of-header) this repr emits.
    fn fields(&self) -> (u8, u8, [u8; 4]) {
        let two = |a: u16, b: u16| {
            let mut r = [0u8; 4];
            wr16(&mut r, 0, a);
            wr16(&mut r, 2, b);
            r
        };
        match *self {
            Self::EchoRequest { ident, seq } => (types::ECHO_REQUEST, 0, two(ident, seq)),
            Self::EchoReply { ident, seq } => (types::ECHO_REPLY, 0, two(ident, seq)),
            Self::DstUnreachable { code, next_hop_mtu } => {
                (types::DEST_UNREACHABLE, code.into(), two(0, next_hop_mtu))
            }
            Self::TimeExceeded { code } => (types::TIME_EXCEEDED, code, [0; 4]),
            Self::ParamProblem { code, pointer } => {
                (types::PARAM_PROBLEM, code, [pointer, 0, 0, 0])
            }
            Self::Other {
                msg_type,
                code,
                rest,
            } => (msg_type, code, rest),
        }
    }

    /// True for error messages (they quote an offending datagram).
    #[inline]
    pub fn is_error(&self) -> bool {
        types::is_error(self.fields().0)
    }

    /// Writes the 8-byte header with a zero checksum; returns 8. Write the data after it, then
    /// [`Icmpv4Packet::fill_checksum`] over the whole message.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        need(Layer::Icmpv4, buf, HEADER_LEN)?;
        let (t, c, rest) = self.fields();
        wr8(buf, 0, t);
        wr8(buf, 1, c);
        wr16(buf, CHECKSUM_OFFSET, 0);
        wr(buf, 4, &rest);
        Ok(HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hand-made echo request: id 0x1c46, seq 1, 8 bytes of data (checksum filled in the test).
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x00, 0x00, 0x1c, 0x46, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
        0x68,
    ];

    fn with_csum<const N: usize>(mut b: [u8; N]) -> [u8; N] {
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn echo() {
        let b = with_csum(ECHO);
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Icmpv4Repr::parse(&p);
        assert_eq!(
            r,
            Icmpv4Repr::EchoRequest {
                ident: 0x1c46,
                seq: 1
            }
        );
        assert!(!r.is_error());
        let mut o = [0u8; 16];
        r.emit(&mut o).unwrap();
        o[8..].copy_from_slice(p.data());
        let o = with_csum(o);
        assert_eq!(o, b);
    }

    #[test]
    fn round_trips() {
        let all = [
            Icmpv4Repr::EchoReply { ident: 7, seq: 9 },
            Icmpv4Repr::DstUnreachable {
                code: UnreachableCode::FragNeeded,
                next_hop_mtu: 1480,
            },
            Icmpv4Repr::DstUnreachable {
                code: UnreachableCode::AdminProhibited,
                next_hop_mtu: 0,
            },
            Icmpv4Repr::DstUnreachable {
                code: UnreachableCode::Port,
                next_hop_mtu: 0,
            },
            Icmpv4Repr::TimeExceeded { code: 0 },
            Icmpv4Repr::ParamProblem {
                code: 0,
                pointer: 20,
            },
            Icmpv4Repr::Other {
                msg_type: types::TIMESTAMP,
                code: 0,
                rest: [1, 2, 3, 4],
            },
        ];
        for r in all {
            let mut b = [0u8; 8];
            r.emit(&mut b).unwrap();
            let b = with_csum(b);
            let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
            assert!(p.verify_checksum());
            assert_eq!(Icmpv4Repr::parse(&p), r, "{r:?}");
        }
    }

    #[test]
    fn rejects_short() {
        assert!(matches!(
            Icmpv4Packet::new_checked(&ECHO[..7]),
            Err(Error::Len(l)) if l.layer == Layer::Icmpv4 && l.needed == 8 && l.got == 7
        ));
    }

    #[test]
    fn parse_real_captures() {
        use crate::wire::captured::{ECHO, UNREACH};
        let p = Icmpv4Packet::new_checked(&ECHO[34..62]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(
            Icmpv4Repr::parse(&p),
            Icmpv4Repr::EchoRequest {
                ident: 0x4024,
                seq: 0
            }
        );
        let p = Icmpv4Packet::new_checked(&UNREACH[34..]).unwrap();
        assert!(p.verify_checksum());
        let r = Icmpv4Repr::parse(&p);
        assert_eq!(
            r,
            Icmpv4Repr::DstUnreachable {
                code: UnreachableCode::Port,
                next_hop_mtu: 0
            }
        );
        assert!(r.is_error());
        assert_eq!(p.data().len(), 64);
        let mut o = [0u8; 72];
        r.emit(&mut o).unwrap();
        o[8..].copy_from_slice(p.data());
        let o = with_csum(o);
        assert_eq!(o[..], UNREACH[34..]);
    }
}
