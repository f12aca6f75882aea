//! Fault injection for crash tests: with the `fault-injection` feature and
//! `MIGRATION_CRASH_AT=k`, the process aborts (no cleanup, like `kill -9`) at the k-th
//! crash point it reaches; `MIGRATION_CRASH_AT=name`, at the first one of that name. With
//! `MIGRATION_PAUSE_AT=name`, it stands still for a second at each point of that name
//! instead (a slow step, for tests of what waits for it). Without the feature,
//! `crash_point!` compiles to nothing.

/// Marks a place where a crash must leave the database recoverable by a rerun of `up`.
macro_rules! crash_point {
    ($name:expr) => {
        #[cfg(feature = "fault-injection")]
        $crate::fault::reached($name);
    };
}

pub(crate) use crash_point;

/// Counts crash points and aborts at the one `MIGRATION_CRASH_AT` names.
#[cfg(feature = "fault-injection")]
pub fn reached(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static REACHED: AtomicU64 = AtomicU64::new(0);
    static TARGET: OnceLock<Option<u64>> = OnceLock::new();
    static TARGET_NAME: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("MIGRATION_CRASH_AT").ok()?.parse().ok());
    let target_name = TARGET_NAME.get_or_init(|| {
        let named = std::env::var("MIGRATION_CRASH_AT").ok()?;
        named.parse::<u64>().is_err().then_some(named)
    });
    if std::env::var("MIGRATION_PAUSE_AT").is_ok_and(|pause| pause == name) {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    if *target == Some(n) || target_name.as_deref() == Some(name) {
        eprintln!("fault injection: aborting at crash point {n} ({name})");
        std::process::abort();
    }
}
