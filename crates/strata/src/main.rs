//! `strata`: one binary for the server and its tools. It only wires crates together.

mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata — managed PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, web UI and the local runtime with an embedded SQLite store.
    Serve(Box<serve::ServeArgs>),
    /// Print the OpenAPI document of the REST API.
    Openapi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve::run(*args))
        }
        Command::Openapi => {
            println!("{}", strata_api::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}
