//! How the migrations behave beside a live application: lock waits, retries, batch size,
//! replica lag.
//!
//! A value: the command reads its flags and the environment into one, and hands it to every
//! step inside a [`crate::context::Context`].
//!
//! ```
//! use std::time::Duration;
//! use online_migration::settings::Settings;
//!
//! let settings = Settings {
//!     lock_timeout: Duration::from_millis(500),
//!     ..Settings::from_env().unwrap()
//! };
//! assert_eq!(settings.lock_timeout, Duration::from_millis(500));
//! ```

use std::time::Duration;

/// Environment variable for [`Settings::lock_timeout`] (`500ms`, `2s`, …).
pub const LOCK_TIMEOUT_ENV: &str = "MIGRATION_LOCK_TIMEOUT";
/// Environment variable for [`Settings::lock_retry_for`] (`10m`, `90s`, …).
pub const LOCK_RETRY_FOR_ENV: &str = "MIGRATION_LOCK_RETRY_FOR";
/// Environment variable for [`Settings::batch_size`].
pub const BATCH_SIZE_ENV: &str = "MIGRATION_BATCH_SIZE";
/// Environment variable for [`Settings::max_replica_lag`] (`2s`, `500ms`, …).
pub const MAX_REPLICA_LAG_ENV: &str = "MIGRATION_MAX_REPLICA_LAG";
/// Environment variable for [`Settings::migrator_wait`] (`15m`, `90s`, …).
pub const MIGRATOR_WAIT_ENV: &str = "MIGRATION_MIGRATOR_WAIT";
/// Environment variable for [`Settings::migrator_lease`] (`30s`, …).
pub const MIGRATOR_LEASE_ENV: &str = "MIGRATION_MIGRATOR_LEASE";

/// What a migration may cost the application beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The longest a statement waits for a lock on a table the application uses. Readers
    /// and writers queued behind that request wait at most this long too. MariaDB counts
    /// lock waits in whole seconds: it is rounded up there.
    pub lock_timeout: Duration,
    /// How long a step keeps retrying (with backoff, letting the application through in
    /// between), or a batched step waits for a lagging replica, before it gives up and the
    /// migration stops with an error.
    pub lock_retry_for: Duration,
    /// Rows read and written per batch (a transaction each).
    pub batch_size: u64,
    /// When set, batched steps pause between batches while a streaming replica has not
    /// replayed WAL older than this (PostgreSQL; see [`crate::replicas`]).
    pub max_replica_lag: Option<Duration>,
    /// How long a migrator waits for another one (a replica of a rolling deploy that
    /// started first) to finish before it gives up with an error, changing nothing.
    pub migrator_wait: Duration,
    /// MariaDB: how long the migrator lock outlives a migrator that stopped renewing it
    /// (killed, or cut off from the cluster). It renews it six times as often.
    pub migrator_lease: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_secs(1),
            lock_retry_for: Duration::from_secs(15 * 60),
            batch_size: 2_000,
            max_replica_lag: None,
            migrator_wait: Duration::from_secs(15 * 60),
            migrator_lease: Duration::from_secs(30),
        }
    }
}

/// A setting in the environment that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?}: {problem}")]
pub struct SettingsError {
    variable: &'static str,
    value: String,
    problem: String,
}

impl From<SettingsError> for sea_orm_migration::DbErr {
    fn from(error: SettingsError) -> Self {
        sea_orm_migration::DbErr::Custom(error.to_string())
    }
}

impl Settings {
    /// The defaults, overridden by `MIGRATION_LOCK_TIMEOUT`, `MIGRATION_LOCK_RETRY_FOR`,
    /// `MIGRATION_BATCH_SIZE`, `MIGRATION_MAX_REPLICA_LAG`, `MIGRATION_MIGRATOR_WAIT` and
    /// `MIGRATION_MIGRATOR_LEASE` where set.
    pub fn from_env() -> Result<Settings, SettingsError> {
        let defaults = Settings::default();
        let batch_size = |text: &str| match text.trim().parse() {
            Ok(size) if size > 0 => Ok(size),
            _ => Err("expected a whole number above 0".to_owned()),
        };
        Ok(Settings {
            lock_timeout: env_setting(LOCK_TIMEOUT_ENV, parse_duration)?
                .unwrap_or(defaults.lock_timeout),
            lock_retry_for: env_setting(LOCK_RETRY_FOR_ENV, parse_duration)?
                .unwrap_or(defaults.lock_retry_for),
            batch_size: env_setting(BATCH_SIZE_ENV, batch_size)?.unwrap_or(defaults.batch_size),
            max_replica_lag: env_setting(MAX_REPLICA_LAG_ENV, parse_duration)?,
            migrator_wait: env_setting(MIGRATOR_WAIT_ENV, parse_duration)?
                .unwrap_or(defaults.migrator_wait),
            migrator_lease: env_setting(MIGRATOR_LEASE_ENV, parse_duration)?
                .unwrap_or(defaults.migrator_lease),
        })
    }
}

/// `1s`, `500ms`, `2m`, `1h 30m`: the units `humantime` reads. Zero is refused: a zero lock
/// timeout means "wait forever" on PostgreSQL.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(duration) if duration.is_zero() => Err("must be above zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!("{error} (expected e.g. 500ms, 2s, 10m)")),
    }
}

/// `duration` the way [`parse_duration`] reads it (`1s`, `1m 30s`, `500ms`).
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `variable` read with `parse`, if it is set (and not blank).
fn env_setting<T>(
    variable: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, SettingsError> {
    let Some(value) = std::env::var(variable)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    parse(&value).map(Some).map_err(|problem| SettingsError {
        variable,
        value,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_with_units_and_zero_is_refused() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5").is_err());
    }
}
