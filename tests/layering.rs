//! The crate's calls go one way: this test reads `src/`, builds the graph
//! of which top-level module (folder or file) names which other one in
//! `crate::...` paths outside `#[cfg(test)]` code, and fails on any cycle
//! between them, naming the files that close it. It also pins the layering
//! the architecture relies on: handlers (`commands`) never reach the IO
//! edges (`server`, `link`), and the replication cores never reach the
//! command table or the node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its `#[cfg(test)] mod tests` block (tests
/// may build whatever they need).
fn production_code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Top-level module names a piece of code refers to through `crate::`,
/// including grouped imports such as `use crate::{a::X, b};`.
fn referenced_modules(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            for part in group[..end].split(|c: char| c == ',' || c.is_whitespace() || c == '{') {
                let name = part.split("::").next().unwrap_or("");
                if modules.contains(name) {
                    found.insert(name.to_string());
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if modules.contains(&name) {
            found.insert(name);
        }
    }
    found
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("src")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .trim_end_matches(".rs")
                .to_string();
            (path.is_dir() || path.extension().is_some_and(|x| x == "rs")).then_some(name)
        })
        .filter(|name| name != "lib" && name != "main")
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let top = rel
            .split('/')
            .next()
            .expect("a component")
            .trim_end_matches(".rs")
            .to_string();
        if !modules.contains(&top) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable source");
        for target in referenced_modules(production_code(&text), &modules) {
            if target != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    graph
}

/// A path from `from` to `to` in the graph, if any (depth-first).
fn path(graph: &Graph, from: &str, to: &str, seen: &mut BTreeSet<String>) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(from.to_string()) {
        return None;
    }
    for next in graph.get(from).into_iter().flat_map(|m| m.keys()) {
        if let Some(mut rest) = path(graph, next, to, seen) {
            rest.insert(0, from.to_string());
            return Some(rest);
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = graph();
    assert!(
        graph.contains_key("commands") && graph.contains_key("link"),
        "the scan found the modules: {graph:?}"
    );
    let mut cycles = Vec::new();
    for (from, targets) in &graph {
        for to in targets.keys() {
            if let Some(back) = path(&graph, to, from, &mut BTreeSet::new()) {
                let files = &graph[from][to];
                cycles.push(format!(
                    "{from} -> {} (edge {from} -> {to} in {files:?})",
                    back.join(" -> ")
                ));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn layers_call_down() {
    let graph = graph();
    let uses = |from: &str, to: &str| graph.get(from).and_then(|m| m.get(to)).cloned();
    for (from, to) in [
        ("commands", "server"),
        ("commands", "link"),
        ("commands", "transport"),
        ("replication", "commands"),
        ("replication", "node"),
        ("replication", "server"),
        ("replication", "link"),
        ("node", "commands"),
        ("node", "server"),
        ("node", "link"),
        ("link", "commands"),
        ("link", "server"),
        ("config", "replication"),
        ("keyspace", "commands"),
        ("resp", "commands"),
    ] {
        assert_eq!(uses(from, to), None, "{from} must not import {to}");
    }
}

#[test]
fn the_scanner_sees_grouped_and_nested_paths() {
    let modules: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let code = "use crate::{a::X, b};\nfn f() { crate::c::g(); }\n#[cfg(test)]\nmod tests { use crate::zzz; }";
    let found = referenced_modules(production_code(code), &modules);
    assert_eq!(found, modules);
}
