//! Extract: fetch a source (local path or HTTP URL), fingerprint it, and parse it as a stream
//! into validated daily records.

mod access;
mod fetch;
pub mod jhu;
pub mod nyt;
mod parse;
mod records;

pub use access::{Allowlist, Origin, SourcePolicy};
pub use fetch::{HttpConfig, Location};

use crate::error::Result;
use crate::record::DailyRecord;
use serde::{Deserialize, Serialize};
use std::io::Read;

/// Which of the two sources a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Nyt,
    Jhu,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Nyt => nyt::SOURCE_NAME,
            Self::Jhu => jhu::SOURCE_NAME,
        }
    }

    pub fn default_url(self) -> &'static str {
        match self {
            Self::Nyt => nyt::DEFAULT_URL,
            Self::Jhu => jhu::DEFAULT_URL,
        }
    }

    fn parse(self, reader: impl Read) -> Result<SourceSeries> {
        match self {
            Self::Nyt => nyt::parse(reader),
            Self::Jhu => jhu::parse(reader),
        }
    }
}

/// One source's validated rows, sorted by date, with its warnings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceSeries {
    pub records: Vec<DailyRecord>,
    pub warnings: Vec<String>,
}

/// What identifies a version of a source: its content hash and, over HTTP, the validators
/// the server gave, so the next download can be conditional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    /// SHA-256 of the body, hex.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// Over HTTP, the URL the body came from after redirects (each one checked against the
    /// source policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
}

/// The result of one extract step, as it travels between states.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extract {
    pub source: SourceKind,
    pub location: String,
    pub fingerprint: Fingerprint,
    /// Same content as the last successful load.
    pub unchanged: bool,
    /// The server answered `304 Not Modified`: `records` is empty because no body came.
    #[serde(default)]
    pub not_modified: bool,
    pub records: Vec<DailyRecord>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Fetches and parses one source. `previous` is the fingerprint of the last successful load:
/// over HTTP it makes the request conditional unless `conditional` is false.
pub async fn extract(
    kind: SourceKind,
    location: &Location,
    http: &HttpConfig,
    policy: &SourcePolicy,
    previous: Option<&Fingerprint>,
    conditional: bool,
) -> Result<Extract> {
    let validators = previous.filter(|_| conditional);
    let fetched = fetch::fetch_and_parse(kind, location, http, policy, validators).await?;
    let (fingerprint, series, not_modified) = match fetched {
        fetch::Fetched::NotModified(final_url) => (
            Fingerprint {
                final_url,
                ..previous.cloned().unwrap_or_default()
            },
            SourceSeries::default(),
            true,
        ),
        fetch::Fetched::Parsed(fingerprint, series) => (fingerprint, series, false),
    };
    let unchanged = not_modified || previous.is_some_and(|p| p.sha256 == fingerprint.sha256);
    tracing::info!(
        source = kind.name(),
        location = %location,
        records = series.records.len(),
        warnings = series.warnings.len(),
        unchanged,
        not_modified,
        "extracted"
    );
    Ok(Extract {
        source: kind,
        location: location.to_string(),
        fingerprint,
        unchanged,
        not_modified,
        records: series.records,
        warnings: series.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn extract_text(kind: SourceKind, text: &str, previous: Option<&Fingerprint>) -> Extract {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.csv");
        std::fs::write(&path, text).unwrap();
        extract(
            kind,
            &Location::Path(path),
            &HttpConfig::default(),
            &SourcePolicy::Anywhere,
            previous,
            true,
        )
        .await
        .unwrap()
    }

    /// The fingerprint is SHA-256 of the body: any change to the file is a change, and an
    /// identical file is unchanged.
    #[tokio::test]
    async fn the_fingerprint_is_the_sha256_of_the_body() {
        use sha2::{Digest, Sha256};
        let file = |peru: &str| {
            format!(
                "Date,Country/Region,Province/State,Confirmed,Recovered,Deaths\n\
                 2020-01-22,Peru,,{peru},0,0\n2020-01-22,US,,5,0,0\n"
            )
        };
        let first = extract_text(SourceKind::Jhu, &file("1"), None).await;
        assert!(!first.unchanged);
        assert_eq!(
            first.fingerprint.sha256,
            hex::encode(Sha256::digest(file("1").as_bytes()))
        );
        let same = extract_text(SourceKind::Jhu, &file("1"), Some(&first.fingerprint)).await;
        assert!(same.unchanged);
        let revised = extract_text(SourceKind::Jhu, &file("2"), Some(&first.fingerprint)).await;
        assert!(!revised.unchanged);
    }
}
