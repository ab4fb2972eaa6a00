//! `sluice-demo`: the small backends used by Sluice's tests and benchmarks (nothing can be pulled from a registry).
//!
//! - `sluice-demo http`: a stand-in for `vfarcic/go-demo` (see [`http_service`]);
//! - `sluice-demo tcp`: a redis-like line protocol for TCP-mode tests (see [`tcp_service`]);
//! - `sluice-demo bench`: a fixed-response HTTP/1.1 server for benchmarks (see [`bench_service`]);
//! - `sluice-demo load`: the benchmarks' client side: free ports, API registration and churn,
//!   idle connections (see [`load`]).
//!
//! Each backend prints `listening on <addr>` on stdout once it accepts connections (port 0 picks a free port) and stops on
//! SIGTERM/SIGINT with exit status 0. Logs go to stdout (`RUST_LOG` filters them, default `info`).

mod bench_service;
mod error;
mod http_service;
mod listener;
mod load;
mod replica;
mod shutdown;
mod tcp_service;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::error::DemoError;
use crate::shutdown::{ShutdownTrigger, TerminationSignals};

/// Command line of `sluice-demo`.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-demo",
    version,
    about = "Demo and benchmark backends for Sluice"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The backend to run.
#[derive(Debug, Subcommand)]
enum Command {
    /// The go-demo stand-in: /demo/hello, /demo/person, /demo/replica, /demo/headers, /demo/slow?ms=N.
    Http(HttpArgs),
    /// A redis-like line protocol: PING, ECHO x, QUIT.
    Tcp(TcpArgs),
    /// The fixed-response benchmark backend.
    Bench(BenchArgs),
    /// Client side of the benchmarks.
    #[command(subcommand)]
    Load(LoadCommand),
}

/// A benchmark client command.
#[derive(Debug, Subcommand)]
enum LoadCommand {
    /// Print N free loopback ports.
    Ports {
        /// How many.
        count: usize,
    },
    /// Register one service per line of NAMES (path /<name>) through Sluice's API.
    Register {
        #[command(flatten)]
        api: ApiArgs,
        /// File with one service name per line.
        names: String,
    },
    /// Add / update / remove services through Sluice's API; prints latency percentiles.
    Churn {
        #[command(flatten)]
        api: ApiArgs,
        /// Number of API calls.
        calls: usize,
    },
    /// Open connections that send nothing and hold them.
    Idle {
        /// Where to connect.
        addr: SocketAddr,
        /// How many connections.
        count: usize,
        /// How long to hold them, in seconds.
        #[arg(long, default_value_t = 3600)]
        hold: u64,
    },
}

/// Where Sluice's API and the benchmark backend are.
#[derive(Debug, Args)]
struct ApiArgs {
    /// Sluice's API port on 127.0.0.1.
    #[arg(long)]
    api: u16,
    /// The backend port every registered service points at (on 127.0.0.1).
    #[arg(long)]
    backend: u16,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    deadline: u64,
}

/// Options of the go-demo stand-in.
#[derive(Debug, Args)]
struct HttpArgs {
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    host: IpAddr,
}

/// Options of the redis-like backend.
#[derive(Debug, Args)]
struct TcpArgs {
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 6379)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    host: IpAddr,
}

/// Options of the benchmark backend.
#[derive(Debug, Args)]
struct BenchArgs {
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    host: IpAddr,
    /// Worker threads, each with its own runtime and SO_REUSEPORT listener (0 = one per core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Http(args) => run_http(SocketAddr::new(args.host, args.port)),
        Command::Tcp(args) => run_tcp(SocketAddr::new(args.host, args.port)),
        Command::Bench(args) => {
            bench_service::run(SocketAddr::new(args.host, args.port), args.threads)
        }
        Command::Load(command) => run_load(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "sluice-demo failed");
            ExitCode::FAILURE
        }
    }
}

fn run_load(command: LoadCommand) -> Result<(), DemoError> {
    let api = |a: &ApiArgs| {
        (
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.api)),
            a.backend,
            std::time::Duration::from_secs(a.deadline),
        )
    };
    match command {
        LoadCommand::Ports { count } => {
            let ports = load::ports(count)?;
            let line: Vec<String> = ports.iter().map(u16::to_string).collect();
            println!("{}", line.join(" "));
            Ok(())
        }
        LoadCommand::Register { api: a, names } => {
            let (addr, backend, deadline) = api(&a);
            load::register(addr, backend, deadline, &names)
        }
        LoadCommand::Churn { api: a, calls } => {
            let (addr, backend, deadline) = api(&a);
            load::churn(addr, backend, deadline, calls)
        }
        LoadCommand::Idle { addr, count, hold } => {
            load::idle(addr, count, std::time::Duration::from_secs(hold))
        }
    }
}

/// Builds the multi-threaded runtime used by the `http` and `tcp` backends.
fn runtime() -> Result<tokio::runtime::Runtime, DemoError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| DemoError::Runtime {
            role: "the demo backend",
            source,
        })
}

/// Binds `addr`, installs the signal handlers and announces readiness, in that order.
fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, TerminationSignals), DemoError> {
    let std_listener = listener::bind(addr, false)?;
    let local = listener::local_addr(&std_listener, addr)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|source| DemoError::Listen { addr, source })?;
    let signals = TerminationSignals::install()?;
    listener::announce(local);
    Ok((listener, signals))
}

/// Runs the go-demo stand-in until a termination signal, then drains in-flight requests.
fn run_http(addr: SocketAddr) -> Result<(), DemoError> {
    runtime()?.block_on(async move {
        let (listener, mut signals) = listen(addr)?;
        let identity = replica::identity();
        info!(identity = identity.as_str(), "http demo ready");
        let (trigger, shutdown) = ShutdownTrigger::new();
        let server = tokio::spawn(http_service::serve(listener, identity, shutdown));
        let signal = signals.recv().await;
        info!(signal, "stopping");
        trigger.fire();
        if let Err(join_error) = server.await {
            error!(error = %join_error, "http server task failed");
        }
        Ok(())
    })
}

/// Runs the redis-like backend until a termination signal.
fn run_tcp(addr: SocketAddr) -> Result<(), DemoError> {
    runtime()?.block_on(async move {
        let (listener, mut signals) = listen(addr)?;
        info!("tcp demo ready");
        let (trigger, shutdown) = ShutdownTrigger::new();
        let server = tokio::spawn(tcp_service::serve(listener, shutdown));
        let signal = signals.recv().await;
        info!(signal, "stopping");
        trigger.fire();
        if let Err(join_error) = server.await {
            error!(error = %join_error, "tcp server task failed");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_overrides() {
        let cli = Cli::try_parse_from(["sluice-demo", "http"]).unwrap();
        assert!(
            matches!(cli.command, Command::Http(ref a) if a.port == 8080 && a.host == Ipv4Addr::UNSPECIFIED)
        );
        let cli = Cli::try_parse_from(["sluice-demo", "tcp"]).unwrap();
        assert!(matches!(cli.command, Command::Tcp(ref a) if a.port == 6379));
        let cli = Cli::try_parse_from([
            "sluice-demo",
            "bench",
            "--port",
            "0",
            "--threads",
            "4",
            "--host",
            "127.0.0.1",
        ])
        .unwrap();
        match cli.command {
            Command::Bench(args) => {
                assert_eq!(args.threads, 4);
                assert_eq!((args.host, args.port), (IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["sluice-demo", "bench"]).unwrap();
        assert!(matches!(cli.command, Command::Bench(ref a) if a.threads == 1 && a.port == 8080));
        assert!(Cli::try_parse_from(["sluice-demo", "http", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["sluice-demo"]).is_err());
        let cli = Cli::try_parse_from([
            "sluice-demo",
            "load",
            "churn",
            "--api",
            "1",
            "--backend",
            "2",
            "30",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Load(LoadCommand::Churn { ref api, calls: 30 }) if api.api == 1 && api.backend == 2
        ));
        let cli =
            Cli::try_parse_from(["sluice-demo", "load", "idle", "127.0.0.1:80", "5"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Load(LoadCommand::Idle {
                count: 5,
                hold: 3600,
                ..
            })
        ));
    }
}
