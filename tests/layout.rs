//! The operator's modules depend on each other one way only: a cycle between top-level
//! modules of `src/` (a module and its folder count as one) fails here, as does a metrics
//! module that knows the controller. docs/architecture.md draws the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules it names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Unit tests may reach anywhere, and comments may name anything: only the
            // product code is judged.
            let product: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let uses = graph.entry(module.clone()).or_default();
            for (at, _) in product.match_indices("crate::") {
                let rest = &product[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let names = if name.is_empty() && rest.starts_with('{') {
                    let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
                    group
                        .split(',')
                        .map(|n| n.split("::").next().unwrap_or_default().trim().to_owned())
                        .collect()
                } else {
                    vec![name]
                };
                let is_module = |name: &str| {
                    !name.is_empty() && (src.join(format!("{name}.rs")).exists() || src.join(name).is_dir())
                };
                uses.extend(names.into_iter().filter(|name| *name != module && is_module(name)));
            }
        }
    }
    graph
}

/// A path that leaves `from` and comes back to it, if any.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn the_modules_of_the_operator_depend_on_each_other_one_way_only() {
    let graph = module_graph();
    assert!(
        graph.get("controller").is_some_and(|uses| uses.contains("crd")),
        "the scan sees the controller's imports: {graph:?}"
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, module) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn metrics_depend_on_nothing_of_the_controller() {
    let graph = module_graph();
    let uses = &graph["metrics"];
    for forbidden in ["controller", "poller", "wiring", "crd"] {
        assert!(!uses.contains(forbidden), "metrics uses {forbidden}: {uses:?}");
    }
}
