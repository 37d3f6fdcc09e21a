//! `pizzapi-runner`: parses the configuration, installs the signal handlers
//! and runs the daemon (`pizzapi_runner::run`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pizzapi_runner::config::{Args, Config, EXIT_CONFIG};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            let _ = err.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let print_config = args.print_config;
    let config = match Config::from_args(args, &|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("pizzapi-runner: bad configuration: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if print_config {
        println!(
            "{}",
            serde_json::to_string_pretty(&config.printable()).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }

    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    match serve(config) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("pizzapi-runner: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Installed before anything else runs, so an early signal is not lost.
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the SIGINT handler")?;
        let signals = async move {
            tokio::select! {
                _ = sigterm.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
                _ = sigint.recv() => tracing::info!(signal = "SIGINT", "signal received"),
            }
        };
        match pizzapi_runner::run(config, signals).await {
            Ok(reason) => Ok(reason.exit_code()),
            Err(err) => {
                tracing::error!(error = %err, "runner could not start");
                eprintln!("pizzapi-runner: {err}");
                Ok(err.exit_code())
            }
        }
    })
}
