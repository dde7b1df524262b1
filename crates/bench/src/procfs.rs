//! What /proc tells about a process and this machine.

use std::time::Duration;

use anyhow::Context;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Strata runs on.
const TICKS_PER_SECOND: u64 = 100;

/// Resident set size of process `pid` alone (`VmRSS`; children are other processes).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the server running?)"))?;
    kib_field(&status, "VmRSS:").context("no VmRSS in /proc/PID/status")
}

/// Peak resident set size of process `pid` over its life (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the process running?)"))?;
    kib_field(&status, "VmHWM:").context("no VmHWM in /proc/PID/status")
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// User + system CPU time that process `pid` used so far (not its children).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    stat_cpu(&stat).context("unexpected /proc/PID/stat")
}

/// User + system CPU time of this process's threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let dir = entry?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(dir.join("stat")) {
            total += stat_cpu(&stat).context("unexpected /proc/self/task/TID/stat")?;
        }
    }
    Ok(total)
}

/// utime + stime of a `stat` line; the command name may hold spaces, so fields
/// are counted after its closing parenthesis.
fn stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

/// Facts about this machine for the report.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
    /// 1, 5 and 15 minute load averages when the run started: other work on the machine.
    pub load_average: String,
}

pub fn machine() -> Machine {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| kib_field(&m, "MemTotal:"))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |k| k.trim().to_owned());
    let load_average = std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    Machine {
        cpus,
        cpu_model,
        memory_bytes,
        kernel,
        load_average,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_times_past_a_command_name_with_spaces() {
        let stat = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 4 0 1 1 1";
        assert_eq!(stat_cpu(stat), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reads_kib_fields() {
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048 * 1024)
        );
        assert_eq!(kib_field("Name:\tx\n", "VmRSS:"), None);
    }

    #[test]
    fn this_process_has_a_resident_set_and_cpu_time() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_ok_and(|b| b > 0));
        assert!(peak_rss_bytes(pid).is_ok_and(|b| b >= rss_bytes(pid).unwrap_or(u64::MAX)));
        assert!(process_cpu(pid).is_ok());
    }
}
