//! The command-line binary and the fixtures, for the tests that run `covid-etl`.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// `fixtures/NAME` as a path string, as the CLI takes it.
pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `covid-etl` on database `db`, without the caller's log filter.
pub fn cli(db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("covid-etl").unwrap();
    cmd.env("COVID_ETL_DB", db).env_remove("RUST_LOG");
    cmd
}
