//! `altroute completions SHELL`: prints the shell completion script for `altroute`
//! (`clap_complete`). For bash: `altroute completions bash > /etc/bash_completion.d/altroute`.

use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

/// Arguments of `completions`.
#[derive(clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

impl Args {
    /// Prints the script to stdout.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        script(self.shell, &mut std::io::stdout().lock());
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes the completion script of `shell` for the whole command line.
fn script(shell: Shell, out: &mut dyn std::io::Write) {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "altroute", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_completes_every_subcommand() {
        let cli = crate::Cli::command();
        let subcommands: Vec<&str> = cli
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        assert!(subcommands.len() >= 8, "{subcommands:?}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            script(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in &subcommands {
                assert!(text.contains(sub), "{shell}: no {sub}");
            }
            // An option of a subcommand, not only the names.
            assert!(
                text.contains("status-file"),
                "{shell}: no run --status-file"
            );
        }
    }

    /// Bash loads the script and completes `altroute ru` to `run` (skips without bash).
    #[test]
    fn bash_completes_a_subcommand() {
        let mut out = Vec::new();
        script(Shell::Bash, &mut out);
        let dir = std::env::temp_dir().join(format!("altroute-compl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("altroute.bash");
        std::fs::write(&file, out).unwrap();
        let probe = format!(
            "source '{}' && COMP_WORDS=(altroute ru) && COMP_CWORD=1 && _altroute altroute ru altroute && echo \"${{COMPREPLY[*]}}\"",
            file.display()
        );
        let res = std::process::Command::new("bash")
            .args(["-c", &probe])
            .output();
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(res) = res else {
            eprintln!("skipping: no bash");
            return;
        };
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&res.stdout).trim(), "run");
    }
}
