//! `cellucid completions SHELL` and `cellucid man`: generated from the same
//! clap definition as `--help`, so they cannot drift from it.

use std::io::Write as _;

use clap::CommandFactory;

use crate::args::Cli;
use crate::error::CliError;

/// Prints the completion script for `shell` on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "cellucid", &mut script);
    print_all(&script, "the completion script")
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is fine.
pub(crate) fn print_all(bytes: &[u8], what: &str) -> Result<(), CliError> {
    match std::io::stdout().write_all(bytes) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::operator(format!("cannot write {what}: {err}")))
        }
        _ => Ok(()),
    }
}

/// Prints the man page (roff): the top-level page, then one section per
/// subcommand with its options, so `man -l` shows everything at once.
pub(crate) fn man() -> Result<(), CliError> {
    let command = Cli::command();
    let mut page = Vec::new();
    let write_err =
        |err: std::io::Error| CliError::operator(format!("cannot write the man page: {err}"));
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .map_err(write_err)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_owned();
        let sub = sub.clone().bin_name(format!("cellucid {name}"));
        let man = clap_mangen::Man::new(sub);
        // `.SH` sections of the subcommand under a heading of its own.
        page.extend_from_slice(format!(".SH \"CELLUCID {}\"\n", name.to_uppercase()).as_bytes());
        man.render_description_section(&mut page)
            .map_err(write_err)?;
        man.render_synopsis_section(&mut page).map_err(write_err)?;
        man.render_options_section(&mut page).map_err(write_err)?;
        if sub_has_after_help(&command, &name) {
            man.render_extra_section(&mut page).map_err(write_err)?;
        }
    }
    print_all(&page, "the man page")
}

fn sub_has_after_help(command: &clap::Command, name: &str) -> bool {
    command
        .find_subcommand(name)
        .is_some_and(|s| s.get_after_help().is_some() || s.get_after_long_help().is_some())
}
