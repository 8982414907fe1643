//! A service manager that runs nothing: it records what it was asked and moves a shared
//! "is the daemon up" flag. Only for the supervision loop's own tests, where a real command
//! would race tokio's paused clock.

use std::sync::{Arc, Mutex};

use super::ManagerError;

/// What the scripted daemon is, and what was asked of its manager.
#[derive(Debug, Default)]
pub struct World {
    pub up: bool,
    /// Whether a start (or restart) brings the daemon up.
    pub starts: bool,
    pub calls: Vec<&'static str>,
}

#[derive(Debug, Clone, Default)]
pub struct Scripted(pub Arc<Mutex<World>>);

impl Scripted {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn start(&self, verb: &'static str) -> Result<(), ManagerError> {
        let mut w = self.world();
        w.calls.push(verb);
        if w.starts {
            w.up = true;
            Ok(())
        } else {
            Err(ManagerError::Failed {
                command: format!("scripted {verb}"),
                status: "exit status 1".to_owned(),
                said: "failed to start".to_owned(),
            })
        }
    }

    pub fn stop(&self) -> Result<(), ManagerError> {
        let mut w = self.world();
        w.calls.push("stop");
        w.up = false;
        Ok(())
    }
}
