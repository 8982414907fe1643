//! The inventory: the provisioning system's device list (CSV with a header, or JSON), the
//! fleet's source of truth, read into devices by a configurable column mapping. A file
//! that cannot be read whole is reported by row and column, and never replaces a good one.

mod reconcile;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

pub use reconcile::{reconcile, Discrepancy, Report, Reported, CLASSES};
pub(crate) use watch::RawInventory;
pub use watch::{InventoryConfig, Threshold, Watch};

/// The fields rollcall reads from a device, each from the first present of its columns.
pub const FIELDS: [&str; 9] = [
    "hostname",
    "primary_ip",
    "mgmt_ip",
    "region",
    "zone",
    "role",
    "env",
    "provisioned",
    "status",
];

/// Column names tried for each field when the configuration names none (case and
/// punctuation ignored).
fn default_columns(field: &str) -> &'static [&'static str] {
    match field {
        "hostname" => &[
            "hostname",
            "host_name",
            "host",
            "name",
            "fqdn",
            "server",
            "device",
        ],
        "primary_ip" => &["primary_ip", "ip", "ip_address", "primary"],
        "mgmt_ip" => &[
            "mgmt_ip",
            "management_ip",
            "bmc_ip",
            "ipmi_ip",
            "ipmi",
            "bmc",
        ],
        "region" => &["region", "datacenter", "data_center", "dc"],
        "zone" => &["zone", "pod", "az"],
        "role" => &["role", "function"],
        "env" => &["env", "environment"],
        "provisioned" => &[
            "provisioned",
            "provisioned_at",
            "provision_date",
            "created",
            "created_at",
        ],
        "status" => &["status", "state", "lifecycle"],
        _ => &[],
    }
}

/// Status values that mean the machine is being given back.
pub const CANCELLED: [&str; 6] = [
    "cancelled",
    "canceled",
    "cancellation",
    "pending_cancellation",
    "reclaim",
    "reclaimed",
];

/// One device as the inventory lists it. Values shared by many devices (region, zone,
/// role, env, status) are stored once per inventory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Device {
    pub hostname: Box<str>,
    pub primary_ip: Box<str>,
    pub mgmt_ip: Box<str>,
    pub region: Arc<str>,
    pub zone: Arc<str>,
    pub role: Arc<str>,
    pub env: Arc<str>,
    pub provisioned: Option<DateTime<Utc>>,
    pub status: Arc<str>,
}

impl Device {
    /// Marked for cancellation or reclaim.
    pub fn cancelled(&self) -> bool {
        let s = normalize(&self.status);
        CANCELLED.iter().any(|c| s == *c || s.contains(c))
    }

    /// What the registry derives a lifecycle from, for a host this device lists.
    pub fn facts(&self) -> crate::state::InventoryFacts {
        crate::state::InventoryFacts {
            listed: true,
            cancelled: self.cancelled(),
            provisioned: self.provisioned,
        }
    }

    /// The label `name` (env, region, zone, role) as the inventory has it.
    pub fn label(&self, name: &str) -> &str {
        match name {
            "env" => &self.env,
            "region" => &self.region,
            "zone" => &self.zone,
            "role" => &self.role,
            _ => "",
        }
    }
}

/// A device list, read whole.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub path: PathBuf,
    pub loaded_at: DateTime<Utc>,
    pub devices: Vec<Device>,
    /// The first device of each hostname (compared without case), by slot: the table
    /// holds 4-byte indexes, not another copy of every name.
    names: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    /// The further devices of a hostname listed more than once, by its first.
    more: HashMap<u32, Vec<u32>>,
}

fn lower_hash(hasher: &std::hash::RandomState, s: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hasher.build_hasher();
    for b in s.bytes() {
        h.write_u8(b.to_ascii_lowercase());
    }
    h.finish()
}

impl Inventory {
    fn first(&self, host: &str) -> Option<u32> {
        self.names
            .find(lower_hash(&self.hasher, host), |&i| {
                self.devices[i as usize].hostname.eq_ignore_ascii_case(host)
            })
            .copied()
    }

    pub fn devices_named(&self, host: &str) -> impl Iterator<Item = &Device> {
        let first = self.first(host);
        let more = first.and_then(|f| self.more.get(&f));
        first
            .into_iter()
            .chain(more.into_iter().flatten().copied())
            .map(|i| &self.devices[i as usize])
    }

    pub fn contains(&self, host: &str) -> bool {
        self.first(host).is_some()
    }

    fn index(&mut self) {
        for i in 0..self.devices.len() as u32 {
            let name = &self.devices[i as usize].hostname;
            match self.first(name) {
                Some(f) => self.more.entry(f).or_default().push(i),
                None => {
                    let (devices, hasher) = (&self.devices, &self.hasher);
                    self.names.insert_unique(lower_hash(hasher, name), i, |&j| {
                        lower_hash(hasher, &devices[j as usize].hostname)
                    });
                }
            }
        }
    }
}

/// Each distinct value once.
#[derive(Default)]
struct Interner(HashMap<Box<str>, Arc<str>>);

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(v) = self.0.get(s) {
            return v.clone();
        }
        let v: Arc<str> = s.into();
        self.0.insert(s.into(), v.clone());
        v
    }
}

/// Why a device list was not taken: where, and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory {path}: {message}")]
    File { path: String, message: String },
    #[error("inventory {path}: row {row}{}: {message}", column.as_ref().map(|c| format!(", column {c:?}")).unwrap_or_default())]
    Row {
        path: String,
        /// 1-based, the header being row 1 in a CSV, the first element row 1 in JSON.
        row: usize,
        column: Option<String>,
        message: String,
    },
}

/// Lowercase, with spaces and dashes as underscores: "Host Name" and "host-name" are
/// `host_name`.
fn normalize(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect()
}

/// Dates as device lists write them: RFC 3339, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

/// Which column feeds each field: from `mapping` (field → column name) or the defaults.
struct Columns {
    /// Per field, the index of its column (if any).
    index: [Option<usize>; FIELDS.len()],
}

impl Columns {
    fn new(
        path: &str,
        header: &[String],
        mapping: &BTreeMap<String, String>,
    ) -> Result<Columns, InventoryError> {
        let names: Vec<String> = header.iter().map(|h| normalize(h)).collect();
        let mut index = [None; FIELDS.len()];
        for (i, field) in FIELDS.iter().enumerate() {
            index[i] = match mapping.get(*field) {
                Some(col) => Some(names.iter().position(|n| *n == normalize(col)).ok_or_else(|| {
                    InventoryError::Row {
                        path: path.into(),
                        row: 1,
                        column: Some(col.clone()),
                        message: format!(
                            "[inventory] columns maps {field} to {col:?}, which the header does not have (it has: {})",
                            header.join(", ")
                        ),
                    }
                })?),
                None => default_columns(field)
                    .iter()
                    .find_map(|c| names.iter().position(|n| n == c)),
            };
        }
        if index[0].is_none() {
            return Err(InventoryError::Row {
                path: path.into(),
                row: 1,
                column: None,
                message: format!(
                    "no hostname column (looked for {}); name it in [inventory] columns = {{ hostname = \"…\" }}",
                    default_columns("hostname").join(", ")
                ),
            });
        }
        Ok(Columns { index })
    }

    fn device(
        &self,
        path: &str,
        row: usize,
        shared: &mut Interner,
        get: impl Fn(usize) -> Option<String>,
    ) -> Result<Device, InventoryError> {
        let field = |i: usize| {
            self.index[i]
                .and_then(&get)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        let hostname = field(0);
        if hostname.is_empty() {
            return Err(InventoryError::Row {
                path: path.into(),
                row,
                column: Some("hostname".into()),
                message: "empty hostname; every device needs one".into(),
            });
        }
        let provisioned = match field(7) {
            s if s.is_empty() => None,
            s => Some(parse_date(&s).ok_or_else(|| InventoryError::Row {
                path: path.into(),
                row,
                column: Some("provisioned".into()),
                message: format!(
                    "{s:?} is not a date; write it like 2026-11-30 or 2026-11-30T12:00:00Z"
                ),
            })?),
        };
        Ok(Device {
            hostname: hostname.into(),
            primary_ip: field(1).into(),
            mgmt_ip: field(2).into(),
            region: shared.get(&field(3)),
            zone: shared.get(&field(4)),
            role: shared.get(&field(5)),
            env: shared.get(&field(6)),
            provisioned,
            status: shared.get(&field(8)),
        })
    }
}

/// Reads a device list (`text` from `path`): JSON if it starts with `[` or `{` (a list of
/// objects, or `{"devices": [...]}`), otherwise CSV with a header.
pub fn parse(
    path: &Path,
    text: &[u8],
    mapping: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Inventory, InventoryError> {
    let shown = path.display().to_string();
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    let devices = match first {
        None => {
            return Err(InventoryError::File {
                path: shown,
                message: "the file is empty; keeping the previous inventory".into(),
            })
        }
        Some(b'[') | Some(b'{') => parse_json(&shown, text, mapping)?,
        Some(_) => parse_csv(&shown, text, mapping)?,
    };
    let mut inv = Inventory {
        path: path.to_owned(),
        loaded_at: now,
        devices,
        ..Inventory::default()
    };
    inv.index();
    Ok(inv)
}

fn parse_csv(
    path: &str,
    text: &[u8],
    mapping: &BTreeMap<String, String>,
) -> Result<Vec<Device>, InventoryError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(text);
    let bad = |row: usize, e: csv::Error| InventoryError::Row {
        path: path.into(),
        row,
        column: None,
        message: format!("{e}"),
    };
    let header: Vec<String> = r
        .headers()
        .map_err(|e| bad(1, e))?
        .iter()
        .map(str::to_owned)
        .collect();
    let cols = Columns::new(path, &header, mapping)?;
    let mut devices = Vec::new();
    let mut shared = Interner::default();
    for (i, rec) in r.records().enumerate() {
        let row = i + 2;
        let rec = rec.map_err(|e| bad(row, e))?;
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        // A row shorter than the header is a file cut short (or a broken row): refused,
        // so that a half-written file never replaces a good one.
        if rec.len() < header.len() {
            return Err(InventoryError::Row {
                path: path.into(),
                row,
                column: header.get(rec.len()).cloned(),
                message: format!(
                    "{} fields where the header has {}: a row cut short (is the file still being written?)",
                    rec.len(),
                    header.len()
                ),
            });
        }
        devices.push(cols.device(path, row, &mut shared, |c| rec.get(c).map(str::to_owned))?);
    }
    Ok(devices)
}

fn parse_json(
    path: &str,
    text: &[u8],
    mapping: &BTreeMap<String, String>,
) -> Result<Vec<Device>, InventoryError> {
    let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| InventoryError::Row {
        path: path.into(),
        row: e.line(),
        column: Some(format!("char {}", e.column())),
        message: format!("invalid JSON: {e}"),
    })?;
    let list = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("devices") {
            Some(serde_json::Value::Array(a)) => a,
            _ => {
                return Err(InventoryError::File {
                    path: path.into(),
                    message: "a JSON inventory is a list of devices, or {\"devices\": [...]}"
                        .into(),
                })
            }
        },
        _ => unreachable!("starts with [ or {{"),
    };
    let mut devices = Vec::with_capacity(list.len());
    let mut shared = Interner::default();
    let mut cols_for: Option<(Vec<String>, Columns)> = None;
    for (i, item) in list.iter().enumerate() {
        let row = i + 1;
        let obj = item.as_object().ok_or_else(|| InventoryError::Row {
            path: path.into(),
            row,
            column: None,
            message: "not an object; each device is {\"hostname\": ..., ...}".into(),
        })?;
        let keys: Vec<String> = obj.keys().cloned().collect();
        if cols_for.as_ref().is_none_or(|(k, _)| *k != keys) {
            cols_for = Some((keys.clone(), Columns::new(path, &keys, mapping)?));
        }
        let Some((keys, cols)) = &cols_for else {
            continue;
        };
        devices.push(cols.device(path, row, &mut shared, |c| {
            obj.get(&keys[c]).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            })
        })?);
    }
    Ok(devices)
}

#[cfg(test)]
mod tests;
