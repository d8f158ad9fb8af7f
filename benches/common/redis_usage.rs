//! What Redis has done so far, as `INFO` tells: shared by the Redis benchmarks (`#[path]`).

use crate::support::RedisServer;

/// What Redis has done so far, as `INFO` tells.
///
/// Redis counts each command a script (or `EXEC`) runs as a command of its own, and its time
/// again in the script's (or `EXEC`'s): `commands` counts them all (a script running six
/// commands makes seven), `script_calls` only the scripts clients sent.
pub struct RedisUsage {
    pub cpu_seconds: f64,
    pub commands: f64,
    pub script_calls: f64,
    pub script_us: f64,
}

const SCRIPT_COMMANDS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

impl RedisUsage {
    /// `INFO cpu commandstats`, leaving out the `INFO` commands this benchmark sends.
    pub fn now(redis: &RedisServer) -> RedisUsage {
        let info = redis.cli(&["INFO", "cpu", "commandstats"]);
        let stat = |line: &str, name: &str| -> f64 {
            line.split(&format!("{name}="))
                .nth(1)
                .and_then(|v| v.split(',').next()?.parse().ok())
                .unwrap_or(0.0)
        };
        let mut usage = RedisUsage {
            cpu_seconds: 0.0,
            commands: 0.0,
            script_calls: 0.0,
            script_us: 0.0,
        };
        for line in info.lines().map(str::trim) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name == "used_cpu_sys" || name == "used_cpu_user" {
                usage.cpu_seconds += value.parse::<f64>().unwrap_or(0.0);
            } else if let Some(command) = name.strip_prefix("cmdstat_") {
                if command != "info" {
                    usage.commands += stat(value, "calls");
                }
                if SCRIPT_COMMANDS.contains(&command) {
                    usage.script_calls += stat(value, "calls");
                    usage.script_us += stat(value, "usec");
                }
            }
        }
        usage
    }
}
