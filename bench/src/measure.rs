//! Running our migration as a child process and reading its wall time and peak memory.
//!
//! The peak is the child's own `VmHWM` (resident-set high-water mark), which it prints as
//! its last line: `ru_maxrss` from `wait4` would also count the pages the child shared with
//! this (large) process between fork and exec.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The line the child ends with.
pub const PEAK_PREFIX: &str = "peak_rss_kib=";
/// The child's line for each migration it applied: `step=<name> <seconds>`.
pub const STEP_PREFIX: &str = "step=";

/// One timed step of a variant.
#[derive(serde::Serialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
}

/// What one child process used.
pub struct Usage {
    pub wall: Duration,
    pub peak_rss_kib: u64,
    pub steps: Vec<Step>,
}

/// Runs `command` to completion; fails when it fails or does not report its peak.
pub fn run(mut command: Command) -> std::io::Result<Usage> {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let wall = started.elapsed();
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "the migration failed: {status}"
        )));
    }
    let peak = stdout
        .lines()
        .find_map(|l| l.strip_prefix(PEAK_PREFIX)?.trim().parse().ok());
    let peak_rss_kib =
        peak.ok_or_else(|| std::io::Error::other("the child reported no peak RSS"))?;
    let steps = stdout
        .lines()
        .filter_map(|l| {
            let (name, seconds) = l.strip_prefix(STEP_PREFIX)?.rsplit_once(' ')?;
            let seconds = seconds.parse().ok()?;
            Some(Step {
                name: name.to_owned(),
                seconds,
            })
        })
        .collect();
    Ok(Usage {
        wall,
        peak_rss_kib,
        steps,
    })
}

/// This process's resident-set high-water mark, in KiB.
pub fn own_peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The `q` quantile (0 to 1) of `sorted` durations, in milliseconds; 0 when there are none.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    quantile(sorted, q).as_secs_f64() * 1000.0
}

/// The `q` quantile (0 to 1) of `sorted` values; the default (zero) when there are none.
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    let at = ((sorted.len().max(1) - 1) as f64 * q) as usize;
    sorted.get(at).copied().unwrap_or_default()
}
