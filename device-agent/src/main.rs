use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "weft-agent", version)]
struct Cli {
    #[command(flatten)]
    args: weft_agent::cli::Args,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match weft_agent::cli::run(cli.args).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("weft-agent: {e:#}");
            std::process::exit(2);
        }
    }
}
