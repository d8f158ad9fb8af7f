//! Redis behind Sentinel: the master that a set of sentinels names, asked again when it fails.
//!
//! The sentinels are asked through the `redis` crate's [`SentinelClient`], which checks that
//! the node it names answers `ROLE` as a master. The store's connections (the lanes, the
//! store's thread) hold an [`Endpoint`]: one address, or the [`Master`] of the sentinels. A
//! failed call makes the master a suspect: a task of the store's thread asks the sentinels
//! again (every 100 ms until they answer, then at most four times a second), and when they name
//! another node, its generation moves on and every connection is remade to it. Meanwhile each
//! decision is answered by the failure policy within the store's timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsMode};
use tokio::sync::Notify;

use super::options::RedisOptions;
use super::wire::{redis_error, with_timeout};
use crate::store::StoreError;

/// Where a store's connections go.
#[derive(Clone)]
pub(super) enum Endpoint {
    /// One Redis, at one address (the connection manager reconnects to it by itself).
    Direct(Arc<redis::Client>),
    /// The master the sentinels name.
    Sentinel(Arc<Master>),
}

impl Endpoint {
    /// The client to connect with now, and its generation: a connection made for an older
    /// generation goes to a node that is no longer the master.
    pub(super) fn current(&self) -> Result<(redis::Client, u64), StoreError> {
        match self {
            Endpoint::Direct(client) => Ok((redis::Client::clone(client), 0)),
            Endpoint::Sentinel(master) => master
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .ok_or_else(|| {
                    StoreError::new(format!(
                        "the sentinels have not named a master `{}` yet",
                        master.name
                    ))
                }),
        }
    }

    /// The generation of the node connections should go to now.
    pub(super) fn generation(&self) -> u64 {
        match self {
            Endpoint::Direct(_) => 0,
            Endpoint::Sentinel(master) => master.generation.load(Ordering::Acquire),
        }
    }

    /// A call failed: behind Sentinel, the master may have moved (or be a replica now).
    pub(super) fn failed(&self) {
        if let Endpoint::Sentinel(master) = self {
            master.suspect.notify_one();
        }
    }

    /// A call failed with `error`: unless it is the decision's own fault (a key holding
    /// another type), which says nothing of where the master is.
    pub(super) fn failed_with(&self, error: &StoreError) {
        if !error.is_unsupported() {
            self.failed();
        }
    }
}

/// The master of a set of sentinels, as they last named it.
pub(super) struct Master {
    name: String,
    sentinels: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<(redis::Client, u64)>>,
    generation: AtomicU64,
    suspect: Notify,
}

/// Resolution is retried this often while the sentinels name no master that answers.
const RETRY: Duration = Duration::from_millis(100);
/// And asked for at most this often.
const AT_MOST_EVERY: Duration = Duration::from_millis(250);
/// The longest one resolution may take.
const RESOLVE_WITHIN: Duration = Duration::from_secs(5);

impl Master {
    /// The sentinels of `master` (a name, or a URL whose host is the name and whose user,
    /// password, database and scheme are the master's), reached at `sentinels`. Without a URL,
    /// the master takes the user, password and TLS of the sentinels'.
    pub(super) fn new(
        master: &str,
        sentinels: &[String],
        options: &RedisOptions,
    ) -> Result<Master, StoreError> {
        let spec = SentinelSpec::parse(master, sentinels).map_err(StoreError::new)?;
        let certificates = || options.tls.certificates();
        let mut builder =
            SentinelClientBuilder::new(spec.sentinels, &spec.name, SentinelServerType::Master)
                .map_err(redis_error)?;
        if let Some(user) = &spec.sentinel_auth.0 {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &spec.sentinel_auth.1 {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if spec.sentinel_tls {
            builder = builder.set_client_to_sentinel_certificates(certificates());
        }
        if let Some(user) = &spec.master_auth.0 {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &spec.master_auth.1 {
            builder = builder.set_client_to_redis_password(password);
        }
        if spec.master_db != 0 {
            builder = builder.set_client_to_redis_db(spec.master_db);
        }
        if let Some(mode) = spec.master_tls {
            builder = builder
                .set_client_to_redis_tls_mode(mode)
                .set_client_to_redis_certificates(certificates());
        }
        Ok(Master {
            name: spec.name,
            sentinels: tokio::sync::Mutex::new(builder.build().map_err(redis_error)?),
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
            suspect: Notify::new(),
        })
    }

    /// Asks the sentinels for the master; when they name another node than before, it becomes
    /// the current one, in a new generation.
    pub(super) async fn resolve(&self, options: &RedisOptions) -> Result<(), StoreError> {
        // In the background, never in a request's way: long enough for a sentinel that drops
        // packets to time out (a second, the `redis` crate's default) and the next to answer.
        let wait = options.timeout.max(RESOLVE_WITHIN);
        let client = with_timeout(wait, async {
            let mut sentinels = self.sentinels.lock().await;
            sentinels.async_get_client().await.map_err(redis_error)
        })
        .await
        .map_err(|e| {
            StoreError::new(format!(
                "the sentinels name no master `{}` that answers: {e}",
                self.name
            ))
        })?;
        let address = client.get_connection_info().addr().to_string();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let known = current
            .as_ref()
            .map(|(c, _)| c.get_connection_info().addr().to_string());
        if known.as_deref() == Some(address.as_str()) {
            return Ok(());
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        match known {
            None => tracing::info!(
                "rate limiter: the sentinels name {address} as the Redis master `{}`",
                self.name
            ),
            Some(before) => tracing::warn!(
                "rate limiter: the Redis master `{}` moved from {before} to {address} (a \
                 failover); limits go on on the new master",
                self.name
            ),
        }
        *current = Some((client, generation));
        Ok(())
    }

    /// Asks the sentinels again each time a call fails, until the store's thread ends.
    pub(super) async fn watch(self: Arc<Self>, options: Arc<RedisOptions>) {
        loop {
            self.suspect.notified().await;
            while let Err(error) = self.resolve(&options).await {
                tracing::debug!("rate limiter: {error}");
                tokio::time::sleep(RETRY).await;
            }
            tokio::time::sleep(AT_MOST_EVERY).await;
        }
    }
}

/// What `REDIS_SENTINEL_MASTER` and `REDIS_SENTINEL_URLS` say, checked. (No `Debug`: it holds
/// passwords.)
pub(crate) struct SentinelSpec {
    name: String,
    sentinels: Vec<ConnectionAddr>,
    sentinel_auth: (Option<String>, Option<String>),
    sentinel_tls: bool,
    master_auth: (Option<String>, Option<String>),
    master_db: i64,
    /// `None`: plain text.
    master_tls: Option<TlsMode>,
}

impl SentinelSpec {
    /// Checks a master and its sentinels; the error says what is wrong, without passwords.
    pub(crate) fn parse(master: &str, sentinels: &[String]) -> Result<SentinelSpec, String> {
        if sentinels.is_empty() {
            return Err("Redis Sentinel needs the URL of at least one sentinel".into());
        }
        let mut addresses = Vec::new();
        let mut auth = None;
        for url in sentinels {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("invalid sentinel URL {}: {e}", super::url::redacted(url)))?;
            let this = (
                info.redis_settings().username().map(String::from),
                info.redis_settings().password().map(String::from),
            );
            match &auth {
                None => auth = Some(this),
                Some(first) if *first != this => {
                    return Err("every sentinel URL must carry the same user and password".into())
                }
                Some(_) => {}
            }
            addresses.push(info.addr().clone());
        }
        let tls = |addr: &ConnectionAddr| match addr {
            ConnectionAddr::TcpTls { insecure, .. } => Some(if *insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            }),
            _ => None,
        };
        let sentinel_tls = tls(&addresses[0]);
        if addresses
            .iter()
            .any(|a| tls(a).is_some() != sentinel_tls.is_some())
        {
            return Err("the sentinel URLs mix redis:// and rediss://".into());
        }
        let sentinel_auth = auth.unwrap_or_default();
        let master = master.trim();
        let (name, master_auth, master_db, master_tls) = if master.contains("://") {
            let info = master
                .into_connection_info()
                .map_err(|e| format!("invalid master URL {}: {e}", super::url::redacted(master)))?;
            let name = match info.addr() {
                ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
                _ => {
                    return Err(
                        "the master's URL names it by its host: redis://:password@<name>".into(),
                    )
                }
            };
            let settings = info.redis_settings();
            (
                name,
                (
                    settings.username().map(String::from),
                    settings.password().map(String::from),
                ),
                settings.db(),
                tls(info.addr()),
            )
        } else {
            (master.to_string(), sentinel_auth.clone(), 0, sentinel_tls)
        };
        if name.is_empty() {
            return Err("Redis Sentinel needs the master's name (REDIS_SENTINEL_MASTER)".into());
        }
        Ok(SentinelSpec {
            name,
            sentinels: addresses,
            sentinel_auth,
            sentinel_tls: sentinel_tls.is_some(),
            master_auth,
            master_db,
            master_tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Why `parse` refuses (it must).
    fn refused(master: &str, sentinels: &[&str]) -> String {
        match SentinelSpec::parse(master, &urls(sentinels)) {
            Ok(_) => panic!("accepted: {master} {sentinels:?}"),
            Err(why) => why,
        }
    }

    #[test]
    fn a_plain_name_takes_the_sentinels_credentials_and_tls() {
        let spec = SentinelSpec::parse(
            "mymaster",
            &urls(&["rediss://:pw@h1:26379", "rediss://:pw@h2:26379"]),
        )
        .unwrap();
        assert_eq!(spec.name, "mymaster");
        assert_eq!(spec.sentinels.len(), 2);
        assert_eq!(spec.master_auth, (None, Some("pw".into())));
        assert!(spec.sentinel_tls);
        assert!(matches!(spec.master_tls, Some(TlsMode::Secure)));
    }

    #[test]
    fn a_master_url_has_credentials_of_its_own() {
        let spec = SentinelSpec::parse(
            "redis://app:master-pw@mymaster/2",
            &urls(&["redis://:sentinel-pw@h1:26379"]),
        )
        .unwrap();
        assert_eq!(spec.name, "mymaster");
        assert_eq!(spec.sentinel_auth, (None, Some("sentinel-pw".into())));
        assert_eq!(
            spec.master_auth,
            (Some("app".into()), Some("master-pw".into()))
        );
        assert_eq!(spec.master_db, 2);
        assert!(spec.master_tls.is_none());
    }

    #[test]
    fn mistakes_are_named_without_passwords() {
        let no_sentinels = refused("m", &[]);
        assert!(
            no_sentinels.contains("at least one sentinel"),
            "{no_sentinels}"
        );
        let unnamed = refused(" ", &["redis://h1:26379"]);
        assert!(unnamed.contains("REDIS_SENTINEL_MASTER"), "{unnamed}");
        let mixed = refused("m", &["redis://h1:26379", "rediss://h2:26379"]);
        assert!(mixed.contains("mix"), "{mixed}");
        let differing = refused("m", &["redis://:a@h1:26379", "redis://:b@h2:26379"]);
        assert!(differing.contains("same user and password"), "{differing}");
        let garbage = refused("m", &["http://:secret@h1"]);
        assert!(
            garbage.contains("invalid sentinel URL") && !garbage.contains("secret"),
            "{garbage}"
        );
    }
}
