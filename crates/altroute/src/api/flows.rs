//! Flow listings and explanations, from the workers' own tables: the API thread asks each
//! worker, over its control channel, to look at a bounded run of its table's slots
//! ([`CHUNK`]) and answer; the worker does it between two batches (no lock on the packet path,
//! no copy of the table). A listing walks every worker's table chunk by chunk, in worker then
//! slot order, and keeps the page asked for.

use std::collections::BTreeMap;
use std::net::IpAddr;

use altroute_flow::{FlowInfo, FlowKey, FlowTable, GatewayId, Time, proto};
use axum::Json;
use axum::extract::State as Extract;
use axum::http::StatusCode;
use tokio::sync::oneshot;

use super::routes::{ANSWER_WITHIN, ApiError, Params, bad_query, snapshot};
use super::{State, model};
use crate::worker::{Inspect, ToWorker};

/// Slots a worker looks at per question (a few hundred microseconds of its time).
pub const CHUNK: usize = 16_384;
/// Flows per page by default, and at most.
const PER_PAGE: (usize, usize) = (100, 1000);

/// Which flows a listing keeps.
#[derive(Clone, Debug, Default)]
struct Filter {
    client: Option<IpAddr>,
    gateway: Option<String>,
}

impl Filter {
    fn matches(&self, f: &FlowInfo, table: &FlowTable) -> bool {
        self.client
            .is_none_or(|c| f.key.src_ip() == c || f.key.dst_ip() == c)
            && self.gateway.as_deref().is_none_or(|name| {
                f.gateway
                    .and_then(|g| table.gateways().get(g.index()))
                    .is_some_and(|g| g.name == name)
            })
    }
}

fn proto_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// One flow as the API shows it.
pub(crate) fn flow_view(f: &FlowInfo, table: &FlowTable, worker: u16, now: Time) -> model::Flow {
    let name = |g: GatewayId| table.gateways().get(g.index()).map(|g| g.name.clone());
    let secs = now.secs();
    model::Flow {
        worker,
        proto: proto_name(f.key.proto),
        src: f.key.src_ip().to_string(),
        sport: f.key.sport,
        dst: f.key.dst_ip().to_string(),
        dport: f.key.dport,
        gateway: f.gateway.and_then(name),
        reason: format!("{:?}", f.reason),
        nat: f.nat.map(|(a, p)| format!("{a}:{p}")),
        tcp: format!("{:?}", f.tcp),
        replied: f.replied,
        inbound: f.inbound,
        age_s: secs.saturating_sub(u64::from(f.created)),
        idle_s: secs.saturating_sub(u64::from(f.last_seen)),
        out_packets: f.counters.packets[0],
        out_bytes: f.counters.bytes[0],
        in_packets: f.counters.packets[1],
        in_bytes: f.counters.bytes[1],
    }
}

/// Runs `f` on worker `w`'s table and waits for its answer.
async fn ask<T: Send + 'static>(
    state: &State,
    w: usize,
    f: impl FnOnce(&FlowTable, u16, Time) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let to = state.workers.get(w).ok_or_else(ApiError::gone)?;
    to.send(ToWorker::Inspect(Inspect(Box::new(move |t, id, now| {
        let _ = tx.send(f(t, id, now));
    }))))
    .map_err(|_| ApiError::gone())?;
    tokio::time::timeout(ANSWER_WITHIN, rx)
        .await
        .map_err(|_| ApiError::gone())?
        .map_err(|_| ApiError::gone())
}

/// Visits every worker's table in chunks of [`CHUNK`] slots: `visit` runs on the worker, over
/// one chunk, with what `state` carried from the chunk before (it returns it updated).
async fn walk<S: Send + 'static>(
    state: &State,
    mut acc: S,
    visit: fn(&FlowTable, u16, Time, &mut dyn Iterator<Item = FlowInfo>, &mut S),
) -> Result<S, ApiError> {
    for w in 0..state.workers.len() {
        let mut from = 0u32;
        loop {
            let (back, next) = ask(state, w, move |t, id, now| {
                let mut acc = acc;
                let (mut it, next) = t.scan(from, CHUNK);
                visit(t, id, now, &mut it, &mut acc);
                (acc, next)
            })
            .await?;
            acc = back;
            if next == 0 {
                break;
            }
            from = next;
        }
    }
    Ok(acc)
}

/// A listing in progress.
struct Listing {
    filter: Filter,
    skip: u64,
    take: usize,
    total: u64,
    flows: Vec<model::Flow>,
}

fn param<T: std::str::FromStr>(q: &Params, key: &str) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    q.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| bad_query(format!("{key}={v:?}: {e}")))
        })
        .transpose()
}

/// `GET /api/flows?client=&gateway=&page=&per_page=`.
pub(super) async fn flows(
    Extract(state): Extract<State>,
    q: Params,
) -> Result<Json<model::FlowPage>, ApiError> {
    let filter = Filter {
        client: param(&q, "client")?,
        gateway: q.get("gateway").filter(|g| !g.is_empty()).cloned(),
    };
    if let Some(g) = &filter.gateway {
        let s = snapshot(&state).await?;
        if !s.gateways.iter().any(|x| &x.name == g) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no gateway named {g:?}"),
            ));
        }
    }
    let page: usize = param(&q, "page")?.unwrap_or(0);
    let per_page = param::<usize>(&q, "per_page")?
        .unwrap_or(PER_PAGE.0)
        .clamp(1, PER_PAGE.1);
    let start = Listing {
        filter,
        skip: (page as u64).saturating_mul(per_page as u64),
        take: per_page,
        total: 0,
        flows: Vec::new(),
    };
    let done = walk(&state, start, |t, id, now, it, l| {
        for f in it {
            if !l.filter.matches(&f, t) {
                continue;
            }
            l.total += 1;
            if l.skip > 0 {
                l.skip -= 1;
            } else if l.flows.len() < l.take {
                l.flows.push(flow_view(&f, t, id, now));
            }
        }
    })
    .await?;
    Ok(Json(model::FlowPage {
        page,
        per_page,
        total: done.total,
        flows: done.flows,
    }))
}

/// `GET /api/clients`: every inside host with outbound flows, with the pins.
pub(super) async fn clients(
    Extract(state): Extract<State>,
) -> Result<Json<model::Clients>, ApiError> {
    type Seen = BTreeMap<IpAddr, (u64, BTreeMap<String, u64>)>;
    let seen: Seen = walk(&state, Seen::new(), |t, _, _, it, seen| {
        for f in it.filter(|f| !f.inbound) {
            let e = seen.entry(f.key.src_ip()).or_default();
            e.0 += 1;
            if let Some(g) = f.gateway.and_then(|g| t.gateways().get(g.index())) {
                *e.1.entry(g.name.clone()).or_default() += 1;
            }
        }
    })
    .await?;
    let s = snapshot(&state).await?;
    let pinned = |ip: IpAddr| {
        let host = crate::config::Cidr::host(ip).to_string();
        s.status
            .pins
            .iter()
            .find(|p| p.client == host)
            .map(|p| p.gateway.clone())
    };
    let mut clients: BTreeMap<IpAddr, model::Client> = seen
        .into_iter()
        .map(|(ip, (flows, gateways))| {
            (
                ip,
                model::Client {
                    ip: ip.to_string(),
                    flows,
                    gateways,
                    pinned: pinned(ip),
                },
            )
        })
        .collect();
    for p in &s.status.pins {
        if let Ok(c) = p.client.parse::<crate::config::Cidr>()
            && c.prefix() == if c.is_ipv4() { 32 } else { 128 }
        {
            clients.entry(c.addr()).or_insert_with(|| model::Client {
                ip: c.addr().to_string(),
                flows: 0,
                gateways: BTreeMap::new(),
                pinned: Some(p.gateway.clone()),
            });
        }
    }
    Ok(Json(model::Clients {
        clients: clients.into_values().collect(),
        pins: s.status.pins.clone(),
        gateways: s.gateways.iter().map(|g| g.name.clone()).collect(),
    }))
}

/// The 5-tuple of `GET /api/explain`.
fn explain_key(q: &Params) -> Result<FlowKey, ApiError> {
    let need = |k: &str| -> Result<IpAddr, ApiError> {
        param(q, k)?.ok_or_else(|| bad_query(format!("{k}=IP is required")))
    };
    let (src, dst) = (need("src")?, need("dst")?);
    let p = match q.get("proto").map(String::as_str).unwrap_or("tcp") {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        "icmp" => proto::ICMP,
        n => n
            .parse()
            .map_err(|_| bad_query(format!("proto={n:?}: tcp, udp, icmp or a number")))?,
    };
    let sport = param(q, "sport")?.unwrap_or(0);
    let dport = param(q, "dport")?.unwrap_or(0);
    FlowKey::new(src, dst, p, sport, dport)
        .ok_or_else(|| bad_query("src and dst must be of one address family"))
}

/// `GET /api/explain?src=&dst=&proto=&sport=&dport=`.
pub(super) async fn explain(
    Extract(state): Extract<State>,
    q: Params,
) -> Result<Json<model::Explain>, ApiError> {
    let key = explain_key(&q)?;
    let mut first = None;
    for w in 0..state.workers.len() {
        let e = ask(&state, w, move |t, id, now| {
            let e = t.explain(&key, now);
            let would_take = e
                .choice
                .as_ref()
                .ok()
                .and_then(|c| e.names.get(c.gateway.index()).cloned());
            let why = match &e.choice {
                Ok(c) => c.reason.to_string(),
                Err(err) => err.to_string(),
            };
            model::Explain {
                text: e.to_string(),
                flow: e.flow.as_ref().map(|f| flow_view(f, t, id, now)),
                would_take,
                why,
            }
        })
        .await?;
        if e.flow.is_some() {
            return Ok(Json(e));
        }
        first.get_or_insert(e);
    }
    first.map(Json).ok_or_else(ApiError::gone)
}
