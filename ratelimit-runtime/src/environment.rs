//! The limiter's environment variables, read once (see
//! [`RateLimiterBuilder::from_env`](crate::RateLimiterBuilder::from_env)): plain values the
//! builder takes for what code left unset.

#[cfg(feature = "overrides-file")]
use std::path::PathBuf;

#[cfg(feature = "redis")]
use crate::backend::RedisTarget;
use crate::key::fingerprint::FleetKey;
#[cfg(feature = "redis")]
use crate::leases::Leases;
#[cfg(feature = "redis")]
use crate::store::RedisTls;

/// A variable that asks for a Cargo feature this build leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FeatureOff {
    pub(crate) variable: &'static str,
    pub(crate) feature: &'static str,
}

#[derive(Default)]
pub(crate) struct Environment {
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<RedisTarget>,
    #[cfg(feature = "redis")]
    pub(crate) timeout_ms: Option<u64>,
    #[cfg(feature = "redis")]
    pub(crate) slot_lease_ms: Option<u64>,
    #[cfg(feature = "redis")]
    pub(crate) leases: Option<Leases>,
    /// TLS files, read; or why they cannot be.
    #[cfg(feature = "redis")]
    pub(crate) tls: Option<Result<RedisTls, String>>,
    #[cfg(feature = "overrides-file")]
    pub(crate) overrides: Option<PathBuf>,
    pub(crate) proxies: Option<Vec<String>>,
    pub(crate) shadow: Option<bool>,
    pub(crate) secret: Option<FleetKey>,
    /// The first variable set whose feature is off.
    pub(crate) feature_off: Option<FeatureOff>,
}

/// Each feature with the variables it reads, and whether this build has it.
const FEATURE_VARIABLES: [(&str, bool, &[&str]); 2] = [
    (
        "redis",
        cfg!(feature = "redis"),
        &[
            "REDIS_URL",
            "REDIS_CLUSTER_URLS",
            "REDIS_SENTINEL_URLS",
            "REDIS_SENTINEL_MASTER",
            "RATELIMIT_LEASES",
            "RATELIMIT_LEASE_MS",
            "RATELIMIT_REDIS_TIMEOUT_MS",
            "RATELIMIT_REDIS_LEASE_MS",
            "RATELIMIT_REDIS_TLS_CA",
            "RATELIMIT_REDIS_TLS_CERT",
            "RATELIMIT_REDIS_TLS_KEY",
        ],
    ),
    (
        "overrides-file",
        cfg!(feature = "overrides-file"),
        &["RATELIMIT_OVERRIDES"],
    ),
];

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Environment {
    pub(crate) fn read() -> Environment {
        let list = |text: String| -> Vec<String> {
            text.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        };
        let feature_off = FEATURE_VARIABLES
            .iter()
            .filter(|(_, enabled, _)| !enabled)
            .flat_map(|&(feature, _, variables)| {
                variables
                    .iter()
                    .map(move |&variable| FeatureOff { variable, feature })
            })
            .find(|off| var(off.variable).is_some());
        Environment {
            #[cfg(feature = "redis")]
            redis: match (
                var("REDIS_CLUSTER_URLS"),
                var("REDIS_SENTINEL_URLS"),
                var("REDIS_SENTINEL_MASTER"),
                var("REDIS_URL"),
            ) {
                (Some(nodes), ..) => Some(RedisTarget::Cluster(list(nodes))),
                // One of the two alone is a mistake `build` names (no master, no sentinels).
                (None, sentinels, master, _) if sentinels.is_some() || master.is_some() => {
                    Some(RedisTarget::Sentinel {
                        master: master.unwrap_or_default(),
                        sentinels: sentinels.map(list).unwrap_or_default(),
                    })
                }
                (None, _, _, Some(url)) => Some(RedisTarget::Single(url)),
                _ => None,
            },
            #[cfg(feature = "redis")]
            timeout_ms: number("RATELIMIT_REDIS_TIMEOUT_MS"),
            #[cfg(feature = "redis")]
            slot_lease_ms: number("RATELIMIT_REDIS_LEASE_MS"),
            #[cfg(feature = "redis")]
            leases: var("RATELIMIT_LEASES").filter(|v| is_on(v)).map(|_| {
                match number("RATELIMIT_LEASE_MS") {
                    Some(ms) => Leases::new().lifetime(std::time::Duration::from_millis(ms)),
                    None => Leases::new(),
                }
            }),
            #[cfg(feature = "redis")]
            tls: {
                let path = |name| var(name).map(std::path::PathBuf::from);
                let (ca, cert, key) = (
                    path("RATELIMIT_REDIS_TLS_CA"),
                    path("RATELIMIT_REDIS_TLS_CERT"),
                    path("RATELIMIT_REDIS_TLS_KEY"),
                );
                (ca.is_some() || cert.is_some() || key.is_some())
                    .then(|| RedisTls::from_files(ca.as_deref(), cert.as_deref(), key.as_deref()))
            },
            #[cfg(feature = "overrides-file")]
            overrides: var("RATELIMIT_OVERRIDES").map(PathBuf::from),
            proxies: var("RATELIMIT_TRUSTED_PROXIES").map(list),
            shadow: var("RATELIMIT_SHADOW").map(|v| is_on(&v)),
            secret: std::env::var_os("RATELIMIT_KEY_SECRET")
                .filter(|s| !s.is_empty())
                .map(|s| FleetKey::from_secret(s.as_encoded_bytes())),
            feature_off,
        }
    }
}

#[cfg(feature = "redis")]
fn number(name: &str) -> Option<u64> {
    var(name).and_then(|v| v.parse::<u64>().ok())
}

/// Whether an environment switch is on: `1`, `true`, `on` or `yes`, in any case.
fn is_on(value: &str) -> bool {
    ["1", "true", "on", "yes"]
        .iter()
        .any(|on| value.trim().eq_ignore_ascii_case(on))
}
