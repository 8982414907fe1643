//! Several collectors on one PostgreSQL, as an operator runs them: the first one's data
//! directory made at its first start, the files they must share copied to the others'.

use std::path::{Path, PathBuf};

use super::Collector;

/// What each collector shares: the CA (so agents trust every one), the API tokens and
/// enrollment secret, the dashboard's session key. Each makes its own server certificate
/// from the CA.
pub const SHARED_FILES: [&str; 5] = [
    "ca.pem",
    "ca.key",
    "tokens.json",
    "enroll.secret",
    "session.key",
];

pub struct Replicas {
    /// `None` once killed.
    pub members: Vec<Option<Collector>>,
    /// The CA agents pin.
    pub ca: PathBuf,
}

impl Replicas {
    /// `n` collectors (`exe`) in `dir`/r0, r1…, each on a free port with `grace`, reading
    /// `config` (written to `dir`/collector.toml) and storing in PostgreSQL at `url` with
    /// the password in `password`; `extra` flags for each.
    pub fn start(
        exe: &Path,
        n: usize,
        dir: &Path,
        (url, password): (&str, &Path),
        grace: &str,
        config: &str,
        extra: &[&str],
    ) -> Replicas {
        let file = dir.join("collector.toml");
        std::fs::write(&file, config).expect("collector.toml");
        let start = |data: &Path| {
            let mut args = vec![
                "--config",
                file.to_str().expect("path"),
                "--store",
                url,
                "--store-password-file",
                password.to_str().expect("path"),
            ];
            args.extend_from_slice(extra);
            Some(Collector::spawn(exe, data, "127.0.0.1:0", grace, &args))
        };
        let first = dir.join("r0");
        let mut members = vec![start(&first)];
        for i in 1..n {
            let data = dir.join(format!("r{i}"));
            std::fs::create_dir(&data).expect("data directory");
            std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .expect("mode");
            // admin.token: the plain token the harness's clients read.
            for f in SHARED_FILES.iter().chain(&["admin.token"]) {
                std::fs::copy(first.join(f), data.join(f)).expect("shared file");
            }
            members.push(start(&data));
        }
        Replicas {
            members,
            ca: first.join("ca.pem"),
        }
    }

    /// Their URLs, in order (empty for one killed).
    pub fn urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.as_ref().map(|c| c.url.clone()).unwrap_or_default())
            .collect()
    }

    /// The ones running, with their index.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Collector)> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|c| (i, c)))
    }

    /// `(leads?, epoch)` of collector `i`, from its metrics.
    pub fn role(&self, i: usize) -> Option<(bool, i64)> {
        let text = self.members[i].as_ref()?.metrics()?;
        Some((
            super::metric_in(&text, "rollcall_replica_leader")? == 1.0,
            super::metric_in(&text, "rollcall_replica_epoch")? as i64,
        ))
    }

    /// The one leader and its epoch, once there is exactly one.
    pub fn leader(&self) -> Option<(usize, i64)> {
        let leaders: Vec<(usize, i64)> = self
            .live()
            .filter_map(|(i, _)| match self.role(i) {
                Some((true, e)) => Some((i, e)),
                _ => None,
            })
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// kill -9 of collector `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            c.kill9();
        }
    }
}
