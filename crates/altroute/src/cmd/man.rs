//! `altroute man [--dir DIR]`: the manual page (`clap_mangen`), from the same definitions as
//! `--help`. Without `--dir`, prints `altroute(1)` (roff) to stdout; with it, writes
//! `altroute.1` and one `altroute-SUBCOMMAND.1` per subcommand there. Install:
//! `altroute man --dir /usr/local/share/man/man1`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// Arguments of `man`.
#[derive(clap::Args)]
pub struct Args {
    /// Write every page (`altroute.1`, `altroute-run.1`, …) into this directory instead.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl Args {
    /// Prints the page, or writes every page.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match &self.dir {
            None => page(&mut std::io::stdout().lock()).context("writing the manual page")?,
            Some(dir) => {
                for p in pages(dir).with_context(|| format!("writing to {}", dir.display()))? {
                    println!("wrote {}", p.display());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `altroute(1)`: synopsis, options and the list of subcommands.
fn page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(crate::Cli::command().disable_help_subcommand(true)).render(out)
}

/// Writes `altroute.1` and a page per visible subcommand (recursively) into `dir`, creating it.
fn pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(crate::Cli::command(), dir)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("altroute") && n.ends_with(".1"))
        })
        .collect();
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible_subcommands() -> Vec<String> {
        crate::Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn the_page_lists_every_subcommand() {
        let mut out = Vec::new();
        page(&mut out).unwrap();
        let roff = String::from_utf8(out).unwrap();
        assert!(
            roff.starts_with(".ie \\n(.g .ds Aq"),
            "not roff: {roff:.80}"
        );
        assert!(roff.contains(".TH altroute 1"), "{roff:.200}");
        let subs = visible_subcommands();
        assert!(subs.len() >= 8, "{subs:?}");
        for sub in subs {
            assert!(
                roff.contains(&format!("altroute\\-{}", sub.replace('-', "\\-"))),
                "no {sub} in:\n{roff}"
            );
        }
        assert!(!roff.contains("lab\\-tool"), "hidden commands stay out");
    }

    #[test]
    fn a_page_per_subcommand() {
        let dir = std::env::temp_dir().join(format!("altroute-man-{}", std::process::id()));
        let written = pages(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(names.contains(&"altroute.1".to_string()), "{names:?}");
        for sub in visible_subcommands() {
            assert!(
                names.contains(&format!("altroute-{sub}.1")),
                "no page for {sub}: {names:?}"
            );
        }
    }
}
