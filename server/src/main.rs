//! The `cstore` binary: parses the command line, sets up logging, and runs a subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cstore_server::cli::{Cli, Command, TokenCommand};
use cstore_server::serve;

/// mimalloc rather than glibc's malloc: glibc's allocator held 23% of the server's CPU per
/// durable insert (docs/bench/single-node-insert-profile.md); with mimalloc the same run
/// writes about 28% more per second.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Backup and restore report by their progress bar and one summary line: only problems
    // are logged.
    let default_filter = match cli.command {
        Command::Backup(_) | Command::Restore(_) => "warn,openraft=error",
        _ => "info,openraft=error",
    };
    // Logs go to stderr, so `cstore token create` prints only the token on stdout.
    tracing_subscriber::fmt()
        .with_env_filter(
            // openraft logs every election step at info and every failed heartbeat to a down
            // member at warn (ten lines a second); cluster roles are logged by cstore itself.
            // RUST_LOG=openraft=info brings them back.
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Serve(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve::run(args, serve::shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Backup(args) => cstore_server::backup::run_backup(args),
        Command::Restore(args) => cstore_server::backup::run_restore(args),
        Command::Cluster(args) => match cstore_server::admin::run(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Token(TokenCommand::Create(args)) => {
            let now_s = cstore_server::clock::now_ms().0 / 1000;
            match args.mint(now_s) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
