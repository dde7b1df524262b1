//! `strata serve`: API + local runtime + embedded SQLite on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_api::{AppState, Services, bootstrap, metrics::HttpMetrics};
use strata_core::Secret;
use strata_runtime_local::{LocalConfig, LocalRuntime};
use strata_store::Store;
use tokio::net::TcpListener;

use crate::auth_args::AuthArgs;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where Strata keeps its state and the instances' data
    /// [default: /var/lib/strata as root, else $XDG_DATA_HOME/strata]
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API and web UI.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of /metrics and /healthz for operators.
    #[arg(long, env = "STRATA_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Store URL [default: sqlite://<data-dir>/strata.db]; postgres://… for a shared store.
    #[arg(long, env = "STRATA_DATABASE_URL")]
    database_url: Option<String>,
    /// The `iss` of tokens Strata issues [default: http://<listen>].
    #[arg(long, env = "STRATA_ISSUER")]
    issuer: Option<String>,
    /// Ports for PostgreSQL instances, as FIRST-LAST.
    #[arg(long, env = "STRATA_PORT_RANGE", default_value = "15432-16431", value_parser = parse_range)]
    port_range: (u16, u16),
    /// Address instances listen on, and the host in their credentials.
    #[arg(long, env = "STRATA_INSTANCE_HOST", default_value = "127.0.0.1")]
    instance_host: String,
    /// A directory with PostgreSQL server binaries, searched before the system's (repeatable).
    #[arg(long = "pg-bindir")]
    pg_bindirs: Vec<PathBuf>,
    /// Seconds between measurements of each instance's disk usage.
    #[arg(long, default_value_t = 30)]
    quota_interval: u64,
    /// Prepared PostgreSQL data directories kept ready per installed major,
    /// so that a create only claims one (0: every create prepares its own).
    #[arg(long, env = "STRATA_POOL_SIZE", default_value_t = strata_runtime_local::DEFAULT_POOL_SIZE)]
    pool_size: usize,
    /// Log format: json (one object a line) or text.
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    log_format: String,
    #[command(flatten)]
    auth: AuthArgs,
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or("expected FIRST-LAST, e.g. 15432-16431")?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a port"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a port"))?;
    if a == 0 || a > b {
        return Err("FIRST must be 1 or more and at most LAST".into());
    }
    Ok((a, b))
}

fn default_data_dir() -> PathBuf {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if root {
        return PathBuf::from("/var/lib/strata");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("strata")
}

pub(crate) fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    if format == "text" {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    // Everything Strata writes (store, keys, certificates) is private by default.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Traversable (not readable) by the PostgreSQL user that owns the instances below it.
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711))?;
    }
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("strata.db").display()));
    // Instance passwords and signing keys are sealed with a key kept beside
    // the store, not in it (docs/decisions.md).
    let key = strata_store::seal::load_or_create_key_file(&data_dir.join("store.key"))?;
    let store = Store::open(&url)
        .await
        .context("opening the store")?
        .with_sealing_key(key);
    let sealed = store
        .seal_existing()
        .await
        .context("sealing the store's secrets")?;
    if sealed > 0 {
        tracing::info!(sealed, "sealed secrets the store kept in clear");
    }

    let admin_password = std::env::var("STRATA_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .map(Secret::new);
    let boot = bootstrap::bootstrap(&store, &data_dir, admin_password)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e:?}"))?;
    if let Some(p) = &boot.generated_admin_password {
        eprintln!(
            "Created the platform admin 'admin' with password: {}\n(also written to {})",
            p.expose(),
            data_dir.join("admin-password").display()
        );
    }

    let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
    let mut local = LocalConfig::new(data_dir.clone());
    local.listen.clone_from(&args.instance_host);
    local.ports = args.port_range.0..=args.port_range.1;
    local.pool_size = args.pool_size;
    local.extra_bindirs.clone_from(&args.pg_bindirs);
    local.quota_interval = Duration::from_secs(args.quota_interval.max(1));
    let runtime = LocalRuntime::start(
        local,
        store.clone(),
        registry.sub_registry_with_prefix("runtime"),
    )
    .await
    .context("starting the local runtime")?;

    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));
    let auth = args.auth.load(&store, issuer).await?;
    let metrics = HttpMetrics::register(&mut registry);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = AppState::new(Services {
        runtime: Arc::new(runtime.clone()),
        store: store.clone(),
        auth,
        metrics,
        sse_keepalive: Duration::from_secs(15),
        shutdown: shutdown.clone(),
        trusted_proxies: args.auth.trusted_proxies(),
    });
    let (listener, admin_listener) = bind(args.listen, args.admin_listen).await?;
    let pruning = store.spawn_pruning(
        strata_store::prune::PRUNE_INTERVAL,
        shutdown.clone().cancelled_owned(),
    );
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        data_dir = %data_dir.display(),
        "Strata is serving"
    );
    eprintln!(
        "Strata is serving on http://{} (API docs: http://{}/docs, metrics: http://{}/metrics)",
        listener.local_addr()?,
        listener.local_addr()?,
        admin_listener.local_addr()?
    );
    serve_until_signal(state, registry, listener, admin_listener).await?;
    tracing::info!("shutting down: stopping PostgreSQL servers");
    let _ = pruning.await;
    runtime.shutdown().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Binds the API and admin listeners.
pub(crate) async fn bind(
    listen: SocketAddr,
    admin_listen: SocketAddr,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    let api = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let admin = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("listening on {admin_listen}"))?;
    Ok((api, admin))
}

/// Serves the API and the admin endpoints until SIGTERM or SIGINT, then lets
/// open requests finish (event streams end with `state.shutdown`).
pub(crate) async fn serve_until_signal(
    state: AppState,
    registry: prometheus_client::registry::Registry,
    listener: TcpListener,
    admin_listener: TcpListener,
) -> anyhow::Result<()> {
    let shutdown = state.shutdown.clone();
    let app = strata_api::router(state.clone());
    let admin = strata_api::admin_router(state, Arc::new(registry));
    let api = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let admin = axum::serve(admin_listener, admin)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let signal = async {
        shutdown_signal().await;
        shutdown.cancel();
    };
    let (r1, r2, ()) = tokio::join!(api.into_future(), admin.into_future(), signal);
    r1?;
    r2?;
    Ok(())
}
