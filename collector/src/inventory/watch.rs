//! `[inventory]` in collector.toml, and the inventory in force: read at start, again when
//! the file changes (once it has stopped changing) and on SIGHUP. A file that does not
//! parse is reported and the previous inventory kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::{parse, reconcile, Inventory, Report, FIELDS};
use crate::clock::Clock;
use crate::registry::Registry;
use crate::{lock, read, write};
use rollcall_support::ConfigError;

/// How often the file is looked at.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq)]
pub struct InventoryConfig {
    pub path: PathBuf,
    /// Field → column name, for device lists whose headers differ from the defaults.
    pub columns: BTreeMap<String, String>,
    /// A device silent longer than this is missing.
    pub missing_after: Duration,
    /// Only hosts the inventory lists may enroll (`enroll = "listed-only"`).
    pub listed_only: bool,
    /// More discrepancies than this is an `inventory-drift` incident.
    pub alert_over: Option<Threshold>,
}

/// Discrepancies tolerated: a count, or a share of the inventory's devices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Count(u64),
    Percent(f64),
}

impl Threshold {
    /// `25` or `0.5%`.
    pub fn parse(s: &str) -> Option<Threshold> {
        match s.trim().strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(Threshold::Percent),
            None => s.trim().parse().ok().map(Threshold::Count),
        }
    }

    /// How many discrepancies are tolerated with `devices` in the inventory.
    pub fn allowed(self, devices: usize) -> u64 {
        match self {
            Threshold::Count(n) => n,
            Threshold::Percent(p) => (devices as f64 * p / 100.0).floor() as u64,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInventory {
    path: Spanned<PathBuf>,
    columns: Option<BTreeMap<Spanned<String>, String>>,
    missing_after: Option<Spanned<String>>,
    enroll: Option<Spanned<String>>,
    alert_over: Option<Spanned<String>>,
}

impl RawInventory {
    pub(crate) fn validate(
        self,
        path: &std::path::Path,
        text: &str,
    ) -> Result<InventoryConfig, ConfigError> {
        let err = |span, message: String| ConfigError::at(path, text, span, message);
        if !self.path.get_ref().is_absolute() {
            return Err(err(
                self.path.span(),
                format!(
                    "inventory path must be absolute, got {:?}",
                    self.path.get_ref().display().to_string()
                ),
            ));
        }
        let mut columns = BTreeMap::new();
        for (field, column) in self.columns.unwrap_or_default() {
            if !FIELDS.contains(&field.get_ref().as_str()) {
                return Err(err(
                    field.span(),
                    format!(
                        "unknown inventory field {:?}; the fields are: {}",
                        field.get_ref(),
                        FIELDS.join(", ")
                    ),
                ));
            }
            columns.insert(field.into_inner(), column);
        }
        let missing_after = match self.missing_after {
            None => Duration::from_secs(24 * 3600),
            Some(v) => humantime::parse_duration(v.get_ref()).map_err(|e| {
                err(
                    v.span(),
                    format!(
                        "invalid duration {:?} ({e}); write it like \"24h\"",
                        v.get_ref()
                    ),
                )
            })?,
        };
        let listed_only = match self.enroll.as_ref().map(|v| v.get_ref().as_str()) {
            None | Some("any") => false,
            Some("listed-only") => true,
            Some(other) => {
                return Err(err(
                    self.enroll.as_ref().map(|v| v.span()).unwrap_or(0..0),
                    format!("enroll = {other:?}: use \"any\" (the default) or \"listed-only\""),
                ))
            }
        };
        let alert_over = match &self.alert_over {
            None => None,
            Some(v) => Some(Threshold::parse(v.get_ref()).ok_or_else(|| {
                err(
                    v.span(),
                    format!(
                        "alert_over = {:?}: give a count (\"50\") or a share of the devices (\"1%\")",
                        v.get_ref()
                    ),
                )
            })?),
        };
        Ok(InventoryConfig {
            path: self.path.into_inner(),
            columns,
            missing_after,
            listed_only,
            alert_over,
        })
    }
}

/// The inventory in force, if one is configured, and what became of the last read.
#[derive(Debug, Default)]
pub struct Watch {
    pub config: Option<InventoryConfig>,
    current: RwLock<Option<Arc<Inventory>>>,
    /// The last read that failed (cleared by a good one).
    pub last_error: Mutex<Option<String>>,
    /// Discrepancies by class, as of the last reconciliation the watcher made.
    pub counts: Mutex<BTreeMap<&'static str, usize>>,
    /// Over `alert_over` at the last reconciliation: the sentence and the hosts.
    drift: Mutex<Option<(String, Vec<String>)>>,
}

impl Watch {
    pub fn new(config: Option<InventoryConfig>) -> Watch {
        Watch {
            config,
            ..Watch::default()
        }
    }

    pub fn current(&self) -> Option<Arc<Inventory>> {
        read(&self.current).clone()
    }

    /// Reads the file now; on failure the previous inventory stays.
    pub fn load(&self, now: chrono::DateTime<chrono::Utc>) -> Result<usize, String> {
        let Some(c) = &self.config else {
            return Ok(0);
        };
        let result = std::fs::read(&c.path)
            .map_err(|e| {
                format!(
                    "inventory {}: cannot read it ({e}); keeping the previous inventory",
                    c.path.display()
                )
            })
            .and_then(|bytes| {
                parse(&c.path, &bytes, &c.columns, now)
                    .map_err(|e| format!("{e}; keeping the previous inventory"))
            });
        match result {
            Ok(inv) => {
                let n = inv.devices.len();
                *write(&self.current) = Some(Arc::new(inv));
                *lock(&self.last_error) = None;
                Ok(n)
            }
            Err(e) => {
                *lock(&self.last_error) = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Whether `host` may enroll: always, unless only listed hosts may (then the refusal
    /// says why and what to do).
    pub fn may_enroll(&self, host: &str) -> Result<(), String> {
        let Some(c) = self.config.as_ref().filter(|c| c.listed_only) else {
            return Ok(());
        };
        match self.current() {
            Some(inv) if inv.contains(host) => Ok(()),
            Some(_) => Err(format!(
                "host {host} is not in the inventory ({}); only listed hosts may enroll here: add it to the device list, or correct the agent's [host] name",
                c.path.display()
            )),
            None => Err(format!(
                "only hosts in the inventory may enroll here, and the inventory ({}) has not been read: {}",
                c.path.display(),
                lock(&self.last_error).clone().unwrap_or_else(|| "not yet".into())
            )),
        }
    }

    /// A drift over `alert_over` at the last reconciliation, for the incident pass.
    pub fn drift(&self) -> Option<(String, Vec<String>)> {
        lock(&self.drift).clone()
    }

    /// The fleet against the inventory in force, now.
    pub fn reconcile(
        &self,
        registry: &Registry,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Report> {
        let (c, inv) = (self.config.as_ref()?, self.current()?);
        Some(reconcile(&inv, registry.reported(), now, c.missing_after))
    }

    /// Forever: reads the file again once a change has settled (the same size and time
    /// on two looks), or on SIGHUP; reconciles every minute for `/metrics`.
    pub async fn run(self: Arc<Self>, registry: Arc<Mutex<Registry>>, clock: Arc<dyn Clock>) {
        let Some(c) = self.config.clone() else {
            return;
        };
        let stamp = || {
            std::fs::metadata(&c.path)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let (mut loaded, mut seen) = (stamp(), stamp());
        let mut counted = tokio::time::Instant::now() - Duration::from_secs(3600);
        loop {
            let hupped = match hup.as_mut() {
                Some(h) => tokio::select! {
                    _ = h.recv() => true,
                    _ = tokio::time::sleep(POLL) => false,
                },
                None => {
                    tokio::time::sleep(POLL).await;
                    false
                }
            };
            let now_stamp = stamp();
            let settled = now_stamp == seen && now_stamp != loaded;
            seen = now_stamp;
            if hupped || settled {
                loaded = now_stamp;
                match self.load(clock.now()) {
                    Ok(n) => {
                        log::info!("inventory {}: {n} devices", c.path.display());
                        if let Some(inv) = self.current() {
                            let changed = lock(&registry).apply_inventory(inv, clock.now());
                            if !changed.is_empty() {
                                log::info!(
                                    "inventory: {} host(s) changed lifecycle or state",
                                    changed.len()
                                );
                            }
                        }
                    }
                    Err(e) => log::warn!("{e}"),
                }
                counted -= Duration::from_secs(3600);
            }
            if counted.elapsed() >= Duration::from_secs(60) {
                counted = tokio::time::Instant::now();
                let report = self.reconcile(&lock(&registry), clock.now());
                if let Some(r) = report {
                    *lock(&self.drift) = c.alert_over.and_then(|t| drift(&r, t));
                    *lock(&self.counts) = r.counts;
                }
            }
        }
    }
}

/// The incident's words and hosts, when `r` has more discrepancies than `t` allows.
fn drift(r: &Report, t: Threshold) -> Option<(String, Vec<String>)> {
    let allowed = t.allowed(r.devices);
    if (r.total as u64) <= allowed {
        return None;
    }
    let classes: Vec<String> = r
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let mut hosts: Vec<String> = r.discrepancies.iter().map(|d| d.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    Some((
        format!(
            "the fleet and the inventory disagree: {} discrepancies ({}), over the {allowed} tolerated",
            r.total,
            classes.join(", ")
        ),
        hosts,
    ))
}
