//! Argument parsing and dispatch.

mod config;
mod exec;
mod forward;
mod info;
mod report;
mod schema;
mod shell;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether::options::Overrides;
use tether::{Error, Lab};

/// Reach hosts over pluggable transports: run commands, move files.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, propagate_version = true)]
struct Cli {
    /// Inventory file (repeatable; later files win). Default: $TETHER_HOSTS, else ./hosts.json.
    #[arg(long = "hosts", value_name = "FILE", global = true)]
    hosts: Vec<PathBuf>,
    /// Settings file with host preferences. Default: $TETHER_SETTINGS, else ./.tether/settings.toml.
    #[arg(long = "settings", value_name = "FILE", global = true)]
    settings: Option<PathBuf>,
    /// Override one option, e.g. `-o ssh_options.port=2222` (value read as TOML, else as text).
    #[arg(short = 'o', long = "option", value_name = "TABLE.KEY=VALUE", global = true, value_parser = parse_option)]
    options: Vec<(String, String, serde_json::Value)>,
    /// Command transport scheme to use instead of the host's `term`.
    #[arg(long, value_name = "SCHEME", global = true)]
    term: Option<String>,
    /// File transport scheme to use instead of the host's `transfer`.
    #[arg(long, value_name = "SCHEME", global = true)]
    transfer: Option<String>,
    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run a command on HOST, streaming its output; exits with its exit code.
    Exec(exec::ExecArgs),
    /// Open an interactive shell on HOST (raw terminal, window size followed).
    Shell(shell::ShellArgs),
    /// Upload a local file (with -r, a directory tree) to HOST.
    Put(transfer::PutArgs),
    /// Download a file (with -r, a directory tree) from HOST.
    Get(transfer::GetArgs),
    /// Describe a path on HOST.
    Stat(transfer::StatArgs),
    /// Forward local ports to destinations reached through HOST, until Ctrl-C.
    Forward(forward::ForwardArgs),
    /// Show every effective option of a host, with where it came from.
    Config(config::ConfigArgs),
    /// List the hosts of the inventory.
    Hosts,
    /// List the transport schemes this build knows.
    Schemes,
    /// Print a JSON Schema of a configuration file, for editor completion and checks.
    Schema(schema::SchemaArgs),
}

/// What every subcommand gets: the lab and the output mode.
pub(crate) struct Context {
    lab: Lab,
    overrides: Overrides,
    pub(crate) json: bool,
}

impl Context {
    pub(crate) fn host(&self, target: &str) -> tether::Result<tether::Host> {
        self.lab.host_with(target, &self.overrides)
    }

    pub(crate) fn config(&self, target: &str) -> tether::Result<tether::HostConfig> {
        self.lab.config(target, &self.overrides)
    }
}

fn parse_option(text: &str) -> Result<(String, String, serde_json::Value), String> {
    tether::options::parse_assignment(text).map_err(|e| e.context().unwrap_or_default().to_string())
}

/// How a failure of tether itself (not of the remote command) exits.
const TETHER_FAILED: u8 = 1;
/// `exec` keeps small codes for the remote command, as `ssh` does.
const EXEC_TETHER_FAILED: u8 = 255;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tether: cannot start the runtime: {err}");
            return ExitCode::from(TETHER_FAILED);
        }
    };
    let failure_code = if matches!(cli.command, Commands::Exec(_)) { EXEC_TETHER_FAILED } else { TETHER_FAILED };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tether: {err}");
            failure_code
        }
    };
    // A forwarded stdin may still be blocked reading the terminal; don't wait for it.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<u8, Error> {
    // The schema depends only on what is compiled in; a broken inventory is
    // exactly when someone needs it.
    if let Commands::Schema(args) = &cli.command {
        return schema::run(args);
    }
    let lab = Lab::discover(&cli.hosts, cli.settings.as_deref())?;
    let overrides = Overrides { term: cli.term, transfer: cli.transfer, options: cli.options, from_command_line: true };
    let context = Context { lab, overrides, json: cli.json };
    match cli.command {
        Commands::Exec(args) => exec::run(&context, args).await,
        Commands::Shell(args) => shell::run(&context, args).await,
        Commands::Put(args) => transfer::put(&context, args).await,
        Commands::Get(args) => transfer::get(&context, args).await,
        Commands::Stat(args) => transfer::stat(&context, args).await,
        Commands::Forward(args) => forward::run(&context, args).await,
        Commands::Config(args) => config::run(&context, args),
        Commands::Hosts => info::hosts(&context),
        Commands::Schemes => info::schemes(&context),
        Commands::Schema(args) => schema::run(&args),
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Libraries that log secrets at trace level (suppaftp writes every
    // command it sends, `PASS <password>` included) are held below trace
    // whatever -v or RUST_LOG ask for.
    let keeps_secrets =
        filter_fn(|metadata| *metadata.level() != tracing::Level::TRACE || !logs_secrets_at_trace(metadata.target()));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    tracing_subscriber::registry().with(output.with_filter(filter.and(keeps_secrets))).init();
}

/// Whether `target` is, or is inside, a log target that writes secrets at trace level.
fn logs_secrets_at_trace(target: &str) -> bool {
    #[cfg(feature = "ftp")]
    let targets: &[&str] = &[tether::ftp::LOG_TARGET_WITH_SECRETS];
    #[cfg(not(feature = "ftp"))]
    let targets: &[&str] = &[];
    targets.iter().any(|t| target == *t || target.strip_prefix(t).is_some_and(|rest| rest.starts_with("::")))
}
