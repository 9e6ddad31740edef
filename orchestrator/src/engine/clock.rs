//! Where the engine reads the time.
//!
//! The engine keeps times as milliseconds since the Unix epoch (rows, journal events,
//! deadlines, backoffs) and waits with tokio's timers (its tick, the end of a grace window).
//! A [`Clock`] gives the first; tokio's time gives the second. In production the clock is the
//! wall clock. In tests it is tokio's own clock counted from a fixed epoch, so under paused time
//! (`#[tokio::test(start_paused = true)]`) both stand still together and move together with
//! `tokio::time::advance`: a test steps the engine through backoffs and timeouts without
//! sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// The engine's "now". Cheap to copy; the engine and its connection tasks share one.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Source);

#[derive(Debug, Clone, Copy)]
enum Source {
    /// The system's wall clock.
    Wall,
    /// Tokio's clock: `epoch_ms` at `origin`, then whatever tokio says has passed since.
    Tokio { epoch_ms: u64, origin: Instant },
}

impl Clock {
    /// The system's wall clock (what the server runs on).
    pub fn wall() -> Self {
        Self(Source::Wall)
    }

    /// Tokio's clock, reading `epoch_ms` now. Under paused time it moves only when tokio's time
    /// is advanced. Call it inside the runtime whose time it is to follow.
    pub fn tokio(epoch_ms: u64) -> Self {
        Self(Source::Tokio {
            epoch_ms,
            origin: Instant::now(),
        })
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self.0 {
            Source::Wall => crate::now_ms(),
            Source::Tokio { epoch_ms, origin } => {
                epoch_ms + u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
            }
        }
    }

    /// Waits until the clock reads `at_ms` (at once if it already does).
    pub async fn sleep_until_ms(&self, at_ms: u64) {
        let left = Duration::from_millis(at_ms.saturating_sub(self.now_ms()));
        tokio::time::sleep(left).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_time_moves_the_clock_and_nothing_else_does() {
        let clock = Clock::tokio(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now_ms(), 1_250);
        clock.sleep_until_ms(1_400).await;
        assert_eq!(clock.now_ms(), 1_400);
        clock.sleep_until_ms(1_000).await;
        assert_eq!(clock.now_ms(), 1_400);
    }

    #[test]
    fn the_wall_clock_is_the_systems() {
        let before = crate::now_ms();
        let now = Clock::wall().now_ms();
        assert!(now >= before && now <= crate::now_ms());
    }
}
