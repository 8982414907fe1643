//! Runs external commands: never through a shell, always with a timeout.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Output kept from a command, enough to explain a failure.
const KEEP_BYTES: u64 = 4096;

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The last non-empty line of stderr, else of stdout: what a failure says about itself.
    pub fn last_words(&self) -> &str {
        [&self.stderr, &self.stdout]
            .into_iter()
            .filter_map(|s| s.lines().rev().map(str::trim).find(|l| !l.is_empty()))
            .next()
            .unwrap_or("")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{program}: empty command")]
    Empty { program: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {}; it was killed", humantime::format_duration(*.timeout))]
    Timeout { program: String, timeout: Duration },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `argv` with stdin closed, capturing the first 4 KiB of stdout and stderr.
///
/// Output is read concurrently and only briefly after the exit: an init script's daemon may
/// keep the pipes open, and waiting for EOF would hang on it.
pub async fn run(argv: &[String], timeout: Duration) -> Result<Output, ExecError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ExecError::Empty {
            program: String::new(),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pgid = child.id();
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_some(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_some(s)));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => {
            return Err(ExecError::Wait {
                program: program.clone(),
                source,
            })
        }
        Err(_) => {
            // The whole process group: an init script's children too.
            if let Some(pgid) = pgid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            return Err(ExecError::Timeout {
                program: program.clone(),
                timeout,
            });
        }
    };
    Ok(Output {
        status,
        stdout: collect(stdout).await,
        stderr: collect(stderr).await,
    })
}

async fn read_some<R: tokio::io::AsyncRead + Unpin>(r: R) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.take(KEEP_BYTES).read_to_end(&mut buf).await;
    buf
}

async fn collect(task: Option<tokio::task::JoinHandle<Vec<u8>>>) -> String {
    let Some(mut task) = task else {
        return String::new();
    };
    let bytes = match tokio::time::timeout(Duration::from_millis(200), &mut task).await {
        Ok(Ok(b)) => b,
        _ => {
            task.abort();
            Vec::new()
        }
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn captures_exit_status_and_output() {
        let out = run(
            &argv(&["/bin/sh", "-c", "echo out; echo 'it broke' >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.last_words(), "it broke");
    }

    #[tokio::test]
    async fn kills_a_command_that_overruns() {
        let started = std::time::Instant::now();
        let err = run(&argv(&["/bin/sleep", "30"]), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn does_not_wait_for_a_daemon_holding_the_pipes() {
        // The backgrounded sleep keeps stdout open after the shell exits, like a daemon
        // that forgot to close its descriptors.
        let out = run(
            &argv(&["/bin/sh", "-c", "sleep 5 & echo started"]),
            Duration::from_secs(4),
        )
        .await
        .unwrap();
        assert!(out.status.success());
    }

    #[tokio::test]
    async fn missing_program_is_named() {
        let err = run(&argv(&["/nonexistent/x"]), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x"), "{err}");
    }
}
