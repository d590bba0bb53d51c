//! [`Prefix`]: an IPv4 or IPv6 network, for rules and pins.

use core::fmt;
use core::net::IpAddr;
use core::str::FromStr;

use crate::ConfigError;

/// An address prefix such as `10.0.0.0/24` or `2001:db8::/32`. Host bits are cleared on creation.
///
/// ```
/// use altroute_flow::Prefix;
/// let p: Prefix = "10.0.9.0/29".parse().unwrap();
/// assert!(p.contains("10.0.9.7".parse().unwrap()));
/// assert!(!p.contains("10.0.9.8".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// A prefix; errors when `len` exceeds the family's width.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, ConfigError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(ConfigError::BadPrefix(format!(
                "{addr}/{len}: length above {max}"
            )));
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(len)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(len)).into()),
        };
        Ok(Prefix { addr, len })
    }

    /// A prefix holding exactly one address.
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix {
            addr,
            len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` lies inside.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask32(self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask128(self.len) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl FromStr for Prefix {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Prefix, ConfigError> {
        let bad = || ConfigError::BadPrefix(s.to_string());
        match s.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
                let len: u8 = l.trim().parse().map_err(|_| bad())?;
                Prefix::new(addr, len)
            }
            None => Ok(Prefix::host(s.trim().parse().map_err(|_| bad())?)),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contains_display() {
        let p: Prefix = "10.1.2.3/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.contains("10.1.255.1".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let h: Prefix = "192.0.2.7".parse().unwrap();
        assert_eq!(h.prefix_len(), 32);
        let v6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("nonsense".parse::<Prefix>().is_err());
    }
}
