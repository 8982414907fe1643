//! BMC simulators for tests and benchmarks: Debian's `ipmi_sim` (openipmi) serving RMCP on
//! UDP 623 of a loopback address, and freeipmi's `rmcpping` / `ipmiping` as peers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::reap;

/// `ipmi_sim` serving RMCP on `addr`:623, with its config in a temporary directory.
pub struct Bmc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Bmc {
    pub fn start(addr: &str) -> Bmc {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            r#"name "bmc-{addr}"
set_working_mc 0x20
  startlan 1
    addr {addr} 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  user 1 true "" "" user 10 none md2 md5 straight
  user 2 true "admin" "admin" admin 10 none md2 md5 straight
"#
        );
        std::fs::write(dir.path().join("lan.conf"), conf).unwrap();
        std::fs::write(
            dir.path().join("sim.emu"),
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
        )
        .unwrap();
        let child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(dir.path().join("lan.conf"))
            .arg("-f")
            .arg(dir.path().join("sim.emu"))
            .arg("-s")
            .arg(dir.path())
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ipmi_sim (apt-get install openipmi)");
        let bmc = Bmc { child, _dir: dir };
        // Serving once rmcpping gets a pong.
        let t = Instant::now();
        while !rmcpping(addr) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "ipmi_sim on {addr} never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bmc
    }

    /// Gives the BMC's LAN channel 1 a static address, as an SRE does with
    /// `ipmitool lan set 1 ipaddr` (ipmi_sim starts with 0.0.0.0).
    pub fn set_lan_address(&self, addr: &str) {
        for args in [["ipsrc", "static"], ["ipaddr", addr]] {
            let o = Command::new("ipmitool")
                .args([
                    "-I", "lan", "-H", addr, "-U", "admin", "-P", "admin", "lan", "set", "1",
                ])
                .args(args)
                .output()
                .expect("ipmitool (apt-get install ipmitool)");
            assert!(o.status.success(), "ipmitool lan set 1 {args:?}: {o:?}");
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        reap(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether freeipmi's `rmcpping` gets a pong from `addr` (one try, 1 s).
pub fn rmcpping(addr: &str) -> bool {
    let o = Command::new("rmcpping")
        .args(["-c", "1", "-t", "1", addr])
        .output()
        .expect("rmcpping (apt-get install freeipmi-tools)");
    String::from_utf8_lossy(&o.stdout).contains("1 pongs received")
}

/// Whether freeipmi's `ipmiping` gets an IPMI answer from `addr` (one try, 1 s).
pub fn ipmiping(addr: &str) -> bool {
    let o = Command::new("ipmiping")
        .args(["-c", "1", "-t", "1", addr])
        .output()
        .expect("ipmiping (apt-get install freeipmi-tools)");
    String::from_utf8_lossy(&o.stdout).contains("1 responses received")
}
