//! The modules of `sqreen-core` form layers: a module uses only modules
//! of lower layers (the DAG drawn in the crate docs, `src/lib.rs`).
//!
//! This test reads `src/**/*.rs`, collects each top-level module's
//! references to the crate (`crate::module::…`, `crate::{a, b}`, the
//! `super::` chain that reaches the root, and the names `lib.rs`
//! re-exports, such as `crate::Sqreen`), leaving out comments, doc
//! comments and `#[cfg(test)]` modules, and fails on any reference to a
//! module of the same or a higher layer, to a module missing from
//! [`LAYERS`], or to a glob. It also checks that the crate docs draw the
//! same table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom to top. Written once, here; the crate docs draw it.
const LAYERS: &[&[&str]] = &[
    &["request", "protocol", "scrub", "stats", "actions", "otel"],
    &["client_ip", "metrics", "model"],
    &["config"],
    &["transport"],
    &["record"],
    &["sdk"],
    &["shared", "encode"],
    &["open", "worker"],
    &["agent", "current"],
    &["lazy", "test", "fuzzing"],
];

/// The layer of `module`, if the table has it.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `source` without comments (line comments, doc comments) and without
/// the `#[cfg(test)]`-gated `mod … { … }` blocks.
fn strip(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip attributes up to the gated item; a `mod … {` block is
            // skipped whole, by brace depth.
            while lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("#["))
            {
                lines.next();
            }
            if lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("mod ") && l.trim_end().ends_with('{'))
            {
                let mut depth = 0usize;
                for l in lines.by_ref() {
                    let code = l.split("//").next().unwrap_or("");
                    depth += code.matches('{').count();
                    depth = depth.saturating_sub(code.matches('}').count());
                    if depth == 0 {
                        break;
                    }
                }
            } else {
                // A gated single item (a test-only function or import).
                lines.next();
            }
            continue;
        }
        // A trailing comment.
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments `code` names under `crate::`, and under the
/// `super::` chain that reaches the crate root from a file `depth` modules
/// deep (`src/x.rs`, `src/x/mod.rs`: 1, `super::`; `src/x/y.rs`: 2,
/// `super::super::`). A glob (`crate::*`) is named `*`, which no module
/// is: globs are refused.
fn crate_names(code: &str, depth: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let supers = "super::".repeat(depth);
    let mut prefixes = vec!["crate::"];
    if depth > 0 {
        prefixes.push(&supers);
    }
    for prefix in prefixes {
        for (i, _) in code.match_indices(prefix) {
            // `foo_crate::` or `a::super::` are not the crate root.
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::X, b}`: the first segment of each top-level entry.
                let mut depth = 0usize;
                let mut at_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => at_start = true,
                        '*' if at_start && depth == 0 => {
                            at_start = false;
                            names.insert("*".to_owned());
                        }
                        c if at_start && depth == 0 && !c.is_whitespace() => {
                            at_start = false;
                            let name = ident_at(&group[j..]);
                            if !name.is_empty() {
                                names.insert(name.to_owned());
                            }
                        }
                        _ => {}
                    }
                }
            } else if rest.starts_with('*') {
                names.insert("*".to_owned());
            } else {
                let name = ident_at(rest);
                if !name.is_empty() {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// The names `lib.rs` re-exports, with the module each comes from
/// (`pub use sdk::{Sqreen, …};` → `Sqreen` → `sdk`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let code = strip(lib);
    for stmt in code.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            let name = item.rsplit(" as ").next().unwrap_or(item).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            if !name.is_empty() {
                map.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    map
}

/// One source file of a top-level module and the modules it uses.
struct FileUses {
    file: String,
    module: String,
    uses: BTreeSet<String>,
    unknown: BTreeSet<String>,
}

fn scan() -> Vec<FileUses> {
    let src = src_dir();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexported = reexports(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src");
        let parts: Vec<_> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts == ["lib.rs"] {
            continue;
        }
        // `config/tests.rs` and the like: a whole test module, when its
        // parent declares it `#[cfg(test)] mod tests;`.
        if parts.last().is_some_and(|f| f == "tests.rs") && declared_for_tests(&path) {
            continue;
        }
        let module = parts[0].trim_end_matches(".rs").to_owned();
        // How many modules deep the file is: `src/x.rs` and `src/x/mod.rs`
        // are 1, `src/x/y.rs` 2.
        let depth = parts.len() - usize::from(parts.last().is_some_and(|f| f == "mod.rs"));
        let source = std::fs::read_to_string(&path).expect("source is readable");
        let mut uses = BTreeSet::new();
        let mut unknown = BTreeSet::new();
        for name in crate_names(&strip(&source), depth) {
            let target = if layer_of(&name).is_some() {
                name.clone()
            } else if let Some(module) = reexported.get(&name) {
                module.clone()
            } else {
                unknown.insert(name);
                continue;
            };
            if target != module {
                uses.insert(target);
            }
        }
        out.push(FileUses {
            file: parts.join("/"),
            module,
            uses,
            unknown,
        });
    }
    out
}

/// True when the `mod.rs` beside `tests_rs` declares it a test module.
fn declared_for_tests(tests_rs: &Path) -> bool {
    let parent = tests_rs.with_file_name("mod.rs");
    std::fs::read_to_string(parent).is_ok_and(|s| {
        s.lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "#[cfg(test)]" && w[1] == "mod tests;")
    })
}

/// The layers the crate docs draw (`src/lib.rs`, "Modules"): each module
/// line starts with its layer number, or with blanks under the previous
/// one's.
fn documented_layers(lib: &str) -> Vec<Vec<String>> {
    let mut layers: Vec<Vec<String>> = Vec::new();
    let mut current = None;
    let mut in_table = false;
    let mut seen_heading = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.starts_with("## Modules") {
            seen_heading = true;
            continue;
        }
        if seen_heading && doc.starts_with("```") {
            if in_table {
                break;
            }
            in_table = true;
            continue;
        }
        if !in_table || doc.len() < 4 || doc.as_bytes()[3] == b' ' {
            continue;
        }
        let name = doc[3..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        let number = match doc[..3].trim() {
            "" => current.expect("a layer number on the table's first line"),
            number => number.parse::<usize>().expect("a layer number"),
        };
        current = Some(number);
        while layers.len() <= number {
            layers.push(Vec::new());
        }
        layers[number].push(name.to_owned());
    }
    layers
}

/// What is wrong with `file` of `module` using `uses`.
fn violations(file: &str, module: &str, uses: &BTreeSet<String>) -> Vec<String> {
    let Some(own) = layer_of(module) else {
        return vec![format!("{file}: module `{module}` is missing from LAYERS")];
    };
    uses.iter()
        .filter_map(|used| match layer_of(used) {
            Some(layer) if layer < own => None,
            Some(layer) => Some(format!(
                "{file}: `{module}` (layer {own}) uses `{used}` (layer {layer}): \
                 a module may use only modules of lower layers"
            )),
            None => Some(format!("{file}: uses `{used}`, missing from LAYERS")),
        })
        .collect()
}

/// No module of the core uses a module of its own or a higher layer.
#[test]
fn no_module_uses_one_above_it() {
    let files = scan();
    assert!(files.len() > 20, "the sources were found");
    let mut problems = Vec::new();
    for f in &files {
        problems.extend(violations(&f.file, &f.module, &f.uses));
        for name in &f.unknown {
            problems.push(format!(
                "{}: `crate::{name}` is neither a module of LAYERS nor re-exported by lib.rs",
                f.file
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The crate docs draw the same layers as [`LAYERS`].
#[test]
fn the_crate_docs_draw_these_layers() {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
    let mut documented = documented_layers(&lib);
    let mut expected: Vec<Vec<String>> = LAYERS
        .iter()
        .map(|layer| layer.iter().map(|m| (*m).to_owned()).collect())
        .collect();
    for layer in documented.iter_mut().chain(expected.iter_mut()) {
        layer.sort();
    }
    assert_eq!(
        documented, expected,
        "src/lib.rs's Modules table and LAYERS differ"
    );
}

/// Every module of the table exists (a module removed or renamed is
/// removed or renamed in the table too).
#[test]
fn every_layered_module_exists() {
    let found: BTreeSet<_> = scan().into_iter().map(|f| f.module).collect();
    for layer in LAYERS {
        for module in *layer {
            assert!(
                found.contains(*module),
                "`{module}` is in LAYERS but not in src"
            );
        }
    }
}

/// The checker catches an upward import, in each form it reads, and
/// ignores comments and test modules.
#[test]
fn an_upward_import_is_caught() {
    let cases = [
        ("use crate::agent::Shared;", 1),
        ("use crate::{model::Entry, sdk::Sqreen};", 1),
        ("fn f() -> crate::Sqreen { todo!() }", 1),
        ("let _ = super::open::open;", 1),
        ("let _ = super::super::open::open;", 2),
        ("use crate::*;", 1),
        ("use crate::{model::Entry, *};", 1),
    ];
    let reexported = reexports("pub use sdk::{Blocked, Sqreen};\npub use agent::Agent;");
    for (case, depth) in cases {
        let uses: BTreeSet<String> = crate_names(&strip(case), depth)
            .into_iter()
            .map(|n| reexported.get(&n).cloned().unwrap_or(n))
            .collect();
        assert!(
            !violations("record/mod.rs", "record", &uses).is_empty(),
            "not caught: {case}"
        );
    }
    let harmless = "\
/// See [`crate::agent`].
use crate::model::Entry; // crate::agent in a comment
#[cfg(test)]
mod tests {
    use crate::agent::Agent;
}
";
    let uses = crate_names(&strip(harmless), 0);
    assert_eq!(uses, BTreeSet::from(["model".to_owned()]));
    assert!(violations("record/mod.rs", "record", &uses).is_empty());
}

/// Prints the import table (file → modules it uses), for reviews:
/// `cargo test -p sqreen-core --test layers -- --nocapture import_table`.
#[test]
#[allow(clippy::print_stdout)] // printing the table is this test's purpose
fn import_table() {
    for f in scan() {
        let uses: Vec<_> = f.uses.iter().map(String::as_str).collect();
        println!("{} -> {}", f.file, uses.join(", "));
    }
}
