//! The little the migrations need from the async runtime they run on: a timer.

use std::time::Duration;

/// Waits without blocking the runtime's thread.
#[cfg(feature = "runtime-tokio")]
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Waits without blocking the runtime's thread.
#[cfg(all(feature = "runtime-async-std", not(feature = "runtime-tokio")))]
pub async fn sleep(duration: Duration) {
    async_std::task::sleep(duration).await
}
