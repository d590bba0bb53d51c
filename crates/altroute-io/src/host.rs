//! Host inspection: what the kernel has configured on an interface (addresses, IPv6, forwarding
//! and ARP sysctls, MTU, MAC, link state, offloads). The one place the project reads host facts;
//! plain data out. Whether any of it is acceptable is the daemon's policy (its start-up check),
//! and changing it is the daemon's `setup` command.
//!
//! Everything is read in the network namespace of the calling thread (netlink via `getifaddrs`,
//! ioctls on a fresh socket, `/proc/sys/net`, which follow the thread's namespace).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::error::IoError;
use crate::sys::{self, EthtoolValue, IfReq};

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfAddr<A> {
    /// The address.
    pub addr: A,
    /// Prefix length from the netmask.
    pub prefix: u8,
}

/// Offload features as `ethtool -k` shows them (`None`: the driver does not answer the query).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// tx-checksumming.
    pub tx_csum: Option<bool>,
    /// rx-checksumming.
    pub rx_csum: Option<bool>,
    /// scatter-gather.
    pub sg: Option<bool>,
    /// tcp-segmentation-offload.
    pub tso: Option<bool>,
    /// generic-segmentation-offload.
    pub gso: Option<bool>,
    /// generic-receive-offload.
    pub gro: Option<bool>,
    /// large-receive-offload.
    pub lro: Option<bool>,
}

/// What the host has configured on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// MAC address (`None` for interfaces without a 6-byte hardware address).
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_RUNNING`: operationally up (carrier).
    pub running: bool,
    /// `IFF_PROMISC`.
    pub promiscuous: bool,
    /// IPv4 addresses.
    pub ipv4: Vec<IfAddr<Ipv4Addr>>,
    /// IPv6 addresses.
    pub ipv6: Vec<IfAddr<Ipv6Addr>>,
    /// `/proc/sys/net/ipv6/conf/<if>/disable_ipv6` (`None` if IPv6 is absent).
    pub ipv6_disabled: Option<bool>,
    /// `/proc/sys/net/ipv4/conf/<if>/forwarding`.
    pub ipv4_forwarding: Option<bool>,
    /// `net.ipv4.ip_forward` (global for the namespace).
    pub ip_forward: Option<bool>,
    /// `/proc/sys/net/ipv4/conf/<if>/arp_ignore`.
    pub arp_ignore: Option<u8>,
    /// Offload state.
    pub offloads: Offloads,
}

fn ctl_socket(iface: &str) -> Result<OwnedFd, IoError> {
    sys::socket(
        iface,
        libc::AF_INET,
        libc::SOCK_DGRAM,
        0,
        "socket(AF_INET, SOCK_DGRAM)",
    )
}

fn ioctl(
    fd: &OwnedFd,
    req: libc::c_ulong,
    ifr: &mut IfReq,
    iface: &str,
    op: &'static str,
) -> Result<(), IoError> {
    // SAFETY: `ifr` is a valid, writable 40-byte ifreq with a NUL-terminated name; the SIOCGIF*
    // requests used here write at most the union part.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, ifr as *mut IfReq) };
    if r < 0 {
        return Err(sys::last_err(iface, op));
    }
    Ok(())
}

fn ifreq(iface: &str) -> Result<IfReq, IoError> {
    IfReq::new(iface)
        .ok_or_else(|| IoError::config(iface, "interface name empty or longer than 15 bytes"))
}

/// The interface MTU (`SIOCGIFMTU`).
pub fn mtu(iface: &str) -> Result<u32, IoError> {
    let fd = ctl_socket(iface)?;
    let mut r = ifreq(iface)?;
    ioctl(&fd, libc::SIOCGIFMTU, &mut r, iface, "ioctl(SIOCGIFMTU)")?;
    Ok(i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]).max(0) as u32)
}

/// `ETHTOOL_GFLAGS`: the legacy feature flags word (the kernel derives it from the device's
/// features for every driver).
const ETHTOOL_GFLAGS: u32 = 0x25;
/// `ETH_FLAG_LRO` in that word.
const ETH_FLAG_LRO: u32 = 1 << 15;

/// The `/proc/sys` file of a per-interface key, e.g. `sysctl_path("ipv6", "wan1",
/// "disable_ipv6")`. Interface names with dots stay as they are (only `sysctl -w` notation turns
/// them into slashes).
pub fn sysctl_path(family: &str, iface: &str, key: &str) -> String {
    format!("/proc/sys/net/{family}/conf/{iface}/{key}")
}

fn read_u8(path: &str) -> Option<u8> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_bool(path: &str) -> Option<bool> {
    let s = std::fs::read_to_string(path).ok()?;
    match s.trim() {
        "0" => Some(false),
        "" => None,
        _ => Some(true),
    }
}

fn ethtool(fd: &OwnedFd, iface: &str, cmd: u32) -> Option<bool> {
    ethtool_value(fd, iface, cmd).map(|v| v != 0)
}

fn ethtool_value(fd: &OwnedFd, iface: &str, cmd: u32) -> Option<u32> {
    let mut v = EthtoolValue { cmd, data: 0 };
    let mut r = IfReq::new(iface)?;
    let p = (&mut v as *mut EthtoolValue) as usize;
    r.data[..size_of::<usize>()].copy_from_slice(&p.to_ne_bytes());
    // SAFETY: SIOCETHTOOL reads `ifr_data` (the pointer to `v`, valid and writable for the call)
    // and the driver writes one `ethtool_value` there.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut r as *mut IfReq) };
    (rc == 0).then_some(v.data)
}

fn prefix_len(mask: &[u8]) -> u8 {
    mask.iter().map(|b| b.count_ones() as u8).sum()
}

/// Reads everything [`InterfaceInfo`] holds for `iface`.
pub fn inspect(iface: &str) -> Result<InterfaceInfo, IoError> {
    let ifindex = sys::ifindex(iface)?;
    let fd = ctl_socket(iface)?;
    let mut r = ifreq(iface)?;
    ioctl(
        &fd,
        libc::SIOCGIFFLAGS,
        &mut r,
        iface,
        "ioctl(SIOCGIFFLAGS)",
    )?;
    let flags = i32::from(i16::from_ne_bytes([r.data[0], r.data[1]]));
    let mut r = ifreq(iface)?;
    ioctl(&fd, libc::SIOCGIFMTU, &mut r, iface, "ioctl(SIOCGIFMTU)")?;
    let mtu = i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]).max(0) as u32;
    let mut r = ifreq(iface)?;
    ioctl(
        &fd,
        libc::SIOCGIFHWADDR,
        &mut r,
        iface,
        "ioctl(SIOCGIFHWADDR)",
    )?;
    // ifr_hwaddr is a sockaddr: family (u16), then the address bytes.
    let family = u16::from_ne_bytes([r.data[0], r.data[1]]);
    let mac = (family == libc::ARPHRD_ETHER).then(|| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&r.data[2..8]);
        m
    });

    let (ipv4, ipv6) = addresses(iface)?;
    let offloads = Offloads {
        tx_csum: ethtool(&fd, iface, sys::ETHTOOL_GTXCSUM),
        rx_csum: ethtool(&fd, iface, sys::ETHTOOL_GRXCSUM),
        sg: ethtool(&fd, iface, sys::ETHTOOL_GSG),
        tso: ethtool(&fd, iface, sys::ETHTOOL_GTSO),
        gso: ethtool(&fd, iface, sys::ETHTOOL_GGSO),
        gro: ethtool(&fd, iface, sys::ETHTOOL_GGRO),
        lro: ethtool_value(&fd, iface, ETHTOOL_GFLAGS).map(|f| f & ETH_FLAG_LRO != 0),
    };
    Ok(InterfaceInfo {
        name: iface.to_owned(),
        ifindex,
        mac,
        mtu,
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
        promiscuous: flags & libc::IFF_PROMISC != 0,
        ipv4,
        ipv6,
        ipv6_disabled: read_bool(&sysctl_path("ipv6", iface, "disable_ipv6")),
        ipv4_forwarding: read_bool(&sysctl_path("ipv4", iface, "forwarding")),
        ip_forward: read_bool("/proc/sys/net/ipv4/ip_forward"),
        arp_ignore: read_u8(&sysctl_path("ipv4", iface, "arp_ignore")),
        offloads,
    })
}

/// [`inspect`], or `None` when no interface of that name exists in this namespace.
pub fn find(iface: &str) -> Result<Option<InterfaceInfo>, IoError> {
    match sys::ifindex(iface) {
        Err(IoError::Os { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
        Ok(_) => inspect(iface).map(Some),
    }
}

type Addrs = (Vec<IfAddr<Ipv4Addr>>, Vec<IfAddr<Ipv6Addr>>);

fn addresses(iface: &str) -> Result<Addrs, IoError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success it owns a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(sys::last_err(iface, "getifaddrs"));
    }
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points to a sockaddr of its declared family.
        let fam = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if fam == libc::AF_INET {
            // SAFETY: family AF_INET means the sockaddr is a sockaddr_in (the netmask too).
            let a = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
            let prefix = if ifa.ifa_netmask.is_null() {
                32
            } else {
                // SAFETY: as above, for the netmask of an AF_INET address.
                let m = unsafe { &*ifa.ifa_netmask.cast::<libc::sockaddr_in>() };
                prefix_len(&m.sin_addr.s_addr.to_ne_bytes())
            };
            v4.push(IfAddr {
                addr: Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                prefix,
            });
        } else if fam == libc::AF_INET6 {
            // SAFETY: family AF_INET6 means the sockaddr is a sockaddr_in6 (the netmask too).
            let a = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
            let prefix = if ifa.ifa_netmask.is_null() {
                128
            } else {
                // SAFETY: as above, for the netmask of an AF_INET6 address.
                let m = unsafe { &*ifa.ifa_netmask.cast::<libc::sockaddr_in6>() };
                prefix_len(&m.sin6_addr.s6_addr)
            };
            v6.push(IfAddr {
                addr: Ipv6Addr::from(a.sin6_addr.s6_addr),
                prefix,
            });
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once; no reference
    // into the list survives (addresses were copied).
    unsafe { libc::freeifaddrs(head) };
    Ok((v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_inspectable() {
        let i = inspect("lo").unwrap();
        assert_eq!(i.name, "lo");
        assert!(i.mtu >= 1280);
        assert!(i.mac.is_none(), "loopback has no Ethernet address");
        assert!(i.ifindex >= 1);
        if i.up {
            assert!(
                i.ipv4
                    .iter()
                    .any(|a| a.addr == Ipv4Addr::LOCALHOST && a.prefix == 8),
                "{i:?}"
            );
        }
    }

    #[test]
    fn missing_interface_is_a_typed_error() {
        let e = inspect("ar-no-such0").unwrap_err();
        assert_eq!(e.iface(), "ar-no-such0");
        assert!(
            e.to_string().contains("if_nametoindex on ar-no-such0"),
            "{e}"
        );
        assert!(inspect("an-interface-name-that-is-too-long").is_err());
        assert!(find("ar-no-such0").unwrap().is_none());
        assert!(find("lo").unwrap().is_some_and(|i| i.name == "lo"));
        assert_eq!(prefix_len(&[255, 255, 255, 0]), 24);
    }
}
