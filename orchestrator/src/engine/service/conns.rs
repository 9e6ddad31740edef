//! Devices coming and going: registration, draining, a hello, a closed or silent connection.
//! The registry decides who a device is; this is what the engine does about it.

use weft_protocol::rest::{DeviceCreated, DeviceView};
use weft_protocol::{AttemptId, AttemptStatus, DeviceName, ErrorInfo, PROTOCOL_VERSION, ServerMsg};

use super::{Engine, millis};
use crate::engine;
use crate::engine::{ConnId, Hello, LastSeen, Outbound};
use crate::metrics::Metrics;
use crate::store::{Batch, Op};

impl Engine {
    pub(super) fn add_device(
        &mut self,
        name: DeviceName,
        kind: String,
    ) -> Result<DeviceCreated, engine::Error> {
        let now = self.now();
        let (row, token) = self.devices.add(name.clone(), kind.clone(), now)?;
        self.out.op(Op::InsertDevice(row));
        tracing::info!(device = %name, kind = %kind, "device registered");
        Ok(DeviceCreated { name, kind, token })
    }

    pub(super) fn set_draining(
        &mut self,
        name: DeviceName,
        draining: bool,
    ) -> Result<DeviceView, engine::Error> {
        let Some(view) = self.devices.set_draining(&name, draining) else {
            return Err(engine::Error::DeviceNotFound(name));
        };
        tracing::info!(device = %name, draining, "device drain changed");
        self.out.op(Op::SetDraining { name, draining });
        Ok(view)
    }

    /// Authenticates a hello and binds the connection; reattaches the attempts the device
    /// still holds and gives up on the ones it came back without.
    pub(super) fn connect(
        &mut self,
        hello: Hello,
        outbound: Outbound,
        seen: LastSeen,
    ) -> Result<(ConnId, ServerMsg), ErrorInfo> {
        let now = self.now();
        let c = self.devices.connect(&hello, outbound, seen, now)?;
        self.out.op(Op::UpdateDeviceProfile(c.row));
        let n = self.attempts.reattach(&c.reattached);
        self.metrics
            .attempts_reattached_total
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let mut b = Batch::default();
        for id in c.lost {
            tracing::warn!(attempt = %id, device = %hello.device, "device came back without the attempt");
            Metrics::inc(&self.metrics.attempts_lost_total);
            let err = ErrorInfo::new(
                "device_lost",
                format!("device `{}` reconnected without this attempt", hello.device),
            );
            self.attempt_failed(&mut b, &id, AttemptStatus::Lost, err, None);
        }
        self.stage(b);
        tracing::info!(device = %hello.device, platform = %hello.platform,
            capabilities = ?hello.capabilities, reattached = c.reattached.len(), "device connected");
        Ok((
            c.conn,
            ServerMsg::Welcome {
                protocol_version: PROTOCOL_VERSION,
                device: hello.device,
                heartbeat_interval_ms: millis(self.opts.heartbeat_interval),
                reattached: c.reattached,
            },
        ))
    }

    /// A device's connection ended. Its attempts wait out the grace window for it to come back
    /// and reattach them — unless it went `silent`, which took 2 heartbeat intervals already:
    /// then they are lost at once and placed elsewhere.
    pub(super) fn disconnected(&mut self, device: &DeviceName, conn: ConnId, silent: bool) {
        let now = self.now();
        let Some(running) = self.devices.disconnect(device, conn, now) else {
            return;
        };
        tracing::info!(device = %device, in_flight = running.len(), silent, "device disconnected");
        self.out.op(Op::TouchDevice {
            name: device.clone(),
            at_ms: now,
        });
        if silent {
            self.lose_at_once(device, running);
            return;
        }
        self.attempts.mark_lost(&running, now);
        if !running.is_empty() {
            self.wake_at(now + millis(self.opts.lost_grace));
        }
    }

    /// The attempts of a device that went silent are lost now.
    fn lose_at_once(&mut self, device: &DeviceName, running: Vec<AttemptId>) {
        let mut b = Batch::default();
        for id in running {
            Metrics::inc(&self.metrics.attempts_lost_total);
            let err = ErrorInfo::new(
                "device_lost",
                format!(
                    "device `{device}` sent nothing for 2 heartbeat intervals ({} s)",
                    2.0 * self.opts.heartbeat_interval.as_secs_f64()
                ),
            );
            self.attempt_failed(&mut b, &id, AttemptStatus::Lost, err, None);
        }
        self.stage(b);
    }
}
