//! The store's own layering, read from its source: the import graph between its top-level
//! modules has no cycle, and key custody is a leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of every item named after `crate::`, including inside
/// `crate::{a, b::c}`.
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices("crate::") {
        let rest = &src[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident_at(&group[i..]).to_owned());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_owned());
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    // Names the crate root re-exports, by the module that defines them.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let (module, names) = rest.split_once("::").unwrap();
        for name in names.trim_matches(|c| "{};".contains(c)).split(',') {
            owner.insert(name.trim().to_owned(), module.to_owned());
        }
    }
    let mut files = vec![];
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let top = f.strip_prefix(&src).unwrap().components().next()?;
            let name = top.as_os_str().to_str()?.trim_end_matches(".rs").to_owned();
            (name != "lib").then_some(name)
        })
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let top = file
            .strip_prefix(&src)
            .unwrap()
            .components()
            .next()
            .unwrap();
        let from = top.as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if from == "lib" {
            continue;
        }
        let code = strip_comments(&std::fs::read_to_string(file).unwrap());
        let deps = graph.entry(from.to_owned()).or_default();
        for name in crate_refs(&code) {
            let target = owner.get(&name).cloned().unwrap_or(name);
            if target != from && modules.contains(&target) {
                deps.insert(target);
            }
        }
    }
    graph
}

#[test]
fn the_module_graph_is_acyclic() {
    let graph = graph();
    assert!(graph.contains_key("vault") && graph.contains_key("custody"));
    // Depth-first search; a module seen again while still on the stack closes a cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = stack.iter().position(|s| s == m) {
            panic!("import cycle in store: {:?} -> {m}", &stack[at..]);
        }
        stack.push(m.to_owned());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, stack, done);
        }
        stack.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut vec![], &mut done);
    }
}

#[test]
fn custody_is_a_leaf() {
    let graph = graph();
    let deps = &graph["custody"];
    assert_eq!(
        deps.iter().map(String::as_str).collect::<Vec<_>>(),
        ["error"],
        "custody may depend on the error type only"
    );
    for m in ["vault", "pii", "subjects", "tx"] {
        assert!(
            graph[m].contains("custody"),
            "{m} reaches keys through custody"
        );
    }
}
