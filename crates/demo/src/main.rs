//! `sluice-demo`: the small backends used by Sluice's tests and benchmarks (nothing can be pulled from a registry).
//!
//! - `sluice-demo http`: a stand-in for `vfarcic/go-demo` (see [`http_service`]);
//! - `sluice-demo tcp`: a redis-like line protocol for TCP-mode tests (see [`tcp_service`]);
//! - `sluice-demo bench`: a fixed-response HTTP/1.1 server for benchmarks (see [`bench_service`]);
//! - `sluice-demo load`: the benchmarks' client side: free ports, API registration and churn,
//!   idle connections (see [`load`]); the rolling-update scenarios' continuous load and WebSocket probe (see
//!   [`traffic`]);
//! - `sluice-demo health`: the health check of `sluice-demo http` for a Docker `HEALTHCHECK` (see [`health`]).
//!
//! Each backend prints `listening on <addr>` on stdout once it accepts connections (port 0 picks a free port) and stops on
//! SIGTERM/SIGINT with exit status 0 (`http --on-sigterm exit` at once, otherwise after draining). Logs go to stdout
//! (`RUST_LOG` filters them, default `info`).

mod bench_service;
mod endpoint;
mod error;
mod health;
mod http_service;
mod listener;
mod load;
mod replica;
mod shutdown;
mod system;
mod tcp_service;
mod traffic;
mod websocket;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use crate::error::DemoError;
use crate::shutdown::{ShutdownTrigger, TerminationSignals};
use crate::system::SystemError;

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
    /// The go-demo stand-in: /demo/hello, /demo/person, /demo/replica, /demo/headers, /demo/slow?ms=N,
    /// /demo/health, /demo/ws (WebSocket echo).
    Http(HttpArgs),
    /// A redis-like line protocol: PING, ECHO x, QUIT.
    Tcp(TcpArgs),
    /// The fixed-response benchmark backend.
    Bench(BenchArgs),
    /// Client side of the benchmarks and of the rolling-update scenarios.
    #[command(subcommand)]
    Load(LoadCommand),
    /// Health check of `sluice-demo http` (for a Docker HEALTHCHECK): exit 0 when the URL answers 2xx, else 1.
    Health {
        /// The URL to check.
        #[arg(long, default_value = health::DEFAULT_URL)]
        url: String,
        /// Seconds the answer may take.
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
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
    /// Continuous GET load on a URL; prints requests, failures (no 2xx answer) and latency percentiles.
    Http {
        /// The URL (http://host:port/path?query).
        url: String,
        /// The Host header (default: the URL's host and port).
        #[arg(long)]
        host: Option<String>,
        /// Requests per second in all (0 = each worker as fast as it can).
        #[arg(long, default_value_t = 100.0, value_parser = seconds)]
        rate: f64,
        /// Workers, each with its own keep-alive connection.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to run (it also stops at SIGTERM/SIGINT).
        #[arg(long, default_value_t = 20.0, value_parser = seconds)]
        seconds: f64,
        /// Seconds one request may take before it counts as failed.
        #[arg(long, default_value_t = 10.0, value_parser = seconds)]
        timeout: f64,
    },
    /// Opens a WebSocket and probes it with echoes until it ends; prints when it opened and ended.
    Ws {
        /// The URL (ws://host:port/path).
        url: String,
        /// The Host header (default: the URL's host and port).
        #[arg(long)]
        host: Option<String>,
        /// Milliseconds between probes.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// Seconds after which the client closes it itself.
        #[arg(long, default_value_t = 60.0, value_parser = seconds)]
        seconds: f64,
    },
}

/// What `sluice-demo http` does on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnSigterm {
    /// Exit at once: connections and requests in flight are cut (like many real apps).
    Exit,
    /// Stop accepting, finish in-flight requests, keep open WebSockets until `--drain-seconds`.
    Drain,
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
    /// What to do on SIGTERM.
    #[arg(long, value_enum, default_value_t = OnSigterm::Drain, env = "DEMO_ON_SIGTERM")]
    on_sigterm: OnSigterm,
    /// With `--on-sigterm drain`: seconds in-flight requests and WebSockets may go on after SIGTERM.
    #[arg(long, default_value_t = http_service::DRAIN_TIMEOUT.as_secs(), env = "DEMO_DRAIN_SECONDS")]
    drain_seconds: u64,
    /// Seconds after the start before the app is healthy: until then /demo/health and every route answer 503.
    #[arg(long, default_value_t = 0.0, env = "DEMO_HEALTHY_AFTER", value_parser = seconds)]
    healthy_after: f64,
}

/// A non-negative, finite number of seconds.
fn seconds(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("{raw:?} is not a number of seconds >= 0")),
    }
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
        Command::Http(args) => run_http(&args),
        Command::Tcp(args) => run_tcp(SocketAddr::new(args.host, args.port)),
        Command::Bench(args) => {
            bench_service::run(SocketAddr::new(args.host, args.port), args.threads)
                .map_err(DemoError::from)
        }
        Command::Load(command) => run_load(command),
        Command::Health { url, timeout } => run_health(&url, Duration::from_secs(timeout)),
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
            Ok(load::register(addr, backend, deadline, &names)?)
        }
        LoadCommand::Churn { api: a, calls } => {
            let (addr, backend, deadline) = api(&a);
            Ok(load::churn(addr, backend, deadline, calls)?)
        }
        LoadCommand::Idle { addr, count, hold } => Ok(load::idle(
            addr,
            count,
            std::time::Duration::from_secs(hold),
        )?),
        LoadCommand::Http {
            url,
            host,
            rate,
            concurrency,
            seconds: secs,
            timeout,
        } => {
            let plan = traffic::Plan {
                endpoint: endpoint::Endpoint::parse(&url, "http")
                    .map_err(traffic::TrafficError::from)?,
                host,
                rate,
                concurrency,
                duration: duration("--seconds", secs)?,
                timeout: duration("--timeout", timeout)?,
            };
            if plan.concurrency == 0 {
                return Err(traffic::TrafficError::Concurrency.into());
            }
            traffic::http(&plan)?;
            Ok(())
        }
        LoadCommand::Ws {
            url,
            host,
            interval_ms,
            seconds: secs,
        } => Ok(traffic::ws(
            &url,
            host.as_deref(),
            Duration::from_millis(interval_ms),
            duration("--seconds", secs)?,
        )?),
    }
}

/// A duration given in seconds on the command line (already checked by [`seconds`]; this refuses the too large).
fn duration(flag: &'static str, secs: f64) -> Result<Duration, DemoError> {
    Duration::try_from_secs_f64(secs).map_err(|_| DemoError::Argument {
        flag,
        value: secs.to_string(),
    })
}

/// `sluice-demo health`: prints why it is unhealthy and fails.
fn run_health(url: &str, timeout: Duration) -> Result<(), DemoError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SystemError::Runtime {
            role: "the health check",
            source,
        })?;
    runtime.block_on(health::check(url, timeout))?;
    Ok(())
}

/// Builds the multi-threaded runtime used by the `http` and `tcp` backends.
fn runtime() -> Result<tokio::runtime::Runtime, SystemError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| SystemError::Runtime {
            role: "the demo backend",
            source,
        })
}

/// Binds `addr`, installs the signal handlers and announces readiness, in that order.
fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, TerminationSignals), SystemError> {
    let std_listener = listener::bind(addr, false)?;
    let local = listener::local_addr(&std_listener, addr)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .map_err(|source| SystemError::Listen { addr, source })?;
    let signals = TerminationSignals::install()?;
    listener::announce(local);
    Ok((listener, signals))
}

/// Runs the go-demo stand-in until a termination signal, then exits at once or drains, as `--on-sigterm` says.
fn run_http(args: &HttpArgs) -> Result<(), DemoError> {
    let addr = SocketAddr::new(args.host, args.port);
    let healthy_after = duration("--healthy-after", args.healthy_after)?;
    runtime()?.block_on(async move {
        let (listener, mut signals) = listen(addr)?;
        let identity = replica::identity();
        info!(identity = identity.as_str(), on_sigterm = ?args.on_sigterm, "http demo ready");
        let app = http_service::App::new(identity, healthy_after);
        let (trigger, shutdown) = ShutdownTrigger::new();
        let drain = Duration::from_secs(args.drain_seconds);
        let server = tokio::spawn(http_service::serve(listener, app, shutdown, drain));
        let signal = signals.recv().await;
        if args.on_sigterm == OnSigterm::Exit {
            // Dropping the runtime cancels every connection task: the kernel closes their sockets.
            info!(signal, "exiting at once");
            return Ok(());
        }
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
    fn rolling_update_flags() {
        let cli = Cli::try_parse_from(["sluice-demo", "http"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Http(ref a) if a.on_sigterm == OnSigterm::Drain && a.drain_seconds == 10 && a.healthy_after == 0.0
        ));
        let cli = Cli::try_parse_from([
            "sluice-demo",
            "http",
            "--on-sigterm",
            "exit",
            "--healthy-after",
            "3",
            "--drain-seconds",
            "30",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Http(ref a) if a.on_sigterm == OnSigterm::Exit && a.drain_seconds == 30 && a.healthy_after == 3.0
        ));
        for bad in [
            &["http", "--on-sigterm", "later"][..],
            &["http", "--healthy-after", "-1"],
            &["load", "http", "http://x/", "--rate", "nan"],
        ] {
            let args = std::iter::once("sluice-demo").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "sluice-demo",
            "load",
            "http",
            "http://127.0.0.1:80/demo/hello",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Load(LoadCommand::Http { concurrency: 8, rate, seconds, .. }) if rate == 100.0 && seconds == 20.0
        ));
        let cli = Cli::try_parse_from(["sluice-demo", "health"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Health { ref url, timeout: 2 } if url == health::DEFAULT_URL
        ));
        assert_eq!(
            seconds("x").unwrap_err(),
            "\"x\" is not a number of seconds >= 0"
        );
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
