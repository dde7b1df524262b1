//! The node benchmark's figures as plain text and as a section of
//! docs/benchmarks.md that `make bench` rewrites in place (the other
//! benchmarks' sections and the hand-written notes are kept).

use std::fmt::Write;
use std::time::Duration;

use strata_testenv::platform::Timings;

use crate::goals::{self, Row};
use crate::procfs::Machine;
use crate::report::{CreateStep, mib, ms};
use crate::{percentile, sorted};

/// First line of the section; the section runs to `END`.
pub const BEGIN: &str =
    "<!-- node benchmark: written by `strata-bench node`; scripts/bench.sh rewrites it -->";
pub const END: &str = "<!-- end of the node benchmark -->";

/// The issue sets no goal for creates on a node.
const NO_GOAL: &str = "— (none set)";

/// One target's sequential creates.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Interval between GETs while waiting for Ready.
    pub poll: Duration,
    /// POST → first GET showing Ready, in order.
    pub creates: Vec<Duration>,
    /// DELETE → GET answers 404 (on the node: and the pod is gone).
    pub deletes: Vec<Duration>,
    /// Service events of the slowest create.
    pub slowest_steps: Vec<CreateStep>,
}

impl Series {
    pub fn create_p(&self, p: f64) -> Duration {
        percentile(&sorted(&self.creates), p)
    }

    pub fn create_max(&self) -> Duration {
        self.creates.iter().max().copied().unwrap_or_default()
    }

    pub fn delete_p(&self, p: f64) -> Duration {
        percentile(&sorted(&self.deletes), p)
    }

    pub fn delete_max(&self) -> Duration {
        self.deletes.iter().max().copied().unwrap_or_default()
    }
}

/// One image's size.
#[derive(Debug, Clone)]
pub struct ImageSize {
    pub reference: String,
    /// The docker archive loaded into the node.
    pub archive_bytes: u64,
    /// Uncompressed, as `podman image inspect` reports it.
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Figures {
    pub machine: Machine,
    pub date: time::OffsetDateTime,
    pub commit: Option<String>,
    pub kubernetes: String,
    pub plan: String,
    pub node: Series,
    pub local: Series,
    pub images: Vec<ImageSize>,
    pub timings: Timings,
}

/// Seconds with two decimals from 1 s, milliseconds below.
fn dur(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        ms(d)
    }
}

fn ratio(node: Duration, local: Duration) -> String {
    if local.is_zero() {
        return "—".into();
    }
    format!(
        "{:.1}× ({} vs {})",
        node.as_secs_f64() / local.as_secs_f64(),
        dur(node),
        dur(local)
    )
}

fn rows(f: &Figures) -> Vec<Row> {
    let n = f.node.creates.len();
    let reported = |figure: String, measured: String| Row {
        figure,
        goal: NO_GOAL.into(),
        measured,
        met: None,
    };
    vec![
        reported(
            format!("Create → Ready on the node, p50 of {n}"),
            dur(f.node.create_p(50.0)),
        ),
        reported(
            format!("Create → Ready on the node, p95 of {n}"),
            dur(f.node.create_p(95.0)),
        ),
        reported(
            "Create → Ready on the node, max".into(),
            dur(f.node.create_max()),
        ),
        reported(
            format!(
                "Create → Ready on the local runtime (same run), p50 / p95 of {}",
                f.local.creates.len()
            ),
            format!(
                "{} / {}",
                dur(f.local.create_p(50.0)),
                dur(f.local.create_p(95.0))
            ),
        ),
        reported(
            "Node vs local runtime, p50".into(),
            ratio(f.node.create_p(50.0), f.local.create_p(50.0)),
        ),
        reported(
            "Node vs local runtime, p95".into(),
            ratio(f.node.create_p(95.0), f.local.create_p(95.0)),
        ),
        reported(
            "Delete → gone on the node (404 and pod stopped), p50 / max".into(),
            format!(
                "{} / {}",
                dur(f.node.delete_p(50.0)),
                dur(f.node.delete_max())
            ),
        ),
        reported(
            "Node start (`testenv/start.sh --node`, images loaded)".into(),
            dur(f.timings.node),
        ),
        reported(
            "Chart install (Secrets, `helm install --wait`, first admin sign-in)".into(),
            dur(f.timings.chart),
        ),
        reported(
            "Images (`scripts/images.sh --strata-binary`, this run)".into(),
            dur(f.timings.images),
        ),
    ]
}

pub fn summary(f: &Figures) -> String {
    let mut s = goals::summary(&rows(f));
    for i in &f.images {
        let _ = writeln!(
            s,
            "image {}: archive {}, uncompressed {}",
            i.reference,
            mib(i.archive_bytes),
            i.size_bytes.map_or_else(|| "unknown".into(), mib)
        );
    }
    s
}

/// `old` with its node section replaced by this run's (or inserted
/// before the notes marker when it has none).
pub fn markdown(f: &Figures, old: &str) -> anyhow::Result<String> {
    Ok(goals::splice_section(old, BEGIN, END, &section(f)?))
}

/// The node section of `old`, markers included, for a rewrite of the
/// rest of the file to keep.
pub fn kept_section(old: &str) -> Option<&str> {
    goals::kept_section(old, BEGIN, END)
}

fn section(f: &Figures) -> anyhow::Result<String> {
    let mut s = String::new();
    writeln!(s, "{BEGIN}")?;
    writeln!(s, "## Create → Ready on a real node")?;
    writeln!(s)?;
    writeln!(
        s,
        "From the issue: create → Ready on the real node (p50, p95 over {} creates) against the local runtime's figure in the same run, the image sizes, and what the node costs. The issue sets no goal for these: the figures and the ratio are reported, none is judged. `scripts/bench.sh` starts a local `strata serve` as the serve benchmark does and runs `strata-bench node`, which installs the chart on testenv's real node (Kubernetes {}) the way the end-to-end test does (`strata_testenv::platform`), with the release `strata` binary in the image.",
        f.node.creates.len(),
        f.kubernetes
    )?;
    writeln!(s)?;
    goals::run_facts(
        &mut s,
        f.date,
        f.commit.as_deref(),
        &f.machine,
        "; the node (kubelet, containerd, kube-apiserver, etcd, controllers), Strata's pods, the local `strata serve` and the benchmark share these CPUs",
    )?;
    writeln!(s)?;
    goals::markdown(&mut s, &rows(f))?;
    writeln!(s)?;

    writeln!(
        s,
        "| image | archive (docker-archive, loaded into the node) | uncompressed (`podman image inspect`) |"
    )?;
    writeln!(s, "|---|---|---|")?;
    for i in &f.images {
        writeln!(
            s,
            "| `{}` | {} | {} |",
            i.reference,
            mib(i.archive_bytes),
            i.size_bytes.map_or_else(|| "—".into(), mib)
        )?;
    }
    writeln!(s)?;

    let list = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{}", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        s,
        "Creates in order (ms), node: {}; local: {}.",
        list(&f.node.creates),
        list(&f.local.creates)
    )?;
    writeln!(
        s,
        "Deletes on the local runtime: p50 {}, max {}.",
        dur(f.local.delete_p(50.0)),
        dur(f.local.delete_max())
    )?;
    writeln!(s)?;
    if let Some(first) = f.node.slowest_steps.first() {
        writeln!(
            s,
            "Service events of the slowest create on the node (`{}`), from its first event:",
            first.instance
        )?;
        writeln!(s)?;
        writeln!(s, "| at | event |")?;
        writeln!(s, "|---|---|")?;
        for e in &f.node.slowest_steps {
            writeln!(s, "| +{} | {} |", dur(e.offset), e.message)?;
        }
        writeln!(s)?;
    }

    writeln!(s, "### Method")?;
    writeln!(s)?;
    writeln!(
        s,
        "* The platform: `scripts/images.sh --strata-binary target/release/strata` (the Dockerfile's `prebuilt` target; cached by a hash of its inputs), `testenv/start.sh --node` with the three image archives loaded into the node's containerd, the benchmark process's own PostgreSQL as the store (reached by the pods over the node's link), the chart with `deploy/helm/strata/ci/real-node-values.yaml`, the API reached at its Service's ClusterIP."
    )?;
    writeln!(
        s,
        "* Creates: {} on each, one after another, plan `{}` (storage: the plan's minimum), in project `node-bench`; each is timed from the POST to the first GET that shows phase `Ready` (GETs every {} on the node, every {} locally, as in the serve benchmark), then deleted and waited for — on the node until the GET answers 404 and the instance's pod is gone — before the next starts. The node's series runs first, then the local one, both while the node runs.",
        f.node.creates.len(),
        f.plan,
        dur(f.node.poll),
        dur(f.local.poll)
    )?;
    writeln!(
        s,
        "* Image sizes: bytes of each docker archive, and the image's size in podman's store."
    )?;
    writeln!(s)?;
    writeln!(s, "{END}")?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::NOTES_MARKER;

    fn series(ms: &[u64]) -> Series {
        Series {
            poll: Duration::from_millis(100),
            creates: ms.iter().map(|m| Duration::from_millis(*m)).collect(),
            deletes: vec![Duration::from_secs(3)],
            slowest_steps: vec![CreateStep {
                instance: "node-03".into(),
                offset: Duration::ZERO,
                message: "instance requested".into(),
            }],
        }
    }

    fn figures() -> Figures {
        Figures {
            machine: crate::procfs::machine(),
            date: time::OffsetDateTime::UNIX_EPOCH,
            commit: Some("abc1234".into()),
            kubernetes: "v1.35.4".into(),
            plan: "micro".into(),
            node: series(&[9000, 10000, 12000, 11000]),
            local: series(&[400, 500, 300, 450]),
            images: vec![ImageSize {
                reference: "ghcr.io/strata-dev/strata:0.1.0".into(),
                archive_bytes: 40 << 20,
                size_bytes: Some(120 << 20),
            }],
            timings: Timings {
                images: Duration::from_secs(2),
                node: Duration::from_secs(20),
                chart: Duration::from_secs(30),
            },
        }
    }

    #[test]
    fn reports_the_figures_and_the_ratio_without_a_verdict() {
        let md = markdown(&figures(), "").unwrap_or_default();
        assert!(
            md.contains(
                "| Create → Ready on the node, p50 of 4 | — (none set) | 10.00 s | (reported) |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| Node vs local runtime, p50 | — (none set) | 25.0× (10.00 s vs 400 ms) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| `ghcr.io/strata-dev/strata:0.1.0` | 40.0 MiB | 120.0 MiB |"),
            "{md}"
        );
        assert!(md.contains("node: 9000, 10000, 12000, 11000; local: 400, 500, 300, 450."));
        assert!(!md.contains("met |"), "{md}");
    }

    #[test]
    fn replaces_its_own_section_and_keeps_the_rest() {
        let operator = format!(
            "{}\nop\n{}",
            crate::operator_report::BEGIN,
            crate::operator_report::END
        );
        let old =
            format!("# Benchmarks\n\nserve\n\n{operator}\n\n{NOTES_MARKER}\n## Findings\n\nkept\n");
        let once = markdown(&figures(), &old).unwrap_or_default();
        assert!(once.starts_with(&format!("# Benchmarks\n\nserve\n\n{operator}\n\n{BEGIN}")));
        assert!(once.ends_with(&format!("{END}\n\n{NOTES_MARKER}\n## Findings\n\nkept\n")));
        let mut later = figures();
        later.node.creates = vec![Duration::from_secs(7)];
        let twice = markdown(&later, &once).unwrap_or_default();
        assert_eq!(twice.matches(BEGIN).count(), 1, "{twice}");
        assert!(twice.contains("| 7.00 s |") && !twice.contains("| 10.00 s |"));
        assert_eq!(
            kept_section(&twice).map(|s| s.starts_with(BEGIN) && s.ends_with(END)),
            Some(true)
        );
        assert!(twice.ends_with("kept\n"));
    }
}
