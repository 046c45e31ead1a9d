//! `oplog`: run an oplog-sync node, write to it, read its log and watch it converge.
//!
//! Every command works on a data directory (`--data-dir`, default `./oplog-data`) holding the
//! node's identity key (`identity.key`) and its log (`log.redb`). While `oplog serve` runs there,
//! the other commands talk to it through its control socket (`control.sock`, JSON lines), since
//! redb lets one process open a file; without a server they open the file themselves.
//!
//! Exit codes: 0 ok, 1 error, 2 usage.

mod cli;
mod control;
mod datadir;
mod demo;
mod error;
mod exec;
mod graph;
mod metrics_http;
mod output;
mod serve;
mod timefmt;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    match cli.command {
        Command::Serve(args) => serve::serve(&cli.data_dir, args).await,
        Command::Demo { writes } => demo::run(writes as usize).await,
        command => {
            let request = exec::Request::from_command(command)?;
            let progress = matches!(request, exec::Request::Sync { .. }) && !json;
            let value = control::call(&cli.data_dir, &request, progress).await?;
            output::print(&request, &value, json)
        }
    }
}
