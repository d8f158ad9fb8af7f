//! `quota!` checks its rate at compile time, with the attribute's messages.
use ratelimit_runtime::{quota, Quota};

const TYPO: Quota = quota!("10/minuet");

fn main() {
    let _ = TYPO;
}
