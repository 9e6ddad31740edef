//! Which devices can take work now, least loaded first: an index kept up to date as devices
//! connect, disconnect, are drained and start or end attempts, so that placing a task does not
//! walk every registered device.

use std::collections::{BTreeSet, HashMap};

use weft_protocol::DeviceName;

/// The devices that are online, not draining and have a free slot, ordered by load
/// (running / max_concurrency), then name.
#[derive(Debug, Default)]
pub struct FreeSlots {
    by_load: BTreeSet<(u64, DeviceName)>,
    load: HashMap<DeviceName, u64>,
}

/// A device's load as an integer that orders like `running / max` (max ≤ 1,024, so no two
/// different fractions map to the same key).
fn load_key(running: usize, max: u32) -> u64 {
    (running as u64).saturating_mul(1 << 32) / u64::from(max.max(1))
}

impl FreeSlots {
    /// Records a device's state: listed if it can take work, else not.
    pub fn set(&mut self, name: &DeviceName, available: bool, running: usize, max: u32) {
        let key = (available && (running as u64) < u64::from(max)).then(|| load_key(running, max));
        let old = self.load.get(name).copied();
        if old == key {
            return;
        }
        if let Some(old) = old {
            self.by_load.remove(&(old, name.clone()));
            self.load.remove(name);
        }
        if let Some(key) = key {
            self.by_load.insert((key, name.clone()));
            self.load.insert(name.clone(), key);
        }
    }

    /// Whether the device can take work.
    pub fn contains(&self, name: &DeviceName) -> bool {
        self.load.contains_key(name)
    }

    /// The devices that can take work, least loaded first (ties by name).
    pub fn iter(&self) -> impl Iterator<Item = &DeviceName> + '_ {
        self.by_load.iter().map(|(_, name)| name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_load.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: &FreeSlots) -> Vec<&str> {
        f.iter().map(DeviceName::as_str).collect()
    }

    #[test]
    fn least_loaded_first_and_full_or_unavailable_devices_are_left_out() {
        let mut f = FreeSlots::default();
        let (a, b, c) = (
            DeviceName::from("a"),
            DeviceName::from("b"),
            DeviceName::from("c"),
        );
        f.set(&a, true, 1, 2); // 1/2
        f.set(&b, true, 1, 4); // 1/4
        f.set(&c, true, 0, 1); // 0/1
        assert_eq!(names(&f), ["c", "b", "a"]);
        f.set(&c, true, 1, 1); // full
        f.set(&b, false, 1, 4); // offline or draining
        assert_eq!(names(&f), ["a"]);
        assert!(!f.contains(&b) && !f.contains(&c));
        f.set(&a, true, 0, 2);
        f.set(&b, true, 0, 4);
        // Equal loads: by name.
        assert_eq!(names(&f), ["a", "b"]);
        f.set(&a, false, 0, 2);
        f.set(&b, false, 0, 4);
        assert!(f.is_empty());
    }

    #[test]
    fn keys_order_like_the_fractions() {
        // Close fractions with the largest allowed max stay apart and in order.
        assert!(load_key(1023, 1024) < load_key(1, 1));
        assert!(load_key(511, 1024) < load_key(1, 2));
        assert!(load_key(1, 3) < load_key(342, 1024));
        assert_eq!(load_key(1, 2), load_key(512, 1024));
    }
}
