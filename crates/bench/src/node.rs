//! `strata-bench node`: Strata's chart on testenv's real node (the shared
//! fixture of the end-to-end test, `strata_testenv::platform`), installed
//! with the release `strata` binary, against a local `strata serve` in the
//! same run: N sequential creates of a `micro` instance → Ready on each,
//! every one deleted before the next; the images' sizes; what the node and
//! the chart cost to start.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strata_client::{Client, CreateInstance};
use strata_kube::k8s_openapi::api::core::v1::Pod;
use strata_kube::kube::Api;
use strata_kube::kube::api::ListParams;
use strata_testenv::platform::{ADMIN_USER, Platform};

use crate::node_report::{Figures, ImageSize, Series};
use crate::{create_and_wait, delete_and_wait, loopback_addr, procfs, service_events};

/// The project both series create their instances in (namespace
/// `strata-node-bench` on the node).
const PROJECT: &str = "node-bench";
/// A pod of a deleted instance may take its grace period to stop.
const POD_GONE_TIMEOUT: Duration = Duration::from_mins(2);
const DELETE_TIMEOUT: Duration = Duration::from_mins(3);

/// Measures create → Ready on the real node against a local `strata serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The `strata` binary to put into the image (scripts/bench.sh passes
    /// the release build).
    #[arg(long)]
    strata_binary: PathBuf,
    /// Base URL of a running local `strata serve` (loopback only).
    #[arg(long)]
    local_url: String,
    /// The admin password of that `strata serve`.
    #[arg(long, env = "STRATA_LOCAL_ADMIN_PASSWORD", hide_env_values = true)]
    local_password: String,
    /// Sequential creates on each.
    #[arg(long, default_value_t = 10)]
    creates: usize,
    /// Plan of the instances.
    #[arg(long, default_value = "micro")]
    plan: String,
    /// Seconds one create on the node may take to become Ready.
    #[arg(long, default_value_t = 300)]
    ready_timeout: u64,
    /// Milliseconds between GETs while waiting for Ready on the node.
    #[arg(long, default_value_t = 100)]
    node_poll_ms: u64,
    /// Milliseconds between GETs while waiting for Ready on the local runtime.
    #[arg(long, default_value_t = 10)]
    local_poll_ms: u64,
    /// Commit measured, for the report.
    #[arg(long)]
    commit: Option<String>,
    /// Markdown file whose node section is (re)written; the rest is kept.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Where a series of creates goes.
struct Target<'a> {
    label: &'static str,
    url: String,
    client: Client,
    poll: Duration,
    /// The node's cluster, to wait until a deleted instance's pod is gone.
    kube: Option<&'a strata_kube::kube::Client>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.creates == 0 {
        bail!("--creates must be at least 1");
    }
    loopback_addr(&args.local_url)?;
    let strata_binary = args
        .strata_binary
        .canonicalize()
        .with_context(|| format!("{} is missing", args.strata_binary.display()))?;
    let machine = procfs::machine();
    let date = time::OffsetDateTime::now_utc();

    println!("installing the chart on the real node (images, node, chart)…");
    let platform = Platform::install(&strata_binary).await;
    let t = platform.timings;
    println!(
        "images {:.1} s, node {:.1} s, chart {:.1} s; API at {}",
        t.images.as_secs_f64(),
        t.node.as_secs_f64(),
        t.chart.as_secs_f64(),
        platform.api_url
    );
    let measured = measure(&args, &platform).await;
    if measured.is_err() {
        platform.dump_diagnostics();
    }
    let (node, local) = measured?;
    let kubernetes = platform.client.apiserver_version().await?.git_version;
    let images = platform
        .images
        .iter()
        .map(|i| ImageSize {
            reference: i.reference.clone(),
            archive_bytes: i.archive_bytes(),
            size_bytes: i.size_bytes(),
        })
        .collect();

    let figures = Figures {
        machine,
        date,
        commit: args.commit.clone(),
        kubernetes,
        plan: args.plan.clone(),
        node,
        local,
        images,
        timings: platform.timings,
    };
    println!("\n{}", crate::node_report::summary(&figures));
    if let Some(out) = &args.out {
        let old = std::fs::read_to_string(out).unwrap_or_default();
        std::fs::write(out, crate::node_report::markdown(&figures, &old)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

async fn measure(args: &Args, platform: &Platform) -> anyhow::Result<(Series, Series)> {
    let node = Target {
        label: "node",
        url: platform.api_url.clone(),
        client: signed_in(&platform.api_url, ADMIN_USER, platform.admin_password()).await?,
        poll: Duration::from_millis(args.node_poll_ms),
        kube: Some(&platform.client),
    };
    let local = Target {
        label: "local",
        url: args.local_url.clone(),
        client: signed_in(&args.local_url, ADMIN_USER, &args.local_password).await?,
        poll: Duration::from_millis(args.local_poll_ms),
        kube: None,
    };
    let node_series = series(args, &node).await?;
    let local_series = series(args, &local).await?;
    Ok((node_series, local_series))
}

async fn signed_in(url: &str, user: &str, password: &str) -> anyhow::Result<Client> {
    let mut client = Client::new(url)?;
    client
        .login(user, password)
        .await
        .with_context(|| format!("signing in at {url}"))?;
    Ok(client)
}

/// Creates the project (it may exist), then N creates → Ready, each
/// deleted before the next.
async fn series(args: &Args, target: &Target<'_>) -> anyhow::Result<Series> {
    create_project(target, PROJECT).await?;
    let mut s = Series {
        poll: target.poll,
        ..Series::default()
    };
    for i in 1..=args.creates {
        let name = format!("{}-{i:02}", target.label);
        let req = CreateInstance {
            name: name.clone(),
            plan: Some(args.plan.clone()),
            ..CreateInstance::default()
        };
        let created = create_and_wait(
            &target.client,
            PROJECT,
            &req,
            target.poll,
            Duration::from_secs(args.ready_timeout),
        )
        .await;
        let took = match created {
            Ok(took) => took,
            Err(e) => {
                let _ = delete_and_wait(&target.client, PROJECT, &name, DELETE_TIMEOUT).await;
                return Err(e);
            }
        };
        println!(
            "{} create {name}: {} ms to Ready",
            target.label,
            took.as_millis()
        );
        if s.creates.iter().all(|d| *d < took) {
            s.slowest_steps = service_events(&target.client, PROJECT, &name).await;
        }
        s.creates.push(took);
        let t0 = Instant::now();
        delete_and_wait(&target.client, PROJECT, &name, DELETE_TIMEOUT).await?;
        if let Some(kube) = target.kube {
            pod_gone(kube, &name).await?;
        }
        s.deletes.push(t0.elapsed());
    }
    Ok(s)
}

/// `POST /v1/projects`; an existing project is fine.
async fn create_project(target: &Target<'_>, name: &str) -> anyhow::Result<()> {
    let url = target.url.trim_end_matches('/');
    let token = target.client.token().context("not signed in")?;
    let res = reqwest::Client::builder()
        .timeout(Duration::from_mins(1))
        .build()?
        .post(format!("{url}/v1/projects"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .with_context(|| format!("creating project {name} at {url}"))?;
    let status = res.status();
    if status.is_success() || status == reqwest::StatusCode::CONFLICT {
        return Ok(());
    }
    bail!(
        "creating project {name} at {url}: {status} {}",
        res.text().await.unwrap_or_default()
    )
}

/// Waits until the deleted instance's pod has stopped, so that the next
/// create does not share the node with it.
async fn pod_gone(kube: &strata_kube::kube::Client, name: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), &format!("strata-{PROJECT}"));
    let params = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let deadline = Instant::now() + POD_GONE_TIMEOUT;
    loop {
        if pods.list(&params).await?.items.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the pod of {name} still exists {POD_GONE_TIMEOUT:?} after its deletion");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
