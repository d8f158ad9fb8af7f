//! The Redis side of refunds (`refund.lua`): units charged earlier given back, in one call.

use std::sync::LazyLock;

use redis::Script;

use super::wire::{exact_check, key_of, write_limit};
use super::{RedisStore, TimeSource};
use crate::clock::UnixNanos;
use crate::store::{Check, StoreError};

static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        include_str!("refund.lua")
    ))
});

impl RedisStore {
    /// Gives back each check's `cost`, charged at `charged_at` (see
    /// [`Store::refund`](crate::store::Store::refund)), in one round trip.
    pub(crate) async fn refund_checks(
        &self,
        checks: &[Check],
        charged_at: UnixNanos,
        now: UnixNanos,
    ) -> Result<(), StoreError> {
        checks.iter().try_for_each(exact_check)?;
        if checks.is_empty() {
            return Ok(());
        }
        if self.is_cluster() && checks.windows(2).any(|w| w[0].group != w[1].group) {
            return Err(StoreError::unsupported(
                "the limits of one refund must share a budget name on a Redis Cluster",
            ));
        }
        let server_time = self.options().time == TimeSource::Server;
        let mut command = redis::cmd("EVALSHA");
        command.arg(REFUND.get_hash()).arg(checks.len());
        for check in checks {
            command.arg(key_of(&self.options().prefix, check));
        }
        command
            .arg(if server_time { "server" } else { "client" })
            .arg(charged_at / 1_000)
            .arg(now / 1_000);
        for check in checks {
            write_limit(&mut command, check);
        }
        self.eval(&REFUND, command).await.map(drop)
    }
}
