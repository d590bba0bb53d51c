//! The NAT side of a flow: endpoint-independent mappings (filed in the table's index beside the
//! flows, under a marked key), port reservations for port forwards, and the reply key a
//! translated flow answers to.

use core::net::IpAddr;

use super::FlowTable;
use super::evict::unanswered;
use super::insert::InsertError;
use super::lookup::MAPPING;
use super::slot::{NO_NAT, Slot};
use crate::{FlowKey, GatewayId, Time, proto};

/// A mark in the (otherwise always zero) padding of keys used for mapping entries.
const MAPPING_KEY_MARK: u8 = 0xa5;

pub(super) fn proto_class(p: u8) -> Option<usize> {
    match p {
        proto::TCP => Some(0),
        proto::UDP => Some(1),
        proto::ICMP => Some(2),
        _ => None,
    }
}

pub(super) fn addr_bytes(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            b
        }
        IpAddr::V6(v) => v.octets(),
    }
}

impl FlowTable {
    fn mapping_key(&self, pool: usize, inside: &FlowKey) -> FlowKey {
        let mut k = FlowKey::v4_raw([0; 4], [0; 4], inside.proto, inside.sport, pool as u16);
        k.set_src_bytes(*inside.src_bytes());
        k.mark(MAPPING_KEY_MARK);
        k
    }

    /// Find or create the endpoint-independent mapping of `key`'s source on `gw`'s address.
    /// `src` is the source's record; with `limit`, a new mapping beyond its per-source port
    /// limit is refused (sharing an existing one never is).
    pub(super) fn nat_bind(
        &mut self,
        key: &FlowKey,
        gw: GatewayId,
        src: u32,
        limit: bool,
    ) -> Result<(u8, u16), InsertError> {
        let a = self.gw_addr.get(gw.index()).copied().unwrap_or(NO_NAT);
        if a == NO_NAT {
            return Ok((NO_NAT, key.sport));
        }
        let Some(class) = proto_class(key.proto) else {
            // No ports to translate: address-only NAT (the reply-key check refuses collisions).
            return Ok((a, key.sport));
        };
        let pool = usize::from(a) * 3 + class;
        let mk = self.mapping_key(pool, key);
        let h = mk.index_hash();
        let mut inside = [0u8; 4];
        inside.copy_from_slice(&key.src_bytes()[..4]);
        let pools = &self.pools;
        let found = self.index.find(h, |v| {
            v & MAPPING != 0
                && ((v >> 16) & 0x7fff) as usize == pool
                && pools[pool].refs(v as u16) > 0
                && pools[pool].inside(v as u16) == (inside, key.sport)
        });
        if let Some(v) = found {
            self.pools[pool].share(v as u16);
            return Ok((a, v as u16));
        }
        if limit
            && let Some(r) = self.sources.get(src)
            && r.ports >= self.port_limit
        {
            self.stats.refused_source_ports += 1;
            return Err(InsertError::SourcePortLimit {
                host: key.src_ip(),
                limit: self.port_limit,
            });
        }
        let Some(port) = self.pools[pool].alloc(key.sport, h) else {
            self.stats.ports_exhausted += 1;
            return Err(InsertError::PortsExhausted {
                addr: self.ext_addrs[usize::from(a)],
                proto: key.proto,
            });
        };
        self.pools[pool].bind(port, (inside, key.sport));
        if !self
            .index
            .insert(h, MAPPING | (pool as u32) << 16 | u32::from(port))
        {
            self.pools[pool].unshare(port, false, 0);
            return Err(InsertError::TableFull {
                max: self.cfg.max_flows,
            });
        }
        if let Some(r) = self.sources.get_mut(src) {
            r.ports += 1;
        }
        Ok((a, port))
    }

    /// Release flow `s`'s share of its NAT mapping (`src`: its source's record, a hint). A released
    /// mapping none of whose flows was ever answered is free again at once; otherwise its port
    /// cools down. A released mapping is no longer counted for the source it was bound for.
    pub(super) fn nat_unbind(&mut self, s: &Slot, now: Time, src: u32) {
        if s.nat_addr == NO_NAT {
            return;
        }
        let Some(class) = proto_class(s.proto()) else {
            return;
        };
        let pool = usize::from(s.nat_addr) * 3 + class;
        let until = now.secs32().saturating_add(self.cfg.nat.cooldown_secs);
        let Some(p) = self.pools.get_mut(pool) else {
            return;
        };
        if p.unshare(s.nat_port, !unanswered(s), until) && !p.is_reserved(s.nat_port) {
            let (inside, _) = p.inside(s.nat_port);
            let mk = self.mapping_key(pool, &s.key());
            self.index.remove(
                mk.index_hash(),
                MAPPING | (pool as u32) << 16 | u32::from(s.nat_port),
            );
            self.sources.port_released(inside, src);
        }
    }

    /// Whether flow `s`'s mapping is shared with other flows (so its going leaves it in place).
    pub(super) fn mapping_shared(&self, s: &Slot) -> bool {
        if s.nat_addr == NO_NAT {
            return false;
        }
        proto_class(s.proto())
            .and_then(|c| self.pools.get(usize::from(s.nat_addr) * 3 + c))
            .is_some_and(|p| p.refs(s.nat_port) > 1)
    }

    /// A mapping on a fixed port (port forward) was bound for `src`: counted like a dynamic one
    /// unless the port is reserved (reserved ports are configuration, not a host's use).
    pub(super) fn fixed_port_bound(&mut self, pool: usize, port: u16, src: u32) {
        if self.pools.get(pool).is_some_and(|p| !p.is_reserved(port))
            && let Some(r) = self.sources.get_mut(src)
        {
            r.ports += 1;
        }
    }

    /// Reserve an external port on `gateway`'s address for a port forward, so that dynamic mappings
    /// never take it. Errors if a dynamic mapping holds it now.
    pub fn reserve_port(
        &mut self,
        gateway: GatewayId,
        proto: u8,
        port: u16,
    ) -> Result<(), InsertError> {
        let a = *self
            .gw_addr
            .get(gateway.index())
            .ok_or(InsertError::UnknownGateway(gateway))?;
        let Some(class) = proto_class(proto) else {
            return Ok(());
        };
        if a == NO_NAT {
            return Ok(());
        }
        if self.pools[usize::from(a) * 3 + class].reserve(port) {
            Ok(())
        } else {
            Err(InsertError::Exists)
        }
    }

    /// The inside endpoint mapped to `ext:port` for `proto`, if any (for hairpinning: a LAN host
    /// that sends to the router's own external address and port reaches the host mapped there).
    pub fn mapping(&self, ext: IpAddr, proto: u8, port: u16) -> Option<(IpAddr, u16)> {
        let a = self.ext_addrs.iter().position(|&x| x == ext)?;
        let pool = self.pools.get(a * 3 + proto_class(proto)?)?;
        if pool.refs(port) == 0 {
            return None;
        }
        let (addr, p) = pool.inside(port);
        Some((IpAddr::from(addr), p))
    }

    pub(super) fn reply_key(&self, s: &Slot) -> FlowKey {
        let key = s.key();
        if s.nat_addr == NO_NAT {
            return key.reversed();
        }
        let ext = self
            .ext_addrs
            .get(usize::from(s.nat_addr))
            .copied()
            .unwrap_or(key.src_ip());
        FlowKey::new(key.dst_ip(), ext, key.proto, key.dport, s.nat_port).unwrap_or(key.reversed())
    }
}
