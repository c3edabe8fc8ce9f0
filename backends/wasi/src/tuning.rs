//! How wasmtime compiles and runs the interpreter: the engine settings that change its
//! speed, chosen by measurement (`bench engine` compares them; `docs/profile.md` has the
//! numbers).
//!
//! Every setting here keeps the sandbox's guarantees: memory accesses stay checked (by guard
//! pages or by explicit checks), traps stay traps, and the epoch check that stops runaway
//! code is always compiled in. What may be tuned is how fast that happens:
//!
//! - `opt`: Cranelift's optimisation level (`none`, `speed`, `speed_and_size`);
//! - `bounds`: `guard` reserves 4 GiB of address space per guest so linear-memory bounds
//!   checks are elided and an out-of-bounds access hits a guard page; `checked` reserves
//!   only what the guest uses and checks each access in code (for hosts that limit virtual
//!   memory);
//! - `tick`: how often the epoch advances, which is how often a running guest yields to the
//!   executor and how soon a killed guest notices (1 to 1000 ms).
//!
//! Written as `opt=speed,bounds=guard,tick=10ms`; any key may be left out for its default.
//! Signals-based traps stay on: turning them off needs Cranelift's Spectre mitigations
//! turned off too, which would loosen isolation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use wasmtime::Config;

/// Cranelift's optimisation level for the interpreter's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptLevel {
    /// No optimisation: fastest to compile, slowest to run.
    None,
    /// Optimise for speed (wasmtime's default).
    Speed,
    /// Optimise for speed and code size.
    SpeedAndSize,
}

impl OptLevel {
    /// Every level, in the order reports list them.
    pub const ALL: [Self; 3] = [Self::None, Self::Speed, Self::SpeedAndSize];

    /// The level's name in settings and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Speed => "speed",
            Self::SpeedAndSize => "speed_and_size",
        }
    }

    fn cranelift(self) -> wasmtime::OptLevel {
        match self {
            Self::None => wasmtime::OptLevel::None,
            Self::Speed => wasmtime::OptLevel::Speed,
            Self::SpeedAndSize => wasmtime::OptLevel::SpeedAndSize,
        }
    }
}

/// How linear-memory accesses are kept in bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// A 4 GiB reservation and guard pages: no checks in code (wasmtime's default on 64-bit
    /// hosts).
    Guard,
    /// Only the memory in use is reserved; every access is checked in code.
    Checked,
}

impl Bounds {
    /// Every strategy, in the order reports list them.
    pub const ALL: [Self; 2] = [Self::Guard, Self::Checked];

    /// The strategy's name in settings and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Guard => "guard",
            Self::Checked => "checked",
        }
    }
}

/// The engine settings the WASI backend runs its interpreter with. The default is the
/// measured best (`docs/profile.md`, "WASI engine settings").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineTuning {
    /// Cranelift's optimisation level.
    pub opt_level: OptLevel,
    /// How memory accesses are kept in bounds.
    pub bounds: Bounds,
    /// How often the epoch advances: a running guest yields this often, and a killed one
    /// stops within it.
    pub epoch_tick: Duration,
}

impl Default for EngineTuning {
    fn default() -> Self {
        Self {
            opt_level: OptLevel::Speed,
            bounds: Bounds::Guard,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// The shortest and longest epoch tick a setting may ask for.
const TICK_RANGE: std::ops::RangeInclusive<u64> = 1..=1000;

/// Why a text is not engine settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TuningError {
    /// A part is not `key=value`.
    #[error("expected key=value, got {0:?}")]
    NotAPair(String),
    /// The key is not one we know.
    #[error("unknown engine setting {0:?}; expected opt, bounds or tick")]
    UnknownKey(String),
    /// The same key twice.
    #[error("engine setting {0:?} is given twice")]
    Repeated(String),
    /// The value is not one the key takes.
    #[error("{key}={value:?} is not accepted; expected {expected}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What the key takes.
        expected: String,
    },
}

impl EngineTuning {
    /// Apply these settings to a wasmtime configuration.
    pub(crate) fn apply(&self, config: &mut Config) {
        config.cranelift_opt_level(self.opt_level.cranelift());
        if self.bounds == Bounds::Checked {
            config.memory_reservation(0);
            config.memory_guard_size(0);
        }
    }
}

fn choice<T: Copy>(
    key: &'static str,
    value: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, TuningError> {
    all.iter()
        .copied()
        .find(|item| name(*item) == value)
        .ok_or_else(|| TuningError::BadValue {
            key,
            value: value.to_string(),
            expected: all
                .iter()
                .map(|item| name(*item))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn tick(value: &str) -> Result<Duration, TuningError> {
    value
        .strip_suffix("ms")
        .and_then(|millis| millis.parse::<u64>().ok())
        .filter(|millis| TICK_RANGE.contains(millis))
        .map(Duration::from_millis)
        .ok_or_else(|| TuningError::BadValue {
            key: "tick",
            value: value.to_string(),
            expected: format!(
                "milliseconds from {}ms to {}ms",
                TICK_RANGE.start(),
                TICK_RANGE.end()
            ),
        })
}

impl FromStr for EngineTuning {
    type Err = TuningError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut tuning = Self::default();
        let mut seen: Vec<&str> = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| TuningError::NotAPair(part.to_string()))?;
            let (key, value) = (key.trim(), value.trim().to_ascii_lowercase());
            if seen.contains(&key) {
                return Err(TuningError::Repeated(key.to_string()));
            }
            match key {
                "opt" => tuning.opt_level = choice("opt", &value, &OptLevel::ALL, OptLevel::name)?,
                "bounds" => tuning.bounds = choice("bounds", &value, &Bounds::ALL, Bounds::name)?,
                "tick" => tuning.epoch_tick = tick(&value)?,
                _ => return Err(TuningError::UnknownKey(key.to_string())),
            }
            seen.push(key);
        }
        Ok(tuning)
    }
}

impl fmt::Display for EngineTuning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "opt={},bounds={},tick={}ms",
            self.opt_level.name(),
            self.bounds.name(),
            self.epoch_tick.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_text_is_the_default_and_the_default_reads_back() {
        let default = EngineTuning::default();
        assert_eq!("".parse::<EngineTuning>(), Ok(default));
        assert_eq!(default.to_string().parse::<EngineTuning>(), Ok(default));
        assert_eq!(default.to_string(), "opt=speed,bounds=guard,tick=10ms");
    }

    #[test]
    fn each_key_sets_its_setting_and_leaves_the_others() {
        let tuning: EngineTuning = " opt=Speed_And_Size , tick=100ms".parse().unwrap();
        assert_eq!(tuning.opt_level, OptLevel::SpeedAndSize);
        assert_eq!(tuning.bounds, Bounds::Guard);
        assert_eq!(tuning.epoch_tick, Duration::from_millis(100));
        let checked: EngineTuning = "bounds=checked".parse().unwrap();
        assert_eq!(checked.bounds, Bounds::Checked);
        assert_eq!(checked.to_string().parse::<EngineTuning>(), Ok(checked));
    }

    #[test]
    fn bad_text_says_what_is_accepted() {
        let error = |text: &str| text.parse::<EngineTuning>().unwrap_err().to_string();
        assert!(error("opt").contains("key=value"), "{}", error("opt"));
        assert!(error("fuel=1").contains("opt, bounds or tick"));
        assert!(error("opt=fast").contains("none, speed, speed_and_size"));
        assert!(error("bounds=off").contains("guard, checked"));
        assert!(error("tick=0ms").contains("1ms to 1000ms"));
        assert!(error("tick=5").contains("milliseconds"));
        assert!(error("tick=5000ms").contains("1ms to 1000ms"));
        assert!(error("opt=none,opt=speed").contains("twice"));
    }

    #[test]
    fn settings_change_the_engine_and_so_the_compiled_module_cache_key() {
        let digest = |tuning: EngineTuning| {
            let mut config = Config::new();
            tuning.apply(&mut config);
            let engine = wasmtime::Engine::new(&config).expect("engine");
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
            std::hash::Hasher::finish(&hasher)
        };
        let default = EngineTuning::default();
        let others = ["opt=none", "opt=speed_and_size", "bounds=checked"]
            .map(|text| text.parse::<EngineTuning>().unwrap());
        for other in others {
            assert_ne!(digest(default), digest(other), "{other}");
        }
        let slower_tick: EngineTuning = "tick=100ms".parse().unwrap();
        assert_eq!(
            digest(default),
            digest(slower_tick),
            "the tick is a run-time setting: it needs no recompile"
        );
    }
}
