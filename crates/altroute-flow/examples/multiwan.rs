//! Embedding `altroute-flow`: a loop over synthetic connections through two ISP links weighted
//! 4:1, printing each link's share, then what happens when the busy link goes down and comes back.
//!
//! Run it with `cargo run -p altroute-flow --example multiwan`.

use std::net::Ipv4Addr;

use altroute_flow::tcp::flags::{ACK, SYN};
use altroute_flow::{
    Dir, DownAction, Failback, FlowKey, FlowTable, Gateway, GatewayId, Hit, TableConfig, Time,
    Update, proto,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut table = FlowTable::new(TableConfig {
        max_flows: 100_000,
        gateways: vec![
            Gateway::new("dsl", Some(Ipv4Addr::new(192, 0, 2, 1).into())).weight(4),
            Gateway::new("lte", Some(Ipv4Addr::new(198, 51, 100, 1).into())).weight(1),
        ],
        ..TableConfig::default()
    })?;
    let names: Vec<String> = table.gateways().iter().map(|g| g.name.clone()).collect();
    let mut now = Time::from_secs(1);

    // 10 000 connections from 50 LAN hosts to 20 servers, each answered (so they are established).
    let mut flows = Vec::new();
    for i in 0..10_000u32 {
        let client = Ipv4Addr::new(10, 0, 0, 2 + (i % 50) as u8);
        let server = Ipv4Addr::new(203, 0, 113, 10 + (i % 20) as u8);
        let key = FlowKey::v4(client, server, proto::TCP, 20_000 + (i / 50) as u16, 443);
        let (hit, _choice) = table.insert(key, now, true, SYN)?;
        table.update(hit, now, SYN, 60);
        table.update(
            Hit {
                flow: hit.flow,
                dir: Dir::Reply,
            },
            now,
            SYN | ACK,
            60,
        );
        table.update(hit, now, ACK, 52);
        flows.push((key, hit));
    }
    print_shares("10 000 connections, weights 4:1", &table, &names);

    let first = flows[0].0;
    println!("\nexplain {first}:\n  {}", table.explain(&first, now));

    // The DSL line dies: only its flows are touched; they are rejected on their next packet so that
    // their clients reconnect at once, and the reconnects go to LTE.
    now = now.plus_secs(30);
    let dsl = GatewayId(0);
    let dropped = table.gateway_down(dsl, now, DownAction::Reset);
    println!(
        "\ndsl goes down: {} of its flows handed back for reset; lte's flows untouched",
        dropped.len()
    );
    let mut reconnected = 0;
    for (key, hit) in &flows {
        if table.update(*hit, now, ACK, 52) == Update::Reject {
            table.remove(hit.flow, now);
            let (h, _) = table.insert(*key, now, true, SYN)?;
            table.update(h, now, SYN, 60);
            reconnected += 1;
        }
    }
    println!("{reconnected} clients reconnected");
    print_shares("after the failover", &table, &names);

    // DSL comes back: new connections use it again; the moved ones stay on LTE until they end.
    now = now.plus_secs(30);
    table.gateway_up(dsl, now, Failback::Stay);
    let mut new_on = [0u32; 2];
    for i in 0..5_000u32 {
        let key = FlowKey::v4(
            Ipv4Addr::new(10, 0, 1, (i % 200) as u8),
            Ipv4Addr::new(203, 0, 113, 99),
            proto::UDP,
            30_000 + (i / 200) as u16,
            53,
        );
        let (_, c) = table.insert(key, now, true, 0)?;
        new_on[c.gateway.index()] += 1;
    }
    println!(
        "\ndsl is back: of 5 000 new flows, {} took dsl and {} took lte",
        new_on[0], new_on[1]
    );
    print_shares("all flows now", &table, &names);
    println!("\ntable: {} flows, {:?}", table.len(), table.stats());
    Ok(())
}

fn print_shares(title: &str, table: &FlowTable, names: &[String]) {
    let mut count = vec![0u32; names.len()];
    for f in table.iter() {
        if let Some(g) = f.gateway {
            count[g.index()] += 1;
        }
    }
    let total: u32 = count.iter().sum();
    println!("{title}:");
    for (name, c) in names.iter().zip(&count) {
        let pct = if total == 0 {
            0.0
        } else {
            100.0 * f64::from(*c) / f64::from(total)
        };
        println!("  {name:4} {c:6} flows  {pct:5.1} %");
    }
}
