//! The floor plan holds: no two source files of a crate import each other,
//! directly or around a circle. A circle means neither file can be read,
//! tested or moved without the other; the helper's lifecycle had one with
//! its adapters, the core's error with its keys, the channel tag formats
//! with each other.
//!
//! The graph: one node per source file; an edge A → B when A names a path
//! of B's module (`use crate::x::y`, `crate::x::y::f(…)`, `super::…`)
//! outside a `pub use` (a re-export is the parent presenting its child,
//! not a dependency on it) and outside `#[cfg(test)]` modules (tests may
//! reach anywhere). Files are resolved the way rustc resolves modules:
//! `a/b.rs` or `a/b/mod.rs` is `crate::a::b`. A path is resolved to the
//! longest module prefix that has a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `crate::a::b` → file, for every file under `src`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            match parts.last().map(String::as_str) {
                Some("mod") => {
                    parts.pop();
                }
                Some("lib") | Some("main") if parts.len() == 1 => parts.clear(),
                _ => {}
            }
            out.insert(parts, p);
        }
    }
    out
}

/// The text of `file` without its `#[cfg(test)]` modules and its
/// comments.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read");
    let mut out = String::new();
    let mut skip_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut pending_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = line.matches('{').count();
        let closes = line.matches('}').count();
        if pending_test && (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ")) {
            pending_test = false;
            if trimmed.ends_with(';') {
                continue;
            }
            skip_depth = Some(depth);
        } else if !trimmed.is_empty() {
            pending_test = false;
        }
        depth = depth + opens - closes.min(depth + opens);
        if let Some(d) = skip_depth {
            if depth <= d && closes > 0 {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Items a module re-exports from its descendants: item name → the
/// module it lives in (`pub use entry::{Entry, Session};` in `lifecycle`
/// maps `Entry` to `lifecycle::entry`).
fn re_exports(me: &[String], code: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let text: String = code.split('\n').collect::<Vec<_>>().join(" ");
    for stmt in text.split(';') {
        let t = stmt.trim();
        let Some(rest) = t
            .strip_prefix("pub use ")
            .or_else(|| t.strip_prefix("pub(crate) use "))
        else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with("crate::") || rest.starts_with("super::") || rest.starts_with("std::") {
            continue;
        }
        let (base, items): (&str, Vec<&str>) = match rest.find('{') {
            Some(at) => (
                rest[..at].trim_end_matches("::"),
                rest[at + 1..]
                    .trim_end_matches('}')
                    .split(',')
                    .map(str::trim)
                    .collect(),
            ),
            None => match rest.rsplit_once("::") {
                Some((b, i)) => (b, vec![i]),
                None => continue,
            },
        };
        let mut target = me.to_vec();
        target.extend(
            base.split("::")
                .filter(|s| !s.is_empty() && *s != "self")
                .map(str::to_owned),
        );
        for item in items {
            let name = item.split(" as ").last().unwrap_or(item).trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), target.clone());
            }
        }
    }
    out
}

/// Module paths named in `code` of the module `me`, resolved to files.
fn edges(
    me: &[String],
    code: &str,
    mods: &BTreeMap<Vec<String>, PathBuf>,
) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let t = line.trim_start();
        if t.starts_with("pub use")
            || t.starts_with("pub(crate) use")
            || t.starts_with("mod ")
            || t.starts_with("pub mod ")
        {
            continue;
        }
        for start in ["crate::", "super::"] {
            let mut rest = line;
            while let Some(at) = rest.find(start) {
                let after = &rest[at..];
                let path: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                rest = &rest[at + start.len()..];
                let mut segs: Vec<String> = Vec::new();
                let mut iter = path.split("::").filter(|s| !s.is_empty());
                match iter.next() {
                    Some("crate") => {}
                    Some("super") => {
                        // `super` of a file module is its parent module.
                        segs = me.to_vec();
                        segs.pop();
                        let mut it2 = path
                            .split("::")
                            .filter(|s| !s.is_empty())
                            .skip(1)
                            .peekable();
                        while it2.peek() == Some(&"super") {
                            segs.pop();
                            it2.next();
                        }
                        segs.extend(it2.map(str::to_owned));
                        push_resolved(&segs, me, mods, &mut out);
                        continue;
                    }
                    _ => continue,
                }
                segs.extend(iter.map(str::to_owned));
                push_resolved(&segs, me, mods, &mut out);
            }
        }
    }
    out
}

fn push_resolved(
    segs: &[String],
    me: &[String],
    mods: &BTreeMap<Vec<String>, PathBuf>,
    out: &mut BTreeSet<Vec<String>>,
) {
    for n in (0..=segs.len()).rev() {
        let mut prefix = segs[..n].to_vec();
        if mods.contains_key(&prefix) {
            // An item the module only re-exports lives in a descendant.
            if let Some(item) = segs.get(n) {
                if let Some(target) = mods
                    .get(&prefix)
                    .map(|f| re_exports(&prefix, &code(f)))
                    .and_then(|r| r.get(item).cloned())
                {
                    if let Some(m) = (0..=target.len())
                        .rev()
                        .map(|k| target[..k].to_vec())
                        .find(|t| mods.contains_key(t))
                    {
                        prefix = m;
                    }
                }
            }
            // A module's own descendants and ancestors are its own
            // structure (a parent's code may use its child's items).
            let own = prefix.starts_with(me) || me.starts_with(&prefix);
            if !own {
                out.insert(prefix);
            }
            return;
        }
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct T<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        on: BTreeSet<Vec<String>>,
        stack: Vec<Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit(t: &mut T<'_>, v: &Vec<String>) {
        t.index.insert(v.clone(), t.next);
        t.low.insert(v.clone(), t.next);
        t.next += 1;
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let succ: Vec<Vec<String>> =
            t.g.get(v)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low[v];
                t.low.insert(v.clone(), lv.min(lw));
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low[v];
                t.low.insert(v.clone(), lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == *v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn circles_of(krate: &str) -> Vec<String> {
    let src = codext_tests::repo().join(krate).join("src");
    let mods = modules(&src);
    let mut graph = BTreeMap::new();
    for (m, file) in &mods {
        graph.insert(m.clone(), edges(m, &code(file), &mods));
    }
    circles(&graph)
        .into_iter()
        .map(|c| {
            c.iter()
                .map(|m| format!("crate::{}", m.join("::")))
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect()
}

#[test]
fn given_each_crate_then_no_two_source_files_import_each_other_around_a_circle() {
    let mut found = Vec::new();
    for krate in [
        "codext-wire",
        "codext-core",
        "codext-do",
        "codext-channel",
        "codext",
        "pam_codext",
        "codext-record",
        "codext-helper",
    ] {
        for c in circles_of(krate) {
            found.push(format!("{krate}: {c}"));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn given_a_small_tree_with_a_circle_then_it_is_found_and_a_re_export_is_not_one() {
    let dir = std::env::temp_dir().join(format!("codext-modgraph-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub use a::x;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "pub mod x;\npub use x::X;\nuse crate::b::B;\n",
    )
    .unwrap();
    std::fs::write(src.join("a/x.rs"), "pub struct X;\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\nfn f() { let _ = crate::a::x::X; }\n#[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n",
    )
    .unwrap();
    let mods = modules(&src);
    let mut graph = BTreeMap::new();
    for (m, file) in &mods {
        graph.insert(m.clone(), edges(m, &code(file), &mods));
    }
    let c = circles(&graph);
    // a -> b (use), b -> a::x (path): no circle (a::x is a's child, not a).
    assert!(c.is_empty(), "{c:?}");
    std::fs::write(src.join("a/x.rs"), "pub struct X;\nuse crate::b::B;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B;\nuse crate::a::x::X;\n").unwrap();
    let mods = modules(&src);
    let mut graph = BTreeMap::new();
    for (m, file) in &mods {
        graph.insert(m.clone(), edges(m, &code(file), &mods));
    }
    assert_eq!(circles(&graph).len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
