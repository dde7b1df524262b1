//! `strata`: one binary for the server and its tools. It only wires crates together.

mod audit;
mod auth_args;
mod kube;
mod memory;
mod pod_agent;
mod pod_postgres;
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
    /// Run the API against the Kubernetes runtime (stateless; scale it out).
    Api(Box<kube::ApiArgs>),
    /// Run the operator that reconciles PostgresInstance resources.
    Operator(Box<kube::OperatorArgs>),
    /// Run the credentials agent beside PostgreSQL in an instance's pod.
    PodAgent(Box<pod_agent::PodAgentArgs>),
    /// Initialise and supervise PostgreSQL as the main process of an instance's pod.
    PodPostgres(Box<pod_postgres::PodPostgresArgs>),
    /// Copy this executable to a path (an instance pod's init container).
    CopySelf {
        /// Where the copy goes.
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Print the PostgresInstance CRD (YAML).
    Crd,
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Check the audit log (`strata audit verify --data-dir DIR`).
    Audit(audit::AuditArgs),
}

fn block_on<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    // One TLS crypto provider for every client in the process (kube, reqwest).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn main() -> anyhow::Result<()> {
    memory::return_large_blocks();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => block_on(serve::run(*args)),
        Command::Api(args) => block_on(kube::api(*args)),
        Command::Operator(args) => block_on(kube::operator(*args)),
        Command::PodAgent(args) => block_on(pod_agent::run(*args)),
        Command::PodPostgres(args) => {
            let mut code = 1;
            block_on(async {
                code = pod_postgres::run(*args).await?;
                Ok(())
            })?;
            std::process::exit(code)
        }
        Command::CopySelf { to } => pod_postgres::copy_self(&to),
        Command::Crd => {
            print!("{}", strata_kube::crd_yaml());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&strata_api::openapi())?);
            Ok(())
        }
        Command::Audit(args) => block_on(audit::run(args)),
    }
}
