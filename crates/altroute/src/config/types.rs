//! Small value types used by the configuration: [`Cidr`], [`Mac`], [`PortRange`], [`SocketV4`].
//!
//! Each parses from the text a human writes in YAML and says what is wrong when it cannot.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a value in the configuration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A CIDR was malformed.
    #[error("invalid CIDR {text:?}: {why} (expected e.g. 192.0.2.1/24 or 2001:db8::1/64)")]
    Cidr {
        /// What was written.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A MAC address was malformed.
    #[error("invalid MAC address {text:?}: expected six hex octets like 02:00:5e:10:00:01")]
    Mac {
        /// What was written.
        text: String,
    },
    /// A port or port range was malformed.
    #[error("invalid port or port range {text:?}: {why} (expected e.g. 443 or \"8000-8100\")")]
    PortRange {
        /// What was written.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An `IP:PORT` pair was malformed.
    #[error("invalid IPv4 socket address {text:?}: expected \"IP:PORT\" like 10.0.0.5:8080")]
    Socket {
        /// What was written.
        text: String,
    },
}

/// An IP address with a prefix length, e.g. `192.0.2.1/24`.
///
/// The address keeps its host bits (a port's own address is written this way); use
/// [`Cidr::network`] for the masked network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Builds a CIDR; `None` if the prefix is longer than the address family allows.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// The prefix of one host (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// Builds an IPv4 CIDR; `None` if `prefix > 32`.
    pub fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Option<Self> {
        Self::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix)
    }

    /// The address as written (host bits kept).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The address if it is IPv4.
    pub fn addr_v4(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// True for an IPv4 CIDR.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(self.prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(self.prefix))),
        }
    }

    /// True when the host bits are all zero (the CIDR names a network, not a host in it).
    pub fn is_network(&self) -> bool {
        self.network() == self.addr
    }

    /// True if `ip` is inside this prefix (false across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask32(self.prefix);
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask128(self.prefix);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }

    /// True if the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ValueError::Cidr {
            text: s.to_string(),
            why,
        };
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| err("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => return Err(err("missing /prefix length")),
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                err(if addr.is_ipv4() {
                    "prefix length must be 0..=32"
                } else {
                    "prefix length must be 0..=128"
                })
            })?,
        };
        Ok(Self { addr, prefix })
    }
}

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// True for a group (multicast/broadcast) address: never valid as a port or next-hop MAC.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for 00:00:00:00:00:00.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ValueError::Mac {
            text: s.to_string(),
        };
        let t = s.trim();
        let sep = if t.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0usize;
        for part in t.split(sep) {
            let slot = out.get_mut(n).ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

/// An inclusive TCP/UDP port range; a single port is `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// True if `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for PortRange {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| ValueError::PortRange {
            text: s.to_string(),
            why,
        };
        let t = s.trim();
        let one = |p: &str| -> Result<u16, ValueError> {
            let v: u16 = p
                .trim()
                .parse()
                .map_err(|_| err("ports are numbers 1..=65535"))?;
            if v == 0 {
                return Err(err("port 0 is not a valid port"));
            }
            Ok(v)
        };
        let (lo, hi) = match t.split_once('-') {
            Some((a, b)) => (one(a)?, one(b)?),
            None => {
                let p = one(t)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(err("the first port is larger than the last"));
        }
        Ok(Self { lo, hi })
    }
}

/// An IPv4 `IP:PORT` (a port-forward target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketV4(pub SocketAddrV4);

impl fmt::Display for SocketV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SocketV4 {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let a: SocketAddrV4 = s.trim().parse().map_err(|_| ValueError::Socket {
            text: s.to_string(),
        })?;
        if a.port() == 0 {
            return Err(ValueError::Socket {
                text: s.to_string(),
            });
        }
        Ok(Self(a))
    }
}

/// Serde glue: deserialize any `FromStr` type from a YAML string, serialize through `Display`.
macro_rules! serde_via_str {
    ($t:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$t, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$t, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

serde_via_str!(Cidr, "a CIDR such as 192.0.2.1/24");
serde_via_str!(Mac, "a MAC address such as 02:00:5e:10:00:01");
serde_via_str!(PortRange, "a port (443) or a port range (\"8000-8100\")");
serde_via_str!(SocketV4, "an IPv4 \"IP:PORT\" such as 10.0.0.5:8080");

/// An IPv4 address whose parse error names the text and the expected form (serde's own
/// `Ipv4Addr` says only "invalid IPv4 address syntax"). Used through [`ipv4`], [`opt_ipv4`] and
/// [`vec_ipv4`] with `#[serde(deserialize_with = ...)]`.
struct V4(Ipv4Addr);

impl<'de> Deserialize<'de> for V4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = V4;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IPv4 address such as 192.0.2.1")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<V4, E> {
                v.trim().parse().map(V4).map_err(|_| {
                    E::custom(format!(
                        "invalid IPv4 address {v:?}: expected four numbers 0..=255 like 192.0.2.1"
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// `deserialize_with` for an `Ipv4Addr` field.
pub fn ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    V4::deserialize(d).map(|v| v.0)
}

/// `deserialize_with` for an `Option<Ipv4Addr>` field (use with `#[serde(default)]`).
pub fn opt_ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    Option::<V4>::deserialize(d).map(|o| o.map(|v| v.0))
}

/// `deserialize_with` for a `Vec<Ipv4Addr>` field (use with `#[serde(default)]`).
pub fn vec_ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Addr>, D::Error> {
    Vec::<V4>::deserialize(d).map(|v| v.into_iter().map(|a| a.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_contains() {
        let c: Cidr = "192.0.2.1/24".parse().unwrap();
        assert_eq!(c.prefix(), 24);
        assert_eq!(c.addr().to_string(), "192.0.2.1");
        assert_eq!(c.network().to_string(), "192.0.2.0");
        assert!(!c.is_network());
        assert!(c.contains("192.0.2.200".parse().unwrap()));
        assert!(!c.contains("192.0.3.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let z: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::1/64".parse().unwrap();
        assert!(v6.contains("2001:db8::ffff".parse().unwrap()));
        assert_eq!(c.to_string(), "192.0.2.1/24");
        assert!(c.overlaps(&"192.0.0.0/16".parse().unwrap()));
    }

    #[test]
    fn cidr_errors_say_why() {
        let e = "192.0.2.1".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("missing /prefix"), "{e}");
        let e = "192.0.2.1/33".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("0..=32"), "{e}");
        let e = "300.0.2.1/24".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("not an IP address"), "{e}");
    }

    #[test]
    fn mac_parses() {
        let m: Mac = "02:A7:00:00:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:a7:00:00:00:01");
        assert_eq!("02-a7-00-00-00-01".parse::<Mac>().unwrap(), m);
        assert!("02:a7:00:00:00".parse::<Mac>().is_err());
        assert!("02:a7:00:00:00:01:02".parse::<Mac>().is_err());
        assert!("02:a7:00:00:00:zz".parse::<Mac>().is_err());
        assert!("ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap().is_multicast());
    }

    #[test]
    fn port_range_parses() {
        assert_eq!(
            "8000-8100".parse::<PortRange>().unwrap(),
            PortRange { lo: 8000, hi: 8100 }
        );
        assert_eq!(
            "443".parse::<PortRange>().unwrap(),
            PortRange { lo: 443, hi: 443 }
        );
        assert!("9-8".parse::<PortRange>().is_err());
        assert!("0".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn socket_parses() {
        assert_eq!(
            "10.0.0.5:8080".parse::<SocketV4>().unwrap().to_string(),
            "10.0.0.5:8080"
        );
        assert!("10.0.0.5".parse::<SocketV4>().is_err());
        assert!("10.0.0.5:0".parse::<SocketV4>().is_err());
    }
}
