//! The demo's steps 1 to 5: lab, server and router up; traffic; its split and the router's
//! status; a black hole on the first gateway until new connections fail over; the restore until
//! they fail back. Step 6, the teardown, is in `run` and always happens.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use super::report::{GatewayAddrs, Out, kinds};
use super::router::{RouterProcess, Watch};
use super::timeline::Timeline;
use super::traffic::{start_whoami, tcp_clients};
use super::{
    ConfigSource, DemoConfig, DemoError, DemoOptions, DemoSummary, Held, SERVER_TCP, SERVER_UDP,
    io, nap,
};
use crate::tool::Tally;
use crate::{Forwarder, Isp, Lab, NAMESPACES};

/// Runs steps 1 to 5; what it starts goes into `held` for the teardown.
pub(super) fn scenario(
    opts: &DemoOptions,
    stop: &AtomicBool,
    out: &mut Out<'_>,
    held: &mut Held,
    summary: &mut DemoSummary,
) -> Result<(), DemoError> {
    let cfg = start(opts, stop, out, held)?;
    let (lab, router) = held.running()?;
    let names: Vec<String> = cfg.gateways.iter().map(|g| g.name.clone()).collect();
    let mut scene = Scene {
        opts,
        stop,
        lab,
        router,
        gws: GatewayAddrs::from_config(&cfg),
        timeline: Timeline::new(names.clone()),
        epoch: out.start,
        names,
        cfg,
    };
    let result = scene.traffic(out, summary).and_then(|()| {
        let mut watch = scene.failover(out, summary)?;
        scene.failback(out, summary, &mut watch)
    });
    summary.timeline = scene.timeline;
    result
}

/// Writes an embedded configuration into the work directory; returns its path and how to name it.
fn config_file(opts: &DemoOptions) -> Result<(PathBuf, String), DemoError> {
    Ok(match &opts.config {
        ConfigSource::Embedded(name, text) => {
            let p = opts.work_dir.join(name);
            std::fs::write(&p, text).map_err(io(format!("writing {}", p.display())))?;
            (p, format!("{name} (embedded copy of examples/{name})"))
        }
        ConfigSource::File(p) => (p.clone(), p.display().to_string()),
    })
}

/// Step 1: the configuration, the lab, the whoami server, and the router until every gateway
/// is up.
fn start(
    opts: &DemoOptions,
    stop: &AtomicBool,
    out: &mut Out<'_>,
    held: &mut Held,
) -> Result<DemoConfig, DemoError> {
    let (cfg_path, cfg_name) = config_file(opts)?;
    let cfg = (opts.load_config)(&cfg_path).map_err(DemoError::Config)?;
    let describe: Vec<String> = cfg
        .gateways
        .iter()
        .map(|g| format!("{} {}", g.name, g.rank))
        .collect();
    out.line(
        1,
        &format!(
            "config {cfg_name}: {} mode, {}",
            cfg.mode,
            describe.join(", ")
        ),
    );
    let lab_start = Instant::now();
    let lab = held.lab.insert(Lab::up(&opts.prefix, Forwarder::Router)?);
    out.line(
        1,
        &format!(
            "lab up in {:.1} s: namespaces {}",
            lab_start.elapsed().as_secs_f64(),
            NAMESPACES.map(|n| format!("{}{n}", opts.prefix)).join(" ")
        ),
    );
    held.server = Some(start_whoami(lab, &opts.bin, stop)?);
    out.line(
        1,
        &format!(
            "whoami server in {}inet on tcp {SERVER_TCP}, udp {SERVER_UDP}",
            opts.prefix
        ),
    );
    let router = held.router.insert(RouterProcess::start(
        &opts.bin,
        &cfg_path,
        &lab.ns("rtr"),
        &opts.work_dir,
    )?);
    out.line(
        1,
        &format!(
            "router started (pid {}): altroute run --config {} --netns {}rtr --status-file {}",
            router.pid(),
            cfg_path.display(),
            opts.prefix,
            router.status_file().display()
        ),
    );
    let ready = Instant::now();
    let st = router.wait_ready(Duration::from_secs(20), stop)?;
    out.line(
        1,
        &format!(
            "router ready after {:.1} s: {}",
            ready.elapsed().as_secs_f64(),
            st.summary()
        ),
    );
    Ok(cfg)
}

/// The running demo, from the router's start to the teardown: what steps 2 to 5 use.
struct Scene<'a> {
    opts: &'a DemoOptions,
    stop: &'a AtomicBool,
    lab: &'a Lab,
    router: &'a mut RouterProcess,
    cfg: DemoConfig,
    gws: GatewayAddrs,
    /// Gateway names in configuration order.
    names: Vec<String>,
    /// Every round of test connections and the demo's moments, for the picture.
    timeline: Timeline,
    /// When the demo started (the timeline's zero).
    epoch: Instant,
}

/// What step 4 has seen so far.
#[derive(Default)]
struct FailoverWatch {
    saw_fail: bool,
    saw_other: bool,
    clean_batches: u32,
    attempts: usize,
    failed: usize,
}

impl Scene<'_> {
    /// `n` TCP connections from the LAN to the whoami server, `parallel` at a time; the round
    /// goes into the timeline.
    fn clients(&mut self, n: usize, parallel: usize, timeout_ms: u64) -> Result<Tally, DemoError> {
        let start = self.since_start(Instant::now());
        let t = tcp_clients(
            self.lab,
            &self.opts.bin,
            SERVER_TCP,
            n,
            parallel,
            timeout_ms,
        )?;
        let ok = self.names.iter().map(|g| self.gws.count(&t, g)).collect();
        let end = self.since_start(Instant::now());
        self.timeline.round(start, end, ok, t.failed);
        Ok(t)
    }

    /// Seconds from the demo's start to `at`.
    fn since_start(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// The first gateway (the one black-holed).
    fn primary(&self) -> String {
        self.names.first().cloned().unwrap_or_else(|| "isp1".into())
    }

    /// Waits for a router status written at least 1.5 s after the last one: workers report their
    /// counters every second, so it includes the traffic just sent.
    fn settled_status(&mut self, after_ms: u64) -> Result<String, DemoError> {
        let now_ms = self.router.status().map_or(after_ms, |s| s.time_ms);
        let st = self
            .router
            .fresh_status(now_ms + 1500, Duration::from_secs(6), self.stop)?;
        Ok(st.summary())
    }

    /// Steps 2 and 3: the first connections, their split as the server saw it, and the router's
    /// status with this traffic counted.
    fn traffic(&mut self, out: &mut Out<'_>, summary: &mut DemoSummary) -> Result<(), DemoError> {
        let t0 = Instant::now();
        let before = self.router.status().map_or(0, |s| s.time_ms);
        let tally = self.clients(self.opts.connections, 8, 2000)?;
        out.line(
            2,
            &format!(
                "{} TCP connections from {}lan (10.0.0.2) to {SERVER_TCP}: {} ok, {} failed in {:.1} s",
                self.opts.connections,
                self.opts.prefix,
                tally.ok(),
                tally.failed,
                t0.elapsed().as_secs_f64()
            ),
        );
        out.line(
            3,
            "split as the server saw it (source address of each connection):",
        );
        for l in self.gws.render_split(&tally) {
            out.more(&l);
        }
        let st = self.settled_status(before)?;
        out.line(3, &format!("router status: {st}"));
        summary.initial = tally;
        Ok(())
    }

    /// Step 4: black-holes the first gateway and keeps connecting, 4 every 250 ms, until three
    /// batches in a row all succeed through other gateways while the router has it down.
    fn failover(
        &mut self,
        out: &mut Out<'_>,
        summary: &mut DemoSummary,
    ) -> Result<Watch, DemoError> {
        let primary = self.primary();
        let epoch = self.router.epoch();
        self.lab.blackhole(Isp::One)?;
        let hole = Instant::now();
        self.timeline
            .mark(self.since_start(hole), format!("black hole {primary}"));
        let hole_router_ms = epoch
            .and_then(|e| SystemTime::now().duration_since(e).ok())
            .map(|d| d.as_millis() as u64);
        out.line(
            4,
            &format!(
                "black-holing {primary}: nft drop-all in {}isp1's forward chain (link stays up, ARP still answered); clients keep connecting, 4 every 250 ms",
                self.opts.prefix
            ),
        );
        let mut watch = Watch::new(self.router, &self.names);
        let mut seen = FailoverWatch::default();
        loop {
            let batch_start = Instant::now();
            let t = self.clients(4, 4, 700)?;
            seen.attempts += 4;
            seen.failed += t.failed;
            let since = hole.elapsed().as_secs_f64();
            self.report_failover_batch(out, &t, since, &mut seen);
            for ev in watch.poll(self.router)? {
                if ev.gateway == primary
                    && ev.to != "up"
                    && let (Some(h), true) = (hole_router_ms, ev.since_ms > 0)
                {
                    summary.detect_s = Some(ev.since_ms.saturating_sub(h) as f64 / 1000.0);
                }
                out.line(4, &format!("+{since:.1} s  router: {}", ev.text));
            }
            let primary_down = watch.state(&primary).is_some_and(|s| s != "up");
            if t.failed == 0 && self.gws.count(&t, &primary) == 0 && t.ok() == 4 && primary_down {
                if seen.clean_batches == 0 {
                    summary.failover_s = Some(since);
                }
                seen.clean_batches += 1;
            } else {
                seen.clean_batches = 0;
                summary.failover_s = None;
            }
            if seen.clean_batches >= 3 {
                break;
            }
            self.next_round(hole, batch_start, "no failover", "the black hole")?;
        }
        out.line(
            4,
            &format!(
                "failover: new connections flow again (none via {primary}) {:.1} s after the black hole; router detection {}; {} of {} attempts failed meanwhile",
                summary.failover_s.unwrap_or_default(),
                summary
                    .detect_s
                    .map_or("n/a".into(), |d| format!("{d:.1} s")),
                seen.failed,
                seen.attempts
            ),
        );
        Ok(watch)
    }

    /// Step 4's news in one batch: the first failures, the first connections via another gateway.
    fn report_failover_batch(
        &self,
        out: &mut Out<'_>,
        t: &Tally,
        since: f64,
        seen: &mut FailoverWatch,
    ) {
        if t.failed > 0 && !seen.saw_fail {
            seen.saw_fail = true;
            out.line(
                4,
                &format!(
                    "+{since:.1} s  {} of 4 new connections failed ({})",
                    t.failed,
                    kinds(t)
                ),
            );
        }
        let others = self.names.get(1..).unwrap_or_default();
        let via_other: usize = others.iter().map(|g| self.gws.count(t, g)).sum();
        if via_other > 0 && !seen.saw_other {
            seen.saw_other = true;
            out.line(
                4,
                &format!(
                    "+{since:.1} s  new connections via {} ({via_other} of 4)",
                    others
                        .iter()
                        .map(|g| format!("{g} {}", self.gws.addr_of(g).unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }

    /// Step 5: restores the first gateway and keeps connecting until a connection goes through it
    /// again; then the split of a last round of connections and the router's status.
    fn failback(
        &mut self,
        out: &mut Out<'_>,
        summary: &mut DemoSummary,
        watch: &mut Watch,
    ) -> Result<(), DemoError> {
        let primary = self.primary();
        self.lab.restore(Isp::One)?;
        let restored = Instant::now();
        self.timeline
            .mark(self.since_start(restored), format!("restore {primary}"));
        let first = self.cfg.gateways.first();
        out.line(
            5,
            &format!(
                "restored {primary} (nft table removed); failback waits for {} clean probe rounds + a stable window of {} ms",
                first.map_or(0, |g| g.up_rounds),
                first.map_or(0, |g| g.failback_stable_ms)
            ),
        );
        loop {
            let batch_start = Instant::now();
            let t = self.clients(4, 4, 700)?;
            let since = restored.elapsed().as_secs_f64();
            for ev in watch.poll(self.router)? {
                out.line(5, &format!("+{since:.1} s  router: {}", ev.text));
            }
            let via_primary = self.gws.count(&t, &primary);
            if via_primary > 0 {
                summary.failback_s = Some(since);
                self.timeline.mark(
                    self.since_start(restored) + since,
                    format!("failback {primary}"),
                );
                out.line(
                    5,
                    &format!(
                        "+{since:.1} s  failback: new connections via {primary} {} again ({via_primary} of 4)",
                        self.gws.addr_of(&primary).unwrap_or("?")
                    ),
                );
                break;
            }
            self.next_round(restored, batch_start, "no failback", "the restore")?;
        }
        let n = (self.opts.connections / 2).max(20);
        let t = self.clients(n, 8, 2000)?;
        out.line(5, &format!("split of {n} new connections after failback:"));
        for l in self.gws.render_split(&t) {
            out.more(&l);
        }
        let st = self.settled_status(0)?;
        out.line(5, &format!("router status: {st}"));
        summary.after = t;
        Ok(())
    }

    /// Between two rounds of test connections in a step that waits for the router: fails the
    /// step (`what` within the timeout of `since_what`, with the router's status) once the step
    /// started at `step` has run past `opts.step_timeout`, else sleeps out the rest of a 250 ms
    /// round that began at `round`.
    fn next_round(
        &self,
        step: Instant,
        round: Instant,
        what: &str,
        since_what: &str,
    ) -> Result<(), DemoError> {
        if step.elapsed() > self.opts.step_timeout {
            return Err(DemoError::Step(format!(
                "{what} within {:?} of {since_what} (router: {})",
                self.opts.step_timeout,
                self.router
                    .status()
                    .map_or("no status".into(), |s| s.summary())
            )));
        }
        nap(
            Duration::from_millis(250).saturating_sub(round.elapsed()),
            self.stop,
        )
    }
}
