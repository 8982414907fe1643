//! A local pause: remediation suspended until a time, with a reason, in `state_dir/pause.json`.
//! It expires by itself; `rollcall-agent resume` lifts it early.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub until: DateTime<Utc>,
    pub reason: String,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("pause.json")
}

/// The pause in force at `now`, if any. An unreadable file is reported, not obeyed.
pub fn active(state_dir: &Path, now: DateTime<Utc>) -> Result<Option<Pause>, String> {
    let p = path(state_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let pause: Pause = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a valid pause ({e}); remove it or run rollcall-agent pause again",
            p.display()
        )
    })?;
    Ok((pause.until > now).then_some(pause))
}

pub fn set(state_dir: &Path, pause: &Pause) -> std::io::Result<()> {
    crate::state::write_atomic(&path(state_dir), &serde_json::to_vec_pretty(pause)?)
}

pub fn clear(state_dir: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path(state_dir)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `rollcall-agent pause`: sets the pause and says until when.
pub fn pause_for(
    state_dir: &Path,
    now: DateTime<Utc>,
    duration: std::time::Duration,
    reason: String,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let until = now + crate::clock::to_chrono(duration);
    set(state_dir, &Pause { until, reason })
        .with_context(|| format!("writing {}", path(state_dir).display()))?;
    println!("remediation paused until {}", until.to_rfc3339());
    Ok(())
}

/// `rollcall-agent resume`: lifts the pause, saying whether there was one.
pub fn resume(state_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let had = clear(state_dir).context("removing the pause")?;
    println!(
        "{}",
        if had {
            "remediation resumed"
        } else {
            "remediation was not paused"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_holds_until_its_time_then_lapses() {
        let d = tempfile::tempdir().unwrap();
        let now = Utc::now();
        assert_eq!(active(d.path(), now), Ok(None));
        let p = Pause {
            until: now + chrono::Duration::hours(2),
            reason: "relay maintenance".into(),
        };
        set(d.path(), &p).unwrap();
        assert_eq!(active(d.path(), now), Ok(Some(p)));
        assert_eq!(active(d.path(), now + chrono::Duration::hours(3)), Ok(None));
        assert!(clear(d.path()).unwrap());
        assert_eq!(active(d.path(), now), Ok(None));
    }

    #[test]
    fn a_corrupt_pause_file_is_an_error_not_a_pause() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(path(d.path()), "{not json").unwrap();
        let e = active(d.path(), Utc::now()).unwrap_err();
        assert!(e.contains("pause.json"), "{e}");
    }
}
