//! `altroute replay`: run the packet pipeline over pcap/pcapng captures and write what leaves
//! each port as `<out-dir>/<port>.pcap`, then print a summary (see [`altroute::replay`]). When
//! stderr is a terminal, a progress bar shows how far the replay is (a spinner while the
//! captures are read); otherwise nothing is drawn.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use altroute::replay::Progress;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `replay`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    args: altroute::replay::ReplayArgs,
}

impl Args {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (cfg, mut opts) = self.args.resolve()?;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner().with_message("reading captures");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        opts.progress = bar.clone().map(progress_hook);
        let report = altroute::replay::replay(&cfg, &opts);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let report = report?;
        let files = report
            .write(&self.args.out_dir)
            .with_context(|| format!("writing to {}", self.args.out_dir.display()))?;
        print!("{}", report.summary());
        for f in files {
            println!("wrote {}", f.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Frames between two updates of the bar (the hook runs after every batch, often every frame).
const PROGRESS_EVERY: u64 = 4096;

/// The replay's hook for `bar`: the first call turns the spinner into a bar of the frame count;
/// then the position follows, every [`PROGRESS_EVERY`] frames and at the end.
fn progress_hook(bar: ProgressBar) -> Progress {
    let shown = AtomicU64::new(u64::MAX);
    Progress(Arc::new(move |done, total| {
        let last = shown.load(Ordering::Relaxed);
        if last != u64::MAX && done < total && done.saturating_sub(last) < PROGRESS_EVERY {
            return;
        }
        if last == u64::MAX {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} replaying [{bar:30}] {human_pos}/{human_len} frames, {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_length(total);
        }
        shown.store(done, Ordering::Relaxed);
        bar.set_position(done);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_moves_the_bar_in_steps_and_to_the_end() {
        let bar = ProgressBar::hidden();
        let hook = progress_hook(bar.clone());
        assert_eq!(bar.length(), None, "a spinner until the first call");
        (hook.0)(1, 10_000);
        assert_eq!((bar.position(), bar.length()), (1, Some(10_000)));
        (hook.0)(2, 10_000);
        assert_eq!(bar.position(), 1, "no redraw for every frame");
        (hook.0)(1 + PROGRESS_EVERY, 10_000);
        assert_eq!(bar.position(), 1 + PROGRESS_EVERY);
        (hook.0)(10_000, 10_000);
        assert_eq!(bar.position(), 10_000, "the end is always shown");
    }

    /// The replay calls the hook after each batch, ending at the frame count.
    #[test]
    fn a_replay_reports_its_progress() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/load-balance");
        let args = altroute::replay::ReplayArgs {
            config: dir.join("config.yaml"),
            inputs: vec![dir.join("in-lan.pcap")],
            in_ports: Vec::new(),
            out_dir: std::env::temp_dir(),
            time_from_capture: false,
            down: Vec::new(),
            up: Vec::new(),
            batch: 64,
            workers: None,
        };
        let (cfg, mut opts) = args.resolve().expect("fixture");
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        opts.progress = Some(Progress(Arc::new(move |done, total| {
            if let Ok(mut v) = seen.lock() {
                v.push((done, total));
            }
        })));
        let report = altroute::replay::replay(&cfg, &opts).expect("replay");
        let calls = calls.lock().expect("calls").clone();
        let frames = report.frames;
        assert!(frames > 1000, "{frames} frames");
        assert_eq!(calls.last(), Some(&(frames, frames)));
        assert!(calls.iter().all(|&(_, t)| t == frames));
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");
        assert_eq!(
            calls.len() as u64,
            frames.div_ceil(64),
            "one call per batch of 64"
        );
    }
}
