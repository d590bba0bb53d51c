//! Tests of the flow table, one file per part of it (as in `table/`), sharing the helpers here.

mod evict;
mod expiry;
mod gateways;
mod insert;
mod invariants;
mod limits;
mod lookup;
mod slot;
mod update;
mod view;

use crate::tcp::flags::{ACK, FIN, RST, SYN};
use crate::*;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use proptest::prelude::*;

const LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRV: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const EXT1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EXT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// The number of cases of a property test: `PROPTEST_CASES` when set (as for the tests that take
/// proptest's default configuration), else `default`. `ProptestConfig::with_cases(n)` alone
/// ignores the variable.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn two_gw(weights: (u32, u32)) -> TableConfig {
    TableConfig {
        gateways: vec![
            Gateway::new("isp1", Some(EXT1.into())).weight(weights.0),
            Gateway::new("isp2", Some(EXT2.into())).weight(weights.1),
        ],
        ..TableConfig::default()
    }
}

fn table(cfg: TableConfig) -> FlowTable {
    FlowTable::new(cfg).unwrap()
}

fn tcp(sport: u16, dport: u16) -> FlowKey {
    FlowKey::v4(LAN, SRV, proto::TCP, sport, dport)
}

fn ext_of(t: &FlowTable, h: Hit) -> (Ipv4Addr, u16) {
    let f = t.flow(h.flow).unwrap();
    let (a, p) = f.nat().unwrap();
    (Ipv4Addr::new(a[0], a[1], a[2], a[3]), p)
}

fn reply_of(t: &FlowTable, h: Hit) -> FlowKey {
    let k = t.flow(h.flow).unwrap().key();
    let (ext, port) = ext_of(t, h);
    FlowKey::v4(k.dst_v4().unwrap(), ext, k.proto, k.dport, port)
}

const T0: Time = Time::from_secs(1000);

#[test]
fn config_errors_are_typed() {
    assert!(matches!(
        FlowTable::new(TableConfig {
            max_flows: 0,
            ..TableConfig::default()
        }),
        Err(ConfigError::TooManyFlows { .. })
    ));
    assert!(matches!(
        FlowTable::new(TableConfig {
            timeouts: Timeouts {
                udp: 30,
                ..Timeouts::default()
            },
            ..TableConfig::default()
        }),
        Err(ConfigError::TimeoutTooShort { field: "udp", .. })
    ));
    let many = (0..65)
        .map(|i| Gateway::new(format!("g{i}"), None))
        .collect();
    assert!(matches!(
        FlowTable::new(TableConfig {
            gateways: many,
            ..TableConfig::default()
        }),
        Err(ConfigError::TooManyGateways { .. })
    ));
}
