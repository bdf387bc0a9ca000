//! `sipua`: the command-line tool of the sipua SIP stack.

#![forbid(unsafe_code)]

mod account;
mod call;
mod demo;
mod events;
mod media;
mod parse;
mod serve;
mod signals;
mod trace;
mod transfer;
mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sipua: a SIP user agent for the command line.
#[derive(Parser)]
#[command(name = "sipua", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    trace: trace::TraceArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Make a real call on this machine, with audio and DTMF, and report what happened.
    Demo(demo::DemoArgs),
    /// Parse a SIP message from FILE (`-` for stdin) and print what it holds.
    Parse(parse::Args),
    /// Answer calls on UDP, TCP, TLS, WS or WSS, printing what happens.
    Serve(Box<serve::ServeArgs>),
    /// Call a SIP URI over any transport, hold the call, hang up (or make many calls).
    Call(call::CallArgs),
    /// Register an address of record at its registrar, stay registered, unregister.
    Register(account::RegisterCommand),
    /// Send a MESSAGE (RFC 3428) and print the answer.
    Message(account::MessageCommand),
    /// Subscribe to an event package (presence, message-summary...) and print the NOTIFYs.
    Subscribe(events::SubscribeArgs),
    /// Call a SIP URI, then transfer the call (REFER) to a target, blind or attended.
    Transfer(transfer::TransferArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = trace::install(&cli.trace) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Demo(args) => demo::demo(&args),
        Command::Parse(args) => parse::run(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Call(args) => call::call(&args),
        Command::Register(args) => account::register_command(&args),
        Command::Message(args) => account::message_command(&args),
        Command::Subscribe(args) => events::subscribe_command(&args),
        Command::Transfer(args) => transfer::transfer_command(&args),
    }
}
