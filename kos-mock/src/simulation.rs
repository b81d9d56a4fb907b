//! The simulated behaviour of KOS: how long a change takes and whether it succeeds.
//!
//! Each draw is a hash of (seed, request id, what is drawn), not a step of a shared
//! random stream, so a request's latency and outcome do not depend on the order requests
//! are processed in, on concurrency, or on restarts. The settings live in memory
//! ([`SimulationHandle`]): the admin endpoint changes them until the process restarts,
//! which starts again from the configuration.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The knobs of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Simulation {
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Share of changes that succeed when nothing else refuses them, 0 to 1.
    pub success_rate: f64,
    pub random_seed: u64,
}

/// Longest latency accepted (a change must stay well within any answer deadline).
pub const MAX_LATENCY_MS: u64 = 60_000;

impl Simulation {
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.success_rate) || self.success_rate.is_nan() {
            return Err(format!(
                "success rate {} is not between 0 and 1",
                self.success_rate
            ));
        }
        if self.latency_min_ms > self.latency_max_ms {
            return Err(format!(
                "latency minimum {} ms is above the maximum {} ms",
                self.latency_min_ms, self.latency_max_ms
            ));
        }
        if self.latency_max_ms > MAX_LATENCY_MS {
            return Err(format!(
                "latency maximum {} ms is above {MAX_LATENCY_MS} ms",
                self.latency_max_ms
            ));
        }
        Ok(())
    }

    /// How long carrying out `request_id` takes: uniform in [min, max].
    pub fn latency(&self, request_id: Uuid) -> Duration {
        let span = self.latency_max_ms - self.latency_min_ms;
        let offset = draw(self.random_seed, request_id, Draw::Latency) % (span + 1);
        Duration::from_millis(self.latency_min_ms + offset)
    }

    /// Whether KOS's system carries out `request_id` (false: `SYSTEM_ERROR`).
    pub fn succeeds(&self, request_id: Uuid) -> bool {
        unit(draw(self.random_seed, request_id, Draw::Success)) < self.success_rate
    }
}

/// What a draw is for; each gets an independent value.
#[derive(Debug, Clone, Copy)]
pub enum Draw {
    Latency = 1,
    Success = 2,
}

/// A well-mixed 64-bit value from (seed, request id, purpose).
pub fn draw(seed: u64, request_id: Uuid, purpose: Draw) -> u64 {
    let (hi, lo) = request_id.as_u64_pair();
    let mut h = mix(seed ^ (purpose as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    h = mix(h ^ hi);
    mix(h ^ lo)
}

/// A 64-bit hash of a text (for derived demo and bill values), stable across builds.
pub fn hash_str(seed: u64, text: &str) -> u64 {
    text.bytes()
        .fold(mix(seed), |h, b| mix(h ^ u64::from(b)).wrapping_add(h))
}

/// Maps a 64-bit value to [0, 1).
pub fn unit(value: u64) -> f64 {
    (value >> 11) as f64 / (1u64 << 53) as f64
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The settings in force, shared by the consumer and the admin API.
#[derive(Debug, Clone)]
pub struct SimulationHandle(Arc<RwLock<Simulation>>);

impl SimulationHandle {
    pub fn new(simulation: Simulation) -> Self {
        Self(Arc::new(RwLock::new(simulation)))
    }

    pub fn get(&self) -> Simulation {
        *self.0.read().expect("simulation lock is never poisoned")
    }

    pub fn set(&self, simulation: Simulation) {
        *self.0.write().expect("simulation lock is never poisoned") = simulation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(success_rate: f64, seed: u64) -> Simulation {
        Simulation {
            latency_min_ms: 300,
            latency_max_ms: 800,
            success_rate,
            random_seed: seed,
        }
    }

    fn ids(n: u128) -> impl Iterator<Item = Uuid> {
        (0..n).map(|i| Uuid::from_u128(0x1234_5678_0000_0000_0000_0000_0000_0000 + i * 7919))
    }

    #[test]
    fn the_same_seed_and_request_always_draw_the_same() {
        let a = sim(0.5, 42);
        for id in ids(100) {
            assert_eq!(a.latency(id), a.latency(id));
            assert_eq!(a.succeeds(id), sim(0.5, 42).succeeds(id));
        }
    }

    #[test]
    fn another_seed_draws_differently() {
        let same = ids(100)
            .filter(|&id| sim(0.5, 1).latency(id) == sim(0.5, 2).latency(id))
            .count();
        assert!(same < 10, "{same} of 100 latencies equal under two seeds");
    }

    #[test]
    fn latencies_stay_within_bounds_and_spread_over_them() {
        let s = sim(0.998, 7);
        let latencies: Vec<u64> = ids(10_000)
            .map(|id| s.latency(id).as_millis() as u64)
            .collect();
        assert!(latencies.iter().all(|&l| (300..=800).contains(&l)));
        assert!(latencies.iter().any(|&l| l < 350));
        assert!(latencies.iter().any(|&l| l > 750));
        let mean = latencies.iter().sum::<u64>() as f64 / latencies.len() as f64;
        assert!((530.0..570.0).contains(&mean), "mean latency {mean}");
        let fixed = Simulation {
            latency_min_ms: 5,
            latency_max_ms: 5,
            ..s
        };
        assert_eq!(fixed.latency(Uuid::nil()), Duration::from_millis(5));
    }

    #[test]
    fn the_success_rate_is_met_and_its_extremes_are_exact() {
        let n = 100_000;
        let ok = ids(n).filter(|&id| sim(0.998, 3).succeeds(id)).count();
        let rate = ok as f64 / n as f64;
        assert!((0.997..0.999).contains(&rate), "success rate {rate}");
        assert!(ids(1000).all(|id| sim(1.0, 3).succeeds(id)));
        assert!(ids(1000).all(|id| !sim(0.0, 3).succeeds(id)));
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(sim(1.01, 0).check().is_err());
        assert!(sim(-0.1, 0).check().is_err());
        assert!(sim(f64::NAN, 0).check().is_err());
        let mut s = sim(0.5, 0);
        s.latency_min_ms = 900;
        assert!(s.check().is_err());
        s.latency_min_ms = 0;
        s.latency_max_ms = MAX_LATENCY_MS + 1;
        assert!(s.check().is_err());
        assert!(sim(0.998, 0).check().is_ok());
    }
}
