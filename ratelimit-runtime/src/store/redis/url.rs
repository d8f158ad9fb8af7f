//! Redis URLs as logs and errors show them: without their passwords.

/// `url` with its password, if any, replaced by `***`: the user info's
/// (`rediss://user:secret@host:6380` is shown as `rediss://user:***@host:6380`), also when the
/// password holds an unencoded `/`, `?` or `@` (the last `@` ends the user info), and a `pass=`
/// or `password=` query value (`redis+unix:///run/redis.sock?pass=secret`).
pub(crate) fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    // A `?` before the last `@` is the password's: the query starts after the user info.
    let after_user = url.rfind('@').map_or(scheme_end, |at| at + 1);
    let (head, query) = match url[after_user..].find('?') {
        Some(q) => (&url[..after_user + q], Some(&url[after_user + q + 1..])),
        None => (url, None),
    };
    let rest = &head[scheme_end..];
    let mut shown = match rest.rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let password = if user_info.contains(':') { ":***" } else { "" };
            format!("{}{user}{password}{}", &head[..scheme_end], &rest[at..])
        }
        None => head.to_string(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if matches!(key, "pass" | "password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted("rediss://app:s3cret@cache.example:6380/0"),
            "rediss://app:***@cache.example:6380/0"
        );
        assert_eq!(
            redacted("redis://:s3cret@127.0.0.1"),
            "redis://:***@127.0.0.1"
        );
        assert_eq!(redacted("redis://app@127.0.0.1"), "redis://app@127.0.0.1");
        assert_eq!(
            redacted("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        // An `@` in the password itself: the last one ends the user info.
        assert_eq!(redacted("redis://u:p@ss@h:1"), "redis://u:***@h:1");
        assert_eq!(
            redacted("redis://app:ab/cd+e=@h:1/0"),
            "redis://app:***@h:1/0"
        );
        assert_eq!(
            redacted("redis://app:a?b@h:1/0?protocol=resp3"),
            "redis://app:***@h:1/0?protocol=resp3"
        );
        assert_eq!(
            redacted("redis+unix:///run/redis.sock?db=1&pass=s3cret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
    }
}
