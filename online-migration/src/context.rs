//! What a run of the migrations hands every step besides its connection: the
//! [`Settings`] it was started with, and its [`Stop`] (set by Ctrl-C or SIGTERM where the
//! command listens for them). The command builds it from its flags; a program that runs
//! the migrations from code builds its own ([`crate::Migrator::with`]), or lets
//! `Migrator::up` and the rest read the environment ([`Context::from_env`]).
//!
//! ```
//! use std::time::Duration;
//! use migration::context::Context;
//! use migration::settings::Settings;
//!
//! let context = Context::new(Settings {
//!     lock_timeout: Duration::from_millis(500),
//!     ..Settings::default()
//! });
//! assert_eq!(context.settings.lock_timeout, Duration::from_millis(500));
//! assert!(!context.stop.requested());
//! ```

use crate::settings::{Settings, SettingsError};
use crate::stop::Stop;

/// The settings and the stop request of one run of the migrations.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// What the run may cost the application beside it.
    pub settings: Settings,
    /// Asked to stop at the next batch boundary.
    pub stop: Stop,
}

impl Context {
    /// `settings`, with a stop that only [`Stop::request`] on it (or a clone) sets.
    pub fn new(settings: Settings) -> Context {
        Context {
            settings,
            stop: Stop::default(),
        }
    }

    /// The environment's settings ([`Settings::from_env`]).
    pub fn from_env() -> Result<Context, SettingsError> {
        Ok(Context::new(Settings::from_env()?))
    }
}
