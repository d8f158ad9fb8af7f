//! The overrides file (feature `overrides-file`): `rule = "rate"` pairs in TOML, or JSON, and
//! per-client entries in `[keys."<rule>"]` tables (`"vip" = "30/10 seconds"`, `"banned" =
//! "blocked"`, `"partner" = "unlimited"`), read when the limiter is built and read again
//! whenever a new version of it appears.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use serde::Deserialize;

use super::{
    key_count, key_setting, parse_rate, validate, validate_key, KeyRule, KeyTable, OverrideError,
    Overrides, PendingKeys, Table, MAX_KEY_OVERRIDES,
};
use crate::key::ClientIp;

/// A limiter's overrides file.
pub(crate) struct File {
    pub(crate) path: PathBuf,
    /// The version of the file last read, so that only its own changes reload it.
    stamp: Mutex<Option<FileStamp>>,
    /// Reads of the file, by result.
    pub(crate) reloads: AtomicU64,
    pub(crate) failed_reloads: AtomicU64,
    watcher: Mutex<Option<Debouncer<RecommendedWatcher>>>,
}

impl File {
    pub(crate) fn new(path: PathBuf) -> File {
        File {
            path,
            stamp: Mutex::default(),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
            watcher: Mutex::default(),
        }
    }
}

/// What tells one version of the overrides file from another: where it resolves to (a
/// ConfigMap swaps a symlink), when it was written and its size (and its inode on Unix). Other
/// files of its directory change none of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    target: PathBuf,
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let target = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&target).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            target,
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

/// How long the overrides file must be quiet before it is read again.
const RELOAD_DELAY: Duration = Duration::from_millis(200);

impl Overrides {
    /// Overrides with a file, not read yet.
    pub(crate) fn with_file(path: PathBuf, on_redis: bool) -> Overrides {
        Overrides {
            file: Some(File::new(path)),
            ..Overrides::new(on_redis)
        }
    }

    /// Reads the file and puts its overrides in force, all or none.
    pub(crate) fn load_file(&self) -> Result<usize, OverrideError> {
        let Some(source) = &self.file else {
            return Err(OverrideError::File {
                path: PathBuf::new(),
                message: "this limiter was built without an overrides file".into(),
            });
        };
        let path = &source.path;
        let stamp = FileStamp::of(path);
        let read = read_file(path, self.on_redis, &self.client_ip);
        // A failed read keeps no stamp, so that the next event in the directory tries again.
        let stamp = stamp.filter(|_| read.is_ok());
        *source.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let (file, pending, (keys, pending_keys)) = match read {
            Ok(read) => {
                source.reloads.fetch_add(1, Ordering::Relaxed);
                read
            }
            Err(e) => {
                source.failed_reloads.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let count = file.len()
            + pending.len()
            + key_count(&keys)
            + pending_keys.values().map(Vec::len).sum::<usize>();
        self.update(|tables| {
            tables.file = file;
            tables.pending = pending;
            tables.file_keys = keys;
            tables.pending_keys = pending_keys;
        });
        Ok(count)
    }

    /// Whether the file is another version than the one last read.
    fn file_changed(&self) -> bool {
        let Some(source) = &self.file else {
            return false;
        };
        let now = FileStamp::of(&source.path);
        *source.stamp.lock().unwrap_or_else(PoisonError::into_inner) != now
    }

    /// Loads the overrides file and watches it, reloading it when it changes.
    pub(crate) fn watch(self: &Arc<Self>) {
        let overrides = self;
        let Some(path) = overrides.file_path().map(Path::to_path_buf) else {
            return;
        };
        match overrides.load_file() {
            Ok(count) => tracing::info!(
                file = %path.display(),
                count,
                "rate limiter: overrides loaded"
            ),
            Err(e) => tracing::error!("{e}; no overrides from it until it is fixed"),
        }
        // Weak: the watcher lives in the overrides, which must not keep themselves alive.
        let reload = Arc::downgrade(overrides);
        // Debounced: a file written in several steps is read once, after the last one. Any
        // change in the directory is looked at (a Kubernetes ConfigMap swaps a symlink beside
        // the file, never the file itself), but only a new version of the file reloads it.
        let watcher = new_debouncer(RELOAD_DELAY, move |events: DebounceEventResult| {
            if events.is_err() {
                return;
            }
            let Some(overrides) = reload.upgrade() else {
                return;
            };
            // Only the file's own changes: a log file beside it, written on each reload, would
            // otherwise reload it again and again.
            if !overrides.file_changed() {
                return;
            }
            match overrides.load_file() {
                Ok(count) => tracing::info!(count, "rate limiter: overrides reloaded"),
                Err(e) => tracing::error!("{e}; the overrides in force stay"),
            }
        });
        // Editors replace files rather than write them: watch the directory.
        let directory = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let watching = watcher.and_then(|mut w| {
            w.watcher().watch(directory, RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match watching {
            Ok(watcher) => {
                let Some(source) = &overrides.file else {
                    return;
                };
                *source
                    .watcher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(watcher);
            }
            Err(e) => tracing::error!(
                file = %path.display(),
                "rate limiter: cannot watch the overrides file ({e}); use `reload_overrides()`"
            ),
        }
    }
}

/// One top-level entry of the file: a rule's rate, or the `keys` table of per-client entries.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Rate(String),
    Keys(BTreeMap<String, BTreeMap<String, String>>),
    /// Anything else, refused with the form it should take.
    Other(serde::de::IgnoredAny),
}

/// The name of the table of per-client entries.
const KEYS: &str = "keys";

/// `rule = "rate"` pairs and `[keys."<rule>"]` tables from a TOML file, or a JSON object when
/// the file ends in `.json`; every entry must parse and suit the rules of its name, or nothing
/// is taken. Returns the entries of known rules, apart those of rules not known yet (checked
/// when they appear), and the per-client entries.
fn read_file(
    path: &Path,
    on_redis: bool,
    client_ip: &ClientIp,
) -> Result<(Table, Table, (KeyTable, PendingKeys)), OverrideError> {
    let fail = |message: String| OverrideError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let entries: BTreeMap<String, Entry> = if is_json {
        serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")))?
    } else {
        toml::from_str(&text).map_err(|e| fail(format!("invalid TOML: {e}")))?
    };
    let (mut table, mut pending) = (Table::new(), Table::new());
    let mut keys = (KeyTable::new(), PendingKeys::new());
    for (rule, entry) in entries {
        let rate = match entry {
            Entry::Rate(rate) => rate,
            Entry::Keys(per_rule) if rule == KEYS => {
                keys = read_keys(per_rule, on_redis, client_ip).map_err(|e| fail(e.to_string()))?;
                continue;
            }
            _ if rule == KEYS => {
                return Err(fail(
                    "`keys` holds a table per rule of client keys and their settings, e.g. `[keys.\"server::data\"]` then `\"vip\" = \"30/10 seconds\"`".into(),
                ))
            }
            Entry::Keys(_) | Entry::Other(_) => {
                return Err(fail(format!(
                    "`{rule}` takes a rate string such as \"20/minute\"; per-client entries go in `[keys.\"{rule}\"]`"
                )))
            }
        };
        let quotas = match validate(&rule, &rate, on_redis) {
            Ok(quotas) => quotas,
            // Default limits join the catalogue when the app is built, which may come after the
            // limiter read the file: such a name applies once its rule exists.
            Err(OverrideError::UnknownRule { .. }) => {
                tracing::warn!(
                    rule,
                    file = %path.display(),
                    "rate limiter: the overrides file names a rule not known yet; it applies once a rule of that name exists"
                );
                let quotas = parse_rate(&rule, &rate).map_err(|e| fail(e.to_string()))?;
                pending.insert(rule, quotas);
                continue;
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        table.insert(rule, quotas);
    }
    Ok((table, pending, keys))
}

/// The `[keys."<rule>"]` tables, at most [`MAX_KEY_OVERRIDES`] entries in all: each entry
/// checked against its rule, or, for a rule not known yet, kept as written (its rate parsed)
/// to be checked when the rule first decides a request.
fn read_keys(
    per_rule: BTreeMap<String, BTreeMap<String, String>>,
    on_redis: bool,
    client_ip: &ClientIp,
) -> Result<(KeyTable, PendingKeys), OverrideError> {
    let count: usize = per_rule.values().map(BTreeMap::len).sum();
    if count > MAX_KEY_OVERRIDES {
        return Err(OverrideError::TooManyKeys {
            max: MAX_KEY_OVERRIDES,
        });
    }
    let (mut keys, mut pending) = (KeyTable::new(), PendingKeys::new());
    for (rule, entries) in per_rule {
        let mut of_rule: std::collections::HashMap<String, KeyRule> = Default::default();
        for (key, setting) in entries {
            let (key, entry) = match validate_key(&rule, &key, &setting, on_redis, client_ip) {
                Ok(valid) => valid,
                // A default limit's rule may join the catalogue after the file was read: its
                // entries wait for it, their rates parsed.
                Err(OverrideError::UnknownRule { .. }) => {
                    tracing::warn!(
                        rule,
                        "rate limiter: the overrides file has a per-client entry for a rule not known yet; it is checked and applies once a rule of that name exists"
                    );
                    key_setting(&setting, |rate| parse_rate(&rule, rate))?;
                    pending
                        .entry(rule.clone())
                        .or_default()
                        .push((key, setting));
                    continue;
                }
                Err(e) => return Err(e),
            };
            of_rule.insert(key, entry);
        }
        if !of_rule.is_empty() {
            keys.insert(rule, of_rule);
        }
    }
    Ok((keys, pending))
}
