//! `quota!` makes one quota: a string of several rates is refused on the string.
use ratelimit_runtime::{quota, Quota};

const TWO: Quota = quota!("10/minute;100/hour");

fn main() {
    let _ = TWO;
}
