//! The arrows between sipua's modules run one way (issue 17): each module of `src/` names,
//! through `crate::` paths, only modules of the tiers below its own. The table below is the
//! layering; a new module must be put in it, and an import that points up fails here with
//! the file and the line.
//!
//! Read from the sources, as text: every `crate::module` path, and every `crate::Name`
//! resolved to its module through the `pub use` lines of `lib.rs`. Comment lines (docs
//! included) are left out: a doc link is not an import.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tiers, bottom first. A module may name the modules of lower tiers only, except in
/// [`API`], whose modules name one another: the SIP.js object model is one web (a
/// `UserAgent`'s delegate is handed `Invitation`s, an `Inviter` is made from a `UserAgent`,
/// the user agent's options hold the media handler's factory and the session timers).
const TIERS: &[&[&str]] = &[
    // leaves, each tier importing only those below it
    &["mailbox", "trace", "session_state"],
    &["error"],
    &["dns", "tasks"],
    &["commands"],
    &["body"],
    // the network, then the one task that owns the protocol core and the network
    &["transport"],
    &["driver"],
    // the media handler's interface: what a session asks of its handler, and the view of
    // the session a handler gets (implemented above it)
    &["sdh"],
    // the API objects and the user agent that makes and hands them out
    &[
        "user_agent",
        "session",
        "subscription",
        "notifier",
        "registerer",
        "messager",
        "publisher",
    ],
    // the front doors, built on the above
    &["session_manager"],
    &["simple_user"],
];

/// The index in [`TIERS`] of the tier whose modules may name one another.
const API: usize = 8;

fn tier_of(module: &str) -> Option<usize> {
    TIERS.iter().position(|t| t.contains(&module))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with the top-level module it belongs to.
fn files(dir: &Path, top: Option<&str>, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_owned();
        let module = top.map_or_else(|| name.clone(), str::to_owned);
        if path.is_dir() {
            files(&path, Some(&module), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if top.is_none() && name == "lib" {
                continue;
            }
            out.push((module, path));
        }
    }
}

/// The lines of `text` that are code: comment lines (`//`, `///`, `//!`) left out.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

/// What `lib.rs` re-exports at the crate root: name → the module it comes from.
fn root_names(lib: &str) -> HashMap<String, String> {
    let code: String = code_lines(lib).map(|(_, l)| format!("{l}\n")).collect();
    let mut names = HashMap::new();
    for stmt in code.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        if tier_of(module).is_none() {
            continue; // another crate's
        }
        let list = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for item in list.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let name = item.rsplit(" as ").next().expect("a name").trim();
            names.insert(name.to_owned(), module.to_owned());
        }
    }
    names
}

/// The modules a file's code names through `crate::`, each with the line it is named on.
fn imports(text: &str, root: &HashMap<String, String>, file: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in code_lines(text) {
        for (at, _) in line.match_indices("crate::") {
            // `$crate::` in a macro is the same crate, `pub(crate)` has no `::`
            let rest = &line[at + "crate::".len()..];
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                !ident.is_empty(),
                "{file}:{n}: write `crate::module::…` paths (one `use` per module), not `{}`",
                line.trim()
            );
            let module = if ident.starts_with(|c: char| c.is_ascii_uppercase()) {
                root.get(&ident).cloned().unwrap_or_else(|| {
                    panic!("{file}:{n}: crate::{ident} is not re-exported by lib.rs's `pub use`")
                })
            } else {
                ident
            };
            found.push((module, n));
        }
    }
    found
}

#[test]
fn every_module_has_a_tier() {
    let mut all = Vec::new();
    files(&src(), None, &mut all);
    for (module, path) in &all {
        assert!(
            tier_of(module).is_some(),
            "{}: module `{module}` is in no tier of tests/layering.rs",
            path.display()
        );
    }
    for tier in TIERS {
        for module in *tier {
            assert!(
                all.iter().any(|(m, _)| m == module),
                "tests/layering.rs names `{module}`, which src/ does not have"
            );
        }
    }
}

#[test]
fn arrows_run_one_way() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    let root = root_names(&lib);
    assert!(
        root.get("UserAgent").map(String::as_str) == Some("user_agent")
            && root.get("Error").map(String::as_str) == Some("error"),
        "lib.rs's re-exports were not read: {root:?}"
    );
    let mut all = Vec::new();
    files(&src(), None, &mut all);
    let mut wrong = Vec::new();
    for (module, path) in &all {
        let Some(from) = tier_of(module) else {
            continue; // every_module_has_a_tier says so
        };
        let text = std::fs::read_to_string(path).expect("read a source file");
        let file = path
            .strip_prefix(src())
            .unwrap_or(path)
            .display()
            .to_string();
        for (to, line) in imports(&text, &root, &file) {
            if to == *module {
                continue;
            }
            let Some(tier) = tier_of(&to) else {
                wrong.push(format!("{file}:{line}: names `{to}`, which is in no tier"));
                continue;
            };
            if tier > from || (tier == from && from != API) {
                wrong.push(format!(
                    "{file}:{line}: `{module}` names `{to}`, not below it"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that point up:\n{}",
        wrong.join("\n")
    );
}
