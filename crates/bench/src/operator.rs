//! `strata-bench operator`: creates N `PostgresInstance`s at once against a
//! kube-apiserver on which `strata operator` runs (both started by
//! `scripts/bench.sh`), and measures the time until steady state (see
//! `steady`), the operator's peak and resting memory, its CPU time, and its
//! reconciles at rest; the API server's request counts show what the
//! operator asked of it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use strata_kube::k8s_openapi::api::apps::v1::StatefulSet;
use strata_kube::k8s_openapi::api::coordination::v1::Lease;
use strata_kube::k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Secret, Service, ServiceAccount,
};
use strata_kube::k8s_openapi::api::networking::v1::NetworkPolicy;
use strata_kube::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use strata_kube::k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use strata_kube::k8s_openapi::serde::de::DeserializeOwned;
use strata_kube::kube::api::{ListParams, PostParams};
use strata_kube::kube::runtime::{WatchStreamExt, watcher};
use strata_kube::kube::{Api, Client, Resource};
use strata_kube::{PostgresInstance, PostgresInstanceSpec};
use tokio::sync::watch;

use crate::operator_report::{ApiCalls, Figures, Sample};
use crate::steady::{Kind, Tracker};
use crate::{loopback_addr, procfs};

/// Label the operator puts on everything it owns.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by=strata-operator";
/// Page size of the verifying lists.
const PAGE: u32 = 500;
/// Longest wait for the operator to hold its Lease, and for the watches to start.
const START_TIMEOUT: Duration = Duration::from_mins(1);

/// Measures `strata operator` with N instances created at once.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Process id of the running `strata operator`, to read its memory and CPU time.
    #[arg(long)]
    operator_pid: u32,
    /// The operator's admin listener (loopback), e.g. http://127.0.0.1:9090
    #[arg(long)]
    metrics_url: String,
    /// Namespace of the operator's Lease.
    #[arg(long, default_value = "strata-system")]
    lease_namespace: String,
    /// Instances to create.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Namespaces they are spread over (round robin), like projects.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to wait for steady state before giving up.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Seconds after steady state before the rest window starts.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Seconds of the rest window (reconciles per minute at rest).
    #[arg(long, default_value_t = 60)]
    rest: u64,
    /// Prefix of the namespaces.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Commit measured, for the report.
    #[arg(long)]
    commit: Option<String>,
    /// Markdown file whose operator section is (re)written; the rest is kept.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What the watches saw, shared with the waiting task.
struct Progress {
    tracker: Mutex<Tracker>,
    complete: watch::Sender<usize>,
    expected: usize,
    steady_at: Mutex<Option<Instant>>,
    ready_watches: watch::Sender<usize>,
}

impl Progress {
    fn record(&self, change: impl FnOnce(&mut Tracker)) {
        let Ok(mut tracker) = self.tracker.lock() else {
            return;
        };
        change(&mut tracker);
        let complete = tracker.complete();
        if complete >= self.expected
            && let Ok(mut at) = self.steady_at.lock()
            && at.is_none()
        {
            *at = Some(Instant::now());
        }
        self.complete.send_replace(complete);
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.instances == 0 || args.namespaces == 0 || args.concurrency == 0 {
        bail!("--instances, --namespaces and --concurrency must be at least 1");
    }
    let metrics = loopback_addr(&args.metrics_url)?;
    let machine = procfs::machine();
    let date = time::OffsetDateTime::now_utc();
    let client = Client::try_default()
        .await
        .context("connecting to the kube-apiserver (KUBECONFIG)")?;
    let kubernetes = client.apiserver_version().await?.git_version;

    let namespaces: Vec<String> = (0..args.namespaces)
        .map(|i| format!("{}-{i:02}", args.prefix))
        .collect();
    for ns in &namespaces {
        create_namespace(&client, ns).await?;
    }
    wait_for_lease(&client, &args.lease_namespace).await?;

    let (complete_tx, complete_rx) = watch::channel(0);
    let (ready_tx, mut ready_rx) = watch::channel(0);
    let progress = Arc::new(Progress {
        tracker: Mutex::new(Tracker::default()),
        complete: complete_tx,
        expected: args.instances,
        steady_at: Mutex::new(None),
        ready_watches: ready_tx,
    });
    let watches = spawn_watches(&client, &progress);
    tokio::time::timeout(START_TIMEOUT, ready_rx.wait_for(|n| *n >= watches.len()))
        .await
        .context("the benchmark's watches did not start")??;

    let before = Snapshot::take(&client, metrics, args.operator_pid).await?;
    let t0 = Instant::now();
    let (creates_took, steady_at, samples) =
        converge(&args, &client, &namespaces, &progress, complete_rx, t0).await?;
    let at_steady = Snapshot::take(&client, metrics, args.operator_pid).await?;
    let steady = steady_at - t0;
    println!(
        "steady state after {:.1} s (creates took {:.1} s)",
        steady.as_secs_f64(),
        creates_took.as_secs_f64()
    );
    let verified = verify(&client).await?;
    if verified != args.instances {
        bail!(
            "the watches saw {} instances at steady state, but a fresh list shows {verified}",
            args.instances
        );
    }

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let rest_start = Snapshot::take(&client, metrics, args.operator_pid).await?;
    tokio::time::sleep(Duration::from_secs(args.rest)).await;
    let rest_end = Snapshot::take(&client, metrics, args.operator_pid).await?;
    let peak_rss = procfs::peak_rss_bytes(args.operator_pid)?;
    for w in watches {
        w.abort();
    }

    let figures = Figures {
        machine,
        date,
        commit: args.commit.clone(),
        kubernetes,
        instances: args.instances,
        namespaces: args.namespaces,
        concurrency: args.concurrency,
        creates_took,
        steady,
        samples,
        reconciles_to_steady: at_steady.reconciles - before.reconciles,
        failures_to_steady: at_steady.failures - before.failures,
        cpu_to_steady: at_steady.cpu.saturating_sub(before.cpu),
        reconciles_settling: rest_start.reconciles - at_steady.reconciles,
        settle: Duration::from_secs(args.settle),
        rest: Duration::from_secs(args.rest),
        reconciles_at_rest: rest_end.reconciles - rest_start.reconciles,
        cpu_at_rest: rest_end.cpu.saturating_sub(rest_start.cpu),
        rest_ends_after: rest_end.at.duration_since(t0),
        peak_rss,
        rss_at_steady: at_steady.rss,
        rss_at_rest: rest_end.rss,
        api_calls: ApiCalls::between(&before.api, &at_steady.api),
        api_calls_at_rest: ApiCalls::between(&rest_start.api, &rest_end.api),
    };
    let summary = crate::operator_report::summary(&figures);
    println!("\n{summary}");
    if let Some(out) = &args.out {
        let old = std::fs::read_to_string(out).unwrap_or_default();
        std::fs::write(out, crate::operator_report::markdown(&figures, &old)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Creates the instances and waits until the watches see all of them at
/// steady state; returns how long the creates took, when steady state was
/// reached, and the progress samples.
async fn converge(
    args: &Args,
    client: &Client,
    namespaces: &[String],
    progress: &Progress,
    mut complete_rx: watch::Receiver<usize>,
    t0: Instant,
) -> anyhow::Result<(Duration, Instant, Vec<Sample>)> {
    let mut samples = Vec::new();
    let creating = create_all(client, namespaces, args.instances, args.concurrency);
    let waiting = async {
        let deadline = t0 + Duration::from_secs(args.timeout);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                r = complete_rx.wait_for(|n| *n >= args.instances) => {
                    r?;
                    return anyhow::Ok(());
                }
                _ = tick.tick() => {
                    let n = *progress.complete.borrow();
                    let rss = procfs::rss_bytes(args.operator_pid).unwrap_or(0);
                    println!("+{:>3} s: {n} of {} instances at steady state, operator RSS {}",
                        t0.elapsed().as_secs(), args.instances, crate::report::mib(rss));
                    samples.push(Sample { at: t0.elapsed(), steady: n, rss });
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    bail!(
                        "{} of {} instances at steady state after {} s",
                        *progress.complete.borrow(), args.instances, args.timeout
                    );
                }
            }
        }
    };
    let (created, waited) = tokio::join!(creating, waiting);
    let creates_took = created?;
    waited?;
    let steady_at = progress
        .steady_at
        .lock()
        .ok()
        .and_then(|at| *at)
        .context("steady state was not recorded")?;
    Ok((creates_took, steady_at, samples))
}

async fn create_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(strata_kube::kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// Waits until some operator holds the Lease, so that the clock does not
/// include the election.
async fn wait_for_lease(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let held = leases
            .get_opt("strata-operator")
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| !h.is_empty());
        if held {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no operator holds the Lease strata-operator in {namespace} after {START_TIMEOUT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `n` instances spread over `namespaces`, `concurrency` at a time;
/// returns how long the creates took.
async fn create_all(
    client: &Client,
    namespaces: &[String],
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let ns = &namespaces[i % namespaces.len()];
            let api: Api<PostgresInstance> = Api::namespaced(client.clone(), ns);
            let pi = PostgresInstance::new(
                &format!("pg-{i:04}"),
                PostgresInstanceSpec {
                    version: "17".into(),
                    plan: "small".into(),
                    storage_gb: 20,
                    acl: vec!["10.0.0.0/8".into()],
                    image: None,
                    storage_class: None,
                    external_access: false,
                },
            );
            async move {
                api.create(&PostParams::default(), &pi)
                    .await
                    .with_context(|| format!("creating {ns}/pg-{i:04}"))
            }
        })
        .buffer_unordered(concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(t0.elapsed())
}

fn spawn_watches(client: &Client, progress: &Arc<Progress>) -> Vec<tokio::task::JoinHandle<()>> {
    let instances = {
        let api: Api<PostgresInstance> = Api::all(client.clone());
        let progress = Arc::clone(progress);
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(pi) | watcher::Event::InitApply(pi)) => {
                        progress.record(|t| t.instance(&pi));
                    }
                    Ok(watcher::Event::Delete(pi)) => progress.record(|t| t.instance_deleted(&pi)),
                    Ok(watcher::Event::InitDone) => {
                        progress.ready_watches.send_modify(|n| *n += 1);
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => eprintln!("watching PostgresInstances: {e}"),
                }
            }
        })
    };
    vec![
        instances,
        watch_owned::<Secret>(client, progress, |t, o, p| {
            t.object(Kind::Secret, o.meta(), p);
        }),
        watch_owned::<ConfigMap>(client, progress, |t, o, p| {
            t.object(Kind::ConfigMap, o.meta(), p);
        }),
        watch_owned::<Service>(client, progress, |t, o, p| {
            t.object(Kind::Service, o.meta(), p);
        }),
        watch_owned::<StatefulSet>(client, progress, Tracker::stateful_set),
        watch_owned::<PodDisruptionBudget>(client, progress, |t, o, p| {
            t.object(Kind::PodDisruptionBudget, o.meta(), p);
        }),
        watch_owned::<NetworkPolicy>(client, progress, |t, o, p| {
            t.object(Kind::NetworkPolicy, o.meta(), p);
        }),
        watch_owned::<ServiceAccount>(client, progress, |t, o, p| {
            t.object(Kind::ServiceAccount, o.meta(), p);
        }),
        watch_owned::<Role>(client, progress, |t, o, p| {
            t.object(Kind::Role, o.meta(), p);
        }),
        watch_owned::<RoleBinding>(client, progress, |t, o, p| {
            t.object(Kind::RoleBinding, o.meta(), p);
        }),
    ]
}

/// Watches one owned kind (by the operator's label) and feeds `seen` with
/// each object and whether it is present.
fn watch_owned<K>(
    client: &Client,
    progress: &Arc<Progress>,
    seen: fn(&mut Tracker, &K, bool),
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let progress = Arc::clone(progress);
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default().labels(MANAGED_BY))
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    progress.record(|t| seen(t, &o, true));
                }
                Ok(watcher::Event::Delete(o)) => progress.record(|t| seen(t, &o, false)),
                Ok(watcher::Event::InitDone) => progress.ready_watches.send_modify(|n| *n += 1),
                Ok(watcher::Event::Init) => {}
                Err(e) => eprintln!("watching {}: {e}", K::kind(&())),
            }
        }
    })
}

/// Counts the instances at steady state from fresh, paged lists (not from
/// the watches), with the same definition.
async fn verify(client: &Client) -> anyhow::Result<usize> {
    let mut tracker = Tracker::default();
    for pi in list_all::<PostgresInstance>(client, None).await? {
        tracker.instance(&pi);
    }
    let labels = Some(MANAGED_BY);
    for o in list_all::<Secret>(client, labels).await? {
        tracker.object(Kind::Secret, o.meta(), true);
    }
    for o in list_all::<ConfigMap>(client, labels).await? {
        tracker.object(Kind::ConfigMap, o.meta(), true);
    }
    for o in list_all::<Service>(client, labels).await? {
        tracker.object(Kind::Service, o.meta(), true);
    }
    for o in list_all::<StatefulSet>(client, labels).await? {
        tracker.stateful_set(&o, true);
    }
    for o in list_all::<PodDisruptionBudget>(client, labels).await? {
        tracker.object(Kind::PodDisruptionBudget, o.meta(), true);
    }
    for o in list_all::<NetworkPolicy>(client, labels).await? {
        tracker.object(Kind::NetworkPolicy, o.meta(), true);
    }
    for o in list_all::<ServiceAccount>(client, labels).await? {
        tracker.object(Kind::ServiceAccount, o.meta(), true);
    }
    for o in list_all::<Role>(client, labels).await? {
        tracker.object(Kind::Role, o.meta(), true);
    }
    for o in list_all::<RoleBinding>(client, labels).await? {
        tracker.object(Kind::RoleBinding, o.meta(), true);
    }
    Ok(tracker.complete())
}

async fn list_all<K>(client: &Client, labels: Option<&str>) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let api: Api<K> = Api::all(client.clone());
    let mut params = ListParams::default().limit(PAGE);
    if let Some(l) = labels {
        params = params.labels(l);
    }
    let mut all = Vec::new();
    loop {
        let page = api.list(&params).await?;
        all.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(all),
        }
    }
}

/// The operator's counters, memory and CPU time, and the API server's request
/// counts, at one moment.
struct Snapshot {
    at: Instant,
    reconciles: u64,
    failures: u64,
    cpu: Duration,
    rss: u64,
    api: BTreeMap<(String, String), u64>,
}

impl Snapshot {
    async fn take(client: &Client, metrics: SocketAddr, pid: u32) -> anyhow::Result<Self> {
        let request = crate::load::get_request(metrics, "/metrics", None);
        let (status, body) = crate::load::once(metrics, &request)
            .await
            .context("reading the operator's /metrics")?;
        if status != 200 {
            bail!("the operator's /metrics answered {status}");
        }
        let text = String::from_utf8_lossy(&body);
        let apiserver = client
            .request_text(http::Request::get("/metrics").body(Vec::new())?)
            .await
            .context("reading the kube-apiserver's /metrics")?;
        Ok(Self {
            at: Instant::now(),
            reconciles: counter_sum(&text, "reconcile_runs_total"),
            failures: counter_sum(&text, "reconcile_failures_total"),
            cpu: procfs::process_cpu(pid)?,
            rss: procfs::rss_bytes(pid)?,
            api: apiserver_requests(&apiserver),
        })
    }
}

/// The sum of every sample of the counters whose name ends with `suffix`
/// (the binary's registry prefixes the operator's metric names).
pub fn counter_sum(text: &str, suffix: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let name = name_labels.split('{').next()?;
            name.ends_with(suffix).then(|| value.parse::<f64>().ok())?
        })
        .map(as_count)
        .sum()
}

/// `apiserver_request_total` by (verb, resource[/subresource]).
fn apiserver_requests(text: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| {
                    kv.strip_prefix(name)?
                        .strip_prefix("=\"")?
                        .strip_suffix('"')
                })
                .unwrap_or_default()
                .to_owned()
        };
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        *out.entry((label("verb"), resource)).or_insert(0) += as_count(v);
    }
    out
}

/// Prometheus counters are floats; these hold whole counts far below 2^52.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn as_count(v: f64) -> u64 {
    v.max(0.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_prefixed_counters_and_skips_comments() {
        let text = "# HELP strata_operator_reconcile_runs Reconciles started\n\
            # TYPE strata_operator_reconcile_runs counter\n\
            strata_operator_reconcile_runs_total 1234\n\
            strata_operator_reconcile_failures_total{reason=\"conflict\"} 3\n\
            strata_operator_reconcile_failures_total{reason=\"forbidden\"} 2\n";
        assert_eq!(counter_sum(text, "reconcile_runs_total"), 1234);
        assert_eq!(counter_sum(text, "reconcile_failures_total"), 5);
        assert_eq!(counter_sum(text, "missing_total"), 0);
    }

    #[test]
    fn groups_apiserver_requests_by_verb_and_resource() {
        let text = "# TYPE apiserver_request_total counter\n\
            apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 10\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 5\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"strata.dev\",resource=\"postgresinstances\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 7\n";
        let r = apiserver_requests(text);
        assert_eq!(r[&("APPLY".into(), "secrets".into())], 15);
        assert_eq!(r[&("PATCH".into(), "postgresinstances/status".into())], 7);
        assert_eq!(r.len(), 2);
    }
}
