//! `mock-relay`: a local `/runner` relay for developing a runner.
//!
//! Thin layer over the library: parse flags, print a banner with the line
//! that starts a runner against this relay, log every event, stop on Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mock_relay::{
    DEFAULT_API_KEY, DEFAULT_PORT, DEFAULT_TRANSCRIPT_CAP, DEFAULT_TRANSCRIPT_MAX_BYTES, MockRelay,
    RelayHandle,
};

/// Exit code for a bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// A mock PizzaPi relay for developing and testing a runner on your laptop.
///
/// It speaks the /runner Socket.IO protocol like the real relay (API-key
/// check, runnerId/runnerSecret binding, request/reply correlation), logs
/// every event both ways, and has a REST control API on the same port to
/// drive the runner and to misbehave on purpose (kick it as the real relay
/// does, drop its connection as a network failure would, refuse
/// handshakes, delay or drop events, restart the listener).
///
/// Start it, open the inspector page it prints (http://127.0.0.1:7492/),
/// copy the PIZZAPI_RELAY_URL=… line, and start a runner with it. Try
/// `curl http://127.0.0.1:7492/api/runners`.
#[derive(Parser)]
#[command(name = "mock-relay", version, about, long_about)]
struct Cli {
    /// Address to listen on. Anything but a loopback address also needs
    /// --control-token, so that nobody on the network can drive your runner.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), env = "PIZZAPI_MOCK_RELAY_HOST")]
    host: IpAddr,

    /// Port to listen on; 0 picks a free one (the banner shows which).
    #[arg(long, default_value_t = DEFAULT_PORT, env = "PIZZAPI_MOCK_RELAY_PORT")]
    port: u16,

    /// An API key runners may connect with. Repeat the flag for several
    /// keys. [default: dev-key]
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "PIZZAPI_MOCK_RELAY_API_KEYS",
        value_delimiter = ','
    )]
    api_keys: Vec<String>,

    /// Also write every recorded event to FILE, one JSON object per line
    /// (mode 0600, runnerSecret and apiKey masked). [default: none]
    #[arg(long, value_name = "FILE", env = "PIZZAPI_MOCK_RELAY_TRANSCRIPT")]
    transcript: Option<PathBuf>,

    /// How many events the in-memory transcript (GET /api/transcript) keeps;
    /// older ones are replaced by a "records_dropped" marker.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TRANSCRIPT_CAP)]
    transcript_cap: usize,

    /// How many bytes of payload the in-memory transcript keeps, besides
    /// --transcript-cap; older events are replaced the same way.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_TRANSCRIPT_MAX_BYTES)]
    transcript_max_bytes: usize,

    /// A host name requests may carry in their Host header, besides
    /// 127.0.0.1, localhost, [::1] and the --host address (repeatable). Any
    /// other Host is refused, and so is every cross-origin browser request,
    /// so that no web page you visit can drive your runner.
    #[arg(
        long = "allowed-host",
        value_name = "NAME",
        env = "PIZZAPI_MOCK_RELAY_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,

    /// Bearer token the REST control API requires (`Authorization: Bearer
    /// TOKEN`). Required with a non-loopback --host. [default: none]
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PIZZAPI_MOCK_RELAY_CONTROL_TOKEN",
        hide_env_values = true
    )]
    control_token: Option<String>,

    /// What to log: error, warn, info (one line per event), debug, trace, or
    /// a tracing filter such as `mock_relay=debug,socketioxide=info`.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "info",
        env = "PIZZAPI_MOCK_RELAY_LOG"
    )]
    log_level: String,
}

impl Cli {
    fn builder(&self) -> mock_relay::RelayBuilder {
        let mut builder = MockRelay::builder()
            .host(self.host)
            .port(self.port)
            .transcript_cap(self.transcript_cap)
            .transcript_max_bytes(self.transcript_max_bytes);
        for host in &self.allowed_hosts {
            builder = builder.allowed_host(host.clone());
        }
        for key in &self.api_keys {
            builder = builder.api_key(key.clone());
        }
        if let Some(path) = &self.transcript {
            builder = builder.transcript_file(path.clone());
        }
        if let Some(token) = &self.control_token {
            builder = builder.control_token(token.clone());
        }
        builder
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log_level) {
        Ok(filter) => filter,
        Err(err) => {
            eprintln!("mock-relay: invalid --log-level {:?}: {err}", cli.log_level);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let builder = cli.builder();
    if let Err(err) = builder.validate() {
        eprintln!("mock-relay: {err}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match serve(builder) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mock-relay: {err:#}");
            if matches!(
                err.downcast_ref::<mock_relay::RelayError>(),
                Some(mock_relay::RelayError::Bind { .. } | mock_relay::RelayError::Config(_))
            ) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[tokio::main]
async fn serve(builder: mock_relay::RelayBuilder) -> anyhow::Result<()> {
    mock_relay::run(builder, shutdown_signal(), print_banner)
        .await
        .context("the relay stopped")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn print_banner(relay: &RelayHandle) {
    // A wildcard address is not something a runner can connect to.
    let addr = relay.addr();
    let reachable = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    };
    let url = format!("http://{reachable}");
    let keys = relay.api_keys();
    let key = keys.first().map_or(DEFAULT_API_KEY, String::as_str);
    println!("mock-relay listening on {url}");
    println!("  inspector page      {url}/  (runners, traffic, send, terminal, faults, record)");
    println!("  runners connect to  {url}/runner (Socket.IO, WebSocket only)");
    println!("  control API         {url}/api/runners, {url}/api/transcript");
    println!("  accepted API keys   {}", keys.join(", "));
    println!();
    println!("Start a runner against it:");
    println!();
    println!("  PIZZAPI_RELAY_URL={url} PIZZAPI_API_KEY={key} cargo run -p pizzapi-runner");
    println!();
    println!("Every event is logged below. Press Ctrl-C to stop.");
}
