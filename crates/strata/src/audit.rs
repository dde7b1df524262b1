//! `strata audit verify`: walks the audit log's hash chain and names the
//! first broken link. `strata audit export`: the log as JSON lines.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_store::Store;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Args, Debug)]
struct StoreArgs {
    /// Strata's data directory (the store is <data-dir>/strata.db).
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store URL instead of the data directory's SQLite file (postgres://…).
    #[arg(long, env = "STRATA_DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check every audit event's hash and link; exit non-zero at the first broken one.
    Verify(StoreArgs),
    /// Print every audit event, in chain order, as JSON lines.
    Export(StoreArgs),
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify(s) => verify(s).await,
        AuditCommand::Export(s) => export(s).await,
    }
}

async fn open(args: StoreArgs) -> anyhow::Result<Store> {
    let StoreArgs {
        data_dir,
        database_url,
    } = args;
    let url = match (database_url, data_dir) {
        (Some(url), _) => url,
        (None, Some(dir)) => {
            let db = dir.join("strata.db");
            anyhow::ensure!(db.is_file(), "no store at {}", db.display());
            format!("sqlite://{}", db.display())
        }
        (None, None) => anyhow::bail!("name the store with --data-dir DIR or --database-url URL"),
    };
    Store::open(&url).await.context("opening the store")
}

async fn export(args: StoreArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let store = open(args).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut after = 0;
    loop {
        let page = store.audit_chain(after, 500).await?;
        for e in &page {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        match page.last() {
            Some(e) if page.len() == 500 => after = e.seq,
            _ => break,
        }
    }
    out.flush()?;
    store.close().await;
    Ok(())
}

async fn verify(args: StoreArgs) -> anyhow::Result<()> {
    let store = open(args).await?;
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
