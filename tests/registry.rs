//! The deployment names each Lambda function in four places; `covid_etl::functions` is the
//! one list, and this test reads the other three — the ASL definition, `serverless.yml`, the
//! crates under `lambdas/` — and checks that they name the same functions. It also checks
//! what each function's crate links: no embedded database, no command line, and an HTTP
//! router only in the API.

use covid_etl::functions::{FUNCTIONS, steps};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `{"Fn::GetAtt": [KEY, "Arn"]}` of the definition.
fn get_atts(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(key) = map.get("Fn::GetAtt").and_then(|a| a[0].as_str()) {
                out.insert(key.to_string());
            }
            map.values().for_each(|v| get_atts(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| get_atts(v, out)),
        _ => {}
    }
}

#[test]
fn the_definition_names_exactly_the_step_functions() {
    let definition: Value = serde_json::from_str(&read("statemachine/etl.asl.json")).unwrap();
    let mut named = BTreeSet::new();
    get_atts(&definition, &mut named);
    let steps: BTreeSet<String> = steps().map(|f| f.key.to_string()).collect();
    assert_eq!(named, steps);
}

/// The `functions:` section of serverless.yml: each key and its artifact path.
fn serverless_functions() -> Vec<(String, String)> {
    let text = read("serverless.yml");
    let mut lines = text.lines().skip_while(|l| *l != "functions:").skip(1);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with(' ') {
            break; // the next top-level key
        }
        if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !key.starts_with([' ', '#'])
        {
            out.push((key.to_string(), String::new()));
        } else if let Some(path) = line.trim().strip_prefix("artifact: ") {
            out.last_mut().expect("an artifact inside a function").1 = path.to_string();
        }
    }
    out
}

#[test]
fn serverless_deploys_each_function_from_its_own_crates_zip() {
    let deployed = serverless_functions();
    let want: Vec<(String, String)> = FUNCTIONS
        .iter()
        .map(|f| {
            let artifact = format!("${{param:artifactDir}}/{0}/{0}.zip", f.package);
            (f.key.to_string(), artifact)
        })
        .collect();
    assert_eq!(deployed, want);
}

#[test]
fn each_function_is_a_crate_under_lambdas() {
    let dirs: BTreeSet<String> = std::fs::read_dir(root().join("lambdas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let packages: BTreeSet<String> = FUNCTIONS.iter().map(|f| f.package.to_string()).collect();
    assert_eq!(dirs, packages);
    for f in FUNCTIONS {
        let manifest = read(&format!("lambdas/{}/Cargo.toml", f.package));
        let name = format!("name = \"{}\"", f.package);
        assert_eq!(
            manifest.matches(&name).count(),
            2,
            "package and bin of {}",
            f.package
        );
    }
}

/// The packages `package` links into its binary (normal dependencies, features resolved as
/// a `cargo lambda build` of it resolves them).
fn linked(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn no_function_links_sqlite_or_the_command_line() {
    for f in FUNCTIONS {
        let linked = linked(f.package);
        assert!(linked.contains("covid-etl"), "{}: {linked:?}", f.package);
        for unwanted in ["rusqlite", "libsqlite3-sys", "clap"] {
            assert!(!linked.contains(unwanted), "{} links {unwanted}", f.package);
        }
        assert_eq!(
            linked.contains("axum"),
            f.key == "Api",
            "{} and axum",
            f.package
        );
    }
    // The command line does link them: the check above can see them.
    let cli = linked("covid-etl");
    assert!(cli.contains("rusqlite") && cli.contains("clap"), "{cli:?}");
}
