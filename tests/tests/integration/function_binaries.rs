//! What the deployed functions carry: nothing meant for tests. The public sample secrets
//! and sample payloads live in `hookgate-samples`, which only the `hookgate` tool and the
//! tests depend on; a function built with them would answer to anyone holding the
//! published secrets if a test secret were ever configured, and would ship test data.
//!
//! Two checks, because either alone proves too little:
//!
//! - no function depends on `hookgate-samples`, directly or through another crate: this is
//!   what fails when someone adds the dependency. (The linker drops what a binary never
//!   calls, so a function that linked the samples without using them would still pass the
//!   search below; it did when the samples were a module of the shared library.)
//! - no function binary contains a test secret or sample text: what ships is clean. The
//!   binaries searched are the debug builds `cargo build --workspace --bins` leaves in
//!   `target/debug`, which keep at least what a release build keeps.

use std::path::PathBuf;

use hookgate::provider::Provider;
use hookgate_tests::lambda_runtime_api::binary_directory;

/// Strings only test material has: every public test secret, and text from the sample
/// payloads (a GitHub sample's delivery id, and the folder the payloads are compiled from).
fn test_material() -> Vec<&'static str> {
    let mut material = vec![
        "0b9c1e20-3f8a-11f0-8d3c-7e2f1a6b5c41",
        "events/payloads/",
        "SimpleNotificationService-hookgate-test",
    ];
    for provider in Provider::ALL {
        for secret in [
            hookgate_samples::test_secret(provider),
            hookgate_samples::signing_secret(provider),
            hookgate_samples::wrong_secret(provider),
        ] {
            // A PEM key is looked for by its first line of base64, which is its own.
            material.push(secret.lines().nth(1).unwrap_or(secret));
        }
    }
    material
}

/// Every function crate under `functions/`, by its binary's name.
fn function_binaries() -> Vec<PathBuf> {
    let functions = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut names: Vec<String> = std::fs::read_dir(&functions)
        .expect("functions/ is readable")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| binary_directory().join(name))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

fn read(binary: &PathBuf) -> Vec<u8> {
    std::fs::read(binary).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; build the functions first with `cargo build --workspace --bins`",
            binary.display()
        )
    })
}

#[test]
fn no_lambda_binary_carries_a_sample_secret_or_payload() {
    let binaries = function_binaries();
    assert!(binaries.len() >= 7, "{binaries:?}");
    for binary in binaries {
        let bytes = read(&binary);
        for material in test_material() {
            assert!(
                !contains(&bytes, material),
                "{} carries `{material}`",
                binary.display()
            );
        }
    }
}

/// The functions do not even depend on the samples, directly or through another crate:
/// the linker could otherwise leave the samples out of one build and keep them in another.
#[test]
fn no_lambda_function_depends_on_the_samples_crate() {
    // The graph for this machine's platform only: resolving every platform's would fetch
    // crates that no build here needs.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host, "--manifest-path"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .expect("a resolved graph");
    let name_of = |id: &str| {
        metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|package| package["id"] == id)
            .and_then(|package| package["name"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    // What each package depends on to build and run (not its tests' dev-dependencies).
    let normal_dependencies = |id: &str| -> Vec<String> {
        nodes
            .iter()
            .find(|node| node["id"] == id)
            .and_then(|node| node["deps"].as_array())
            .into_iter()
            .flatten()
            .filter(|dependency| {
                dependency["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|kind| kind["kind"].is_null())
            })
            .filter_map(|dependency| dependency["pkg"].as_str().map(str::to_owned))
            .collect()
    };
    let functions: Vec<String> = function_binaries()
        .iter()
        .filter_map(|binary| binary.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    for function in &functions {
        let root = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|package| package["name"] == function.as_str())
            .and_then(|package| package["id"].as_str())
            .unwrap_or_else(|| panic!("{function} is a workspace package"))
            .to_owned();
        let mut seen = std::collections::BTreeSet::new();
        let mut pending = vec![root];
        while let Some(id) = pending.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            assert_ne!(
                name_of(&id),
                "hookgate-samples",
                "{function} depends on the samples"
            );
            pending.extend(normal_dependencies(&id));
        }
        assert!(
            seen.iter().any(|id| name_of(id) == "hookgate-shared"),
            "{function}: the walk reached the shared library"
        );
    }
}

/// The search finds what is there: the `hookgate` tool, which signs samples, carries them.
#[test]
fn the_hookgate_tool_does_carry_the_samples() {
    let bytes = read(&binary_directory().join("hookgate"));
    for material in test_material() {
        assert!(contains(&bytes, material), "hookgate lacks `{material}`");
    }
}

/// The lines `cargo tree --prefix none --offline` prints in `folder` with `arguments`, each
/// once (a repeated crate's `(*)` mark dropped).
fn cargo_tree(folder: &std::path::Path, arguments: &[&str]) -> std::collections::BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .arg("tree")
        .args(arguments)
        .args(["--prefix", "none", "--offline"])
        .current_dir(folder)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim_end_matches(" (*)").to_owned())
        .collect()
}

/// The crates and features in `function`'s build as `sam build` makes it: cargo run in the
/// function's own folder (its CodeUri), which resolves its features alone.
fn build_graph(function: &str) -> std::collections::BTreeSet<String> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../functions")
        .join(function);
    cargo_tree(&folder, &["--edges", "normal,features"])
}

/// Each crate of the workspace's build and the features it is compiled with, over the
/// dependency kinds `edges` names (`normal,build`, or with `dev` too).
fn workspace_features(edges: &str) -> std::collections::BTreeSet<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    cargo_tree(
        &root,
        &["--workspace", "--edges", edges, "--format", "{p} [{f}]"],
    )
}

/// `cargo build --workspace --bins` (what `scripts/test` builds first, and the resolution
/// `cargo run --bin hookgate` shares) and `cargo test` must compile every dependency with
/// the same features: one differing feature of tokio or getrandom recompiles the AWS SDK
/// and everything else above it, doubling the first `scripts/test`. A member that adds a
/// dev-dependency, or a dev-dependency's feature, names it in hookgate-tests' ordinary
/// dependencies too.
#[test]
fn building_the_binaries_and_the_tests_resolve_every_dependency_alike() {
    let binaries = workspace_features("normal,build");
    let tests = workspace_features("normal,build,dev");
    let differing: Vec<&String> = binaries.symmetric_difference(&tests).collect();
    assert!(
        differing.is_empty(),
        "resolved differently with and without dev-dependencies: {differing:#?}"
    );
}

/// Whether the graph has the crate `name`, at any version.
fn has_crate(graph: &std::collections::BTreeSet<String>, name: &str) -> bool {
    graph
        .iter()
        .any(|line| line.starts_with(&format!("{name} v")))
}

#[test]
fn every_function_links_only_what_it_runs_on() {
    let functions: Vec<String> = function_binaries()
        .iter()
        .filter_map(|binary| binary.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    // A receiver per provider, the processor and the reconciler.
    assert_eq!(functions.len(), Provider::COUNT + 2, "{functions:?}");
    for function in &functions {
        let graph = build_graph(function);
        assert!(
            has_crate(&graph, "hookgate-shared"),
            "{function}: {graph:?}"
        );
        assert!(
            !has_crate(&graph, "rusqlite"),
            "{function} links SQLite, which only hookgate dev runs on"
        );
        assert!(
            !graph.contains(r#"hookgate-shared feature "sqlite""#),
            "{function}"
        );
        // The S3 SDK's crc-fast is the workspace's patch (patches/crc-fast), not crates.io's:
        // cargo drops a patch the SDK's requirement outgrows with a mere warning, and the
        // tables of 49 CRCs would be back in every zip.
        let crc_fast: Vec<&String> = graph
            .iter()
            .filter(|line| line.starts_with("crc-fast v"))
            .collect();
        assert!(
            !crc_fast.is_empty()
                && crc_fast
                    .iter()
                    .all(|line| line.contains("patches/crc-fast")),
            "{function} links crc-fast from {crc_fast:?}, not patches/crc-fast"
        );
        if function.starts_with("receiver-") {
            for unused in ["aws-sdk-dynamodb", "aws-sdk-lambda", "reqwest"] {
                assert!(
                    !has_crate(&graph, unused),
                    "{function} links {unused}, which no receiver calls"
                );
            }
            assert!(graph.contains(r#"hookgate-shared feature "receiver""#));
        }
        if function == "reconciler-github" {
            assert!(!has_crate(&graph, "aws-sdk-lambda"), "{function}");
            assert!(!has_crate(&graph, "lambda_http"), "{function}");
        }
        if function == "processor" {
            assert!(!has_crate(&graph, "lambda_http"), "{function}");
        }
    }
}
