//! `connect-sim`: a Connect-compatible server for tests, benchmarks and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use connect_sim::{DataFile, SimConfig};
use tracing_subscriber::EnvFilter;

/// Run a Connect-compatible simulator (tests, benchmarks, demo; no 1Password account).
#[derive(Parser, Debug)]
#[command(name = "connect-sim", version)]
struct Cli {
    /// YAML data file (vaults, items, tokens); the embedded example when absent.
    #[arg(long, env = "OP_SIM_DATA")]
    data: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "OP_SIM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Bearer token of the `/__sim` admin API (faults, request counts).
    #[arg(long, env = "OP_SIM_ADMIN_TOKEN", default_value = connect_sim::DEFAULT_ADMIN_TOKEN, hide_env_values = true)]
    admin_token: String,
    /// Largest file served inline, in KiB (as OP_MAX_INLINE_FILE_SIZE_KB on a real server).
    #[arg(long, env = "OP_MAX_INLINE_FILE_SIZE_KB", default_value_t = 100)]
    max_inline_file_size_kb: u64,
    /// Log level or filter directives (e.g. `info`, `connect_sim=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: invalid log level {:?}: {e}", cli.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let (data, base_dir) = match &cli.data {
        Some(path) => {
            let base = path.parent().map(PathBuf::from).unwrap_or_default();
            (DataFile::load(path)?, base)
        }
        None => (DataFile::embedded_example(), PathBuf::from(".")),
    };
    let config = SimConfig {
        data,
        base_dir,
        admin_token: cli.admin_token,
        max_inline_file_size_kb: cli.max_inline_file_size_kb,
    };
    let running = connect_sim::start(config, cli.listen).await?;
    // Tests and scripts read this line to learn the port.
    println!("connect-sim listening on {}", running.url());
    tracing::info!(addr = %running.addr, "Connect simulator started");
    running
        .serve_until_signal()
        .await
        .map_err(|e| format!("server failed: {e}"))
}
