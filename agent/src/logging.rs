//! Log output: journald (with structured fields) when stderr is connected to the journal,
//! readable lines on stderr otherwise, or JSON lines with `--log-format json`.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// journald when connected to it, else text.
    Auto,
    Text,
    Json,
}

pub fn init(format: Format, level: LevelFilter) {
    if format == Format::Auto && systemd_journal_logger::connected_to_journal() {
        if let Ok(j) = systemd_journal_logger::JournalLog::new() {
            let j = j.with_syslog_identifier("rollcall-agent".to_owned());
            if j.install().is_ok() {
                log::set_max_level(level);
                return;
            }
        }
    }
    let json = format == Format::Json;
    if log::set_boxed_logger(Box::new(Stderr { json })).is_ok() {
        log::set_max_level(level);
    }
}

struct Stderr {
    json: bool,
}

struct Text<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for Text<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = value.to_string();
        if v != "None" && key.as_str() != "check" && key.as_str() != "seq" {
            let v = v
                .strip_prefix("Some(")
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or(&v);
            self.0
                .push_str(&format!(" {}={}", key, v.trim_matches('"')));
        }
        Ok(())
    }
}

struct Json<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for Json<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = value.to_string();
        if v == "None" {
            return Ok(());
        }
        let v = v
            .strip_prefix("Some(")
            .and_then(|v| v.strip_suffix(')'))
            .unwrap_or(&v);
        let v = match v.parse::<u64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(v.trim_matches('"')),
        };
        self.0.insert(key.as_str().to_owned(), v);
        Ok(())
    }
}

impl Log for Stderr {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let line = if self.json {
            let mut m = serde_json::Map::new();
            m.insert("ts".into(), ts.into());
            m.insert("level".into(), record.level().as_str().into());
            m.insert("target".into(), record.target().into());
            m.insert("msg".into(), record.args().to_string().into());
            let _ = record.key_values().visit(&mut Json(&mut m));
            serde_json::Value::Object(m).to_string()
        } else {
            let mut fields = String::new();
            let _ = record.key_values().visit(&mut Text(&mut fields));
            let level = match record.level() {
                Level::Error => "ERROR",
                Level::Warn => "WARN ",
                Level::Info => "INFO ",
                Level::Debug => "DEBUG",
                Level::Trace => "TRACE",
            };
            // Text from outside (a log line of the BigFix client, a unit's status) must
            // not forge a line or drive the terminal.
            let text = record.args().to_string() + &fields;
            format!(
                "{ts} {level} {}: {}",
                record.target(),
                rollcall_support::escape_controls(&text)
            )
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}
