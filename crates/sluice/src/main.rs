//! `sluice`: the binary. It parses the command line, sets up logging and signals, and wires
//! the crates together; the work itself lives in `sluice-core`, `sluice-proxy`, `sluice-api`
//! and `sluice-docker`.

mod listener;
mod proxy;
mod signal;
mod variables;
mod vars;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// mimalloc: the data plane allocates small, short-lived buffers per request from several
/// threads; glibc's allocator spent a visible share of the profile on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Docker Flow Proxy compatible reverse proxy for Docker Swarm.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy: the HTTP data plane on DEFAULT_PORTS/BIND_PORTS and the control API on PORT.
    Proxy,
    /// Run the Swarm listener: watch Docker services and notify the proxies (DFSL's job).
    Listener,
}

fn main() -> std::process::ExitCode {
    // Every setting is an environment variable: each program's `--help` lists them.
    let command = Cli::command()
        .mut_subcommand("proxy", |c| {
            c.after_help(variables::help("Environment variables", variables::PROXY))
        })
        .mut_subcommand("listener", |c| {
            c.after_help(variables::help(
                "Environment variables",
                variables::LISTENER,
            ))
        });
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    init_logging();
    let result = match cli.command {
        Command::Proxy => proxy::run(),
        Command::Listener => listener::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sluice: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LOG_LEVEL").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
