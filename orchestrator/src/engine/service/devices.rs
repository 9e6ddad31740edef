//! The device registry: every registered device, its connection, the attempts it runs, the
//! devices that can take work now, and what planners see of them. No I/O; what must be stored
//! is returned to the engine, which stages it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::broadcast;
use weft_protocol::rest::{DeviceStatus, DeviceView};
use weft_protocol::{AttemptId, DeviceName, ErrorInfo, PROTOCOL_VERSION};

use crate::engine::DeviceRecord;
use crate::engine::graph::Target;
use crate::engine::graph::Task;
use crate::engine::{ConnId, FreeSlots, Hello, LastSeen, Outbound};
use crate::{engine, token};

/// Largest `max_concurrency` a device may claim.
const MAX_DEVICE_CONCURRENCY: u32 = 1024;

#[derive(Debug)]
struct Device {
    row: DeviceRecord,
    conn: Option<(ConnId, Outbound)>,
    /// While connected: when the connection last received a frame (heartbeats included).
    seen: Option<LastSeen>,
    running: BTreeSet<AttemptId>,
}

impl Device {
    fn new(row: DeviceRecord) -> Self {
        Self {
            row,
            conn: None,
            seen: None,
            running: BTreeSet::new(),
        }
    }

    fn online(&self) -> bool {
        self.conn.is_some()
    }

    /// What planners see of the device.
    fn profile(&self) -> weft_planner::DeviceProfile {
        weft_planner::DeviceProfile {
            info: weft_planner::DeviceInfo {
                name: self.row.name.clone(),
                kind: self.row.kind.clone(),
                capabilities: self.row.capabilities.clone(),
                online: self.online() && !self.row.draining,
            },
            platform: self.row.platform.clone(),
            tools: self.row.tools.clone(),
        }
    }

    fn view(&self) -> DeviceView {
        DeviceView {
            name: self.row.name.clone(),
            kind: self.row.kind.clone(),
            status: match (self.online(), self.row.draining) {
                (false, _) => DeviceStatus::Offline,
                (true, false) => DeviceStatus::Online,
                (true, true) => DeviceStatus::Draining,
            },
            platform: self.row.platform.clone(),
            os_version: self.row.os_version.clone(),
            capabilities: self.row.capabilities.clone(),
            tools: self.row.tools.clone(),
            max_concurrency: self.row.max_concurrency,
            running: u32::try_from(self.running.len()).unwrap_or(u32::MAX),
            last_seen_ms: self.last_seen_ms(),
        }
    }

    fn last_seen_ms(&self) -> Option<u64> {
        let live = self
            .seen
            .as_ref()
            .map(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        live.max(self.row.last_seen_ms)
    }
}

/// A device cut off from the orchestrator (removed, or its token rotated): the connection it
/// had, to be told why and closed, and the attempts it held, which are lost.
#[derive(Debug)]
pub(super) struct CutOff {
    pub conn: Option<(ConnId, Outbound)>,
    pub running: Vec<AttemptId>,
}

/// A device's token was replaced.
#[derive(Debug)]
pub(super) struct Rotated {
    pub kind: String,
    /// The new token, shown once.
    pub token: String,
    pub token_hash: String,
    /// The hash of the token it replaces, from now on refused `token_rotated`.
    pub retired_token_hash: String,
    pub cut: CutOff,
}

/// A hello that was accepted.
#[derive(Debug)]
pub(super) struct Connected {
    pub conn: ConnId,
    /// The device's row with its new profile, to store.
    pub row: DeviceRecord,
    /// Attempts the device held before and still holds.
    pub reattached: Vec<AttemptId>,
    /// Attempts the device held before and came back without.
    pub lost: Vec<AttemptId>,
}

#[derive(Debug)]
pub(super) struct Devices {
    map: BTreeMap<DeviceName, Device>,
    /// Removed devices: the hash of each one's last token, refused `device_removed`.
    removed: BTreeMap<DeviceName, String>,
    /// The devices that can take work now, least loaded first.
    free: FreeSlots,
    /// What planners see, built on demand; dropped when a device is registered, connects,
    /// disconnects, is drained or resumed (not when its load changes).
    profiles: Option<Arc<Vec<weft_planner::DeviceProfile>>>,
    /// Devices whose view changed and is not yet published (only while someone listens).
    changed: BTreeSet<DeviceName>,
    /// The last views of devices removed since they were last published (status `removed`).
    farewells: Vec<DeviceView>,
    listeners: broadcast::Sender<DeviceView>,
    next_conn: u64,
}

impl Devices {
    /// The registry of the stored devices, all offline. Views of changed devices are kept for
    /// publishing only while `listeners` has receivers.
    pub fn new(rows: Vec<DeviceRecord>, listeners: broadcast::Sender<DeviceView>) -> Self {
        let (gone, live): (Vec<DeviceRecord>, Vec<DeviceRecord>) =
            rows.into_iter().partition(|r| r.removed_at_ms.is_some());
        Self {
            map: live
                .into_iter()
                .map(|row| (row.name.clone(), Device::new(row)))
                .collect(),
            removed: gone.into_iter().map(|r| (r.name, r.token_hash)).collect(),
            free: FreeSlots::default(),
            profiles: None,
            changed: BTreeSet::new(),
            farewells: Vec::new(),
            listeners,
            next_conn: 0,
        }
    }

    /// The registered device whose current token is `token` (a removed device's or a
    /// rotated-out token is no one's).
    pub fn by_token(&self, token: &str) -> Option<&DeviceName> {
        let presented = token::hash(token);
        self.map
            .iter()
            .find(|(_, d)| token::hash_eq(&presented, &d.row.token_hash))
            .map(|(name, _)| name)
    }

    pub fn contains(&self, name: &DeviceName) -> bool {
        self.map.contains_key(name)
    }

    pub fn views(&self) -> Vec<DeviceView> {
        self.map.values().map(Device::view).collect()
    }

    /// The devices as planners see them; shared until one is registered, connects,
    /// disconnects, is drained or resumed.
    pub fn profiles(&mut self) -> Arc<Vec<weft_planner::DeviceProfile>> {
        let map = &self.map;
        self.profiles
            .get_or_insert_with(|| Arc::new(map.values().map(Device::profile).collect()))
            .clone()
    }

    /// Every device's capabilities (what edits are checked against).
    pub fn capabilities(&self) -> HashMap<DeviceName, Vec<String>> {
        self.map
            .iter()
            .map(|(n, d)| (n.clone(), d.row.capabilities.clone()))
            .collect()
    }

    /// The current connection of a device, if it has one.
    pub fn conn(&self, name: &DeviceName) -> Option<&(ConnId, Outbound)> {
        self.map.get(name)?.conn.as_ref()
    }

    /// The views of the devices that changed since the last call (a removed device's last).
    pub fn take_changed(&mut self) -> Vec<DeviceView> {
        let mut views: Vec<DeviceView> = std::mem::take(&mut self.changed)
            .iter()
            .filter_map(|n| self.map.get(n).map(Device::view))
            .collect();
        views.append(&mut self.farewells);
        views
    }

    /// Registers a device; returns its row (to store) and its token (shown once).
    pub fn add(
        &mut self,
        name: DeviceName,
        kind: String,
        now: u64,
    ) -> Result<(DeviceRecord, String), engine::Error> {
        if !weft_protocol::ids::valid_device_name(name.as_str()) {
            return Err(engine::Error::InvalidDeviceName);
        }
        let plain_word = |k: &str| {
            !k.is_empty()
                && k.len() <= 32
                && k.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        };
        if !plain_word(&kind) {
            return Err(engine::Error::InvalidDeviceKind);
        }
        if self.map.contains_key(&name) {
            return Err(engine::Error::DeviceExists(name));
        }
        let tok = token::generate();
        let row = DeviceRecord {
            name: name.clone(),
            kind,
            token_hash: token::hash(&tok),
            platform: None,
            os_version: None,
            capabilities: Vec::new(),
            tools: Vec::new(),
            max_concurrency: 1,
            created_at_ms: now,
            last_seen_ms: None,
            draining: false,
            retired_token_hash: None,
            removed_at_ms: None,
        };
        self.removed.remove(&name);
        self.map.insert(name.clone(), Device::new(row.clone()));
        self.profiles = None;
        self.changed(&name);
        Ok((row, tok))
    }

    /// Drains a device or takes it back into service; its new view, or `None` if there is no
    /// such device.
    pub fn set_draining(&mut self, name: &DeviceName, draining: bool) -> Option<DeviceView> {
        let d = self.map.get_mut(name)?;
        d.row.draining = draining;
        let view = d.view();
        self.profiles = None;
        self.changed(name);
        Some(view)
    }

    /// Removes a device: its token stops working at once (refused `device_removed`); its
    /// connection and attempts are returned. `None` if there is no such device.
    pub fn remove(&mut self, name: &DeviceName) -> Option<CutOff> {
        let mut d = self.map.remove(name)?;
        self.free.set(name, false, 0, 0);
        self.changed.remove(name);
        self.profiles = None;
        if self.listeners.receiver_count() > 0 {
            let mut last = d.view();
            last.status = DeviceStatus::Removed;
            last.running = 0;
            self.farewells.push(last);
        }
        self.removed.insert(name.clone(), d.row.token_hash);
        Some(CutOff {
            conn: d.conn.take(),
            running: d.running.into_iter().collect(),
        })
    }

    /// Gives a device a new token; the old one is refused `token_rotated` from now on. The
    /// device's connection (made with the old token) and its attempts are returned; it is
    /// offline from `now`. `None` if there is no such device.
    pub fn rotate(&mut self, name: &DeviceName, now: u64) -> Option<Rotated> {
        let d = self.map.get_mut(name)?;
        let token = token::generate();
        let token_hash = token::hash(&token);
        let retired_token_hash = std::mem::replace(&mut d.row.token_hash, token_hash.clone());
        d.row.retired_token_hash = Some(retired_token_hash.clone());
        let conn = d.conn.take();
        if conn.is_some() {
            d.seen = None;
            d.row.last_seen_ms = Some(now);
        }
        let rotated = Rotated {
            kind: d.row.kind.clone(),
            token,
            token_hash,
            retired_token_hash,
            cut: CutOff {
                conn,
                running: d.running.iter().cloned().collect(),
            },
        };
        self.profiles = None;
        self.changed(name);
        Some(rotated)
    }

    /// Authenticates a hello and binds the connection to its device; the device's attempts
    /// are split into those it still holds and those it lost.
    pub fn connect(
        &mut self,
        hello: &Hello,
        outbound: Outbound,
        seen: LastSeen,
        now: u64,
    ) -> Result<Connected, ErrorInfo> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(ErrorInfo::new(
                "unsupported_version",
                format!(
                    "this orchestrator speaks protocol version {PROTOCOL_VERSION}, the agent sent {}",
                    hello.protocol_version
                ),
            ));
        }
        let Some(dev) = self.map.get_mut(&hello.device) else {
            if let Some(hash) = self.removed.get(&hello.device)
                && token::matches(&hello.token, hash)
            {
                tracing::info!(device = %hello.device, "hello from a removed device");
                return Err(removed(&hello.device));
            }
            tracing::warn!(device = %hello.device, "hello for an unknown device");
            return Err(bad_token());
        };
        if !token::matches(&hello.token, &dev.row.token_hash) {
            if let Some(hash) = &dev.row.retired_token_hash
                && token::matches(&hello.token, hash)
            {
                tracing::info!(device = %hello.device, "hello with a rotated token");
                return Err(rotated(&hello.device));
            }
            tracing::warn!(device = %hello.device, "hello with a wrong token");
            return Err(bad_token());
        }
        if dev.conn.is_some() {
            return Err(ErrorInfo::new(
                "already_connected",
                format!("device `{}` already has a live connection", hello.device),
            ));
        }
        if hello.kind != dev.row.kind {
            tracing::info!(device = %hello.device, registered = %dev.row.kind, stated = %hello.kind,
                "agent states a different kind than registered; keeping the registered kind");
        }
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        dev.row.platform = Some(hello.platform.clone());
        dev.row.capabilities = hello.capabilities.clone();
        dev.row.os_version.clone_from(&hello.os_version);
        dev.row.tools.clone_from(&hello.tools);
        dev.row.max_concurrency = hello.max_concurrency.clamp(1, MAX_DEVICE_CONCURRENCY);
        dev.row.last_seen_ms = Some(now);
        dev.conn = Some((conn, outbound));
        dev.seen = Some(seen);
        let held: BTreeSet<&AttemptId> = hello.held_attempts.iter().collect();
        let (reattached, lost) = dev
            .running
            .iter()
            .cloned()
            .partition(|id| held.contains(id));
        let row = dev.row.clone();
        self.profiles = None;
        self.changed(&hello.device);
        Ok(Connected {
            conn,
            row,
            reattached,
            lost,
        })
    }

    /// A connection ended. If it was the device's current one, the device is offline from
    /// `now` and its attempts in flight are returned.
    pub fn disconnect(
        &mut self,
        name: &DeviceName,
        conn: ConnId,
        now: u64,
    ) -> Option<Vec<AttemptId>> {
        let d = self.map.get_mut(name)?;
        if !d.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
            return None;
        }
        d.conn = None;
        d.seen = None;
        d.row.last_seen_ms = Some(now);
        let running = d.running.iter().cloned().collect();
        self.profiles = None;
        self.changed(name);
        Some(running)
    }

    /// Whether `conn` is the device's current connection; if so, the device was seen `now`.
    pub fn current(&mut self, name: &DeviceName, conn: ConnId, now: u64) -> bool {
        let Some(d) = self.map.get_mut(name) else {
            return false;
        };
        if !d.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
            return false;
        }
        d.row.last_seen_ms = Some(now);
        true
    }

    /// The device runs `attempt` (a slot taken).
    pub fn occupy(&mut self, name: &DeviceName, attempt: &AttemptId) {
        if let Some(d) = self.map.get_mut(name) {
            d.running.insert(attempt.clone());
        }
        self.changed(name);
    }

    /// The device no longer runs `attempt` (a slot freed).
    pub fn release(&mut self, name: &DeviceName, attempt: &AttemptId) {
        if let Some(d) = self.map.get_mut(name) {
            d.running.remove(attempt);
        }
        self.changed(name);
    }

    /// Whether any device can take work now.
    pub fn any_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Whether `task` may find a device now: a quick check that allocates nothing, so that a
    /// scheduling pass passes over the tasks waiting for a full, draining or absent device (a
    /// 10,000-task request all on one drained device) without looking them up again;
    /// [`Devices::place`] decides.
    pub fn may_place(&self, task: &Task) -> bool {
        match &task.target {
            Target::Device(name) => self.free.contains(name),
            _ => !self.free.is_empty(),
        }
    }

    /// Picks the device for a task: online, not draining, with a free slot, matching the
    /// task's target and capabilities; a device to avoid (after a device-related failure) only
    /// if there is no other; then the least loaded.
    pub fn place(&self, task: &Task) -> Option<DeviceName> {
        let capable = |d: &Device| {
            task.capabilities
                .iter()
                .all(|c| d.row.capabilities.contains(c))
        };
        if let Target::Device(name) = &task.target {
            let d = self.map.get(name)?;
            return (self.free.contains(name) && capable(d)).then(|| name.clone());
        }
        let mut avoided = None;
        for name in self.free.iter() {
            let Some(d) = self.map.get(name) else {
                continue;
            };
            let kind_ok = match &task.target {
                Target::Kind(k) => &d.row.kind == k,
                _ => true,
            };
            if !kind_ok || !capable(d) {
                continue;
            }
            if task.sched.avoid.as_ref() == Some(name) {
                avoided = Some(name);
                continue;
            }
            return Some(name.clone());
        }
        avoided.cloned()
    }

    /// Drops every connection (their writers end, and so do the connection tasks).
    pub fn close_all(&mut self) {
        for d in self.map.values_mut() {
            d.conn = None;
        }
    }

    /// Notes that a device's view changed: its free slots are recounted and the view is
    /// published once the current input is handled. (Planners' view does not show load; the
    /// callers that change what it shows drop it.)
    fn changed(&mut self, name: &DeviceName) {
        let Some(d) = self.map.get(name) else {
            return;
        };
        let available = d.online() && !d.row.draining;
        self.free
            .set(name, available, d.running.len(), d.row.max_concurrency);
        if self.listeners.receiver_count() > 0 {
            self.changed.insert(name.clone());
        }
    }
}

fn bad_token() -> ErrorInfo {
    ErrorInfo::new("bad_token", "unknown device or wrong token")
}

/// Why a removed device is refused (on its connection when it is removed, and at every hello
/// with its last token after that).
pub(super) fn removed(name: &DeviceName) -> ErrorInfo {
    ErrorInfo::new(
        "device_removed",
        format!("device `{name}` was removed from this orchestrator (`weft device remove`)"),
    )
}

/// Why a device's old token is refused (on the connection made with it when the token is
/// rotated, and at every hello with it after that).
pub(super) fn rotated(name: &DeviceName) -> ErrorInfo {
    ErrorInfo::new(
        "token_rotated",
        format!(
            "the token of device `{name}` was replaced (`weft device rotate`); this one no longer works"
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use tokio::sync::mpsc;
    use weft_protocol::rest::TaskSpec;

    use super::*;
    use crate::engine::graph::tests::defaults;

    fn registry() -> (Devices, broadcast::Receiver<DeviceView>) {
        let (tx, rx) = broadcast::channel(16);
        (Devices::new(Vec::new(), tx), rx)
    }

    fn hello(device: &str, token: &str, caps: &[&str], held: &[&str]) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            device: device.into(),
            token: token.into(),
            kind: "laptop".into(),
            platform: "linux".into(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            max_concurrency: 2,
            held_attempts: held.iter().map(|a| (*a).into()).collect(),
            os_version: None,
            tools: Vec::new(),
        }
    }

    /// Registers and connects `name` (kind laptop) with these capabilities; returns the
    /// connection and the device's token.
    fn online(devs: &mut Devices, name: &str, caps: &[&str]) -> (Connected, String) {
        let (_, tok) = devs.add(name.into(), "laptop".into(), 1).unwrap();
        let (tx, _rx) = mpsc::channel(1);
        let seen = Arc::new(AtomicU64::new(0));
        let c = devs
            .connect(&hello(name, &tok, caps, &[]), tx, seen, 2)
            .unwrap();
        (c, tok)
    }

    fn task(target: Target, caps: &[&str]) -> Task {
        let spec = TaskSpec {
            id: "t".into(),
            title: String::new(),
            instruction: "x".into(),
            action: None,
            device: None,
            device_kind: None,
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            retry: None,
            max_turns: None,
            inputs: None,
            outputs: None,
        };
        let mut t = Task::from_spec(&spec, 0, &defaults());
        t.target = target;
        // Exactly these (a task without an action would also need `llm`).
        t.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
        t
    }

    #[test]
    fn registration_is_checked() {
        let (mut devs, _rx) = registry();
        let code = |r: Result<(DeviceRecord, String), engine::Error>| r.err().map(|e| e.code());
        assert_eq!(
            code(devs.add("-x".into(), "laptop".into(), 0)),
            Some("invalid_device_name")
        );
        assert_eq!(
            code(devs.add("x".into(), "Laptop".into(), 0)),
            Some("invalid_device_kind")
        );
        let (row, tok) = devs.add("x".into(), "laptop".into(), 7).unwrap();
        assert_eq!((row.created_at_ms, row.token_hash), (7, token::hash(&tok)));
        assert_eq!(
            code(devs.add("x".into(), "phone".into(), 0)),
            Some("device_exists")
        );
        assert_eq!(devs.views()[0].status, DeviceStatus::Offline);
    }

    #[test]
    fn a_hello_is_authenticated_and_binds_one_connection() {
        let (mut devs, _rx) = registry();
        let (_, tok) = devs.add("l".into(), "laptop".into(), 0).unwrap();
        let seen = || Arc::new(AtomicU64::new(0));
        let (tx, _rx2) = mpsc::channel(1);
        let mut old = hello("l", &tok, &["shell"], &[]);
        old.protocol_version += 1;
        let refused = |r: Result<Connected, ErrorInfo>| r.err().map(|e| e.code);
        assert_eq!(
            refused(devs.connect(&old, tx.clone(), seen(), 1)).as_deref(),
            Some("unsupported_version")
        );
        let wrong = hello("l", "nope", &[], &[]);
        assert_eq!(
            refused(devs.connect(&wrong, tx.clone(), seen(), 1)).as_deref(),
            Some("bad_token")
        );
        let stranger = hello("s", &tok, &[], &[]);
        assert_eq!(
            refused(devs.connect(&stranger, tx.clone(), seen(), 1)).as_deref(),
            Some("bad_token")
        );
        let c = devs
            .connect(&hello("l", &tok, &["shell"], &[]), tx.clone(), seen(), 1)
            .unwrap();
        assert_eq!(c.row.capabilities, ["shell"]);
        let again = hello("l", &tok, &[], &[]);
        assert_eq!(
            refused(devs.connect(&again, tx, seen(), 1)).as_deref(),
            Some("already_connected")
        );
        assert!(devs.current(&"l".into(), c.conn, 5));
        assert!(!devs.current(&"l".into(), ConnId(c.conn.0 + 1), 5));
        assert!(
            devs.disconnect(&"l".into(), ConnId(c.conn.0 + 1), 6)
                .is_none()
        );
        assert_eq!(devs.disconnect(&"l".into(), c.conn, 6), Some(vec![]));
        assert_eq!(devs.views()[0].last_seen_ms, Some(6));
    }

    #[test]
    fn removed_and_rotated_tokens_are_refused_by_name() {
        let (mut devs, _rx) = registry();
        let (c, old) = online(&mut devs, "l", &["shell"]);
        devs.occupy(&"l".into(), &"a1".into());
        let seen = || Arc::new(AtomicU64::new(0));
        let (tx, _rx2) = mpsc::channel(1);
        let refused = |r: Result<Connected, ErrorInfo>| r.err().map(|e| e.code);

        // Rotation: the connection and the attempts are handed back; the old token is
        // refused by name, the new one works.
        let r = devs.rotate(&"l".into(), 9).unwrap();
        assert_eq!(r.cut.conn.map(|(id, _)| id), Some(c.conn));
        assert_eq!(r.cut.running, ["a1".into()]);
        assert_eq!(
            (r.retired_token_hash, &r.token_hash),
            (token::hash(&old), &token::hash(&r.token))
        );
        assert_eq!(devs.views()[0].status, DeviceStatus::Offline);
        assert!(!devs.any_free());
        assert_eq!(
            refused(devs.connect(&hello("l", &old, &[], &[]), tx.clone(), seen(), 10)).as_deref(),
            Some("token_rotated")
        );
        assert_eq!(
            refused(devs.connect(&hello("l", "nope", &[], &[]), tx.clone(), seen(), 10)).as_deref(),
            Some("bad_token")
        );
        devs.release(&"l".into(), &"a1".into());
        let c = devs
            .connect(&hello("l", &r.token, &[], &[]), tx.clone(), seen(), 10)
            .unwrap();

        // Removal: gone from every view; its last token is refused by name, any other as a
        // stranger's; the name can be registered again.
        devs.occupy(&"l".into(), &"a2".into());
        let cut = devs.remove(&"l".into()).unwrap();
        assert_eq!(cut.conn.map(|(id, _)| id), Some(c.conn));
        assert_eq!(cut.running, ["a2".into()]);
        assert!(devs.views().is_empty() && devs.profiles().is_empty() && !devs.any_free());
        let last = devs.take_changed().pop().unwrap();
        assert_eq!(
            (last.name.as_str(), last.status),
            ("l", DeviceStatus::Removed)
        );
        assert!(devs.remove(&"l".into()).is_none() && devs.rotate(&"l".into(), 11).is_none());
        assert_eq!(
            refused(devs.connect(&hello("l", &r.token, &[], &[]), tx.clone(), seen(), 11))
                .as_deref(),
            Some("device_removed")
        );
        assert_eq!(
            refused(devs.connect(&hello("l", &old, &[], &[]), tx.clone(), seen(), 11)).as_deref(),
            Some("bad_token")
        );
        let (_, again) = devs.add("l".into(), "phone".into(), 12).unwrap();
        assert_eq!(
            refused(devs.connect(&hello("l", &r.token, &[], &[]), tx.clone(), seen(), 12))
                .as_deref(),
            Some("bad_token")
        );
        assert!(
            devs.connect(&hello("l", &again, &[], &[]), tx, seen(), 12)
                .is_ok()
        );
    }

    #[test]
    fn tombstones_and_retired_tokens_are_loaded_from_their_rows() {
        let (tx, _rx) = broadcast::channel(4);
        let row = |name: &str, removed: Option<u64>| DeviceRecord {
            name: name.into(),
            kind: "laptop".into(),
            token_hash: token::hash(&format!("{name}-now")),
            platform: None,
            os_version: None,
            capabilities: Vec::new(),
            tools: Vec::new(),
            max_concurrency: 1,
            created_at_ms: 0,
            last_seen_ms: None,
            draining: false,
            retired_token_hash: Some(token::hash(&format!("{name}-before"))),
            removed_at_ms: removed,
        };
        let mut devs = Devices::new(vec![row("kept", None), row("gone", Some(5))], tx);
        assert_eq!(devs.views().len(), 1);
        let (out, _rx) = mpsc::channel(1);
        let seen = || Arc::new(AtomicU64::new(0));
        let code = |devs: &mut Devices, name: &str, tok: &str| {
            devs.connect(&hello(name, tok, &[], &[]), out.clone(), seen(), 1)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(
            code(&mut devs, "kept", "kept-before").as_deref(),
            Some("token_rotated")
        );
        assert_eq!(
            code(&mut devs, "gone", "gone-now").as_deref(),
            Some("device_removed")
        );
        assert_eq!(code(&mut devs, "kept", "kept-now"), None);
    }

    #[test]
    fn a_device_back_from_a_drop_keeps_what_it_still_holds() {
        let (mut devs, _rx) = registry();
        let (c, tok) = online(&mut devs, "l", &["shell"]);
        for a in ["a1", "a2"] {
            devs.occupy(&"l".into(), &a.into());
        }
        assert_eq!(devs.disconnect(&"l".into(), c.conn, 3).unwrap().len(), 2);
        let (tx, _rx) = mpsc::channel(1);
        let seen = Arc::new(AtomicU64::new(0));
        let back = hello("l", &tok, &[], &["a2", "a9"]);
        let c = devs.connect(&back, tx, seen, 4).unwrap();
        assert_eq!(
            (c.reattached, c.lost),
            (vec!["a2".into()], vec!["a1".into()])
        );
    }

    #[test]
    fn placement_follows_target_capabilities_load_and_avoidance() {
        let (mut devs, _rx) = registry();
        online(&mut devs, "a", &["shell"]);
        online(&mut devs, "b", &["shell", "fs"]);
        let name = |d: Option<DeviceName>| d.map(|n| n.to_string());
        assert_eq!(
            name(devs.place(&task(Target::Any, &["fs"]))).as_deref(),
            Some("b")
        );
        assert_eq!(name(devs.place(&task(Target::Any, &["adb"]))), None);
        assert_eq!(
            name(devs.place(&task(Target::Kind("phone".into()), &[]))),
            None
        );
        assert_eq!(
            name(devs.place(&task(Target::Device("a".into()), &["shell"]))).as_deref(),
            Some("a")
        );
        // Least loaded first; ties by name.
        assert_eq!(
            name(devs.place(&task(Target::Any, &["shell"]))).as_deref(),
            Some("a")
        );
        devs.occupy(&"a".into(), &"x1".into());
        assert_eq!(
            name(devs.place(&task(Target::Any, &["shell"]))).as_deref(),
            Some("b")
        );
        // A device to avoid is taken only when it is the only one.
        let mut avoiding = task(Target::Any, &["shell"]);
        avoiding.sched.avoid = Some("b".into());
        assert_eq!(name(devs.place(&avoiding)).as_deref(), Some("a"));
        devs.occupy(&"a".into(), &"x2".into());
        assert_eq!(name(devs.place(&avoiding)).as_deref(), Some("b"));
        // Full or draining devices take nothing.
        devs.set_draining(&"b".into(), true).unwrap();
        assert!(!devs.any_free());
        devs.release(&"a".into(), &"x1".into());
        assert_eq!(name(devs.place(&avoiding)).as_deref(), Some("a"));
    }

    #[test]
    fn may_place_passes_over_tasks_for_a_device_with_no_free_slot() {
        let (mut devs, _rx) = registry();
        online(&mut devs, "a", &["shell"]);
        online(&mut devs, "b", &["shell"]);
        let on = |d: &str| task(Target::Device(d.into()), &["shell"]);
        assert!(devs.may_place(&on("a")));
        assert!(!devs.may_place(&on("nowhere")));
        devs.set_draining(&"a".into(), true).unwrap();
        assert!(!devs.may_place(&on("a")));
        assert!(devs.may_place(&task(Target::Any, &["shell"])));
        assert!(devs.may_place(&task(Target::Kind("laptop".into()), &[])));
        // Never a yes where `place` says no for the device's sake: full is no, too.
        let mut held = 0;
        while devs.place(&on("b")).is_some() {
            held += 1;
            devs.occupy(&"b".into(), &format!("x{held}").into());
        }
        assert!(held >= 1);
        assert!(!devs.may_place(&on("b")));
        assert!(!devs.may_place(&task(Target::Any, &["shell"])));
        assert_eq!(devs.place(&task(Target::Any, &["shell"])), None);
    }

    #[test]
    fn views_are_kept_for_listeners_and_profiles_are_cached() {
        let (tx, rx) = broadcast::channel(4);
        let mut devs = Devices::new(Vec::new(), tx);
        online(&mut devs, "a", &["shell"]);
        let first = devs.profiles();
        assert!(first[0].info.online);
        assert!(Arc::ptr_eq(&first, &devs.profiles()));
        assert_eq!(devs.take_changed().len(), 1);
        assert!(devs.take_changed().is_empty());
        devs.set_draining(&"a".into(), true).unwrap();
        assert!(!devs.profiles()[0].info.online);
        assert_eq!(devs.take_changed()[0].status, DeviceStatus::Draining);
        drop(rx);
        devs.set_draining(&"a".into(), false).unwrap();
        assert!(devs.take_changed().is_empty(), "nobody listens");
    }
}
