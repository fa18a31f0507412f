//! Which source locations a run may read. On AWS the execution input is written by whoever
//! may start an execution, and the extract functions read it with their IAM role: a path,
//! `file://` or an internal URL (`http://169.254.169.254/…`) there is a file read or a
//! server-side request forgery. So the Lambda configuration allows only `https` origins on
//! an allowlist (plain `http` only for a loopback origin listed explicitly, a test setting),
//! checked before any I/O and again on every redirect. The command line runs on its user's
//! own machine with their rights: paths and any `http(s)` URL stay allowed there, unless the
//! user sets an allowlist.

use super::Location;
use crate::error::{EtlError, Result};
use reqwest::Url;
use std::fmt;

/// A URL origin, `scheme://host[:port]` (the port only when it is not the scheme's default),
/// as browsers compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    fn of(url: &Url) -> Self {
        Self(url.origin().ascii_serialization())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The origins sources may be downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist(Vec<Origin>);

impl Allowlist {
    /// Parses `https://host[:port]` entries separated by commas. Plain `http` is accepted
    /// for loopback hosts only (`127.0.0.1`, `[::1]`, `localhost`): a test server, never a
    /// host on a network. The error is the offending entry and why.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut origins = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = Url::parse(entry).map_err(|e| format!("{entry:?} is not a URL ({e})"))?;
            let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
            match url.scheme() {
                "https" => {}
                "http" if loopback => {}
                "http" => {
                    return Err(format!(
                        "{entry:?} is plain http: only https origins, or http on a loopback host (a test setting)"
                    ));
                }
                other => return Err(format!("{entry:?} has scheme {other:?}: only https")),
            }
            if url.path() != "/"
                || url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
                || url.password().is_some()
            {
                return Err(format!(
                    "{entry:?} is not an origin (scheme://host[:port], nothing after it)"
                ));
            }
            let origin = Origin::of(&url);
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        if origins.is_empty() {
            return Err("lists no origin".into());
        }
        Ok(Self(origins))
    }

    /// The origins of the given URLs (the real sources' when nothing is configured).
    pub fn of_urls<'a>(
        urls: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<Self, String> {
        Self::parse(
            &urls
                .into_iter()
                .filter_map(|u| Url::parse(u).ok().map(|u| Origin::of(&u).0))
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    pub fn allows(&self, url: &Url) -> bool {
        url.username().is_empty() && url.password().is_none() && self.0.contains(&Origin::of(url))
    }
}

impl fmt::Display for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.0.iter().map(|o| o.0.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// Where sources may come from: anywhere (the command line, the user's own machine), or
/// only from the allowlisted origins (Lambda, or a user who configured an allowlist).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    #[default]
    Anywhere,
    Allowlist(Allowlist),
}

impl SourcePolicy {
    /// The location `text` names, if this policy allows reading it; else `SourceNotAllowed`,
    /// before anything is opened or requested.
    pub fn locate(&self, source_name: &str, text: &str) -> Result<Location> {
        let location = Location::parse(text);
        let Self::Allowlist(allowed) = self else {
            return Ok(location);
        };
        let refuse = |reason: String| EtlError::SourceNotAllowed {
            source_name: source_name.to_string(),
            location: excerpt(text),
            reason,
        };
        match Url::parse(text) {
            Ok(url) if url.scheme() == "https" || url.scheme() == "http" => {
                if !url.username().is_empty() || url.password().is_some() {
                    Err(refuse("a URL with credentials is not allowed".into()))
                } else if allowed.allows(&url) {
                    Ok(location)
                } else {
                    Err(refuse(format!(
                        "origin {} is not on the allowlist ({allowed})",
                        Origin::of(&url)
                    )))
                }
            }
            Ok(url) => Err(refuse(format!(
                "scheme {:?} is not allowed: only https URLs on the allowlist ({allowed})",
                url.scheme()
            ))),
            Err(_) => Err(refuse(format!(
                "a local path is not allowed: only https URLs on the allowlist ({allowed})"
            ))),
        }
    }

    /// Whether a download may follow a redirect to `url`.
    pub(crate) fn allows_redirect(&self, url: &Url) -> bool {
        match self {
            Self::Anywhere => matches!(url.scheme(), "https" | "http"),
            Self::Allowlist(allowed) => allowed.allows(url),
        }
    }
}

/// A location as an error quotes it: at most 200 characters, control characters escaped
/// (the text comes from the execution input).
fn excerpt(text: &str) -> String {
    let quoted: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > 200 {
        format!("{quoted}…")
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowlist(text: &str) -> SourcePolicy {
        SourcePolicy::Allowlist(Allowlist::parse(text).unwrap())
    }

    #[test]
    fn allowlist_entries_are_https_origins_or_loopback_http() {
        let list =
            Allowlist::parse("https://raw.githubusercontent.com, http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            list.to_string(),
            "https://raw.githubusercontent.com,http://127.0.0.1:8080"
        );
        for bad in [
            "",
            " , ",
            "http://example.com",
            "http://169.254.169.254",
            "file:///etc",
            "ftp://example.com",
            "https://example.com/path",
            "https://user:pw@example.com",
            "https://example.com/?q",
            "raw.githubusercontent.com",
        ] {
            assert!(Allowlist::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_allowlisted_urls_are_located() {
        let policy = allowlist("https://raw.githubusercontent.com,http://127.0.0.1:9");
        for ok in [
            "https://raw.githubusercontent.com/nytimes/covid-19-data/master/us.csv",
            "https://RAW.githubusercontent.com:443/x",
            "http://127.0.0.1:9/us.csv",
        ] {
            assert!(policy.locate("nyt", ok).is_ok(), "{ok}");
        }
        for (bad, reason) in [
            ("/etc/passwd", "a local path is not allowed"),
            ("us.csv", "a local path is not allowed"),
            ("file:///etc/passwd", "scheme \"file\" is not allowed"),
            (
                "http://169.254.169.254/latest",
                "origin http://169.254.169.254",
            ),
            ("http://127.0.0.1:10/us.csv", "origin http://127.0.0.1:10"),
            ("http://raw.githubusercontent.com/x", "origin http://raw"),
            (
                "https://raw.githubusercontent.com.evil.com/x",
                "origin https://raw",
            ),
            ("https://a:b@raw.githubusercontent.com/x", "credentials"),
        ] {
            let e = policy.locate("nyt", bad).unwrap_err();
            assert_eq!(e.name(), "SourceNotAllowed");
            assert!(!e.is_transient());
            assert!(e.to_string().contains(reason), "{bad}: {e}");
        }
        assert_eq!(
            SourcePolicy::Anywhere.locate("nyt", "/etc/passwd").unwrap(),
            Location::Path("/etc/passwd".into())
        );
    }
}
