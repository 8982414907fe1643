//! The agent's last state and recent events, written to `state_dir/state.json` for
//! `rollcall-agent doctor` (and operators) to read.

use std::io::Write;
use std::path::{Path, PathBuf};

use rollcall_proto::{AgentState, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalState {
    pub pid: u32,
    pub state: AgentState,
    /// What the agent will do next, in words.
    pub next: String,
    pub events: Vec<Event>,
    /// What keeps the agent from reporting to its collector, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_problem: Option<String>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// Write to a temporary file in the same directory, fsync, rename: a reader never sees half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

pub fn read(state_dir: &Path) -> Result<LocalState, String> {
    let p = path(state_dir);
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}
