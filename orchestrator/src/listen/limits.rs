//! What a stranger may hold: open connections (a global cap with a share kept for established
//! agents, and a cap per source address) and failed authentications (per source address, with
//! backoff).
//!
//! Both are counted per [`AddrKey`]: an IPv4 address, or the /64 an IPv6 address is in (one
//! host usually has a whole /64 to pick addresses from).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

/// The unit connections and failures are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

/// The connection caps, resolved from the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnCaps {
    /// Open connections in all.
    pub max: usize,
    /// Of `max`, how many are kept for established agents: other connections may use only
    /// `max - reserve` while fewer agents than that are connected.
    pub agent_reserve: usize,
    /// Connections from one address that are not established agents.
    pub per_address: usize,
}

/// Open file descriptors the process keeps for itself (the database, its WAL, logs, child
/// process pipes) when `--max-connections` is sized from the limit.
const FD_HEADROOM_MIN: usize = 64;

impl ConnCaps {
    /// Caps for `max` connections (`None`: sized from the open-file limit) and `per_address`
    /// (`None`: a quarter of `max`, at most 256).
    pub fn new(max: Option<usize>, per_address: Option<usize>) -> Self {
        let max = max
            .unwrap_or_else(|| {
                let limit = fd_limit();
                limit.saturating_sub(FD_HEADROOM_MIN.max(limit / 16))
            })
            .max(8);
        let agent_reserve = max / 4;
        let per_address = per_address.unwrap_or((max / 4).min(256)).max(1);
        Self {
            max,
            agent_reserve,
            per_address,
        }
    }
}

/// The soft limit on open files.
#[cfg(unix)]
pub fn fd_limit() -> usize {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => usize::try_from(soft).unwrap_or(usize::MAX).min(1 << 20),
        Err(_) => 1024,
    }
}

#[cfg(not(unix))]
pub fn fd_limit() -> usize {
    8192
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds as many connections as it may (besides the agents' reserve).
    Full,
    /// This address holds as many connections as one address may.
    AddressFull,
}

#[derive(Debug, Default)]
struct Counts {
    /// Connections that are not established agents.
    general: usize,
    /// Connections whose agent was welcomed.
    agents: usize,
    /// `general` per address.
    by_addr: HashMap<AddrKey, usize>,
}

/// Counts open connections and admits new ones within [`ConnCaps`].
#[derive(Debug)]
pub struct ConnLimiter {
    caps: ConnCaps,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

impl ConnLimiter {
    pub fn new(caps: ConnCaps, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            caps,
            counts: Mutex::default(),
            metrics,
        })
    }

    pub fn caps(&self) -> ConnCaps {
        self.caps
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip`, or says why not. The connection counts until the
    /// returned slot (and every clone of its `Arc`) is dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Arc<Slot>, Refusal> {
        let key = AddrKey::of(ip);
        let mut c = self.lock();
        let refusal = if c.general + c.agents.max(self.caps.agent_reserve) >= self.caps.max {
            Some(Refusal::Full)
        } else if c.by_addr.get(&key).copied().unwrap_or(0) >= self.caps.per_address {
            Some(Refusal::AddressFull)
        } else {
            None
        };
        if let Some(r) = refusal {
            drop(c);
            Metrics::inc(&self.metrics.connections_refused_total);
            return Err(r);
        }
        c.general += 1;
        *c.by_addr.entry(key).or_default() += 1;
        Ok(Arc::new(Slot {
            limiter: self.clone(),
            key,
            agent: AtomicBool::new(false),
        }))
    }

    /// (connections that are not established agents, established agents).
    pub fn open(&self) -> (usize, usize) {
        let c = self.lock();
        (c.general, c.agents)
    }
}

/// One admitted connection. Dropping the last `Arc` of it frees its place.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    key: AddrKey,
    agent: AtomicBool,
}

impl Slot {
    /// The connection is now an established agent: it leaves its address's count and moves to
    /// the agents' share. Called once the agent is welcomed.
    pub fn promote(&self) {
        if self.agent.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut c = self.limiter.lock();
        c.general -= 1;
        c.agents += 1;
        release_addr(&mut c, self.key);
    }
}

fn release_addr(c: &mut Counts, key: AddrKey) {
    if let Some(n) = c.by_addr.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            c.by_addr.remove(&key);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.limiter.lock();
        if *self.agent.get_mut() {
            c.agents -= 1;
        } else {
            c.general -= 1;
            release_addr(&mut c, self.key);
        }
    }
}

/// How failed authentications are limited per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLimit {
    /// Failures allowed before the address has to wait.
    pub free_failures: u32,
    /// The wait after the first failure beyond those; it doubles with each further one.
    pub first_wait: Duration,
    /// The longest wait.
    pub max_wait: Duration,
    /// An address's failures are forgotten this long after its last one.
    pub forget_after: Duration,
}

impl Default for AuthLimit {
    fn default() -> Self {
        Self {
            free_failures: 10,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(300),
            forget_after: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Addresses tracked at most; beyond it, those not blocked are forgotten first.
const MAX_TRACKED: usize = 10_000;

/// Failed authentications (API token, device token, login link) per address.
#[derive(Debug)]
pub struct AuthLimiter {
    limit: AuthLimit,
    failures: Mutex<HashMap<AddrKey, Failures>>,
    metrics: Arc<Metrics>,
}

impl AuthLimiter {
    pub fn new(limit: AuthLimit, metrics: Arc<Metrics>) -> Self {
        Self {
            limit,
            failures: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<AddrKey, Failures>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `ip` must wait before it may try to authenticate again (counted as
    /// rate limited).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let r = self.check_at(AddrKey::of(ip), Instant::now());
        if r.is_err() {
            Metrics::inc(&self.metrics.auth_rate_limited_total);
        }
        r
    }

    fn check_at(&self, key: AddrKey, now: Instant) -> Result<(), Duration> {
        match self.lock().get(&key).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        Metrics::inc(&self.metrics.auth_failures_total);
        self.failed_at(AddrKey::of(ip), Instant::now());
    }

    fn failed_at(&self, key: AddrKey, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            let forget = self.limit.forget_after;
            map.retain(|_, f| {
                f.blocked_until.is_some_and(|u| u > now) || now.duration_since(f.last) < forget
            });
            if map.len() >= MAX_TRACKED {
                map.retain(|_, f| f.blocked_until.is_some_and(|u| u > now));
            }
        }
        let f = map.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(f.last) >= self.limit.forget_after {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if let Some(beyond) = f
            .count
            .checked_sub(self.limit.free_failures.saturating_add(1))
        {
            let wait = self
                .limit
                .first_wait
                .saturating_mul(1u32 << beyond.min(20))
                .min(self.limit.max_wait);
            f.blocked_until = Some(now + wait);
        }
    }
}

/// A wait as whole seconds for `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2:aaaa::1")),
            AddrKey::of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddrKey::of(ip("::ffff:10.0.0.1")),
            AddrKey::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn caps_default_from_the_fd_limit() {
        let c = ConnCaps::new(Some(960), None);
        assert_eq!((c.max, c.agent_reserve, c.per_address), (960, 240, 240));
        let c = ConnCaps::new(Some(20_000), Some(10));
        assert_eq!((c.agent_reserve, c.per_address), (5_000, 10));
        let c = ConnCaps::new(None, None);
        assert!(c.max >= 8 && c.max < fd_limit().max(9));
    }

    #[test]
    fn connections_are_capped_per_address_and_in_all_with_a_reserve_for_agents() {
        let m = Arc::new(Metrics::default());
        let lim = ConnLimiter::new(
            ConnCaps {
                max: 8,
                agent_reserve: 2,
                per_address: 3,
            },
            m.clone(),
        );
        let a: Vec<_> = (0..3).map(|_| lim.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(lim.admit(ip("10.0.0.1")).unwrap_err(), Refusal::AddressFull);
        let b: Vec<_> = (0..3).map(|_| lim.admit(ip("10.0.0.2")).unwrap()).collect();
        // 6 general connections: the last 2 places are the agents' reserve.
        assert_eq!(lim.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Full);
        // Two of them become agents: they fill the reserve and free their addresses.
        a[0].promote();
        a[0].promote();
        b[0].promote();
        assert_eq!(lim.open(), (4, 2));
        let c1 = lim.admit(ip("10.0.0.1")).unwrap();
        let c2 = lim.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(lim.admit(ip("10.0.0.4")).unwrap_err(), Refusal::Full);
        drop((c1, c2));
        drop(a);
        drop(b);
        assert_eq!(lim.open(), (0, 0));
        assert_eq!(m.connections_refused_total.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn failures_beyond_the_free_ones_wait_longer_each_time_and_are_forgotten() {
        let lim = AuthLimiter::new(
            AuthLimit {
                free_failures: 2,
                first_wait: Duration::from_secs(1),
                max_wait: Duration::from_secs(4),
                forget_after: Duration::from_secs(60),
            },
            Arc::new(Metrics::default()),
        );
        let k = AddrKey::of(ip("10.0.0.9"));
        let other = AddrKey::of(ip("10.0.0.8"));
        let t0 = Instant::now();
        lim.failed_at(k, t0);
        lim.failed_at(k, t0);
        assert!(lim.check_at(k, t0).is_ok());
        lim.failed_at(k, t0);
        assert_eq!(lim.check_at(k, t0), Err(Duration::from_secs(1)));
        assert!(lim.check_at(other, t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(lim.check_at(k, t1).is_ok());
        lim.failed_at(k, t1);
        assert_eq!(lim.check_at(k, t1), Err(Duration::from_secs(2)));
        lim.failed_at(k, t1);
        lim.failed_at(k, t1);
        assert_eq!(lim.check_at(k, t1), Err(Duration::from_secs(4)), "capped");
        // A minute without failures: the count starts over.
        let t2 = t1 + Duration::from_secs(61);
        lim.failed_at(k, t2);
        assert!(lim.check_at(k, t2).is_ok());
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn an_unbounded_number_of_free_failures_never_overflows() {
        let lim = AuthLimiter::new(
            AuthLimit {
                free_failures: u32::MAX,
                ..AuthLimit::default()
            },
            Arc::new(Metrics::default()),
        );
        let k = AddrKey::of(ip("10.0.0.7"));
        let t0 = Instant::now();
        lim.failed_at(k, t0);
        lim.failed_at(k, t0);
        assert!(lim.check_at(k, t0).is_ok());
    }
}
