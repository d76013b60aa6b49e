//! `mltrail completions SHELL` and `mltrail man`: shell completion scripts and manual pages,
//! generated from the same command definitions as `--help`, so they cannot drift from it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

/// The shells completion scripts are written for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash (`mltrail completions bash > ~/.local/share/bash-completion/completions/mltrail`),
    /// zsh (into a directory on `$fpath`, named `_mltrail`), fish
    /// (`~/.config/fish/completions/mltrail.fish`), elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write `mltrail.1` and a page per subcommand (`mltrail-serve.1`, …) into this directory
    /// (made if missing) instead of printing `mltrail.1`: `mltrail man --dir ~/.local/share/man/man1`.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Prints the completion script of `shell` for `command`.
pub fn completions(args: &CompletionsArgs, mut command: clap::Command) {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Elvish => clap_complete::Shell::Elvish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "mltrail", &mut std::io::stdout());
}

/// Prints `mltrail.1`, or writes every page into `--dir`.
pub fn man(args: &ManArgs, command: clap::Command) -> Result<()> {
    match &args.dir {
        None => {
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .context("cannot write the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            eprintln!("manual pages written to {}", dir.display());
        }
    }
    Ok(())
}
