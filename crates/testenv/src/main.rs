//! `onepassword-operator-demo`: the local demo (`scripts/demo`, the README's first command).

use std::process::ExitCode;

use clap::Parser;

/// Run the local demo: a one-node Kubernetes cluster on this machine, the Connect simulator
/// and the operator (installed with its chart) in it, with the example data; no 1Password
/// account, no cluster of your own, no Docker.
#[derive(Parser, Debug)]
#[command(name = "onepassword-operator-demo", version)]
struct Cli {
    /// Log level or filter directives.
    #[arg(long, env = "LOG_LEVEL", default_value = "warn")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) =
        onepassword_operator::telemetry::init(onepassword_operator::telemetry::LogFormat::Text, &cli.log_level)
    {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let result = match std::env::current_dir() {
        Ok(dir) => opo_testenv::demo::run(&dir).await,
        Err(e) => Err(format!("cannot read the current directory: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
