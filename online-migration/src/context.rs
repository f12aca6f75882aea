//! What a run of the migrations hands every step besides its connection: the
//! [`Settings`] it was started with, and its [`Stop`] (set by Ctrl-C or SIGTERM where the
//! command listens for them). A command builds it from its flags; a program that runs
//! migrations from code builds its own, or reads the environment ([`Context::from_env`]).
//!
//! ```
//! use std::time::Duration;
//! use online_migration::context::Context;
//! use online_migration::settings::Settings;
//!
//! let context = Context::new(Settings {
//!     lock_timeout: Duration::from_millis(500),
//!     ..Settings::default()
//! });
//! assert_eq!(context.settings.lock_timeout, Duration::from_millis(500));
//! assert!(!context.stop.requested());
//! ```

use std::fmt;
use std::sync::Arc;

use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::settings::{Settings, SettingsError};
use crate::stop::Stop;

/// Statements that reset what a run's steps may leave in a session (a MariaDB session
/// variable, say), for the backend at hand.
pub type SessionReset = Arc<dyn Fn(DbBackend) -> Vec<Statement> + Send + Sync>;

/// The settings and the stop request of one run of the migrations.
#[derive(Clone, Default)]
pub struct Context {
    /// What the run may cost the application beside it.
    pub settings: Settings,
    /// Asked to stop at the next batch boundary.
    pub stop: Stop,
    /// Run by every locked step before its connection goes back to the pool.
    session_reset: Option<SessionReset>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("stop", &self.stop)
            .field("session_reset", &self.session_reset.is_some())
            .finish()
    }
}

impl Context {
    /// `settings`, with a stop that only [`Stop::request`] on it (or a clone) sets.
    pub fn new(settings: Settings) -> Context {
        Context {
            settings,
            stop: Stop::default(),
            session_reset: None,
        }
    }

    /// This context, with `reset` run by every locked step (see [`crate::locks`]) before its
    /// connection goes back to the pool, whether the step committed or not: for state the
    /// caller's steps set on the session that must not reach the application's next use of
    /// the connection.
    pub fn with_session_reset(self, reset: SessionReset) -> Context {
        Context {
            session_reset: Some(reset),
            ..self
        }
    }

    /// What [`Context::with_session_reset`] gave, for `backend`.
    pub fn session_reset(&self, backend: DbBackend) -> Vec<Statement> {
        self.session_reset
            .as_ref()
            .map_or(vec![], |reset| reset(backend))
    }

    /// The environment's settings ([`Settings::from_env`]).
    pub fn from_env() -> Result<Context, SettingsError> {
        Ok(Context::new(Settings::from_env()?))
    }
}
