//! How a migrator names itself in the records it leaves (the migrator lock's holder, the
//! phase record): its host, its process id, and the time, as an operator reads them.

/// The host's name, as `hostname` prints it.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This process's id.
pub fn pid() -> i64 {
    i64::from(std::process::id())
}

/// Now, in UTC, to the second (RFC 3339).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
