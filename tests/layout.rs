//! The import map of `ratelimit-runtime/src`, read from its `use` lines and paths as a reader
//! would: data flows one way. docs/guide.md's layout lists the crate's modules from the top (what
//! users call) down; every module imports only from modules listed below it, and the files of
//! one directory module import one another without a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ratelimit-runtime/src");
const GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/guide.md");

/// Imports allowed to go up the list, with why. None today.
const UPWARD: &[(&str, &str)] = &[];

/// A module path (`["store", "redis", "wire"]`) for each `.rs` file under `src`.
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mut module = prefix.to_vec();
        if path.is_dir() {
            module.push(name);
            modules(&path, &module, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            out.insert(module, path);
        }
    }
}

/// The source without comments and without its `#[cfg(test)] mod tests`.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(end) => &text[..end],
        None => &text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::…` and `super::…` path of `source`, resolved against `module` (for a `use`
/// group, each member), as segments.
fn paths(module: &[String], source: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = source.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let starts = (i == 0 || !is_ident(bytes[i - 1]))
            && (rest.starts_with(b"crate::") || rest.starts_with(b"super::"));
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && (is_ident(bytes[end]) || bytes[end] == b':') {
            end += 1;
        }
        let head: Vec<String> = source[i..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let mut base: Vec<String> = Vec::new();
        let mut segments = head.into_iter().peekable();
        if segments.peek().map(String::as_str) == Some("crate") {
            segments.next();
        } else {
            base = module.to_vec();
            while segments.peek().map(String::as_str) == Some("super") {
                segments.next();
                base.pop();
            }
        }
        base.extend(segments);
        // `crate::a::{b, c::d}`: each member.
        if source[end..].starts_with('{') {
            let close = source[end..].find('}').map_or(source.len(), |c| end + c);
            for member in source[end + 1..close].split(',') {
                let member = member.split(" as ").next().unwrap().trim();
                let first = member
                    .split("::")
                    .next()
                    .unwrap()
                    .trim_matches(['{', ' ', '\n']);
                if !first.is_empty() && first != "self" {
                    let mut path = base.clone();
                    path.push(first.to_string());
                    found.push(path);
                }
            }
        }
        found.push(base);
        i = end;
    }
    found
}

/// The longest known module that `path` names (or an item of).
fn resolve<'m>(
    modules: &'m BTreeMap<Vec<String>, PathBuf>,
    path: &[String],
) -> Option<&'m [String]> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k.as_slice()))
}

/// Module imports at file level: (from, to), neither the other's ancestor.
fn imports(modules: &BTreeMap<Vec<String>, PathBuf>) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mut edges = BTreeSet::new();
    for (module, file) in modules {
        for path in paths(module, &code(file)) {
            let Some(target) = resolve(modules, &path) else {
                continue;
            };
            // A module's own parent re-exports its siblings; a parent uses its children.
            if module.starts_with(target) || target.starts_with(module) {
                continue;
            }
            edges.insert((module.clone(), target.to_vec()));
        }
    }
    edges
}

/// The runtime's modules as the guide's layout lists them, top first.
fn layers() -> Vec<String> {
    let guide = std::fs::read_to_string(GUIDE).unwrap();
    let start = guide
        .find("ratelimit-runtime/       the engine")
        .expect("the guide's layout lists the runtime");
    guide[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .filter_map(|line| line.trim_start().strip_prefix("src/"))
        .map(|entry| {
            let name = entry.split_whitespace().next().unwrap();
            name.trim_end_matches('/')
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect()
}

#[test]
fn every_runtime_module_imports_only_from_the_modules_below_it() {
    let mut found = BTreeMap::new();
    modules(Path::new(SRC), &[], &mut found);
    let layers = layers();
    let tops: BTreeSet<String> = found.keys().filter_map(|m| m.first().cloned()).collect();
    let listed: BTreeSet<String> = layers.iter().cloned().collect();
    assert_eq!(
        tops, listed,
        "docs/guide.md's layout lists every module of ratelimit-runtime/src, and only those"
    );
    let rank = |module: &str| layers.iter().position(|l| l == module).unwrap();
    let mut upward = Vec::new();
    for (from, to) in imports(&found) {
        let (a, b) = (&from[0], &to[0]);
        if a != b && rank(b) <= rank(a) && !UPWARD.contains(&(a.as_str(), b.as_str())) {
            upward.push(format!("{} -> {}", from.join("::"), to.join("::")));
        }
    }
    assert!(upward.is_empty(), "imports up the layout: {upward:#?}");
}

#[test]
fn the_files_of_a_module_import_one_another_without_a_circle() {
    let mut found = BTreeMap::new();
    modules(Path::new(SRC), &[], &mut found);
    let edges = imports(&found);
    // Depth-first search for a back edge, over files.
    fn visit(
        node: &[String],
        edges: &BTreeSet<(Vec<String>, Vec<String>)>,
        on_path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = on_path.iter().position(|n| n == node) {
            return Some(on_path[at..].iter().map(|m| m.join("::")).collect());
        }
        if done.contains(node) {
            return None;
        }
        on_path.push(node.to_vec());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(circle) = visit(to, edges, on_path, done) {
                return Some(circle);
            }
        }
        on_path.pop();
        done.insert(node.to_vec());
        None
    }
    let mut done = BTreeSet::new();
    for module in found.keys() {
        let circle = visit(module, &edges, &mut Vec::new(), &mut done);
        assert!(circle.is_none(), "an import circle: {circle:?}");
    }
}

/// The reader itself: a use group, `super`, and an inline path are all imports.
#[test]
fn the_reader_sees_groups_super_and_inline_paths() {
    let module = vec!["store".to_string(), "redis".to_string()];
    let found = paths(
        &module,
        "use super::{exact::x, Check};\nuse crate::clock::{Clock, UnixNanos};\nlet t = crate::quota::Quota::new();",
    );
    let has = |p: &[&str]| {
        found
            .iter()
            .any(|f| f.iter().map(String::as_str).eq(p.iter().copied()))
    };
    assert!(has(&["store", "exact"]) && has(&["store", "Check"]));
    assert!(has(&["clock", "Clock"]) && has(&["quota", "Quota", "new"]));
}
