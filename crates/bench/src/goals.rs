//! What both reports open with: the facts of the run (date, commit,
//! machine) and the goal table — each figure, its goal, what this run
//! measured and whether the goal is met — as Markdown for docs/benchmarks.md
//! and as plain text for the terminal.

use std::fmt::Write as _;

use crate::procfs::Machine;
use crate::report::NOTES_MARKER;

/// The run's date, commit and machine as a Markdown list; `sharing` says
/// what else ran on the machine's CPUs.
pub fn run_facts(
    s: &mut String,
    date: time::OffsetDateTime,
    commit: Option<&str>,
    m: &Machine,
    sharing: &str,
) -> anyhow::Result<()> {
    let date = date.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))?;
    writeln!(s, "* Date: {date}")?;
    if let Some(c) = commit {
        writeln!(s, "* Commit: `{c}`")?;
    }
    writeln!(
        s,
        "* Machine: {} CPUs ({}), {} memory, Linux {}{sharing}",
        m.cpus,
        m.cpu_model,
        crate::report::gib(m.memory_bytes),
        m.kernel
    )?;
    writeln!(s, "* Load average when the run started: {}", m.load_average)?;
    Ok(())
}

pub struct Row {
    pub figure: String,
    pub goal: String,
    pub measured: String,
    /// `None`: reported, no goal.
    pub met: Option<bool>,
}

pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "(reported)",
    }
}

/// The Markdown table.
pub fn markdown(s: &mut String, rows: &[Row]) -> std::fmt::Result {
    writeln!(s, "| figure | goal | measured | verdict |")?;
    writeln!(s, "|---|---|---|---|")?;
    for r in rows {
        writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.figure,
            r.goal,
            r.measured,
            verdict(r.met)
        )?;
    }
    Ok(())
}

/// One aligned line per figure.
pub fn summary(rows: &[Row]) -> String {
    let width = |column: fn(&Row) -> &str| {
        rows.iter()
            .map(|r| column(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (figure, goal, measured) = (
        width(|r| &r.figure),
        width(|r| &r.goal),
        width(|r| &r.measured),
    );
    let mut s = String::new();
    for r in rows {
        let _ = writeln!(
            s,
            "{:<figure$}  goal {:<goal$}  measured {:<measured$}  {}",
            r.figure,
            r.goal,
            r.measured,
            verdict(r.met).trim_matches('*')
        );
    }
    s
}

/// `old` with the section between `begin` and `end` (markers included)
/// replaced by `section`; without one, `section` goes before the notes
/// marker, or at the end of a new file.
pub fn splice_section(old: &str, begin: &str, end: &str, section: &str) -> String {
    if let Some(start) = old.find(begin)
        && let Some(len) = old[start..].find(end)
    {
        let stop = start + len + end.len();
        return format!("{}{section}{}", &old[..start], &old[stop..]);
    }
    if let Some(at) = old.find(NOTES_MARKER) {
        return format!("{}{section}\n{}", &old[..at], &old[at..]);
    }
    let head = if old.trim().is_empty() {
        "# Benchmarks\n\n".to_owned()
    } else {
        format!("{}\n", old.trim_end())
    };
    format!("{head}{section}\n{NOTES_MARKER}\n\n## Findings\n\nNone recorded yet.\n")
}

/// The section of `old` from `begin` to `end`, markers included.
pub fn kept_section<'a>(old: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = old.find(begin)?;
    let len = old[start..].find(end)?;
    Some(&old[start..start + len + end.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                figure: "steady state".into(),
                goal: "< 60 s".into(),
                measured: "45.7 s".into(),
                met: Some(true),
            },
            Row {
                figure: "p99".into(),
                goal: "< 5 ms".into(),
                measured: "14.6 ms".into(),
                met: Some(false),
            },
            Row {
                figure: "CPU".into(),
                goal: "—".into(),
                measured: "8.8 s".into(),
                met: None,
            },
        ]
    }

    #[test]
    fn markdown_has_a_row_per_figure_with_its_verdict() {
        let mut s = String::new();
        markdown(&mut s, &rows()).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "| figure | goal | measured | verdict |");
        assert_eq!(lines[2], "| steady state | < 60 s | 45.7 s | met |");
        assert_eq!(lines[3], "| p99 | < 5 ms | 14.6 ms | **not met** |");
        assert_eq!(lines[4], "| CPU | — | 8.8 s | (reported) |");
    }

    #[test]
    fn summary_aligns_the_columns() {
        let s = summary(&rows());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3);
        let at = |l: &str| l.find("goal").unwrap();
        assert_eq!(at(lines[0]), at(lines[1]));
        assert_eq!(at(lines[1]), at(lines[2]));
        assert!(lines[1].ends_with("not met"));
    }
}
