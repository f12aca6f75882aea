//! Running a command as a child process and reading its wall time and peak memory.

use std::process::Command;
use std::time::{Duration, Instant};

/// What one child process used.
pub struct Usage {
    pub wall: Duration,
    /// The child's resident-set high-water mark (`ru_maxrss`), in KiB.
    pub peak_rss_kib: u64,
    pub success: bool,
}

/// Runs `command` to completion and measures it with `wait4`, which reports the peak RSS of
/// exactly that process.
pub fn run(mut command: Command) -> std::io::Result<Usage> {
    let started = Instant::now();
    let child = command.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own live child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Usage {
        wall: started.elapsed(),
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}
