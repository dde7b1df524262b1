//! The operator benchmark's figures, judged against the goals of issue 4, as
//! plain text and as a section of docs/benchmarks.md that `make bench`
//! rewrites in place (the serve benchmark's figures and the hand-written
//! notes around it are kept).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::as_f64;
use crate::goals::{self, Row};
use crate::procfs::Machine;
use crate::report::mib;

/// First line of the section; the section runs to `END`.
pub const BEGIN: &str =
    "<!-- operator benchmark: written by `strata-bench operator`; scripts/bench.sh rewrites it -->";
pub const END: &str = "<!-- end of the operator benchmark -->";

const STEADY_GOAL: Duration = Duration::from_mins(1);
const PEAK_RSS_GOAL: u64 = 64 * 1024 * 1024;
/// The operator requeues a healthy instance after this long (`OperatorConfig::resync`).
pub const RESYNC: Duration = Duration::from_mins(5);

/// Progress while converging.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Duration,
    pub steady: usize,
    pub rss: u64,
}

/// The API server's requests in a window, by (verb, resource), largest first.
#[derive(Debug, Clone, Default)]
pub struct ApiCalls(pub Vec<(String, String, u64)>);

impl ApiCalls {
    pub fn between(
        before: &BTreeMap<(String, String), u64>,
        after: &BTreeMap<(String, String), u64>,
    ) -> Self {
        let mut rows: Vec<(String, String, u64)> = after
            .iter()
            .filter_map(|((verb, resource), n)| {
                let d = n.saturating_sub(
                    before
                        .get(&(verb.clone(), resource.clone()))
                        .copied()
                        .unwrap_or(0),
                );
                (d > 0).then(|| (verb.clone(), resource.clone(), d))
            })
            .collect();
        rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1))));
        Self(rows)
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|r| r.2).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Figures {
    pub machine: Machine,
    pub date: time::OffsetDateTime,
    pub commit: Option<String>,
    pub kubernetes: String,
    pub instances: usize,
    pub namespaces: usize,
    pub concurrency: usize,
    pub creates_took: Duration,
    pub steady: Duration,
    pub samples: Vec<Sample>,
    pub reconciles_to_steady: u64,
    pub failures_to_steady: u64,
    pub cpu_to_steady: Duration,
    pub reconciles_settling: u64,
    pub settle: Duration,
    pub rest: Duration,
    pub reconciles_at_rest: u64,
    pub cpu_at_rest: Duration,
    /// End of the rest window, from the first create.
    pub rest_ends_after: Duration,
    pub peak_rss: u64,
    pub rss_at_steady: u64,
    pub rss_at_rest: u64,
    pub api_calls: ApiCalls,
    pub api_calls_at_rest: ApiCalls,
}

impl Figures {
    /// Reconciles per minute over the rest window.
    pub fn at_rest_per_minute(&self) -> f64 {
        if self.rest.is_zero() {
            return 0.0;
        }
        as_f64(self.reconciles_at_rest) * 60.0 / self.rest.as_secs_f64()
    }

    /// Whether a resync can fall into the rest window: the earliest is
    /// `RESYNC` after the first create.
    pub fn resync_possible_at_rest(&self) -> bool {
        self.rest_ends_after >= RESYNC
    }

    fn per_instance(&self, n: u64) -> f64 {
        as_f64(n) / as_f64(self.instances as u64)
    }
}

fn rows(f: &Figures) -> Vec<Row> {
    let rest_goal = if f.resync_possible_at_rest() {
        format!("≤ {} (one resync each)", f.instances)
    } else {
        "0 (no resync is due in the window)".into()
    };
    let rest_met = if f.resync_possible_at_rest() {
        f.reconciles_at_rest <= f.instances as u64
    } else {
        f.reconciles_at_rest == 0
    };
    vec![
        Row {
            figure: format!("{} instances created at once → steady state", f.instances),
            goal: "< 60 s".into(),
            measured: format!("{:.1} s", f.steady.as_secs_f64()),
            met: Some(f.steady < STEADY_GOAL),
        },
        Row {
            figure: "Peak RSS of `strata operator` (VmHWM)".into(),
            goal: "< 64 MiB".into(),
            measured: mib(f.peak_rss),
            met: Some(f.peak_rss < PEAK_RSS_GOAL),
        },
        Row {
            figure: format!(
                "Reconciles per minute at rest ({} s window)",
                f.rest.as_secs()
            ),
            goal: rest_goal,
            measured: format!(
                "{:.1} ({} reconciles)",
                f.at_rest_per_minute(),
                f.reconciles_at_rest
            ),
            met: Some(rest_met),
        },
        Row {
            figure: "RSS of `strata operator` at steady state / at rest".into(),
            goal: "—".into(),
            measured: format!("{} / {}", mib(f.rss_at_steady), mib(f.rss_at_rest)),
            met: None,
        },
        Row {
            figure: "Creates accepted by the API server".into(),
            goal: "—".into(),
            measured: format!(
                "{:.1} s ({:.0} per s, {} in flight)",
                f.creates_took.as_secs_f64(),
                as_f64(f.instances as u64) / f.creates_took.as_secs_f64().max(1e-9),
                f.concurrency
            ),
            met: None,
        },
        Row {
            figure: "Reconciles until steady state".into(),
            goal: "—".into(),
            measured: format!(
                "{} ({:.1} per instance), {} failed",
                f.reconciles_to_steady,
                f.per_instance(f.reconciles_to_steady),
                f.failures_to_steady
            ),
            met: None,
        },
        Row {
            figure: "API requests until steady state (all clients)".into(),
            goal: "—".into(),
            measured: format!(
                "{} ({:.1} per instance)",
                f.api_calls.total(),
                f.per_instance(f.api_calls.total())
            ),
            met: None,
        },
        Row {
            figure: "Operator CPU time until steady state / at rest".into(),
            goal: "—".into(),
            measured: format!(
                "{:.1} s ({:.1} ms per instance) / {:.2} s",
                f.cpu_to_steady.as_secs_f64(),
                f.cpu_to_steady.as_secs_f64() * 1e3 / as_f64(f.instances as u64),
                f.cpu_at_rest.as_secs_f64()
            ),
            met: None,
        },
    ]
}

pub fn summary(f: &Figures) -> String {
    goals::summary(&rows(f))
}

/// `old` with its operator section replaced by this run's (or inserted
/// before the notes marker when it has none).
pub fn markdown(f: &Figures, old: &str) -> anyhow::Result<String> {
    Ok(goals::splice_section(old, BEGIN, END, &section(f)?))
}

/// The operator section of `old`, markers included, for a rewrite of the
/// rest of the file to keep.
pub fn kept_section(old: &str) -> Option<&str> {
    goals::kept_section(old, BEGIN, END)
}

fn section(f: &Figures) -> anyhow::Result<String> {
    let mut s = String::new();
    let m = &f.machine;
    writeln!(s, "{BEGIN}")?;
    writeln!(s, "## The operator at {} instances", f.instances)?;
    writeln!(s)?;
    writeln!(
        s,
        "Goals from the Performance section of issue 4. `scripts/bench.sh` starts a fresh kube-apiserver {} + etcd from `testenv/`, installs the CRD, starts the release `strata operator` (admin kubeconfig, metrics on loopback) and runs `strata-bench operator`.",
        f.kubernetes
    )?;
    writeln!(s)?;
    goals::run_facts(
        &mut s,
        f.date,
        f.commit.as_deref(),
        m,
        "; kube-apiserver, etcd, the operator and the benchmark share these CPUs",
    )?;
    writeln!(s)?;
    goals::markdown(&mut s, &rows(f))?;
    writeln!(s)?;
    details(&mut s, f)?;
    writeln!(s, "{END}")?;
    Ok(s)
}

/// Definition, method, progress and API requests.
fn details(s: &mut String, f: &Figures) -> anyhow::Result<()> {
    writeln!(s, "### Steady state")?;
    writeln!(s)?;
    writeln!(
        s,
        "An instance is at steady state when its `PostgresInstance` has the finalizer `strata.dev/cleanup` and a status with `observedGeneration == metadata.generation` and a phase other than `Failed` (`Provisioning` here: no kubelet runs, so no StatefulSet becomes ready), **and** every object the operator applies for it exists under its name with the instance as controlling owner: Secret `<name>-credentials`, ConfigMap `<name>-config`, Services `<name>-headless` and `<name>`, StatefulSet, PodDisruptionBudget and NetworkPolicy `<name>`, and — when the StatefulSet's pod runs as `<name>-agent` or mounts `<name>-tls` — the ServiceAccount, Role and RoleBinding `<name>-agent` and the Secret `<name>-tls`. The operator runs as the Helm chart runs it, with `--api-service-account`, so it also applies the Role and RoleBinding `<name>-api` (before the status, which is its last write). The clock runs from the first create request to the watch event that makes the last instance steady (the benchmark watches `PostgresInstance` and the nine owned kinds); a fresh paged list of everything then confirms all {} with the same definition (`crates/bench/src/steady.rs`).",
        f.instances
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "{} instances (`17`, plan `small`, 20 GiB, one ACL entry) in {} namespaces, {} create requests in flight. At rest: {} s after steady state, the operator's `reconcile_runs_total` (its `/metrics`) is read at the start and end of a {} s window; {}. RSS is `VmRSS`/`VmHWM` of the operator process from /proc; kube-apiserver and etcd are not counted.",
        f.instances,
        f.namespaces,
        f.concurrency,
        f.settle.as_secs(),
        f.rest.as_secs(),
        if f.resync_possible_at_rest() {
            "the window ends more than 5 min after the first create, so resyncs (every 5 min per instance) may fall in it"
        } else {
            "the window ends less than 5 min after the first create, so no resync (every 5 min per instance) is due in it and any reconcile there is one too many"
        }
    )?;
    writeln!(s)?;
    if !f.samples.is_empty() {
        writeln!(s, "| after | instances at steady state | operator RSS |")?;
        writeln!(s, "|---|---|---|")?;
        for p in &f.samples {
            writeln!(
                s,
                "| {} s | {} | {} |",
                p.at.as_secs(),
                p.steady,
                mib(p.rss)
            )?;
        }
        writeln!(
            s,
            "| {:.1} s | {} (steady) | {} |",
            f.steady.as_secs_f64(),
            f.instances,
            mib(f.rss_at_steady)
        )?;
        writeln!(s)?;
    }
    writeln!(
        s,
        "Reconciles between steady state and the rest window ({} s): {}.",
        f.settle.as_secs(),
        f.reconciles_settling
    )?;
    writeln!(s)?;
    writeln!(s, "### API requests until steady state")?;
    writeln!(s)?;
    writeln!(
        s,
        "From the kube-apiserver's `apiserver_request_total`, by verb and resource, all clients together: the operator's requests plus the benchmark's {} creates, its 10 watches and its namespaces. At rest: {} requests in the {} s window ({}).",
        f.instances,
        f.api_calls_at_rest.total(),
        f.rest.as_secs(),
        if f.api_calls_at_rest.0.is_empty() {
            "none".to_owned()
        } else {
            f.api_calls_at_rest
                .0
                .iter()
                .take(6)
                .map(|(v, r, n)| format!("{v} {r} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    writeln!(s)?;
    writeln!(s, "| verb | resource | requests | per instance |")?;
    writeln!(s, "|---|---|---|---|")?;
    for (verb, resource, n) in f.api_calls.0.iter().take(20) {
        writeln!(
            s,
            "| {verb} | {resource} | {n} | {:.2} |",
            f.per_instance(*n)
        )?;
    }
    writeln!(s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NOTES_MARKER;

    fn figures(steady_s: u64, peak_mib: u64, at_rest: u64) -> Figures {
        let calls = |n: u64| {
            let mut m = BTreeMap::new();
            m.insert(("APPLY".to_owned(), "secrets".to_owned()), n);
            m.insert(
                ("PATCH".to_owned(), "postgresinstances/status".to_owned()),
                n / 2,
            );
            m
        };
        Figures {
            machine: crate::procfs::machine(),
            date: time::OffsetDateTime::UNIX_EPOCH,
            commit: Some("abc1234".into()),
            kubernetes: "v1.35.4".into(),
            instances: 1000,
            namespaces: 10,
            concurrency: 32,
            creates_took: Duration::from_secs(4),
            steady: Duration::from_secs(steady_s),
            samples: vec![Sample {
                at: Duration::from_secs(5),
                steady: 100,
                rss: 20 << 20,
            }],
            reconciles_to_steady: 3000,
            failures_to_steady: 0,
            cpu_to_steady: Duration::from_secs(20),
            reconciles_settling: 0,
            settle: Duration::from_secs(5),
            rest: Duration::from_mins(1),
            reconciles_at_rest: at_rest,
            cpu_at_rest: Duration::from_millis(50),
            rest_ends_after: Duration::from_secs(steady_s + 65),
            peak_rss: peak_mib << 20,
            rss_at_steady: 30 << 20,
            rss_at_rest: 30 << 20,
            api_calls: ApiCalls::between(&calls(0), &calls(7000)),
            api_calls_at_rest: ApiCalls::default(),
        }
    }

    #[test]
    fn judges_each_goal() {
        let md = markdown(&figures(42, 40, 0), "").unwrap_or_default();
        assert!(
            md.contains("→ steady state | < 60 s | 42.0 s | met |"),
            "{md}"
        );
        assert!(md.contains("| < 64 MiB | 40.0 MiB | met |"), "{md}");
        assert!(
            md.contains("| 0 (no resync is due in the window) | 0.0 (0 reconciles) | met |"),
            "{md}"
        );
        assert!(md.contains("| APPLY | secrets | 7000 | 7.00 |"), "{md}");
        let md = markdown(&figures(90, 80, 12), "").unwrap_or_default();
        assert!(md.contains("| 90.0 s | **not met** |"), "{md}");
        assert!(md.contains("| 80.0 MiB | **not met** |"), "{md}");
        assert!(
            md.contains("| 12.0 (12 reconciles) | **not met** |"),
            "{md}"
        );
        let late = Figures {
            rest_ends_after: RESYNC,
            ..figures(42, 40, 12)
        };
        let md = markdown(&late, "").unwrap_or_default();
        assert!(
            md.contains("| ≤ 1000 (one resync each) | 12.0 (12 reconciles) | met |"),
            "{md}"
        );
    }

    #[test]
    fn replaces_its_own_section_and_keeps_the_rest() {
        let old = format!("# Benchmarks\n\nserve figures\n\n{NOTES_MARKER}\n## Findings\n\nkept\n");
        let once = markdown(&figures(42, 40, 0), &old).unwrap_or_default();
        assert!(
            once.starts_with("# Benchmarks\n\nserve figures\n\n"),
            "{once}"
        );
        assert!(
            once.ends_with(&format!("{NOTES_MARKER}\n## Findings\n\nkept\n")),
            "{once}"
        );
        let twice = markdown(&figures(50, 40, 0), &once).unwrap_or_default();
        assert_eq!(twice.matches(BEGIN).count(), 1, "{twice}");
        assert!(
            twice.contains("| 50.0 s |") && !twice.contains("| 42.0 s |"),
            "{twice}"
        );
        assert_eq!(
            kept_section(&twice).map(|s| s.starts_with(BEGIN) && s.ends_with(END)),
            Some(true)
        );
        assert!(twice.ends_with("kept\n"));
    }
}
