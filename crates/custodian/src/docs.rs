//! Shell completions and man pages, generated from the clap definition in [`crate::cli`] so
//! they always match `--help`.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    ///
    /// bash: `custodian completions bash > /etc/bash_completion.d/custodian`;
    /// zsh: write `_custodian` into a directory on `$fpath`;
    /// fish: `custodian completions fish > ~/.config/fish/completions/custodian.fish`.
    #[arg(value_enum, value_name = "SHELL")]
    pub(crate) shell: Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManpagesArgs {
    /// Directory to write custodian.1 and one custodian-SUBCOMMAND.1 per subcommand into
    /// (created if missing).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
}

/// `custodian completions SHELL`: the completion script on stdout.
pub(crate) fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "custodian", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `custodian manpages DIR` (hidden; used to build the package): writes every page, prints
/// their paths.
pub(crate) fn manpages(args: &ManpagesArgs) -> Result<ExitCode> {
    let pages = write_manpages(&args.dir)?;
    for p in pages {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes custodian.1 and a page per visible subcommand (nested ones too, as
/// custodian-queue-status.1); returns the files written, sorted.
fn write_manpages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(crate::cli::Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_gets_a_page_and_hidden_ones_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = write_manpages(dir.path()).expect("pages");
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect();
        for want in [
            "custodian.1",
            "custodian-check.1",
            "custodian-worker.1",
            "custodian-completions.1",
            "custodian-queue-status.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("manpages")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let main = std::fs::read_to_string(dir.path().join("custodian.1")).expect("read");
        assert!(
            main.starts_with(".ie"),
            "not roff: {}",
            &main[..40.min(main.len())]
        );
        assert!(main.contains("custodian\\-worker(1)"), "no SEE ALSO entry");
    }

    #[test]
    fn completion_scripts_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(
                shell,
                &mut crate::cli::Cli::command(),
                "custodian",
                &mut out,
            );
            let text = String::from_utf8(out).expect("utf-8");
            assert!(text.contains("enqueue"), "{shell}: no enqueue");
            // bash and zsh spell the flag `--settings`, fish `-l settings`.
            assert!(text.contains("settings"), "{shell}: no --settings");
            // clap_complete's scripts list hidden subcommands too (`manpages`); harmless.
        }
    }
}
