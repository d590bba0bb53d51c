//! Zero-copy views and owned representations of the headers altroute handles, in the style of
//! smoltcp's `wire` module.
//!
//! Each protocol has:
//!
//! * a view `XxxPacket<T: AsRef<[u8]>>` over a buffer that starts at that header, with getters,
//!   and setters when `T: AsMut<[u8]>`;
//! * an owned, `Copy` `XxxRepr` holding the decoded header, with `parse` (from a checked view)
//!   and `emit` (into a byte buffer).
//!
//! [`new_checked`](ipv4::Ipv4Packet::new_checked) is the only door for untrusted bytes: it
//! validates every length and every field the accessors depend on and returns an [`Error`] naming
//! the layer and the offset or length that was wrong. A view built with `new_unchecked` never
//! panics either: accessors read `0` and setters do nothing past the end of a short buffer.
//!
//! Offsets in errors are relative to the start of the buffer handed to `new_checked`; callers
//! parsing a whole frame shift them with [`LenError::at`] / [`Error::at`].

use core::fmt;

pub mod arp;
#[cfg(test)]
pub(crate) mod captured;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOp, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, VlanTci};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr, UnreachableCode};
pub use ipv4::{Ipv4Options, Ipv4Packet, Ipv4Repr};
pub use tcp::{TcpFlags, TcpOptions, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// The protocol layer an [`Error`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II header (destination, source, EtherType).
    Ethernet,
    /// An IEEE 802.1Q tag inside an Ethernet header.
    Vlan,
    /// ARP for Ethernet/IPv4.
    Arp,
    /// IPv4 header or packet.
    Ipv4,
    /// TCP header or segment.
    Tcp,
    /// UDP header or datagram.
    Udp,
    /// ICMPv4 message.
    Icmpv4,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Arp => "arp",
            Layer::Ipv4 => "ipv4",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmpv4 => "icmpv4",
        })
    }
}

/// A buffer too short for what its headers claim (etherparse-style).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{layer}: needs {needed} bytes from offset {offset}, got {got}")]
pub struct LenError {
    /// The layer that did not fit.
    pub layer: Layer,
    /// Bytes the layer needs, counted from its start.
    pub needed: usize,
    /// Bytes available from the layer's start.
    pub got: usize,
    /// Where the layer starts, relative to the buffer the caller parsed.
    pub offset: usize,
}

impl LenError {
    /// The same error with `base` added to its offset (for a layer found at `base` in a frame).
    #[inline]
    #[must_use]
    pub fn at(self, base: usize) -> Self {
        LenError {
            offset: self.offset.saturating_add(base),
            ..self
        }
    }
}

/// Why a header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or the length the header claims).
    #[error(transparent)]
    Len(#[from] LenError),
    /// A field holds a value this implementation does not accept.
    #[error("{layer}: bad {field} at offset {offset}: {value:#x}")]
    Field {
        /// The layer.
        layer: Layer,
        /// The field's name (`"version"`, `"ihl"`, `"total_len"`, ...).
        field: &'static str,
        /// Byte offset of the field, relative to the buffer the caller parsed.
        offset: usize,
        /// The value found.
        value: u32,
    },
    /// A well-formed header this implementation deliberately does not handle (802.1ad/QinQ,
    /// ARP for other hardware or protocols, ...).
    #[error("{layer}: unsupported {what} at offset {offset}")]
    Unsupported {
        /// The layer.
        layer: Layer,
        /// What was found.
        what: &'static str,
        /// Byte offset of the field that showed it.
        offset: usize,
    },
}

impl Error {
    /// The same error with `base` added to its offset.
    #[inline]
    #[must_use]
    pub fn at(self, base: usize) -> Self {
        match self {
            Error::Len(e) => Error::Len(e.at(base)),
            Error::Field {
                layer,
                field,
                offset,
                value,
            } => Error::Field {
                layer,
                field,
                offset: offset.saturating_add(base),
                value,
            },
            Error::Unsupported {
                layer,
                what,
                offset,
            } => Error::Unsupported {
                layer,
                what,
                offset: offset.saturating_add(base),
            },
        }
    }

    /// The layer the error is about.
    pub fn layer(&self) -> Layer {
        match self {
            Error::Len(e) => e.layer,
            Error::Field { layer, .. } | Error::Unsupported { layer, .. } => *layer,
        }
    }
}

/// `Ok(())` when `buf` holds `needed` bytes, else a [`LenError`] at offset 0.
#[inline]
pub(crate) fn need(layer: Layer, buf: &[u8], needed: usize) -> Result<(), LenError> {
    if buf.len() >= needed {
        Ok(())
    } else {
        Err(LenError {
            layer,
            needed,
            got: buf.len(),
            offset: 0,
        })
    }
}

/// Reads `N` bytes at `at`, or zeros when out of range (never panics).
#[inline(always)]
pub(crate) fn rd<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    match b.get(at..).and_then(|s| s.get(..N)) {
        Some(s) => {
            let mut o = [0u8; N];
            o.copy_from_slice(s);
            o
        }
        None => [0u8; N],
    }
}

/// Reads a big-endian `u16` at `at`, or 0 when out of range.
#[inline(always)]
pub(crate) fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(rd(b, at))
}

/// Reads a big-endian `u32` at `at`, or 0 when out of range.
#[inline(always)]
pub(crate) fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(rd(b, at))
}

/// Reads one byte at `at`, or 0 when out of range.
#[inline(always)]
pub(crate) fn rd8(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

/// Writes `v` at `at`; does nothing when out of range.
#[inline(always)]
pub(crate) fn wr(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = b.get_mut(at..).and_then(|s| s.get_mut(..v.len())) {
        s.copy_from_slice(v);
    }
}

/// Writes a big-endian `u16` at `at`; does nothing when out of range.
#[inline(always)]
pub(crate) fn wr16(b: &mut [u8], at: usize, v: u16) {
    wr(b, at, &v.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`; does nothing when out of range.
#[inline(always)]
pub(crate) fn wr32(b: &mut [u8], at: usize, v: u32) {
    wr(b, at, &v.to_be_bytes());
}

/// Writes one byte at `at`; does nothing when out of range.
#[inline(always)]
pub(crate) fn wr8(b: &mut [u8], at: usize, v: u8) {
    if let Some(x) = b.get_mut(at) {
        *x = v;
    }
}

/// Up to 40 bytes of IPv4 or TCP options, kept verbatim (the header's length field is the only
/// thing altroute interprets).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Options {
    buf: [u8; 40],
    len: u8,
}

impl Options {
    /// No options.
    pub const EMPTY: Options = Options {
        buf: [0; 40],
        len: 0,
    };

    /// Options from raw bytes; `None` when longer than 40 bytes or not a multiple of 4.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        if b.len() > 40 || !b.len().is_multiple_of(4) {
            return None;
        }
        let mut o = Options::EMPTY;
        o.buf.get_mut(..b.len())?.copy_from_slice(b);
        o.len = b.len() as u8;
        Some(o)
    }

    /// The option bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Length in bytes (a multiple of 4, at most 40).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when there are no options.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::EMPTY
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Options({:02x?})", self.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_never_panic() {
        let b = [1u8, 2, 3];
        assert_eq!(rd16(&b, 1), 0x0203);
        assert_eq!(rd16(&b, 2), 0);
        assert_eq!(rd32(&b, usize::MAX), 0);
        let mut m = [0u8; 3];
        wr16(&mut m, 2, 0xffff);
        wr32(&mut m, usize::MAX, 1);
        assert_eq!(m, [0, 0, 0]);
    }

    #[test]
    fn options_bounds() {
        assert!(Options::from_slice(&[0; 44]).is_none());
        assert!(Options::from_slice(&[0; 3]).is_none());
        assert_eq!(Options::from_slice(&[1; 8]).map(|o| o.len()), Some(8));
    }

    #[test]
    fn error_offsets_shift() {
        let e = Error::Len(LenError {
            layer: Layer::Tcp,
            needed: 20,
            got: 3,
            offset: 0,
        });
        assert_eq!(
            e.at(34).to_string(),
            "tcp: needs 20 bytes from offset 34, got 3"
        );
    }
}
