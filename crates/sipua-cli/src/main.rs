//! `sipua`: the command-line tool of the sipua SIP stack.

#![forbid(unsafe_code)]

mod parse;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sipua: a SIP user agent for the command line.
#[derive(Parser)]
#[command(name = "sipua", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a SIP message from FILE (`-` for stdin) and print what it holds.
    Parse(parse::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Parse(args) => parse::run(&args),
    }
}
