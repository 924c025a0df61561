//! The architecture's invariants, checked over the source tree as text: which crate may
//! name TigerBeetle, SQL and actix, which crate may depend on which, that the API's
//! modules form no import cycle, and that every integration test has a deadline. `tests/tests/architecture.rs` runs every check on the
//! repository (so `./ops/test` fails when a boundary breaks) and on planted violations (so
//! each check is shown to catch what it is for).
//!
//! Pure functions over [`Source`]s: nothing here compiles or runs the code it reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One file of the tree, by its path from the repository root (`/`-separated).
#[derive(Clone, Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
}

impl Source {
    pub fn new(path: &str, text: &str) -> Source {
        Source { path: path.into(), text: text.into() }
    }

    fn is_rust(&self) -> bool {
        self.path.ends_with(".rs")
    }

    fn crate_dir(&self) -> &str {
        self.path.split('/').next().unwrap_or("")
    }

    /// The text without comments, so a doc line may mention what code may not use.
    fn code(&self) -> String {
        let lines = self.text.lines().filter(|l| !l.trim_start().starts_with("//"));
        lines.collect::<Vec<_>>().join("\n")
    }
}

/// Which of our crates each crate may depend on: the arrows point one way, toward the
/// stores. `tests` may use everything; nothing may use `tests`.
pub const CRATE_DEPENDENCIES: &[(&str, &[&str])] = &[
    ("ledger", &[]),
    ("secrets", &[]),
    ("store", &[]),
    ("export", &["ledger"]),
    ("reconcile", &["ledger", "store", "secrets", "export"]),
    ("api", &["ledger", "store", "secrets", "export"]),
    ("test-macros", &[]),
    ("tests", &["ledger", "store", "secrets", "export", "reconcile", "api", "test-macros"]),
];

/// API files that may know actix: the HTTP edge.
const ACTIX_ALLOWED: [&str; 3] = ["api/src/routes/", "api/src/startup.rs", "api/src/main.rs"];

/// API modules at the top: they wire the others together and nothing may import them.
const API_TOP_MODULES: [&str; 4] = ["routes", "startup", "state", "main"];

/// Statement shapes that mark a string as SQL.
const SQL_PATTERNS: [&str; 6] = [
    r"(?is)\bSELECT\b.{0,400}?\bFROM\s+[a-z_]+",
    r"(?i)\bINSERT\s+INTO\b",
    r"(?i)\bUPDATE\s+[a-z_]+\s+SET\b",
    r"(?i)\bDELETE\s+FROM\b",
    r"(?i)\b(CREATE|ALTER|DROP)\s+(TABLE|INDEX|SEQUENCE|DATABASE)\b",
    r"(?i)\bSELECT\s+(pg_|to_regclass|1\b)",
];

/// Status words as SQL spells them: single-quoted inside a Rust string.
const STATUS_WORDS: [&str; 13] = [
    "held",
    "confirmed",
    "cancelled",
    "expired",
    "pending",
    "succeeded",
    "refund_due",
    "received",
    "unmatched",
    "sent",
    "skipped",
    "waiting",
    "offered",
];

/// Reads every source file of the workspace members under `root`.
pub fn load(root: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for (member, _) in CRATE_DEPENDENCIES {
        walk(root, &root.join(member), &mut out);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(root, &path, out);
            }
        } else if name.ends_with(".rs") || name == "Cargo.toml" || name.ends_with(".sql") {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push(Source::new(&rel.replace('\\', "/"), &text));
        }
    }
}

/// Every broken invariant, one line each; empty when the architecture holds.
pub fn violations(tree: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(tigerbeetle_outside_ledger(tree));
    out.extend(sql_outside_store(tree));
    out.extend(actix_outside_the_edge(tree));
    out.extend(crate_dependencies(tree));
    out.extend(api_modules_reaching_up(tree));
    out.extend(unbounded_tests(tree));
    out.extend(
        api_import_cycles(tree)
            .into_iter()
            .map(|c| format!("api modules import each other in a cycle: {}", c.join(", "))),
    );
    out
}

/// Every async integration test runs under the harness's per-test deadline: in
/// `tests/tests/`, `#[allot_tests::test]`, never a bare `#[tokio::test]`.
pub fn unbounded_tests(tree: &[Source]) -> Vec<String> {
    tree.iter()
        .filter(|s| s.path.starts_with("tests/tests/"))
        .filter(|s| s.code().lines().any(|l| l.trim_start().starts_with("#[tokio::test")))
        .map(|s| format!("{}: #[tokio::test] has no deadline; use #[allot_tests::test]", s.path))
        .collect()
}

/// The TigerBeetle client's crate as code (`_`) and manifests (`-`) spell it; built at run
/// time so that this checker does not name it itself.
fn names_tigerbeetle(text: &str) -> bool {
    ['_', '-'].iter().any(|sep| text.contains(&format!("tigerbeetle{sep}unofficial")))
}

/// Only `ledger` names the TigerBeetle client, in code or as a dependency.
pub fn tigerbeetle_outside_ledger(tree: &[Source]) -> Vec<String> {
    tree.iter()
        .filter(|s| s.crate_dir() != "ledger" && names_tigerbeetle(&s.code()))
        .map(|s| format!("{}: names the TigerBeetle client; only ledger may", s.path))
        .collect()
}

/// SQL text (statements, `.sql` files, quoted status words) only in `store`. Tests are
/// exempt: they check the database from outside, as an operator would.
pub fn sql_outside_store(tree: &[Source]) -> Vec<String> {
    let patterns: Vec<regex::Regex> =
        SQL_PATTERNS.iter().map(|p| regex::Regex::new(p).expect("valid pattern")).collect();
    let mut out = Vec::new();
    for s in tree.iter().filter(|s| !matches!(s.crate_dir(), "store" | "tests")) {
        if s.path.ends_with(".sql") {
            out.push(format!("{}: a .sql file outside store/migrations", s.path));
            continue;
        }
        if !s.is_rust() {
            continue;
        }
        let code = s.code();
        for literal in string_literals(&code) {
            if let Some(p) = patterns.iter().find(|p| p.is_match(&literal)) {
                out.push(format!("{}: SQL outside store ({})", s.path, excerpt(&literal, p)));
            }
            for word in STATUS_WORDS {
                if literal.contains(&format!("'{word}'")) {
                    out.push(format!("{}: status '{word}' spelled outside store", s.path));
                }
            }
        }
    }
    out
}

fn excerpt(literal: &str, pattern: &regex::Regex) -> String {
    let m = pattern.find(literal).expect("matched");
    let text: String = m.as_str().split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(60).collect()
}

/// The contents of every string literal in `code` (plain, byte and raw strings), read by a
/// small lexer that knows char literals and lifetimes, so `'"'` opens no string.
pub fn string_literals(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        match b[i] {
            b'\'' => i = skip_char_literal(b, i),
            b'r' if (i == 0 || !is_ident(b[i - 1]))
                && matches!(b.get(i + 1), Some(b'"' | b'#')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"').chain(vec![b'#'; hashes]).collect();
                let end = find(b, open + 1, &close).unwrap_or(b.len());
                out.push(String::from_utf8_lossy(&b[open + 1..end]).into_owned());
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                out.push(String::from_utf8_lossy(&b[i + 1..j.min(b.len())]).into_owned());
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Past a char literal (`'x'`, `'\n'`, `'"'`), or one byte past a lifetime's quote.
fn skip_char_literal(b: &[u8], i: usize) -> usize {
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(b'\\'), _) => {
            // The escaped character is at i + 2 and may itself be a quote: search after it.
            let rest = b.get(i + 3..).unwrap_or_default();
            rest.iter().position(|c| *c == b'\'').map_or(b.len(), |p| i + 4 + p)
        }
        (Some(_), Some(b'\'')) => i + 3,
        _ => i + 1,
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

/// actix only in `api/src/routes/`, `startup` and `main`; in no other crate but tests.
pub fn actix_outside_the_edge(tree: &[Source]) -> Vec<String> {
    tree.iter()
        .filter(|s| s.is_rust() && s.crate_dir() != "tests")
        .filter(|s| !ACTIX_ALLOWED.iter().any(|a| s.path.starts_with(a)))
        .filter(|s| s.code().contains("actix_web") || s.code().contains("tracing_actix_web"))
        .map(|s| format!("{}: uses actix outside routes/, startup and main", s.path))
        .collect()
}

/// Our crates depend on each other only as [`CRATE_DEPENDENCIES`] allows.
pub fn crate_dependencies(tree: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for s in tree.iter().filter(|s| s.path.ends_with("/Cargo.toml")) {
        let member = s.crate_dir();
        let Some((_, allowed)) = CRATE_DEPENDENCIES.iter().find(|(m, _)| *m == member) else {
            out.push(format!("{}: a crate the architecture does not list", s.path));
            continue;
        };
        for dep in our_dependencies(&s.text) {
            if !allowed.contains(&dep.as_str()) {
                out.push(format!("{}: {member} must not depend on {dep}", s.path));
            }
        }
    }
    out
}

/// The `allot-*` crates a manifest depends on (normal and dev), without the prefix.
fn our_dependencies(manifest: &str) -> BTreeSet<String> {
    let Ok(doc) = manifest.parse::<toml::Table>() else { return BTreeSet::new() };
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| doc.get(*section).and_then(|t| t.as_table()))
        .flat_map(|t| t.keys())
        .filter_map(|k| k.strip_prefix("allot-").map(str::to_owned))
        .collect()
}

/// The API module a file belongs to: `api/src/fairness/queue.rs` is in `fairness`.
fn api_module(path: &str) -> Option<String> {
    let rest = path.strip_prefix("api/src/")?;
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_owned()).filter(|m| m != "lib")
}

/// Each API module and the API modules its code names (`crate::x`).
pub fn api_module_graph(tree: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let named = regex::Regex::new(r"crate::([a-z_0-9]+)").expect("valid");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in tree.iter().filter(|s| s.is_rust()) {
        let Some(module) = api_module(&s.path) else { continue };
        let deps = graph.entry(module.clone()).or_default();
        for c in named.captures_iter(&s.code()) {
            if c[1] != module {
                deps.insert(c[1].to_string());
            }
        }
    }
    graph
}

/// Modules below the top never import the top (`routes`, `startup`, `state`, `main`):
/// domain code takes narrow handles, never the whole application state.
pub fn api_modules_reaching_up(tree: &[Source]) -> Vec<String> {
    let graph = api_module_graph(tree);
    let mut out = Vec::new();
    for (module, deps) in graph.iter().filter(|(m, _)| !API_TOP_MODULES.contains(&m.as_str())) {
        for top in deps.iter().filter(|d| API_TOP_MODULES.contains(&d.as_str())) {
            out.push(format!("api module {module} imports {top}; only the top may"));
        }
    }
    out
}

/// Every cycle among API modules, as the members of each strongly connected component
/// with more than one module (Tarjan's algorithm).
pub fn api_import_cycles(tree: &[Source]) -> Vec<Vec<String>> {
    cycles(&api_module_graph(tree))
}

/// The strongly connected components of `graph` with more than one node, each sorted.
pub fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, (usize, usize)>,
        stack: Vec<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, (n, n));
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.graph.contains_key(w) {
                    continue;
                }
                match self.index.get(w).copied() {
                    None => {
                        self.visit(w);
                        let low = self.index[w].1.min(self.index[v].1);
                        self.index.get_mut(v).expect("visited").1 = low;
                    }
                    Some((wi, _)) if self.stack.contains(&w) => {
                        let low = wi.min(self.index[v].1);
                        self.index.get_mut(v).expect("visited").1 = low;
                    }
                    Some(_) => {}
                }
            }
            let (vi, vl) = self.index[v];
            if vi == vl {
                let at = self.stack.iter().rposition(|x| *x == v).expect("on the stack");
                let mut scc: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = Tarjan { graph, index: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// Each API source file and the API files its code names (`crate::a::b` is `a/b.rs`,
/// `a/b/mod.rs`, or else the nearest enclosing module's file): finer than
/// [`api_module_graph`], for measuring how tangled the files are.
pub fn api_file_graph(tree: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let files: BTreeSet<&str> = tree
        .iter()
        .filter(|s| s.is_rust() && s.path.starts_with("api/src/"))
        .map(|s| s.path.as_str())
        .collect();
    let named = regex::Regex::new(r"crate::([a-z_0-9]+(?:::[a-z_0-9]+)*)").expect("valid");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in tree.iter().filter(|s| files.contains(s.path.as_str())) {
        let deps = graph.entry(s.path.clone()).or_default();
        for c in named.captures_iter(&s.code()) {
            let segments: Vec<&str> = c[1].split("::").collect();
            let target = (1..=segments.len()).rev().find_map(|n| {
                let base = format!("api/src/{}", segments[..n].join("/"));
                [format!("{base}.rs"), format!("{base}/mod.rs")]
                    .into_iter()
                    .find(|f| files.contains(f.as_str()))
            });
            if let Some(target) = target.filter(|t| *t != s.path) {
                deps.insert(target);
            }
        }
    }
    graph
}

/// Figures for the architecture's before/after table.
#[derive(Debug)]
pub struct Figures {
    pub largest_file: (String, usize),
    pub longest_function: (String, usize),
    pub api_files_importing_actix: usize,
    pub api_module_cycles: Vec<Vec<String>>,
    pub api_largest_file_cycle: usize,
    pub crates_naming_tigerbeetle: BTreeSet<String>,
}

pub fn figures(tree: &[Source]) -> Figures {
    let rust: Vec<&Source> = tree.iter().filter(|s| s.is_rust()).collect();
    let largest = rust.iter().max_by_key(|s| s.text.lines().count()).expect("some code");
    let longest = rust
        .iter()
        .flat_map(|s| {
            functions(&s.text).into_iter().map(move |(n, l)| (format!("{}::{n}", s.path), l))
        })
        .max_by_key(|(_, l)| *l)
        .unwrap_or_default();
    let actix = rust
        .iter()
        .filter(|s| s.path.starts_with("api/src/") && s.code().contains("actix_web"))
        .count();
    let naming_tb = tree.iter().filter(|s| names_tigerbeetle(&s.code()));
    Figures {
        largest_file: (largest.path.clone(), largest.text.lines().count()),
        longest_function: longest,
        api_files_importing_actix: actix,
        api_module_cycles: api_import_cycles(tree),
        api_largest_file_cycle: cycles(&api_file_graph(tree))
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0),
        crates_naming_tigerbeetle: naming_tb.map(|s| s.crate_dir().to_owned()).collect(),
    }
}

/// Each `fn` in `text` with its length in lines, from its signature to its closing brace
/// (counted by brace depth: good enough for a measure, not a parser).
pub fn functions(text: &str) -> Vec<(String, usize)> {
    let start = regex::Regex::new(r"^\s*(pub(\([a-z]+\))? )?(const )?(async )?fn ([a-z_0-9]+)")
        .expect("valid");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = start.captures(line) else { continue };
        let mut depth = 0i64;
        let mut opened = false;
        for (j, l) in lines[i..].iter().enumerate() {
            depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
            opened |= l.contains('{');
            if l.trim_end().ends_with(';') && !opened {
                break; // a declaration without a body
            }
            if opened && depth <= 0 {
                out.push((c[5].to_string(), j + 1));
                break;
            }
        }
    }
    out
}
