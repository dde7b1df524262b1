//! What the tests that run the `strata` binary share.

pub mod http;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a `strata` process may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_mins(1);

/// A `strata` process, stopped with SIGTERM (then SIGKILL) on drop, so that
/// nothing outlives the test even when it panics.
pub struct Process {
    name: &'static str,
    child: Option<Child>,
}

impl Process {
    /// Starts `strata <args>` with its stdout appended to `dir/<name>.log`;
    /// returns it with the receiver of its stderr lines (also echoed,
    /// prefixed with `name`, to the test's output).
    pub fn start<A: AsRef<OsStr>>(
        name: &'static str,
        dir: &Path,
        args: impl IntoIterator<Item = A>,
        env: &[(&str, &str)],
    ) -> (Self, Receiver<String>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .unwrap();
        // Waited for in terminate() or crash(), from stop() or Drop.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .envs(env.iter().copied())
            .env_remove("STRATA_DATABASE_URL")
            .stdout(log)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                let _ = tx.send(line);
            }
        });
        let process = Self {
            name,
            child: Some(child),
        };
        (process, rx)
    }

    #[allow(dead_code)] // not every test binary uses every helper
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().map_or(0, Child::id).cast_signed())
    }

    /// SIGTERM and a clean exit within the deadline.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "strata {} did not exit cleanly on SIGTERM: {status:?}",
            self.name
        );
    }

    /// SIGKILL: the process ends at once, without cleaning up.
    #[allow(dead_code)]
    pub fn crash(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id().cast_signed()), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
    }
}
