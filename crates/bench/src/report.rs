//! The figures, judged against the goals of the Performance section, as
//! plain text for stdout and as Markdown for docs/benchmarks.md.

use std::fmt::Write;
use std::time::Duration;

use crate::burst::{self, BurstFigures};
use crate::goals::{self, Row};
use crate::load::Outcome;
use crate::procfs::Machine;
use crate::{as_f64, percentile};

/// Everything after this line of the old file is kept when the file is rewritten.
pub const NOTES_MARKER: &str = "<!-- Hand-written notes go below this line; scripts/bench.sh keeps them when it rewrites the figures above. -->";

const CREATE_P50_GOAL: Duration = Duration::from_millis(100);
const CREATE_P95_GOAL: Duration = Duration::from_millis(150);
const RATIO_GOAL: f64 = 0.5;
const P99_GOAL: Duration = Duration::from_millis(5);
const RSS_GOAL: u64 = 50 * 1024 * 1024;

/// One provisioning step of a create, from its service events.
#[derive(Debug, Clone)]
pub struct CreateStep {
    pub instance: String,
    pub offset: Duration,
    pub message: String,
}

/// One load run (or several pooled).
#[derive(Debug, Clone, Default)]
pub struct LoadFigures {
    pub ok: u64,
    pub errors: u64,
    pub window: Duration,
    pub latencies: Vec<Duration>,
    pub server_cpu: Duration,
    pub client_cpu: Duration,
}

impl LoadFigures {
    pub fn new(o: &Outcome, server_cpu: Duration, client_cpu: Duration) -> Self {
        Self {
            ok: o.ok,
            errors: o.errors,
            window: o.window,
            latencies: o.latencies.clone(),
            server_cpu,
            client_cpu,
        }
    }

    fn pooled<'a>(runs: impl Iterator<Item = &'a LoadFigures>) -> Self {
        let mut all = Self::default();
        for r in runs {
            all.ok += r.ok;
            all.errors += r.errors;
            all.window += r.window;
            all.latencies.extend_from_slice(&r.latencies);
            all.server_cpu += r.server_cpu;
            all.client_cpu += r.client_cpu;
        }
        all.latencies.sort_unstable();
        all
    }

    pub fn rps(&self) -> f64 {
        if self.window.is_zero() {
            return 0.0;
        }
        as_f64(self.ok) / self.window.as_secs_f64()
    }

    pub fn p(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// CPU microseconds per request.
    fn per_request(&self, cpu: Duration) -> f64 {
        if self.ok == 0 {
            return 0.0;
        }
        cpu.as_secs_f64() * 1e6 / as_f64(self.ok)
    }

    pub fn server_us(&self) -> f64 {
        self.per_request(self.server_cpu)
    }

    pub fn client_us(&self) -> f64 {
        self.per_request(self.client_cpu)
    }

    pub fn line(&self) -> String {
        format!(
            "{:>8.0} req/s  p50 {}  p99 {}  max {}  errors {}  server CPU {:.0} µs/req  load generator CPU {:.0} µs/req",
            self.rps(),
            ms(self.p(50.0)),
            ms(self.p(99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
            self.errors,
            self.server_us(),
            self.client_us(),
        )
    }
}

/// The GET load figures.
#[derive(Debug, Clone)]
pub struct GetFigures {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub body_len: usize,
    /// (Strata, bare handler) per round.
    pub rounds: Vec<(LoadFigures, LoadFigures)>,
    pub breakdown: Vec<(String, LoadFigures)>,
}

impl GetFigures {
    fn strata(&self) -> LoadFigures {
        LoadFigures::pooled(self.rounds.iter().map(|(s, _)| s))
    }

    fn bare(&self) -> LoadFigures {
        LoadFigures::pooled(self.rounds.iter().map(|(_, b)| b))
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub machine: Machine,
    pub date: time::OffsetDateTime,
    pub commit: Option<String>,
    pub creates: Vec<Duration>,
    pub deletes: Vec<Duration>,
    /// The service events of each sequential create, in order.
    pub create_events: Vec<Vec<CreateStep>>,
    pub burst: BurstFigures,
    pub get: GetFigures,
    pub rss_start: u64,
    pub rss_after_creates: u64,
    pub rss_after_load: u64,
}

fn rows(f: &Figures) -> Vec<Row> {
    let mut creates = f.creates.clone();
    creates.sort_unstable();
    let p50 = percentile(&creates, 50.0);
    let p95 = percentile(&creates, 95.0);
    let max = creates.last().copied().unwrap_or_default();
    let strata = f.get.strata();
    let bare = f.get.bare();
    let ratio = if bare.rps() > 0.0 {
        strata.rps() / bare.rps()
    } else {
        0.0
    };
    let mut rows = vec![
        Row {
            figure: "Create → Ready p50".into(),
            goal: "≤ 100 ms".into(),
            measured: ms(p50),
            met: Some(p50 <= CREATE_P50_GOAL),
        },
        Row {
            figure: "Create → Ready p95".into(),
            goal: "≤ 150 ms".into(),
            measured: ms(p95),
            met: Some(p95 <= CREATE_P95_GOAL),
        },
        Row {
            figure: "Create → Ready max".into(),
            goal: "—".into(),
            measured: ms(max),
            met: None,
        },
    ];
    rows.extend(burst_rows(&f.burst));
    rows.extend([
        Row {
            figure: "GET instance, throughput vs bare axum handler".into(),
            goal: "≥ 0.5".into(),
            measured: format!(
                "{ratio:.2} ({:.0} vs {:.0} req/s)",
                strata.rps(),
                bare.rps()
            ),
            met: Some(ratio >= RATIO_GOAL),
        },
        Row {
            figure: "GET instance p99".into(),
            goal: "< 5 ms".into(),
            measured: format!("{} (bare: {})", ms(strata.p(99.0)), ms(bare.p(99.0))),
            met: Some(strata.p(99.0) < P99_GOAL),
        },
        Row {
            figure: "GET instance p50".into(),
            goal: "—".into(),
            measured: format!("{} (bare: {})", ms(strata.p(50.0)), ms(bare.p(50.0))),
            met: None,
        },
        Row {
            figure: "Idle RSS of `strata serve`, after start-up".into(),
            goal: "≤ 50 MiB".into(),
            measured: mib(f.rss_start),
            met: Some(f.rss_start <= RSS_GOAL),
        },
        Row {
            figure: "Idle RSS of `strata serve`, after the creates and deletes".into(),
            goal: "≤ 50 MiB".into(),
            measured: mib(f.rss_after_creates),
            met: Some(f.rss_after_creates <= RSS_GOAL),
        },
        Row {
            figure: "Idle RSS of `strata serve`, after the GET load".into(),
            goal: "≤ 50 MiB".into(),
            measured: mib(f.rss_after_load),
            met: Some(f.rss_after_load <= RSS_GOAL),
        },
    ]);
    rows
}

/// The burst's goal (every create accepted and Ready) and its time to the
/// last Ready; nothing when no burst was sent.
fn burst_rows(b: &BurstFigures) -> Vec<Row> {
    if b.size() == 0 {
        return Vec::new();
    }
    vec![
        Row {
            figure: format!("Burst of {} concurrent creates", b.size()),
            goal: "all Ready, no error answer".into(),
            measured: format!(
                "{} of {} Ready, {} non-2xx",
                b.ready().len(),
                b.size(),
                b.refused().len()
            ),
            met: Some(b.all_ready()),
        },
        Row {
            figure: "Burst: time to the last Ready".into(),
            goal: "—".into(),
            measured: ms(b.last_ready()),
            met: None,
        },
    ]
}

/// The figures and verdicts as plain text.
pub fn summary(f: &Figures) -> String {
    goals::summary(&rows(f))
}

/// docs/benchmarks.md: the figures, then the hand-written notes of `old`.
pub fn markdown(f: &Figures, old: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    let m = &f.machine;
    writeln!(s, "# Benchmarks")?;
    writeln!(s)?;
    writeln!(
        s,
        "Written by `make bench` (`scripts/bench.sh`); the goals are those of the Performance section of issue 2, \
         with the create and burst goals of issue 16."
    )?;
    writeln!(
        s,
        "All figures come from one run, so ratios compare like with like on a noisy machine."
    )?;
    writeln!(s)?;
    goals::run_facts(
        &mut s,
        f.date,
        f.commit.as_deref(),
        m,
        "; other work on the machine shares its CPUs",
    )?;
    writeln!(s)?;
    goals::markdown(&mut s, &rows(f))?;
    writeln!(s)?;

    get_details(&mut s, &f.get)?;
    create_details(&mut s, f)?;
    method(&mut s, f)?;
    in_the_way(&mut s, f)?;

    // The operator and node benchmarks write their own sections; keep them.
    for kept in [
        crate::operator_report::kept_section(old),
        crate::node_report::kept_section(old),
    ]
    .into_iter()
    .flatten()
    {
        writeln!(s, "{kept}")?;
        writeln!(s)?;
    }
    writeln!(s, "{NOTES_MARKER}")?;
    match old.split_once(NOTES_MARKER) {
        Some((_, notes)) => s.push_str(notes.trim_start_matches('\n')),
        None => writeln!(s, "\n## Findings\n\nNone recorded yet.")?,
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

fn get_details(s: &mut String, g: &GetFigures) -> anyhow::Result<()> {
    writeln!(s, "## GET instance under load")?;
    writeln!(s)?;
    writeln!(
        s,
        "{} keep-alive connections, {} s warm-up then {} s measured per run; body {} bytes. \
         CPU columns are CPU time over the measured window divided by requests: the server's \
         (the `strata serve` process, or the bare handler's threads) and the load generator's.",
        g.connections,
        g.warmup.as_secs(),
        g.duration.as_secs(),
        g.body_len
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "| run | req/s | p50 | p99 | max | errors | server CPU µs/req | load generator CPU µs/req |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    let row = |s: &mut String, label: &str, r: &LoadFigures| {
        writeln!(
            s,
            "| {label} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} |",
            r.rps(),
            ms(r.p(50.0)),
            ms(r.p(99.0)),
            ms(r.latencies.last().copied().unwrap_or_default()),
            r.errors,
            r.server_us(),
            r.client_us()
        )
    };
    for (i, (strata, bare)) in g.rounds.iter().enumerate() {
        row(s, &format!("round {}: Strata GET instance", i + 1), strata)?;
        row(s, &format!("round {}: bare axum, same bytes", i + 1), bare)?;
    }
    for (label, r) in &g.breakdown {
        row(s, label, r)?;
    }
    writeln!(s)?;
    Ok(())
}

fn create_details(s: &mut String, f: &Figures) -> anyhow::Result<()> {
    writeln!(s, "## Create → Ready")?;
    writeln!(s)?;
    let all: Vec<String> = f
        .creates
        .iter()
        .map(|d| d.as_millis().to_string())
        .collect();
    writeln!(
        s,
        "{} sequential creates, in order (ms): {}.",
        f.creates.len(),
        all.join(", ")
    )?;
    let mut deletes = f.deletes.clone();
    deletes.sort_unstable();
    writeln!(
        s,
        "Deletes (DELETE → 404, polled every 50 ms): p50 {}, max {}.",
        ms(percentile(&deletes, 50.0)),
        ms(deletes.last().copied().unwrap_or_default())
    )?;
    burst_details(s, &f.burst)?;
    step_breakdown(s, &f.create_events)?;
    let slowest = f
        .creates
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| **d)
        .and_then(|(i, _)| f.create_events.get(i))
        .map_or(&[][..], Vec::as_slice);
    if let Some(first) = slowest.first() {
        writeln!(s)?;
        writeln!(
            s,
            "Service events of the slowest create (`{}`), from its first event:",
            first.instance
        )?;
        writeln!(s)?;
        writeln!(s, "| at | event |")?;
        writeln!(s, "|---|---|")?;
        for step in slowest {
            writeln!(
                s,
                "| +{} | {} |",
                ms(step.offset),
                step.message.replace('|', "\\|")
            )?;
        }
    }
    writeln!(s)?;
    Ok(())
}

/// Each provisioning step's time (from the event before it to its own),
/// over the creates that wrote the same steps as the first.
pub fn steps(events: &[Vec<CreateStep>]) -> Vec<(String, Vec<Duration>)> {
    let Some(first) = events.first() else {
        return Vec::new();
    };
    let alike: Vec<&Vec<CreateStep>> = events.iter().filter(|e| e.len() == first.len()).collect();
    (1..first.len())
        .map(|i| {
            let mut took: Vec<Duration> = alike
                .iter()
                .map(|e| e[i].offset.saturating_sub(e[i - 1].offset))
                .collect();
            took.sort_unstable();
            (first[i].message.clone(), took)
        })
        .collect()
}

fn step_breakdown(s: &mut String, events: &[Vec<CreateStep>]) -> anyhow::Result<()> {
    let steps = steps(events);
    let Some((_, some)) = steps.first() else {
        return Ok(());
    };
    writeln!(s)?;
    writeln!(
        s,
        "Where the time goes: each step from the service event before it to its own, over the {} creates \
         with the same steps (messages as the first create wrote them; the POST and the first GET that \
         saw `Ready` come on top):",
        some.len()
    )?;
    writeln!(s)?;
    writeln!(s, "| step, until the event | p50 | max |")?;
    writeln!(s, "|---|---|---|")?;
    for (message, took) in &steps {
        writeln!(
            s,
            "| {} | {} | {} |",
            message.replace('|', "\\|"),
            ms(percentile(took, 50.0)),
            ms(took.last().copied().unwrap_or_default())
        )?;
    }
    Ok(())
}

fn burst_details(s: &mut String, b: &BurstFigures) -> anyhow::Result<()> {
    if b.size() == 0 {
        return Ok(());
    }
    let ready = b.ready();
    writeln!(s)?;
    writeln!(
        s,
        "Burst: {} creates sent at once, {} Ready (time to Ready from the burst's start: p50 {}, last {}), \
         {} refused, {} accepted but not Ready.",
        b.size(),
        ready.len(),
        ms(percentile(&ready, 50.0)),
        ms(b.last_ready()),
        b.refused().len(),
        b.not_ready().len()
    )?;
    for m in b.refused().iter().chain(b.not_ready().iter()) {
        writeln!(s, "* {m}")?;
    }
    Ok(())
}

fn method(s: &mut String, f: &Figures) -> anyhow::Result<()> {
    writeln!(s, "## Method")?;
    writeln!(s)?;
    writeln!(
        s,
        "`scripts/bench.sh` builds `strata` and `strata-bench` in release mode, starts `strata serve` on a \
         fresh temporary data directory with loopback listeners on free ports, runs `strata-bench` \
         against it and stops the server (and so its PostgreSQL servers) on exit."
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "* Create → Ready: {} creates one after another, each timed from the POST to the first GET \
         (polled every 10 ms) that shows phase `Ready`; then all are deleted. They begin once \
         `strata serve` reports its pool of prepared clusters full (`prepared_clusters` on its \
         `/metrics`): the template and the pool are made in the background after start-up, and a \
         create sent before the template exists waits for it (about a second).",
        f.creates.len()
    )?;
    if f.burst.size() > 0 {
        writeln!(
            s,
            "* Burst: then {} creates (default plan) sent at once, each on its own task; each instance \
             is polled every {} ms until `Ready`, and the time is counted from the start of the burst; \
             a POST answered with anything but 2xx counts as refused; then all are deleted.",
            f.burst.size(),
            burst::POLL.as_millis()
        )?;
    }
    writeln!(
        s,
        "* GET: a closed-loop load generator written for this benchmark (raw HTTP/1.1 over tokio TCP, \
         one request in flight per keep-alive connection, bounded in time) sends the same request, \
         with a valid token, to Strata and to a bare axum handler that the benchmark starts in its own \
         process on its own runtime and that returns the bytes of a real Strata response; the two \
         alternate for {} rounds and the table's headline figures pool the rounds. Load generator and \
         servers share the machine's {} CPUs, as they would on any single machine.",
        f.get.rounds.len(),
        f.machine.cpus
    )?;
    writeln!(
        s,
        "* Breakdown: the same load on cheaper routes of the same server — `/healthz` (routing and \
         middleware only), `/v1/versions` (plus JWT verification), `/readyz` (one store query, no \
         token check) — shows what each layer costs."
    )?;
    writeln!(
        s,
        "* RSS: `VmRSS` of the `strata serve` process from /proc (its PostgreSQL children are other \
         processes), 1 s after start-up, 1 s after the creates and deletes, and 2 s after the GET load \
         (and the deletion of the instance it read)."
    )?;
    writeln!(s)?;
    Ok(())
}

/// What stands in the way of each goal not met, from this run's own figures.
fn in_the_way(s: &mut String, f: &Figures) -> anyhow::Result<()> {
    let missed: Vec<Row> = rows(f)
        .into_iter()
        .filter(|r| r.met == Some(false))
        .collect();
    if missed.is_empty() {
        return Ok(());
    }
    writeln!(s, "## What stands in the way (from this run's figures)")?;
    writeln!(s)?;
    let strata = f.get.strata();
    let bare = f.get.bare();
    for r in &missed {
        match r.figure.as_str() {
            "Create → Ready p50" | "Create → Ready p95" => writeln!(
                s,
                "* {}: the service events of the slowest create above show which provisioning step takes the time.",
                r.figure
            )?,
            "GET instance p99" => writeln!(
                s,
                "* {}: with {} connections each keeping one request in flight, the mean latency is \
                 connections / throughput (Little's law) = {} at {:.0} req/s, so it falls only as the \
                 cost per GET (above) falls; the bare handler's p99 in the same run was {}.",
                r.figure,
                f.get.connections,
                ms(Duration::from_secs_f64(
                    as_f64(f.get.connections as u64) / strata.rps().max(1.0)
                )),
                strata.rps(),
                ms(bare.p(99.0))
            )?,
            "GET instance, throughput vs bare axum handler" => {
                let cost = |label: &str| {
                    f.get
                        .breakdown
                        .iter()
                        .find(|(l, _)| l.contains(label))
                        .map(|(_, r)| r.server_us())
                };
                write!(
                    s,
                    "* {}: Strata spends {:.0} µs of CPU per GET, the bare handler {:.0} µs; the load \
                     generator {:.0} µs per request on the same CPUs.",
                    r.figure,
                    strata.server_us(),
                    bare.server_us(),
                    strata.client_us()
                )?;
                if let (Some(health), Some(jwt), Some(store)) =
                    (cost("/healthz"), cost("/v1/versions"), cost("/readyz"))
                {
                    write!(
                        s,
                        " Per request, routing and middleware cost about {:.0} µs over the bare handler \
                         (`/healthz`), JWT verification about {:.0} µs more (`/v1/versions`), and one \
                         database query about {:.0} µs more (`/readyz`); the instance GET verifies the \
                         token (cached after its first use), reads the caller's access and the instance \
                         (from the store's memory on SQLite) and serialises the instance.",
                        health - bare.server_us(),
                        jwt - health,
                        store - health
                    )?;
                }
                writeln!(s)?;
            }
            figure if figure.starts_with("Burst of") => writeln!(
                s,
                "* {figure}: {}; the answers and failures are listed under Create → Ready above.",
                r.measured
            )?,
            _ => writeln!(
                s,
                "* {}: {} measured; see the notes below.",
                r.figure, r.measured
            )?,
        }
    }
    writeln!(s)?;
    Ok(())
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", as_f64(bytes) / (1024.0 * 1024.0))
}

pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", as_f64(bytes) / (1024.0 * 1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(ms: u64, message: &str) -> CreateStep {
        CreateStep {
            instance: "bench-01".into(),
            offset: Duration::from_millis(ms),
            message: message.into(),
        }
    }

    fn figures() -> Figures {
        let run = |rps: u64| LoadFigures {
            ok: rps * 10,
            errors: 0,
            window: Duration::from_secs(10),
            latencies: vec![Duration::from_millis(1); 10],
            server_cpu: Duration::from_secs(5),
            client_cpu: Duration::from_secs(5),
        };
        Figures {
            machine: crate::procfs::machine(),
            date: time::OffsetDateTime::UNIX_EPOCH,
            commit: Some("abc1234".into()),
            creates: (1..=20)
                .map(|i| Duration::from_millis(400 + i * 10))
                .collect(),
            deletes: vec![Duration::from_millis(200)],
            create_events: vec![
                vec![
                    step(0, "instance requested"),
                    step(20, "data directory taken"),
                    step(80, "accepting"),
                ],
                vec![
                    step(0, "instance requested"),
                    step(30, "data directory taken"),
                    step(70, "accepting"),
                ],
            ],
            burst: BurstFigures {
                outcomes: vec![
                    crate::burst::Outcome::Ready(Duration::from_millis(900)),
                    crate::burst::Outcome::Refused("503 Service Unavailable: no port".into()),
                ],
            },
            get: GetFigures {
                connections: 64,
                warmup: Duration::from_secs(2),
                duration: Duration::from_secs(10),
                body_len: 900,
                rounds: vec![(run(1000), run(4000))],
                breakdown: Vec::new(),
            },
            rss_start: 20 << 20,
            rss_after_creates: 30 << 20,
            rss_after_load: 60 << 20,
        }
    }

    #[test]
    fn judges_each_goal_and_keeps_the_notes() {
        let old = format!("# old figures\n{NOTES_MARKER}\n## Findings\n\nkept text\n");
        let md = markdown(&figures(), &old).unwrap_or_default();
        assert!(
            md.contains("| Create → Ready p50 | ≤ 100 ms | 500 ms | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains("0.25 (1000 vs 4000 req/s) | **not met**"),
            "{md}"
        );
        assert!(md.contains("| 60.0 MiB | **not met**"), "{md}");
        assert!(
            md.contains("| Burst of 2 concurrent creates | all Ready, no error answer | 1 of 2 Ready, 1 non-2xx | **not met** |"),
            "{md}"
        );
        assert!(md.contains("* 503 Service Unavailable: no port\n"), "{md}");
        assert!(
            md.contains("| data directory taken | 20.0 ms | 30.0 ms |"),
            "{md}"
        );
        assert!(md.contains("| accepting | 40.0 ms | 60.0 ms |"), "{md}");
        assert!(md.ends_with("## Findings\n\nkept text\n"), "{md}");
        assert!(!md.contains("# old figures"));
    }

    #[test]
    fn keeps_the_node_section_after_the_operator_section() {
        use crate::{node_report, operator_report};
        let old = format!(
            "# old\n{}\nop\n{}\n\n{}\nnode\n{}\n\n{NOTES_MARKER}\nnotes\n",
            operator_report::BEGIN,
            operator_report::END,
            node_report::BEGIN,
            node_report::END
        );
        let md = markdown(&figures(), &old).unwrap_or_default();
        assert!(
            md.contains(&format!(
                "{}\nop\n{}\n\n{}\nnode\n{}\n\n{NOTES_MARKER}\nnotes\n",
                operator_report::BEGIN,
                operator_report::END,
                node_report::BEGIN,
                node_report::END
            )),
            "{md}"
        );
    }

    #[test]
    fn keeps_the_operator_section() {
        use crate::operator_report::{BEGIN, END};
        let old =
            format!("# old figures\n{BEGIN}\n## The operator\n{END}\n\n{NOTES_MARKER}\nnotes\n");
        let md = markdown(&figures(), &old).unwrap_or_default();
        assert!(
            md.contains(&format!(
                "{BEGIN}\n## The operator\n{END}\n\n{NOTES_MARKER}\nnotes\n"
            )),
            "{md}"
        );
        assert!(!md.contains("# old figures"));
    }
}
