//! Configured start and stop commands (argv, no shell), for hosts with neither.

use std::time::Duration;

use super::{checked, ManagerError};

#[derive(Debug, Clone)]
pub struct CommandManager {
    start: Vec<String>,
    stop: Vec<String>,
    timeout: Duration,
}

impl CommandManager {
    pub fn new(start: Vec<String>, stop: Vec<String>, timeout: Duration) -> CommandManager {
        CommandManager {
            start,
            stop,
            timeout,
        }
    }

    pub async fn start(&self) -> Result<(), ManagerError> {
        checked(&self.start, self.timeout).await?;
        Ok(())
    }

    /// Without a stop command there is nothing to ask; the ladder's kill step still works.
    pub async fn stop(&self) -> Result<(), ManagerError> {
        if self.stop.is_empty() {
            return Ok(());
        }
        checked(&self.stop, self.timeout).await?;
        Ok(())
    }
}
