use clap::Parser;
use tracing_subscriber::EnvFilter;
use weft_orchestrator::cli::{Cli, Cmd, run};

// glibc's malloc took about a fifth of the orchestrator's CPU under load, much of it in
// consolidating memory freed by a thread other than the one that allocated it (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The server and agents log at info by default; the commands for people stay quiet unless
    // something is wrong.
    let default = match cli.cmd {
        Cmd::Serve(_) | Cmd::Agent(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("weft: {e:#}");
            std::process::exit(2);
        }
    }
}
