//! Counters of what the orchestrator refused, retried and recovered, served at `GET /metrics`
//! in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal,)*) => {
        /// Monotonic counters since the process started.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// The Prometheus text exposition of every counter.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP weft_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE weft_{} counter", stringify!($name));
                    let _ = writeln!(out, "weft_{} {}", stringify!($name), self.$name.load(Ordering::Relaxed));
                )*
                out
            }
        }
    };
}

counters! {
    requests_created_total: "Requests accepted and planned.",
    requests_finished_total: "Requests that reached a final status.",
    attempts_dispatched_total: "Attempts sent to devices.",
    attempts_retried_total: "Failed attempts followed by another attempt.",
    attempts_timed_out_total: "Attempts that passed their deadline.",
    attempts_lost_total: "Attempts whose device did not come back in time or came back without them.",
    attempts_reattached_total: "Attempts a reconnecting device still held and kept running.",
    results_duplicate_total: "Results for attempts already ended: acknowledged, not applied.",
    frames_refused_total: "Frames about attempts the sending device does not hold.",
    bad_frames_total: "Frames that were not valid protocol messages (the connection was closed).",
    engine_groups_total: "Groups of engine inputs committed together (one store transaction each).",
    engine_inputs_total: "Engine inputs (commands from REST and connections); divided by groups, the mean group size.",
    connections_refused_total: "Connections closed at once: the server, or their address, held as many as allowed.",
    connections_timed_out_total: "Connections closed for not completing a TLS handshake, a request's headers or an agent hello in time.",
    auth_failures_total: "Failed authentications (API token, device token, login link).",
    auth_rate_limited_total: "Authentications refused because their address failed too often (429, refused: rate_limited).",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let m = Metrics::default();
        Metrics::inc(&m.frames_refused_total);
        let text = m.render();
        assert!(text.contains("weft_frames_refused_total 1\n"));
        assert!(text.contains("# TYPE weft_requests_created_total counter"));
    }
}
