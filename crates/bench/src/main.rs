//! `strata-bench`: the benchmarks `scripts/bench.sh` runs. `serve` measures a
//! running `strata serve` in one run — create → Ready latency, GET throughput
//! and latency against a bare axum handler returning the same bytes, idle RSS;
//! `operator` measures a running `strata operator` with 1,000 instances
//! created at once; `node` installs the chart on testenv's real node and
//! times creates there against a local `strata serve`. Each prints the
//! figures and writes them as Markdown.

mod bare;
mod burst;
mod goals;
mod load;
mod node;
mod node_report;
mod operator;
mod operator_report;
mod procfs;
mod report;
mod steady;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use strata_client::{Client, CreateInstance, Phase};

use crate::report::{CreateStep, Figures, LoadFigures};

const PROJECT: &str = "default";
/// Interval between GETs while waiting for Ready.
const POLL: Duration = Duration::from_millis(10);
const READY_TIMEOUT: Duration = Duration::from_mins(2);
const DELETE_TIMEOUT: Duration = Duration::from_mins(1);
/// Threads of the runtime that drives the load (named, to read their CPU time).
const LOAD_THREAD_NAME: &str = "bench-load";

/// Strata's benchmarks (run by `scripts/bench.sh`).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure a running `strata serve`.
    Serve(Args),
    /// Measure a running `strata operator` with N instances created at once.
    Operator(operator::Args),
    /// Install the chart on testenv's real node and measure create → Ready
    /// there against a running local `strata serve`.
    Node(node::Args),
}

/// Measures a running `strata serve` and writes the figures as Markdown.
#[derive(clap::Args, Debug)]
struct Args {
    /// Base URL of the running `strata serve` (loopback only), e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// Process id of that `strata serve`, to read its RSS and CPU time from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Base URL of its /metrics listener (loopback): the benchmark waits until
    /// it reports `--pool-size` prepared clusters before it measures.
    #[arg(long)]
    metrics_url: Option<String>,
    /// The server's `--pool-size` (its default is 4).
    #[arg(long, default_value_t = 4)]
    pool_size: u64,
    #[arg(long, default_value = "admin")]
    username: String,
    #[arg(long, env = "STRATA_ADMIN_PASSWORD", hide_env_values = true)]
    password: String,
    /// Sequential creates to time.
    #[arg(long, default_value_t = 20)]
    creates: usize,
    /// Creates sent at once after the sequential ones; 0 skips the burst.
    #[arg(long, default_value_t = 50)]
    burst: usize,
    /// Concurrent keep-alive connections of the GET load.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured per GET load run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds of (Strata, bare handler), alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds measured per breakdown run (/healthz, /v1/versions, /readyz); 0 skips them.
    #[arg(long, default_value_t = 5)]
    breakdown_duration: u64,
    /// Prefix of the instances' names.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Commit measured, for the report.
    #[arg(long)]
    commit: Option<String>,
    /// Markdown file to write; text after its notes marker is kept.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One TLS crypto provider for the kube client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(procfs::machine().cpus)
        .thread_name(LOAD_THREAD_NAME)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(run(args)),
        Command::Operator(args) => runtime.block_on(operator::run(args)),
        Command::Node(args) => runtime.block_on(node::run(args)),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let addr = loopback_addr(&args.url)?;
    let machine = procfs::machine();
    let date = time::OffsetDateTime::now_utc();

    // Let start-up work (migrations, template cluster, the pool of prepared
    // clusters) settle before calling it idle and timing creates.
    if let Some(url) = &args.metrics_url {
        let took = wait_pool_full(loopback_addr(url)?, args.pool_size).await?;
        println!(
            "pool of prepared clusters full {} ms after the benchmark began",
            took.as_millis()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = procfs::rss_bytes(args.server_pid)?;
    println!("idle RSS after start-up: {}", report::mib(rss_start));

    let mut client = Client::new(&args.url)?;
    client
        .login(&args.username, &args.password)
        .await
        .context("logging in (is STRATA_ADMIN_PASSWORD the server's?)")?;
    let token = client.token().context("no token after login")?.to_owned();

    let mut live: Vec<String> = Vec::new();
    let measured = measure(&args, addr, &client, &token, &mut live).await;
    // Whatever happened, delete what this run created.
    for name in &live {
        if let Err(e) = delete(&client, name).await {
            eprintln!("deleting {name}: {e}");
        }
    }
    let (creates, deletes, steps, burst, rss_after_creates, get) = measured?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_load = procfs::rss_bytes(args.server_pid)?;
    println!(
        "idle RSS after the load and deletes: {}",
        report::mib(rss_after_load)
    );

    let figures = Figures {
        machine,
        date,
        commit: args.commit.clone(),
        creates,
        deletes,
        create_events: steps,
        burst,
        get,
        rss_start,
        rss_after_creates,
        rss_after_load,
    };
    let summary = report::summary(&figures);
    println!("\n{summary}");
    if let Some(out) = &args.out {
        let old = std::fs::read_to_string(out).unwrap_or_default();
        std::fs::write(out, report::markdown(&figures, &old)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

type Measured = (
    Vec<Duration>,
    Vec<Duration>,
    Vec<Vec<CreateStep>>,
    burst::BurstFigures,
    u64,
    report::GetFigures,
);

async fn measure(
    args: &Args,
    addr: SocketAddr,
    client: &Client,
    token: &str,
    live: &mut Vec<String>,
) -> anyhow::Result<Measured> {
    // 1. Create → Ready, sequentially.
    let mut creates = Vec::new();
    for i in 1..=args.creates {
        let name = format!("{}-{i:02}", args.prefix);
        let took = create(client, &name, live).await?;
        println!("create {name}: {} ms to Ready", took.as_millis());
        creates.push(took);
    }
    let steps = create_events(client, &args.prefix, creates.len()).await;
    let mut deletes = Vec::new();
    while let Some(name) = live.pop() {
        let t0 = Instant::now();
        delete(client, &name).await?;
        deletes.push(t0.elapsed());
    }
    println!(
        "creates: p50 {} ms, p95 {} ms, max {} ms",
        percentile(&sorted(&creates), 50.0).as_millis(),
        percentile(&sorted(&creates), 95.0).as_millis(),
        sorted(&creates).last().map_or(0, Duration::as_millis),
    );

    // 2. A burst of creates sent at once.
    let burst = burst::measure(client, &args.prefix, args.burst, live).await?;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after_creates = procfs::rss_bytes(args.server_pid)?;
    println!(
        "idle RSS after the creates and deletes: {}",
        report::mib(rss_after_creates)
    );

    // 3. GET load: Strata and the bare handler, alternating.
    let name = format!("{}-get", args.prefix);
    create(client, &name, live).await?;
    let path = format!("/v1/projects/{PROJECT}/instances/{name}");
    let request = load::get_request(addr, &path, Some(token));
    let (status, body) = load::once(addr, &request).await?;
    if status != 200 {
        bail!("GET {path} answered {status}");
    }
    let bare = bare::BareServer::start(body.clone(), procfs::machine().cpus)?;
    let bare_request = load::get_request(bare.addr, &path, Some(token));
    let (bare_status, bare_body) = load::once(bare.addr, &bare_request).await?;
    if bare_status != 200 || bare_body != body {
        bail!("the bare handler does not answer with the same bytes");
    }
    let main_load = load::Load {
        addr,
        connections: args.connections,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
    };
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let strata = run_load(&main_load, request.clone(), Cpu::Process(args.server_pid)).await?;
        println!("round {round}: strata  {}", strata.line());
        let bare_load = load::Load {
            addr: bare.addr,
            ..main_load.clone()
        };
        let bare_fig = run_load(
            &bare_load,
            bare_request.clone(),
            Cpu::Threads(bare::THREAD_NAME),
        )
        .await?;
        println!("round {round}: bare    {}", bare_fig.line());
        rounds.push((strata, bare_fig));
    }
    drop(bare);

    // Where the time goes: the same server, less of the work per request.
    let mut breakdown = Vec::new();
    if args.breakdown_duration > 0 {
        let small = load::Load {
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(args.breakdown_duration),
            ..main_load.clone()
        };
        for (label, path) in [
            (
                "strata /healthz (middleware, no auth, no store)",
                "/healthz",
            ),
            (
                "strata /v1/versions (+ JWT verification, no store)",
                "/v1/versions",
            ),
            ("strata /readyz (+ one store query, no auth)", "/readyz"),
        ] {
            let req = load::get_request(addr, path, Some(token));
            let fig = run_load(&small, req, Cpu::Process(args.server_pid)).await?;
            println!("{label}: {}", fig.line());
            breakdown.push((label.to_owned(), fig));
        }
    }

    let get = report::GetFigures {
        connections: args.connections,
        warmup: main_load.warmup,
        duration: main_load.duration,
        body_len: body.len(),
        rounds,
        breakdown,
    };
    Ok((creates, deletes, steps, burst, rss_after_creates, get))
}

/// Creates `name` and waits for Ready; returns the time from POST to Ready.
async fn create(client: &Client, name: &str, live: &mut Vec<String>) -> anyhow::Result<Duration> {
    let req = CreateInstance {
        name: name.to_owned(),
        ..CreateInstance::default()
    };
    live.push(name.to_owned());
    create_and_wait(client, PROJECT, &req, POLL, READY_TIMEOUT).await
}

/// POSTs `req` to `project` and polls (every `poll`) until the instance is
/// Ready; returns the time from the POST to the first GET that shows Ready.
pub async fn create_and_wait(
    client: &Client,
    project: &str,
    req: &CreateInstance,
    poll: Duration,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let name = &req.name;
    let t0 = Instant::now();
    client
        .create_instance(project, req, None)
        .await
        .with_context(|| format!("creating {name}"))?;
    loop {
        let i = client.get_instance(project, name).await?;
        match i.status.phase {
            Phase::Ready => return Ok(t0.elapsed()),
            Phase::Failed => bail!("instance {name} failed: {}", i.status.message),
            _ if t0.elapsed() > timeout => {
                bail!("instance {name} is {} after {timeout:?}", i.status.phase);
            }
            _ => tokio::time::sleep(poll).await,
        }
    }
}

pub async fn delete(client: &Client, name: &str) -> anyhow::Result<()> {
    delete_and_wait(client, PROJECT, name, DELETE_TIMEOUT).await
}

/// DELETEs the instance (gone already is fine) and polls until a GET
/// answers 404.
pub async fn delete_and_wait(
    client: &Client,
    project: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    match client.delete_instance(project, name).await {
        Err(e) if e.status() == Some(404) => return Ok(()),
        r => {
            r.with_context(|| format!("deleting {name}"))?;
        }
    }
    client.wait_deleted(project, name, timeout).await?;
    Ok(())
}

/// The service events of each of the `n` sequential creates.
async fn create_events(client: &Client, prefix: &str, n: usize) -> Vec<Vec<CreateStep>> {
    let mut all = Vec::new();
    for i in 1..=n {
        all.push(service_events(client, PROJECT, &format!("{prefix}-{i:02}")).await);
    }
    all
}

/// The service events of an instance, as offsets from its first event;
/// none when the API has none to give.
pub async fn service_events(client: &Client, project: &str, name: &str) -> Vec<CreateStep> {
    let Ok(events) = client.events(project, name, None).await else {
        return Vec::new();
    };
    let Some(first) = events.first().map(|e| e.time) else {
        return Vec::new();
    };
    events
        .iter()
        .map(|e| CreateStep {
            instance: name.to_owned(),
            offset: (e.time - first).unsigned_abs(),
            message: e.message.clone(),
        })
        .collect()
}

/// Whose CPU time a load run is charged with.
enum Cpu {
    Process(u32),
    Threads(&'static str),
}

impl Cpu {
    fn read(&self) -> anyhow::Result<Duration> {
        match self {
            Cpu::Process(pid) => procfs::process_cpu(*pid),
            Cpu::Threads(prefix) => procfs::threads_cpu(prefix),
        }
    }
}

/// One load run, with the server's and the load generator's CPU time over the
/// measured window.
async fn run_load(
    l: &load::Load,
    request: std::sync::Arc<[u8]>,
    cpu: Cpu,
) -> anyhow::Result<LoadFigures> {
    let probe = async {
        tokio::time::sleep(l.warmup).await;
        let server0 = cpu.read()?;
        let client0 = procfs::threads_cpu(LOAD_THREAD_NAME)?;
        tokio::time::sleep(l.duration).await;
        let server = cpu.read()?.saturating_sub(server0);
        let client = procfs::threads_cpu(LOAD_THREAD_NAME)?.saturating_sub(client0);
        anyhow::Ok((server, client))
    };
    let (outcome, cpu) = tokio::join!(load::run(l, request), probe);
    let outcome = outcome?;
    let (server_cpu, client_cpu) = cpu?;
    Ok(LoadFigures::new(&outcome, server_cpu, client_cpu))
}

/// Polls the server's /metrics until its pool holds `size` prepared clusters.
async fn wait_pool_full(metrics: SocketAddr, size: u64) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let request = load::get_request(metrics, "/metrics", None);
    loop {
        let (status, body) = load::once(metrics, &request)
            .await
            .context("reading the server's /metrics")?;
        if status != 200 {
            bail!("the server's /metrics answered {status}");
        }
        let prepared = operator::counter_sum(&String::from_utf8_lossy(&body), "prepared_clusters");
        if prepared >= size {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > READY_TIMEOUT {
            bail!(
                "the pool holds {prepared} prepared clusters after {READY_TIMEOUT:?}, not {size}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The socket address of a loopback `http://` URL; anything else is refused.
pub fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .context("the URL must start with http://")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    let addr: SocketAddr = hostport
        .replace("localhost", "127.0.0.1")
        .parse()
        .with_context(|| format!("{hostport:?} is not IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("the benchmark only sends load to loopback addresses, not {addr}");
    }
    Ok(addr)
}

pub fn sorted(v: &[Duration]) -> Vec<Duration> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Nearest-rank percentile of sorted samples.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rank is in 1..=len
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * as_f64(sorted.len() as u64)).ceil();
    let index = (rank.max(1.0) as usize).min(sorted.len()) - 1;
    sorted[index]
}

/// Counts and sizes as `f64`; they stay far below 2^52 here.
#[allow(clippy::cast_precision_loss)]
pub fn as_f64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(10));
        assert_eq!(percentile(&v, 95.0), Duration::from_millis(19));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(20));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn only_loopback_urls_are_targets() {
        assert!(loopback_addr("http://127.0.0.1:8080").is_ok());
        assert!(loopback_addr("http://localhost:8080/").is_ok());
        assert!(loopback_addr("http://10.0.0.1:8080").is_err());
        assert!(loopback_addr("https://127.0.0.1:8080").is_err());
    }
}
