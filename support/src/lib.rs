//! What `rollcall-agent` and `rollcall-collector` share that is not on the wire (that is
//! `rollcall-proto`'s): how a daemon is told to stop, and how a config file's errors are
//! located for the person who has to fix them.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// Exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EX_CONFIG: u8 = 78;

/// Resolves on SIGTERM (systemd's stop) or SIGINT (a terminal's ^C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        // No signal handling: run until killed.
        _ => std::future::pending().await,
    }
}

/// A configuration error, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}; pass the right path with --config")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        /// Dotted key, e.g. `besclient.stale_after`.
        key: String,
        message: String,
    },
    /// A command-line flag or its environment variable.
    #[error("--{flag}: {message}")]
    Flag { flag: String, message: String },
}

impl ConfigError {
    /// Reads a config file, or says which and why not.
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// `message` about the byte span `span` of `text`: its line, column and the dotted key
    /// written there.
    pub fn at(path: &Path, text: &str, span: Range<usize>, message: String) -> ConfigError {
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ConfigError::Invalid {
            path: path.to_owned(),
            line,
            column,
            key: key_at(text, start),
            message,
        }
    }
}

/// Best effort: the `[section]` header above `pos` and the key on `pos`'s line.
fn key_at(text: &str, pos: usize) -> String {
    let before = &text[..pos];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let this_line = text[line_start..line_end].trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    if this_line.starts_with('[') {
        return this_line.trim_matches(|c| c == '[' || c == ']').to_owned();
    }
    let key = this_line
        .split('=')
        .next()
        .map(|k| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match (section, key) {
        (Some(s), Some(k)) => format!("{s}.{k}"),
        (None, Some(k)) => k,
        (Some(s), None) => s,
        (None, None) => "(document)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(text: &str, at: &str) -> String {
        let pos = text.find(at).unwrap();
        ConfigError::at(Path::new("a.toml"), text, pos..pos + 1, "bad".into()).to_string()
    }

    #[test]
    fn errors_name_file_line_column_and_dotted_key() {
        let text = "state_dir = \"/x\"\n[besclient]\nstale_after = \"soon\"\n";
        assert_eq!(
            located(text, "\"soon\""),
            "a.toml:3:15: besclient.stale_after: bad"
        );
        assert_eq!(located(text, "\"/x\""), "a.toml:1:13: state_dir: bad");
        assert_eq!(located(text, "[besclient]"), "a.toml:2:1: besclient: bad");
    }
}

/// A `--log-level` value, for both daemons' command lines.
pub fn log_level(s: &str) -> Result<log::LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("unknown log level {s:?}; one of error, warn, info, debug, trace"))
}

/// `s` with its control characters (C0, DEL, C1: newlines, ESC, NUL…) written out as
/// escapes (`\n`, `\u{1b}`), for text from outside on its way to a terminal or a log: it
/// can neither forge a line nor drive the terminal.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod escape_tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("web-1 é ✓"), "web-1 é ✓");
        assert_eq!(
            escape_controls("a\nb\u{1b}]0;pwned\u{7}\0\u{9b}c\t"),
            "a\\nb\\u{1b}]0;pwned\\u{7}\\u{0}\\u{9b}c\\t"
        );
    }
}
