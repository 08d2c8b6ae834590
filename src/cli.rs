//! Command-line settings shared by subcommands; every flag has an environment fallback
//! compatible with 1Password's Go operator.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use url::Url;

use crate::connect::{ConnectConfig, RetryPolicy};

/// How to reach Connect.
#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// Connect server URL, e.g. http://onepassword-connect:8080. `run` may go without one
    /// (and without a token): then only OnePasswordItems with a connectRef are synced.
    #[arg(long = "connect-host", env = "OP_CONNECT_HOST")]
    pub host: Option<Url>,
    /// Connect access token. Prefer --connect-token-file in clusters.
    #[arg(
        long = "connect-token",
        env = "OP_CONNECT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the Connect access token; read again when Connect rejects the token and
    /// at every change-detection poll, so a rotated token is used without a restart.
    #[arg(long = "connect-token-file", env = "OP_CONNECT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM bundle of CAs to trust for an HTTPS Connect host.
    #[arg(long = "connect-ca-file", env = "OP_CONNECT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one Connect request, in seconds.
    #[arg(long = "connect-timeout", env = "OP_CONNECT_TIMEOUT", default_value_t = 15)]
    pub timeout_secs: u64,
}

impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectArgs")
            .field("host", &self.host.as_ref().map(Url::as_str))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

impl ConnectArgs {
    /// Whether any Connect setting is given: none at all means no connection of its own.
    pub fn is_given(&self) -> bool {
        self.host.is_some() || self.token.is_some() || self.token_file.is_some()
    }

    /// The client configuration; errors name the setting to fix.
    pub fn to_config(&self) -> Result<ConnectConfig, String> {
        let Some(host) = &self.host else {
            return Err("no Connect host: set OP_CONNECT_HOST (--connect-host)".into());
        };
        let token = match (&self.token, &self.token_file) {
            (Some(token), None) => token.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the Connect token file {}: {e}", path.display()))?,
            (None, None) => return Err("no Connect token: set OP_CONNECT_TOKEN or OP_CONNECT_TOKEN_FILE".into()),
            (Some(_), Some(_)) => return Err("give either a Connect token or a token file, not both".into()),
        };
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err("the Connect token is empty".into());
        }
        let mut config = ConnectConfig::new(host.clone(), SecretString::from(token));
        config.token_file = self.token_file.clone();
        config.timeout = Duration::from_secs(self.timeout_secs.max(1));
        config.retry = RetryPolicy::default();
        if let Some(path) = &self.ca_file {
            config.ca_bundle_pem =
                Some(std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        connect: ConnectArgs,
    }

    #[test]
    fn token_from_flag_or_file_and_clear_errors() {
        let cli = Cli::parse_from([
            "x",
            "--connect-host",
            "http://c:8080",
            "--connect-token",
            " s3cret-token-value \n",
        ]);
        let config = cli.connect.to_config().unwrap();
        assert_eq!(config.host.as_str(), "http://c:8080/");
        assert!(!format!("{:?}", cli.connect).contains("s3cret-token-value"));
        assert!(!format!("{config:?}").contains("s3cret-token-value"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let cli = Cli::parse_from([
            "x",
            "--connect-host",
            "http://c",
            "--connect-token-file",
            file.to_str().unwrap(),
        ]);
        cli.connect.to_config().unwrap();

        let cli = Cli::parse_from(["x", "--connect-host", "http://c"]);
        assert!(cli.connect.to_config().unwrap_err().contains("OP_CONNECT_TOKEN"));
        let cli = Cli::parse_from([
            "x",
            "--connect-host",
            "http://c",
            "--connect-token-file",
            "/nonexistent/t",
        ]);
        assert!(cli.connect.to_config().unwrap_err().contains("/nonexistent/t"));
    }
}
