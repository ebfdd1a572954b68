//! Architecture invariants checked as tests, so breaking one fails CI.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).expect("read")));
        }
    }
    out
}

/// The compiler performs no network I/O and starts no processes: it depends on no networking
/// or async crate and its source never names `std::net` or `std::process`.
#[test]
fn the_compiler_is_pure() {
    let manifest = std::fs::read_to_string(root().join("compiler/Cargo.toml")).expect("manifest");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).expect("deps");
    for forbidden in ["reqwest", "tokio", "hyper", "ureq", "rustls", "sdc-runtime"] {
        assert!(!deps.contains(forbidden), "compiler depends on `{forbidden}`");
    }
    for (path, text) in rust_files(&root().join("compiler/src")) {
        for forbidden in ["std::net", "std::process", "TcpStream", "SystemTime::now", "Instant::now"] {
            assert!(!text.contains(forbidden), "{path} uses `{forbidden}`");
        }
    }
}

/// The runtime never parses the DSL.
#[test]
fn the_runtime_does_not_parse_specs() {
    for (path, text) in rust_files(&root().join("runtime/src")) {
        assert!(!text.contains("syntax::parse") && !text.contains("check::check"), "{path} parses the DSL");
    }
}
