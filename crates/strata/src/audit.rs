//! `strata audit verify`: walks the audit log's hash chain and names the
//! first broken link.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_store::Store;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check every audit event's hash and link; exit non-zero at the first broken one.
    Verify {
        /// Strata's data directory (the store is <data-dir>/strata.db).
        #[arg(long, env = "STRATA_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Store URL instead of the data directory's SQLite file (postgres://…).
        #[arg(long, env = "STRATA_DATABASE_URL")]
        database_url: Option<String>,
    },
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let AuditCommand::Verify {
        data_dir,
        database_url,
    } = args.command;
    let url = match (database_url, data_dir) {
        (Some(url), _) => url,
        (None, Some(dir)) => {
            let db = dir.join("strata.db");
            anyhow::ensure!(db.is_file(), "no store at {}", db.display());
            format!("sqlite://{}", db.display())
        }
        (None, None) => anyhow::bail!("name the store with --data-dir DIR or --database-url URL"),
    };
    let store = Store::open(&url).await.context("opening the store")?;
    let report = store.verify_audit_chain().await;
    store.close().await;
    let report = report.context("reading the audit log")?;
    if let Some(b) = &report.first_broken {
        anyhow::bail!(
            "audit log BROKEN at event {} (id {}): {}; {} events before it verified",
            b.seq,
            b.id.as_deref().unwrap_or("unknown"),
            b.reason,
            report.events
        );
    }
    println!("audit log OK: {} events, chain intact", report.events);
    Ok(())
}
