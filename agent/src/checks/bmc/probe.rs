//! Probing BMCs from a scanner: for each address, ASF Presence Pings, then (when the BMC
//! ignores ASF) IPMI "Get Channel Authentication Capabilities", each retried with spacing.
//! One probe outstanding per BMC (BMCs get confused by fast duplicates) and a global rate
//! limit on packets sent, so that a round over thousands of BMCs neither floods the
//! network nor any one BMC.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::rmcp;

#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// UDP port of RMCP (623; tests use others).
    pub port: u16,
    /// Tries per probe kind (ASF, then IPMI), each waiting `spacing` for an answer.
    pub tries: u32,
    pub spacing: Duration,
    /// Packets per second, over all BMCs.
    pub rate: u32,
    /// BMCs probed at the same time (each with one probe outstanding).
    pub parallel: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            port: 623,
            tries: 3,
            spacing: Duration::from_secs(1),
            rate: 500,
            parallel: 512,
        }
    }
}

/// How a BMC answered, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// It answered an ASF Presence Ping.
    Asf { rtt: Duration, ipmi: bool },
    /// It ignored ASF but answered IPMI.
    Ipmi { rtt: Duration },
    /// Nothing proved a BMC there, after every try; why, in words.
    Unreachable { reason: String },
}

impl Reach {
    pub fn reachable(&self) -> bool {
        !matches!(self, Reach::Unreachable { .. })
    }

    /// How it answered (`asf`, `ipmi`; none when it did not), and the verdict in words.
    pub fn describe(&self) -> (Option<&'static str>, String) {
        match self {
            Reach::Asf { rtt, ipmi } => (
                Some("asf"),
                format!(
                    "answered the ASF Presence Ping in {:.1} ms{}",
                    rtt.as_secs_f64() * 1e3,
                    if *ipmi { "; supports IPMI" } else { "" }
                ),
            ),
            Reach::Ipmi { rtt } => (
                Some("ipmi"),
                format!(
                    "ignored ASF; answered IPMI Get Channel Authentication Capabilities in {:.1} ms",
                    rtt.as_secs_f64() * 1e3
                ),
            ),
            Reach::Unreachable { reason } => (None, reason.clone()),
        }
    }
}

/// `rollcall-agent probe-bmc`: one line per BMC (JSON with `json`); whether all answered.
pub fn print_verdicts(results: &[(IpAddr, Reach)], json: bool) -> bool {
    for (ip, r) in results {
        let (via, detail) = r.describe();
        if json {
            let v = serde_json::json!({"address": ip, "reachable": r.reachable(), "via": via.unwrap_or("none"), "detail": detail});
            println!("{v}");
        } else {
            let word = if r.reachable() {
                "reachable"
            } else {
                "UNREACHABLE"
            };
            println!("{ip}: {word}: {detail}");
        }
    }
    results.iter().all(|(_, r)| r.reachable())
}

/// A token bucket of one packet, refilled `rate` times a second: sends are spread evenly.
struct Pace {
    next: Mutex<Instant>,
    every: Duration,
}

impl Pace {
    fn new(rate: u32) -> Pace {
        Pace {
            next: Mutex::new(Instant::now()),
            every: Duration::from_secs(1) / rate.max(1),
        }
    }

    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.every;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Probes every address; results in the order given. Also returns the packets sent.
pub async fn probe_all(targets: &[IpAddr], cfg: &ProbeConfig) -> (Vec<(IpAddr, Reach)>, u64) {
    let pace = Arc::new(Pace::new(cfg.rate));
    let slots = Arc::new(Semaphore::new(cfg.parallel.max(1)));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(targets.len());
    for (i, ip) in targets.iter().enumerate() {
        let (pace, slots, sent, cfg, ip) =
            (pace.clone(), slots.clone(), sent.clone(), cfg.clone(), *ip);
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let r = probe_one(ip, i as u32, &cfg, &pace, &sent).await;
            (ip, r)
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (t, ip) in tasks.into_iter().zip(targets) {
        out.push(t.await.unwrap_or_else(|e| {
            (
                *ip,
                Reach::Unreachable {
                    reason: format!("probe failed: {e}"),
                },
            )
        }));
    }
    (out, sent.load(std::sync::atomic::Ordering::Relaxed))
}

async fn probe_one(
    ip: IpAddr,
    salt: u32,
    cfg: &ProbeConfig,
    pace: &Pace,
    sent: &std::sync::atomic::AtomicU64,
) -> Reach {
    let to = SocketAddr::new(ip, cfg.port);
    let bind: SocketAddr = if ip.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(to)
    } else {
        "[::]:0".parse().unwrap_or(to)
    };
    // A connected socket: the kernel hands it only this BMC's datagrams.
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            return Reach::Unreachable {
                reason: format!("cannot open a UDP socket: {e}"),
            }
        }
    };
    if let Err(e) = sock.connect(to).await {
        return Reach::Unreachable {
            reason: format!("no route to {to}: {e}"),
        };
    }
    let mut refused = false;
    let mut probe = Tries {
        sock: &sock,
        cfg,
        pace,
        sent,
        refused: &mut refused,
        // Tags (and IPMI sequence numbers) differ per try and per BMC; a late answer to an
        // earlier try of ours counts too.
        base: (salt as u8).wrapping_mul(7),
    };
    if let Some((rtt, pong)) = probe.run(rmcp::ping, rmcp::parse_pong).await {
        return Reach::Asf {
            rtt,
            ipmi: pong.ipmi,
        };
    }
    if let Some((rtt, ())) = probe
        .run(
            |t| rmcp::get_channel_auth_caps(t & 0x3F),
            |d, t| rmcp::parse_auth_caps_reply(d, t & 0x3F).then_some(()),
        )
        .await
    {
        return Reach::Ipmi { rtt };
    }
    let total = cfg.spacing * cfg.tries * 2;
    Reach::Unreachable {
        reason: if refused {
            format!(
                "no answer on UDP {} in {} tries over {:.0?}; the host answered ICMP port unreachable (its BMC does not listen there)",
                cfg.port,
                cfg.tries * 2,
                total
            )
        } else {
            format!(
                "no answer to {} ASF pings or {} IPMI requests on UDP {} over {:.0?}",
                cfg.tries, cfg.tries, cfg.port, total
            )
        },
    }
}

/// `cfg.tries` tries of one kind of probe at one BMC, spaced, one outstanding.
struct Tries<'a> {
    sock: &'a UdpSocket,
    cfg: &'a ProbeConfig,
    pace: &'a Pace,
    sent: &'a std::sync::atomic::AtomicU64,
    refused: &'a mut bool,
    base: u8,
}

impl Tries<'_> {
    /// Sends `packet(tag)` up to `tries` times; the first answer `answer` accepts for a tag
    /// of this series, with its round-trip time from the try that got it.
    async fn run<P: AsRef<[u8]>, R>(
        &mut self,
        packet: impl Fn(u8) -> P,
        answer: impl Fn(&[u8], u8) -> Option<R>,
    ) -> Option<(Duration, R)> {
        let mut buf = [0u8; 512];
        for t in 0..self.cfg.tries {
            self.pace.wait().await;
            let start = Instant::now();
            let tag = self.base.wrapping_add(t as u8);
            if self.sock.send(packet(tag).as_ref()).await.is_ok() {
                self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let deadline = start + self.cfg.spacing;
            while let Some(n) = recv_until(self.sock, &mut buf, deadline, self.refused).await {
                let ours = (0..=t).map(|k| self.base.wrapping_add(k as u8));
                if let Some(r) = ours.into_iter().find_map(|tag| answer(&buf[..n], tag)) {
                    return Some((start.elapsed(), r));
                }
            }
        }
        None
    }
}

/// One datagram before `deadline`, or `None` at the deadline. A refused receive (ICMP port
/// unreachable, which the host OS may send before its BMC answers) is noted and the
/// receive retried.
async fn recv_until(
    sock: &UdpSocket,
    buf: &mut [u8],
    deadline: Instant,
    refused: &mut bool,
) -> Option<usize> {
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
            Err(_) => return None,
            Ok(Ok(n)) => return Some(n),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                *refused = true;
            }
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake BMC on loopback: answers pings (if `asf`) and auth-caps requests (if `ipmi`)
    /// like a real one, counting what it gets.
    async fn fake_bmc(asf: bool, ipmi: bool) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Instant>>>) {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut b).await {
                log.lock().unwrap().push(Instant::now());
                let d = &b[..n];
                if asf && n == 12 && d[8] == 0x80 {
                    let mut p = vec![
                        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x40, d[9], 0, 0x10,
                    ];
                    p.extend_from_slice(&[0, 0, 0x11, 0xBE, 0, 0, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0]);
                    let _ = s.send_to(&p, from).await;
                }
                if ipmi && n == 23 && d[3] == 0x07 {
                    let seq = d[18] >> 2;
                    let mut p = vec![0x06, 0x00, 0xFF, 0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16];
                    let mut m = vec![0x81, 0x1C];
                    m.push(m.iter().fold(0u8, |a, x| a.wrapping_add(*x)).wrapping_neg());
                    m.extend_from_slice(&[0x20, seq << 2, 0x38, 0x00, 1, 0x15, 4, 0, 0, 0, 0, 0]);
                    m.push(
                        m[3..]
                            .iter()
                            .fold(0u8, |a, x| a.wrapping_add(*x))
                            .wrapping_neg(),
                    );
                    p.extend_from_slice(&m);
                    let _ = s.send_to(&p, from).await;
                }
            }
        });
        (addr, seen)
    }

    fn cfg(port: u16) -> ProbeConfig {
        ProbeConfig {
            port,
            tries: 2,
            spacing: Duration::from_millis(300),
            rate: 1000,
            parallel: 16,
        }
    }

    #[tokio::test]
    async fn asf_first_then_ipmi_then_unreachable_with_spaced_tries() {
        let (asf, _) = fake_bmc(true, true).await;
        let (r, _) = probe_all(&[asf.ip()], &cfg(asf.port())).await;
        assert!(matches!(r[0].1, Reach::Asf { ipmi: true, .. }), "{r:?}");

        let (ipmi_only, seen) = fake_bmc(false, true).await;
        let (r, sent) = probe_all(&[ipmi_only.ip()], &cfg(ipmi_only.port())).await;
        assert!(matches!(r[0].1, Reach::Ipmi { .. }), "{r:?}");
        assert_eq!(sent, 3, "two pings ignored, then one IPMI request answered");
        let at = seen.lock().unwrap().clone();
        assert!(
            at.windows(2)
                .all(|w| w[1] - w[0] >= Duration::from_millis(290)),
            "tries spaced, one outstanding: {at:?}"
        );

        let (silent, seen) = fake_bmc(false, false).await;
        let (r, sent) = probe_all(&[silent.ip()], &cfg(silent.port())).await;
        match &r[0].1 {
            Reach::Unreachable { reason } => assert!(reason.contains("no answer"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(sent, 4);
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_port_with_nothing_behind_it_is_unreachable_and_says_so() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        drop(s);
        let (r, _) = probe_all(&["127.0.0.1".parse().unwrap()], &cfg(port)).await;
        match &r[0].1 {
            Reach::Unreachable { reason } => {
                assert!(reason.contains("ICMP port unreachable"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_rate_holds_across_many_bmcs() {
        let (silent, _) = fake_bmc(false, false).await;
        let targets = vec![silent.ip(); 20];
        let c = ProbeConfig {
            port: silent.port(),
            tries: 1,
            spacing: Duration::from_millis(50),
            rate: 100,
            parallel: 20,
        };
        let t = Instant::now();
        let (_, sent) = probe_all(&targets, &c).await;
        assert_eq!(sent, 40);
        // 40 packets at 100/s: the last leaves 390 ms after the first, however parallel.
        assert!(
            t.elapsed() >= Duration::from_millis(390),
            "{:?}",
            t.elapsed()
        );
    }
}
