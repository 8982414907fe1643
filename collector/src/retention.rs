//! Deletes agent events and history older than the retention, once an hour; and resolved
//! incidents and finished notifications (never an open incident or a pending one).

use std::sync::Arc;
use std::time::Duration;

use crate::http::App;
use crate::lock;

const EVERY: Duration = Duration::from_secs(3600);

/// Runs forever.
pub async fn run(app: Arc<App>, days: u32) {
    loop {
        // Once, by the leader, when there are several collectors.
        while !app.replica.is_leader() {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let before = app.now() - chrono::Duration::days(days as i64);
        match lock(&app.store).prune_events(before) {
            Ok(0) => {}
            Ok(n) => log::info!("deleted {n} events older than {days} days"),
            Err(e) => log::warn!("event retention: {e}"),
        }
        match app.notifier.prune(before).await {
            Ok(0) => {}
            Ok(n) => log::info!(
                "deleted {n} resolved incidents and sent notifications older than {days} days"
            ),
            Err(e) => log::warn!("incident retention: {e}"),
        }
        tokio::time::sleep(EVERY).await;
    }
}
