//! Where a source comes from and how its bytes reach the parser: a local file or an HTTPS
//! download, hashed (SHA-256 of the body) alongside the parse, with limits on time and size.

use super::{Fingerprint, SourceKind, SourcePolicy, SourceSeries};
use crate::error::{EtlError, Result};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

/// A source location: `http://` or `https://` URLs are downloaded, anything else is a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    Url(String),
}

impl Location {
    pub fn parse(text: &str) -> Self {
        if text.starts_with("https://") || text.starts_with("http://") {
            Self::Url(text.to_string())
        } else {
            Self::Path(PathBuf::from(text))
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
        }
    }
}

/// Limits for reading a source, a local file or a download (`max_body_bytes` applies to
/// both). Certificate verification is always on (rustls with the platform's
/// roots); there is deliberately no switch to turn it off.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    /// The whole request, body included.
    pub total_timeout: Duration,
    pub max_body_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(120),
            max_body_bytes: 512 * 1024 * 1024,
        }
    }
}

pub(super) enum Fetched {
    /// `304 Not Modified`, from the URL the redirects (if any) ended at.
    NotModified(Option<String>),
    Parsed(Fingerprint, SourceSeries),
}

pub(super) async fn fetch_and_parse(
    kind: SourceKind,
    location: &Location,
    http: &HttpConfig,
    policy: &SourcePolicy,
    validators: Option<&Fingerprint>,
) -> Result<Fetched> {
    let located = |e: EtlError| match e {
        EtlError::SourceUnavailable {
            source_name,
            reason,
            ..
        } => EtlError::SourceUnavailable {
            source_name,
            location: location.to_string(),
            reason,
        },
        EtlError::SourceRejected {
            source_name,
            reason,
            ..
        } => EtlError::SourceRejected {
            source_name,
            location: location.to_string(),
            reason,
        },
        other => other,
    };
    match location {
        Location::Path(path) => read_file(kind, path.clone(), http.max_body_bytes).await,
        Location::Url(url) => download(kind, url, http, policy, validators).await,
    }
    .map_err(located)
}

/// A local file: one blocking thread parses it as it reads it (the parser's buffer is the
/// only copy of the bytes in memory), another hashes it through the same open file with
/// positional reads, so SHA-256 and parsing run side by side. Both read one inode; a file
/// rewritten in place while they read (its size or modification time changed) is refused as
/// unavailable — a transient error, so the run retries it — rather than recorded with a
/// hash of other bytes than those parsed.
///
/// A file larger than `max` bytes is refused before it is read, and both readers stop at
/// `max` bytes whatever the size said: `/dev/zero`, a pipe or a growing file never makes
/// the run read without end.
async fn read_file(kind: SourceKind, path: PathBuf, max: u64) -> Result<Fetched> {
    let name = kind.name();
    // A path that does not exist, cannot be read or is a directory is the operator's
    // mistake: refused at once, not retried as if the disk might come back.
    let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => rejected(name, e),
        _ => unavailable(name, e),
    })?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(rejected(name, "it is a directory, not a file"));
    }
    let version = |f: &std::fs::File| {
        let m = f.metadata().map_err(|e| unavailable(name, e))?;
        Ok::<_, EtlError>((m.len(), m.modified().ok()))
    };
    let before = version(&file)?;
    if before.0 > max {
        return Err(too_big(name, max));
    }
    let for_hash = file.try_clone().map_err(|e| unavailable(name, e))?;
    let hashing = blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut hasher = Sha256::new();
        let mut chunk = vec![0; 64 * 1024];
        let mut offset = 0;
        loop {
            match for_hash.read_at(&mut chunk, offset) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&chunk[..n]);
                    offset += n as u64;
                    if offset > max {
                        return Err(too_big(name, max));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(unavailable(name, e)),
            }
        }
        Ok((hex::encode(hasher.finalize()), for_hash))
    });
    let parsing = blocking(move || {
        kind.parse(Capped {
            inner: file,
            max,
            read: 0,
            source_name: name,
        })
    });
    let (series, hashed) = futures::future::join(parsing, hashing).await;
    // The reading error (the size limit, I/O) first: the parser may have failed only on the
    // input cut short.
    let (sha256, file) = hashed?;
    let series = series?;
    if version(&file)? != before {
        return Err(unavailable(
            name,
            "the file changed while it was being read",
        ));
    }
    Ok(Fetched::Parsed(
        Fingerprint {
            sha256,
            ..Fingerprint::default()
        },
        series,
    ))
}

/// Why a redirect was not followed: its target is not allowed by the source policy.
#[derive(Debug)]
struct RedirectRefused(String);

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redirected to {}, which is not allowed", self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// At most this many redirects, as browsers and reqwest's default do.
const MAX_REDIRECTS: usize = 10;

async fn download(
    kind: SourceKind,
    url: &str,
    http: &HttpConfig,
    policy: &SourcePolicy,
    validators: Option<&Fingerprint>,
) -> Result<Fetched> {
    let name = kind.name();
    let redirects = {
        let policy = policy.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if !policy.allows_redirect(attempt.url()) {
                let target = attempt.url().to_string();
                attempt.error(RedirectRefused(target))
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        })
    };
    let client = reqwest::Client::builder()
        .redirect(redirects)
        .connect_timeout(http.connect_timeout)
        .timeout(http.total_timeout)
        .user_agent(concat!("covid-etl/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| unavailable(name, e))?;
    let mut request = client.get(url);
    if let Some(v) = validators {
        if let Some(etag) = &v.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &v.last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| match refused_redirect(&e) {
            Some(target) => EtlError::SourceNotAllowed {
                source_name: name.into(),
                location: url.into(),
                reason: format!("the server redirected to {target}, off the allowlist"),
            },
            None => unavailable(name, crate::error::with_causes(&e)),
        })?;
    let final_url = Some(response.url().to_string());
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED && validators.is_some() {
        return Ok(Fetched::NotModified(final_url));
    }
    if !status.is_success() {
        let reason = format!("HTTP {status}");
        return Err(
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                unavailable(name, reason)
            } else {
                EtlError::SourceRejected {
                    source_name: name.into(),
                    location: url.into(),
                    reason,
                }
            },
        );
    }
    if let Some(len) = response.content_length()
        && len > http.max_body_bytes
    {
        return Err(too_big(name, http.max_body_bytes));
    }
    let header = |h| {
        response
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);

    // The parser runs on a blocking thread and pulls chunks as the network delivers them, so
    // neither the body nor the rows of other countries are ever held in memory at once; the
    // chunks are hashed here, on the way.
    let (tx, parser) = parse_from_channel(kind);
    let max = http.max_body_bytes;
    let pump = async move {
        let mut total = 0u64;
        let mut hasher = Sha256::new();
        loop {
            let item = match response.chunk().await {
                Ok(Some(chunk)) => {
                    total += chunk.len() as u64;
                    hasher.update(&chunk);
                    if total > max {
                        Err(io::Error::other(too_big(name, max)))
                    } else {
                        Ok(chunk)
                    }
                }
                Ok(None) => break,
                Err(e) => Err(io::Error::other(unavailable(
                    name,
                    crate::error::with_causes(&e),
                ))),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break; // the parser stopped early (bad data) or we hit an error
            }
        }
        hex::encode(hasher.finalize())
    };
    let (series, sha256) = futures::future::try_join(parser, async { Ok(pump.await) }).await?;
    Ok(Fetched::Parsed(
        Fingerprint {
            sha256,
            etag,
            last_modified,
            final_url,
        },
        series,
    ))
}

type ChunkSender = tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>;

/// Starts the parser on a blocking thread, reading the chunks sent to the returned sender
/// (at most four chunks wait: memory stays flat whatever the body's size).
fn parse_from_channel(
    kind: SourceKind,
) -> (ChunkSender, impl Future<Output = Result<SourceSeries>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let parser = blocking(move || {
        kind.parse(ChannelReader {
            rx,
            current: Default::default(),
            offset: 0,
        })
    });
    (tx, parser)
}

/// A blocking `Read` over the chunks the download task sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    current: bytes::Bytes,
    offset: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk?;
                    self.offset = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EtlError::Internal(format!("parser thread failed: {e}")))?
}

/// The target of a redirect the policy refused, if that is why `e` happened.
fn refused_redirect(e: &reqwest::Error) -> Option<&str> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(RedirectRefused(target)) = c.downcast_ref() {
            return Some(target);
        }
        cause = c.source();
    }
    None
}

/// A local file's reader that fails with the size-limit error once more than `max` bytes
/// came: the parser never reads past the limit, whatever the file's size said when opened.
struct Capped<R> {
    inner: R,
    max: u64,
    read: u64,
    source_name: &'static str,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Asks for one byte beyond the limit: that tells a file of exactly `max` bytes from
        // a longer one.
        let left = (self.max - self.read).saturating_add(1);
        let room = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..room])?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(io::Error::other(too_big(self.source_name, self.max)));
        }
        Ok(n)
    }
}

fn unavailable(source_name: &str, reason: impl fmt::Display) -> EtlError {
    EtlError::SourceUnavailable {
        source_name: source_name.into(),
        location: String::new(),
        reason: reason.to_string(),
    }
}

fn rejected(source_name: &str, reason: impl fmt::Display) -> EtlError {
    EtlError::SourceRejected {
        source_name: source_name.into(),
        location: String::new(),
        reason: reason.to_string(),
    }
}

fn too_big(source_name: &str, max: u64) -> EtlError {
    EtlError::SchemaError {
        source_name: source_name.into(),
        reason: format!("body is larger than the {max}-byte limit (COVID_ETL_MAX_BODY_BYTES)"),
    }
}

/// An I/O error while reading carries our own error when the download task raised it;
/// anything else is the source failing mid-read.
pub(super) fn io_error_to_etl(source_name: &str, e: io::Error) -> EtlError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<EtlError>())
    {
        Some(ours) => ours.clone(),
        None => unavailable(source_name, e),
    }
}
