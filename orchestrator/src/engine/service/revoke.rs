//! Devices taken away: `remove` (the device is gone; its token is refused `device_removed`)
//! and `rotate` (it gets a new token; the old one is refused `token_rotated`). Either way the
//! connection made with the old token is told why and closed, and the attempts the device held
//! are lost at once and placed again, as a lost device's are.

use weft_protocol::rest::{DeviceCreated, DeviceRemoved};
use weft_protocol::{AttemptStatus, DeviceName, ErrorInfo, ServerMsg};

use super::Engine;
use super::devices::{self, CutOff};
use crate::engine;
use crate::metrics::Metrics;
use crate::store::{Batch, Op};

impl Engine {
    pub(super) fn remove_device(
        &mut self,
        name: DeviceName,
    ) -> Result<DeviceRemoved, engine::Error> {
        let Some(cut) = self.devices.remove(&name) else {
            return Err(engine::Error::DeviceNotFound(name));
        };
        self.out.op(Op::RemoveDevice {
            name: name.clone(),
            at_ms: self.now(),
        });
        let answer = DeviceRemoved {
            name: name.clone(),
            was_connected: cut.conn.is_some(),
            attempts_lost: u32::try_from(cut.running.len()).unwrap_or(u32::MAX),
        };
        tracing::info!(device = %name, connected = answer.was_connected,
            attempts_lost = answer.attempts_lost, "device removed");
        let why = format!("device `{name}` was removed while it ran this attempt");
        self.cut_off(&name, cut, devices::removed(&name), &why);
        Ok(answer)
    }

    pub(super) fn rotate_token(
        &mut self,
        name: DeviceName,
    ) -> Result<DeviceCreated, engine::Error> {
        let now = self.now();
        let Some(r) = self.devices.rotate(&name, now) else {
            return Err(engine::Error::DeviceNotFound(name));
        };
        self.out.op(Op::RotateDeviceToken {
            name: name.clone(),
            token_hash: r.token_hash,
            retired_token_hash: r.retired_token_hash,
            at_ms: now,
        });
        if r.cut.conn.is_some() {
            self.out.op(Op::TouchDevice {
                name: name.clone(),
                at_ms: now,
            });
        }
        tracing::info!(device = %name, connected = r.cut.conn.is_some(),
            attempts_lost = r.cut.running.len(), "device token rotated");
        let why = format!("the token of device `{name}` was rotated while it ran this attempt");
        self.cut_off(&name, r.cut, devices::rotated(&name), &why);
        Ok(DeviceCreated {
            name,
            kind: r.kind,
            token: r.token,
        })
    }

    /// Tells the device's connection (if it had one) why it is refused, once this group is
    /// committed; the connection closes after that frame (the registry no longer holds it).
    /// Its attempts are lost now and placed again (`device_lost`: at once, elsewhere if
    /// possible).
    fn cut_off(&mut self, name: &DeviceName, cut: CutOff, refusal: ErrorInfo, why: &str) {
        if let Some(conn) = &cut.conn {
            self.out
                .frame(name, conn, ServerMsg::Refused { error: refusal });
        }
        let mut b = Batch::default();
        for id in cut.running {
            Metrics::inc(&self.metrics.attempts_lost_total);
            let err = ErrorInfo::new("device_lost", why);
            self.attempt_failed(&mut b, &id, AttemptStatus::Lost, err, None);
        }
        self.stage(b);
    }
}
