//! The log: `logging.level` from the configuration, unless `RUST_LOG` is set (then it rules,
//! with its per-module directives, and reloads leave it alone).

use std::sync::atomic::{AtomicBool, Ordering};

use log::LevelFilter;

/// Whether `RUST_LOG` chose the filter.
static FROM_ENV: AtomicBool = AtomicBool::new(false);

/// Starts the logger: `RUST_LOG`'s filter if set; else every record reaches the logger and the
/// level (`info` until a configuration is loaded) is [`set_level`]'s.
pub fn init() {
    if std::env::var_os("RUST_LOG").is_some() {
        FROM_ENV.store(true, Ordering::Relaxed);
        env_logger::Builder::from_env(env_logger::Env::default()).init();
    } else {
        env_logger::Builder::new()
            .filter_level(LevelFilter::Trace)
            .init();
        log::set_max_level(LevelFilter::Info);
    }
}

/// The level of `off|error|warn|info|debug|trace` (validated by the configuration; anything
/// else is `info`).
pub fn level_of(level: &str) -> LevelFilter {
    level.parse().unwrap_or(LevelFilter::Info)
}

/// Applies `logging.level` (at start and on reload) unless `RUST_LOG` chose the filter.
pub fn set_level(level: &str) {
    if !FROM_ENV.load(Ordering::Relaxed) {
        log::set_max_level(level_of(level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        assert_eq!(level_of("debug"), LevelFilter::Debug);
        assert_eq!(level_of("WARN"), LevelFilter::Warn);
        assert_eq!(level_of("off"), LevelFilter::Off);
        assert_eq!(level_of("chatty"), LevelFilter::Info);
    }
}
