//! What both parsers share: finding columns by header name, strict field validation,
//! duplicate detection and the day-to-day decrease warnings; and [`Records`], the streaming
//! CSV record reader with a prefilter that the JHU parser uses to skip other countries' rows
//! without materializing them.

use crate::error::{EtlError, Result};
use crate::record::{DailyRecord, iso};
use chrono::NaiveDate;
use csv::ByteRecord;
use std::collections::HashMap;
use std::io::Read;

/// Locates required columns by name; extra columns are ignored and order does not matter,
/// but a name twice is refused: which of the two holds the data would be a guess.
pub(crate) struct Columns<'a> {
    source_name: &'a str,
    headers: ByteRecord,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(source_name: &'a str, headers: ByteRecord) -> Result<Self> {
        let names: Vec<&[u8]> = headers.iter().map(trim_bom).collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(EtlError::SchemaError {
                    source_name: source_name.to_string(),
                    reason: format!(
                        "column \"{}\" appears twice in the header ({})",
                        shown(name, 40),
                        describe(&header_line(&headers), 200)
                    ),
                });
            }
        }
        Ok(Self {
            source_name,
            headers,
        })
    }

    pub(crate) fn index(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| trim_bom(h) == name.as_bytes())
            .ok_or_else(|| EtlError::SchemaError {
                source_name: self.source_name.to_string(),
                reason: format!(
                    "missing required column \"{name}\" ({})",
                    describe(&header_line(&self.headers), 200)
                ),
            })
    }
}

/// The header as it was written, fields joined by commas.
fn header_line(headers: &ByteRecord) -> Vec<u8> {
    headers.iter().collect::<Vec<_>>().join(&b","[..])
}

/// What an error may say about a source's bytes: a short excerpt of them when they are CSV
/// text (`header: date,cases`), otherwise only what kind of body they are, never its
/// content — a file that is not CSV (`/proc/self/environ`, an HTML error page, a binary)
/// may hold secrets, and the error goes to the execution history, the ledger and every
/// subscriber of the failure notification.
pub(crate) fn describe(bytes: &[u8], max_chars: usize) -> String {
    match classify(bytes) {
        Some(kind) => format!("the body is {kind}, not CSV text"),
        None => format!("header: {}", excerpt(bytes, max_chars)),
    }
}

/// What kind of body `bytes` (its first record) is, when it is not CSV text.
fn classify(bytes: &[u8]) -> Option<&'static str> {
    let text = bytes.trim_ascii_start();
    let starts = |prefix: &str| {
        text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some("gzip-compressed")
    } else if starts("<!doctype html") || starts("<html") || starts("<") {
        Some("HTML")
    } else if starts("{") || starts("[") {
        Some("JSON")
    } else if std::str::from_utf8(bytes).is_err() {
        Some("not UTF-8")
    } else if bytes
        .iter()
        .any(|&b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r' | b'\n'))
    {
        Some("binary")
    } else {
        None
    }
}

/// At most `max_chars` characters of CSV text, control characters escaped.
fn excerpt(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(max_chars)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// A field value as an error shows it: its excerpt when it is text, else what it is.
fn shown(value: &[u8], max_chars: usize) -> String {
    match classify(value) {
        Some(kind) => format!("({} bytes, {kind})", value.len()),
        None => excerpt(value, max_chars),
    }
}

fn trim_bom(h: &[u8]) -> &[u8] {
    h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
}

/// Validates one row's fields and reports the first offending value with its place.
pub(crate) struct FieldReader<'a> {
    pub(crate) source_name: &'a str,
    pub(crate) line: u64,
}

impl FieldReader<'_> {
    fn reject(&self, column: &str, value: &[u8], reason: &str) -> EtlError {
        EtlError::DataQualityError {
            source_name: self.source_name.to_string(),
            line: self.line,
            column: column.to_string(),
            value: shown(value, 40),
            reason: reason.to_string(),
        }
    }

    /// A real calendar date written exactly `YYYY-MM-DD`.
    pub(crate) fn date(&self, column: &str, v: &[u8]) -> Result<NaiveDate> {
        crate::record::parse_iso(v).map_err(|e| self.reject(column, v, e.reason()))
    }

    /// A non-negative whole number no larger than [`MAX_COUNT`]. An integral value in decimal
    /// notation (`227685.0`, as JHU wrote the US deaths of 2020-10-28) is a whole number; a
    /// fraction (`227685.5`) is not.
    pub(crate) fn count(&self, column: &str, v: &[u8]) -> Result<u64> {
        if v.is_empty() {
            return Err(self.reject(column, v, "is empty"));
        }
        let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
        let integer = match v.iter().position(|&b| b == b'.') {
            Some(dot) if digits(&v[dot + 1..]) && v[dot + 1..].iter().all(|&b| b == b'0') => {
                &v[..dot]
            }
            _ => v,
        };
        if integer.first() == Some(&b'-') && digits(&integer[1..]) {
            return Err(self.reject(column, v, "is negative"));
        }
        if !digits(integer) {
            return Err(self.reject(column, v, "is not a whole number"));
        }
        integer
            .iter()
            .try_fold(0u64, |acc, b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .filter(|&n| n <= MAX_COUNT)
            .ok_or_else(|| self.reject(column, v, TOO_LARGE))
    }

    /// Like [`count`](Self::count), but an empty field means "not reported".
    pub(crate) fn optional_count(&self, column: &str, v: &[u8]) -> Result<Option<u64>> {
        if v.is_empty() {
            Ok(None)
        } else {
            self.count(column, v).map(Some)
        }
    }
}

/// The largest count a store holds: SQLite integers and the i64 of every consumer are
/// signed, so a larger one would come back negative.
pub(crate) const MAX_COUNT: u64 = i64::MAX as u64;
const TOO_LARGE: &str = "is larger than 9223372036854775807, the largest count stored";

/// Collects a source's rows, refusing a date seen twice or a date in the future, and sorts
/// them at the end.
pub(crate) struct SeriesBuilder<'a> {
    source_name: &'a str,
    records: Vec<DailyRecord>,
    first_line: HashMap<NaiveDate, u64>,
    /// The latest date a row may have: tomorrow in UTC (a source a few hours ahead of UTC
    /// may already publish today's numbers, none can publish the day after tomorrow's).
    latest: NaiveDate,
}

impl<'a> SeriesBuilder<'a> {
    pub(crate) fn new(source_name: &'a str) -> Self {
        let today = chrono::Utc::now().date_naive();
        Self {
            source_name,
            records: Vec::with_capacity(1024),
            first_line: HashMap::with_capacity(1024),
            latest: today.succ_opt().unwrap_or(today),
        }
    }

    pub(crate) fn push(&mut self, line: u64, date_column: &str, record: DailyRecord) -> Result<()> {
        if record.date > self.latest {
            return Err(EtlError::DataQualityError {
                source_name: self.source_name.to_string(),
                line,
                column: date_column.to_string(),
                value: iso(record.date),
                reason: format!(
                    "is in the future (after tomorrow, {}, UTC)",
                    iso(self.latest)
                ),
            });
        }
        if let Some(first) = self.first_line.insert(record.date, line) {
            return Err(EtlError::DataQualityError {
                source_name: self.source_name.to_string(),
                line,
                column: date_column.to_string(),
                value: iso(record.date),
                reason: format!("appears twice (first on line {first})"),
            });
        }
        self.records.push(record);
        Ok(())
    }

    pub(crate) fn finish(mut self) -> super::SourceSeries {
        self.records.sort_unstable_by_key(|r| r.date);
        let warnings = decreases(self.source_name, &self.records);
        super::SourceSeries {
            records: self.records,
            warnings,
        }
    }
}

/// Cumulative counts that fall from one day to the next: real revisions, worth a warning.
fn decreases(source_name: &str, records: &[DailyRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for pair in records.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let columns = [
            ("cases", Some(a.cases), Some(b.cases)),
            ("deaths", Some(a.deaths), Some(b.deaths)),
            ("recovered", a.recovered, b.recovered),
        ];
        for (column, before, after) in columns {
            // Recovered falling to 0 is JHU no longer reporting it, not a revision: the merge
            // stores it as absent and says when reporting stopped.
            let stopped = column == "recovered" && after == Some(0);
            if let (Some(before), Some(after)) = (before, after)
                && after < before
                && !stopped
            {
                out.push(format!(
                    "{source_name} {column} fell from {before} on {} to {after} on {}",
                    iso(a.date),
                    iso(b.date)
                ));
            }
        }
    }
    out
}

/// How many bytes the record reader asks its source for at a time; its buffer is twice that,
/// so a read can always take a whole chunk. Larger chunks saved no measurable time (a read
/// per 64 KiB is cheap) and only added resident memory.
const READ_CHUNK: usize = 64 * 1024;

/// Byte classes of the record scanner: the only bytes the default CSV dialect gives meaning.
const PLAIN: u8 = 0;
const COMMA: u8 = 1;
const TERM: u8 = 2;
const QUOTE: u8 = 3;
const CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    t[b',' as usize] = COMMA;
    t[b'\r' as usize] = TERM;
    t[b'\n' as usize] = TERM;
    t[b'"' as usize] = QUOTE;
    t
};

/// What scanning one record from the start of the buffered bytes found.
enum Scan {
    /// A whole record ending before `next` (its terminator included). `fields` is its field
    /// count; `keep` whether it passed the prefilter.
    Done {
        next: usize,
        fields: usize,
        keep: bool,
    },
    /// A field starts with a quote: the record needs the full quoted-field parser.
    Quoted,
    /// The buffer ends inside the record and the source has more.
    NeedMore,
}

/// A streaming CSV record reader with exactly the semantics of the `csv` crate as
/// [`super::csv_reader`] configures it (no header handling, `,` delimiter, `"` quotes that
/// are doubled inside quoted fields, CR, LF or CRLF terminators, blank lines skipped, a
/// leading UTF-8 BOM stripped, every record as many fields as the first) — including its
/// line numbers, which count the LF bytes consumed before the record was asked for (on a
/// CRLF file that is one less than the physical line, as the `csv` crate reports it).
///
/// Its one addition is a prefilter ([`keep_only`](Self::keep_only)): records whose fields
/// do not equal the wanted values are skipped without being copied. A skipped record is
/// still scanned to its end and its fields are still counted, so a malformed skipped row
/// is rejected exactly as the `csv` crate rejects it. A record with a quote at the start of
/// a field goes through the full quoted-field state machine (the `csv-core` automaton),
/// so quoted commas, doubled quotes and quoted line breaks are read as the `csv` crate
/// reads them; a quote inside an unquoted field is a literal byte there as well.
pub(crate) struct Records<'a, R> {
    source_name: &'a str,
    inner: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    started: bool,
    /// LF bytes consumed so far.
    newlines: u64,
    /// The first record's field count.
    expected: Option<usize>,
    /// The prefilter, by field index.
    want: Vec<Option<&'a [u8]>>,
    /// The non-empty wanted values: a record without a quote that lacks one of them as a
    /// substring cannot pass, so only its commas are counted ([`Self::skip_line`]).
    needles: Vec<&'a [u8]>,
    /// The CPU has AVX2 and POPCNT (every x86-64 server of the last decade): the fast path
    /// uses [`measure_avx2`].
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
    /// Field bounds in `buf` of the record being scanned (unquoted fast path).
    bounds: Vec<(usize, usize)>,
    /// The current record: its unescaped field bytes, the end of each field, its line.
    data: Vec<u8>,
    ends: Vec<usize>,
    line: u64,
    /// How many times the buffer was refilled (the linearity test counts them).
    #[cfg(test)]
    fills: usize,
}

impl<'a, R: Read> Records<'a, R> {
    pub(crate) fn new(source_name: &'a str, inner: R) -> Self {
        Self {
            source_name,
            inner,
            buf: vec![0; 2 * READ_CHUNK],
            start: 0,
            end: 0,
            eof: false,
            started: false,
            newlines: 0,
            expected: None,
            want: Vec::new(),
            needles: Vec::new(),
            #[cfg(target_arch = "x86_64")]
            avx2: std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt"),
            bounds: Vec::with_capacity(16),
            data: Vec::with_capacity(256),
            ends: Vec::with_capacity(16),
            line: 0,
            #[cfg(test)]
            fills: 0,
        }
    }

    /// The first record, or a schema error when the file has none.
    pub(crate) fn headers(&mut self) -> Result<ByteRecord> {
        if !self.next()? {
            return Err(EtlError::SchemaError {
                source_name: self.source_name.to_string(),
                reason: "the file is empty (no header line)".into(),
            });
        }
        let mut header = ByteRecord::new();
        for i in 0..self.len() {
            header.push_field(self.field(i));
        }
        Ok(header)
    }

    /// From now on [`next`](Self::next) returns only records whose field `i` equals `v` for
    /// every `(i, v)` given; the others are counted and checked, never returned.
    pub(crate) fn keep_only(&mut self, wanted: &[(usize, &'a [u8])]) {
        self.want.clear();
        for &(i, v) in wanted {
            if self.want.len() <= i {
                self.want.resize(i + 1, None);
            }
            self.want[i] = Some(v);
        }
        self.needles = wanted
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|&(_, v)| v)
            .collect();
    }

    /// The line the current record starts on, as `csv::Position::line` reports it.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i` of the current record, unescaped.
    pub(crate) fn field(&self, i: usize) -> &[u8] {
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[from..self.ends[i]]
    }

    /// Reads the next record that passes the prefilter; `false` at the end of the input.
    /// Every record on the way must have the first record's number of fields.
    pub(crate) fn next(&mut self) -> Result<bool> {
        if !self.started {
            self.started = true;
            while self.end < 3 && self.fill()? {}
            if self.buf[..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.start = 3;
            }
        }
        loop {
            // The csv crate takes a record's position before it skips the blank lines (and
            // the LF of a CRLF) in front of it.
            let line = self.newlines + 1;
            if !self.skip_terminators()? {
                return Ok(false);
            }
            if let Some(fields) = self.skip_line() {
                self.check_fields(line, fields)?;
                continue;
            }
            let (next, fields, keep, quoted) = loop {
                let buf = &self.buf[..self.end];
                let mut quoted = false;
                let mut scan = scan_plain(buf, self.start, self.eof, &self.want, &mut self.bounds);
                if let Scan::Quoted = scan {
                    quoted = true;
                    scan = scan_quoted(
                        buf,
                        self.start,
                        self.eof,
                        &self.want,
                        &mut self.data,
                        &mut self.ends,
                    );
                }
                match scan {
                    Scan::Done { next, fields, keep } => break (next, fields, keep, quoted),
                    Scan::NeedMore | Scan::Quoted => {
                        self.fill()?;
                    }
                }
            };
            let record = &self.buf[self.start..next];
            self.newlines += if quoted {
                memchr::memchr_iter(b'\n', record).count() as u64
            } else {
                u64::from(record.last() == Some(&b'\n'))
            };
            self.start = next;
            self.check_fields(line, fields)?;
            if keep {
                if !quoted {
                    self.data.clear();
                    self.ends.clear();
                    for &(from, to) in &self.bounds {
                        self.data.extend_from_slice(&self.buf[from..to]);
                        self.ends.push(self.data.len());
                    }
                }
                self.line = line;
                return Ok(true);
            }
        }
    }

    /// The fast path of the prefilter, for the record at `start`: when the buffer holds it
    /// whole, it has no quote, and some wanted value is not among its bytes, the record
    /// cannot pass, and its field count is its commas plus one. Consumes it and returns that
    /// count; `None` leaves everything else to the full scan.
    ///
    /// One pass, 64 bytes at a time ([`classify_avx2`] or [`classify_swar`]), finds the record's end, counts its
    /// commas and notes whether the first byte of a wanted value occurs at all (rare in
    /// practice: only then are the record's bytes searched for the values).
    #[inline]
    fn skip_line(&mut self) -> Option<usize> {
        let first = *self.needles.first()?.first()?;
        let rest = &self.buf[self.start..self.end];
        #[cfg(target_arch = "x86_64")]
        let measured = if self.avx2 {
            // SAFETY: `avx2` is set only when the CPU has AVX2 and POPCNT.
            unsafe { measure_avx2(rest, first) }
        } else {
            measure::<false>(rest, first)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let measured = measure::<false>(rest, first);
        let (len, commas, seen_first) = measured?;
        if rest[len] == b'"' {
            return None;
        }
        let record = &rest[..len];
        if seen_first && self.needles.iter().all(|n| contains(record, n)) {
            return None;
        }
        self.newlines += u64::from(rest[len] == b'\n');
        self.start += len + 1;
        Some(1 + commas)
    }

    /// Every record has the first record's number of fields.
    #[inline]
    fn check_fields(&mut self, line: u64, fields: usize) -> Result<()> {
        match self.expected {
            None => self.expected = Some(fields),
            Some(expected) if expected != fields => {
                return Err(EtlError::DataQualityError {
                    source_name: self.source_name.to_string(),
                    line,
                    column: "(row)".into(),
                    value: format!("{fields} fields"),
                    reason: format!("does not match the header's {expected} fields"),
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Skips CR and LF bytes; `false` when the input ends first.
    fn skip_terminators(&mut self) -> Result<bool> {
        self.data.clear();
        self.ends.clear();
        loop {
            let rest = &self.buf[self.start..self.end];
            match rest.iter().position(|&b| b != b'\n' && b != b'\r') {
                Some(n) => {
                    self.newlines += memchr::memchr_iter(b'\n', &rest[..n]).count() as u64;
                    self.start += n;
                    return Ok(true);
                }
                None => {
                    self.newlines += memchr::memchr_iter(b'\n', rest).count() as u64;
                    self.start = self.end;
                    if !self.fill()? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Moves the unread bytes to the front and reads more after them; `false` when nothing
    /// more came (the end of the input).
    fn fill(&mut self) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // A record cut by the buffer's end is scanned again from its start. So this reads
        // at least as many bytes as that record already has (and a whole chunk): the bytes
        // buffered at least double between two scans of one record, and the scans of a line
        // of any length add up to at most twice its length. (One chunk at a time, a 128 MiB
        // line took 86 s over HTTP.) Small reads (a slow download) only mean more reads.
        let before = self.end;
        let wanted = READ_CHUNK.max(before);
        if self.buf.len() - self.end < wanted {
            // One record longer than the buffer: grow with it, as the csv crate does.
            let size = (2 * self.buf.len()).max(self.end + wanted);
            self.buf.resize(size, 0);
        }
        #[cfg(test)]
        {
            self.fills += 1;
        }
        while self.end - before < wanted {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(super::fetch::io_error_to_etl(self.source_name, e)),
            }
        }
        Ok(self.end > before)
    }
}

/// Does field `i` (its bytes `value`) fail the prefilter?
#[inline(always)]
fn unwanted(want: &[Option<&[u8]>], i: usize, value: &[u8]) -> bool {
    matches!(want.get(i), Some(Some(v)) if *v != value)
}

/// The fast path: one record without a quote at the start of a field, from `buf[p..]`.
/// Records the field bounds while the record can still pass the prefilter; from the first
/// field that fails it, only counts the remaining fields ([`skip_rest`]).
#[inline]
fn scan_plain(
    buf: &[u8],
    p: usize,
    eof: bool,
    want: &[Option<&[u8]>],
    bounds: &mut Vec<(usize, usize)>,
) -> Scan {
    bounds.clear();
    let mut i = p;
    let mut field_start = p;
    loop {
        let Some(&b) = buf.get(i) else {
            if !eof {
                return Scan::NeedMore;
            }
            // The last record of a file without a final line break.
            let keep = !unwanted(want, bounds.len(), &buf[field_start..i]);
            bounds.push((field_start, i));
            return Scan::Done {
                next: i,
                fields: bounds.len(),
                keep,
            };
        };
        match CLASS[b as usize] {
            PLAIN => i += 1,
            QUOTE if i == field_start => return Scan::Quoted,
            QUOTE => i += 1, // inside an unquoted field a quote is a plain byte
            class => {
                let index = bounds.len();
                if unwanted(want, index, &buf[field_start..i]) {
                    return skip_rest(buf, i, index + 1, eof);
                }
                bounds.push((field_start, i));
                if class == TERM {
                    return Scan::Done {
                        next: i + 1,
                        fields: bounds.len(),
                        keep: true,
                    };
                }
                i += 1;
                field_start = i;
            }
        }
    }
}

/// The rest of a record the prefilter rejected: `buf[i]` ends its field number `fields`
/// (counting from one). Counts the fields that follow and finds the record's end, eight
/// bytes at a time while none of them is a line break or a quote.
#[inline]
fn skip_rest(buf: &[u8], mut i: usize, mut fields: usize, eof: bool) -> Scan {
    if buf[i] != b',' {
        return Scan::Done {
            next: i + 1,
            fields,
            keep: false,
        };
    }
    i += 1;
    fields += 1;
    loop {
        while let Some(word) = buf.get(i..i + 8) {
            let x = u64::from_le_bytes(word.try_into().unwrap());
            let commas = bytes_equal(x, b',');
            let special = bytes_equal(x, b'\n') | bytes_equal(x, b'\r') | bytes_equal(x, b'"');
            if special == 0 {
                fields += commas.count_ones() as usize;
                i += 8;
            } else {
                // Count the commas before the first special byte and stop on it.
                let before = special.trailing_zeros();
                fields += (commas & ((1u64 << before) - 1)).count_ones() as usize;
                i += (before / 8) as usize;
                break;
            }
        }
        let Some(&b) = buf.get(i) else {
            return if eof {
                Scan::Done {
                    next: i,
                    fields,
                    keep: false,
                }
            } else {
                Scan::NeedMore
            };
        };
        match CLASS[b as usize] {
            PLAIN => i += 1,
            COMMA => {
                fields += 1;
                i += 1;
            }
            TERM => {
                return Scan::Done {
                    next: i + 1,
                    fields,
                    keep: false,
                };
            }
            // A quote that opens a field: the record needs the quoted-field parser.
            _ if buf[i - 1] == b',' => return Scan::Quoted,
            _ => i += 1,
        }
    }
}

/// One bit per byte of a 64-byte block (bit `i` for byte `i`).
struct Masks {
    /// Record terminators and quotes: where the fast path stops.
    stops: u64,
    commas: u64,
    /// The first byte of the first wanted value.
    firsts: u64,
}

/// The record at the start of `rest`, up to its first stop byte (`None` when the buffer
/// holds none): its length, its commas, and whether `first` occurs in it. 64 bytes at a
/// time, with AVX2 when `AVX2` (only ever through [`measure_avx2`]).
#[inline(always)]
fn measure<const AVX2: bool>(rest: &[u8], first: u8) -> Option<(usize, usize, bool)> {
    let mut commas = 0;
    let mut seen_first = false;
    let mut i = 0;
    loop {
        let Some(block) = rest.get(i..i + 64) else {
            // The last few buffered bytes, one at a time.
            let tail = rest[i..]
                .iter()
                .position(|&b| matches!(b, b'\n' | b'\r' | b'"'))?;
            let record = &rest[i..i + tail];
            commas += record.iter().filter(|&&b| b == b',').count();
            seen_first |= record.contains(&first);
            return Some((i + tail, commas, seen_first));
        };
        let block = block.try_into().unwrap();
        let m = match AVX2 {
            // SAFETY: instantiated with `AVX2` only inside `measure_avx2`, whose callers
            // checked that the CPU has AVX2.
            #[cfg(target_arch = "x86_64")]
            true => unsafe { classify_avx2(block, first) },
            _ => classify_swar(block, first),
        };
        // Only the bytes before the first stop belong to this record.
        let end = m.stops.trailing_zeros();
        let before = u64::MAX.checked_shl(end).map_or(u64::MAX, |high| !high);
        commas += (m.commas & before).count_ones() as usize;
        seen_first |= m.firsts & before != 0;
        if m.stops != 0 {
            return Some((i + end as usize, commas, seen_first));
        }
        i += 64;
    }
}

/// [`measure`] compiled for AVX2 and POPCNT (bit counts become one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn measure_avx2(rest: &[u8], first: u8) -> Option<(usize, usize, bool)> {
    measure::<true>(rest, first)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn classify_avx2(block: &[u8; 64], first: u8) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    // SAFETY: both 32-byte unaligned loads are inside the 64-byte block.
    let (lo, hi) = unsafe {
        let p = block.as_ptr().cast::<__m256i>();
        (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
    };
    // A macro, not a closure: the intrinsics must be inlined into this AVX2 function.
    macro_rules! eq {
        ($b:expr) => {{
            let v = _mm256_set1_epi8($b as i8);
            let lo = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, v)) as u32;
            let hi = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, v)) as u32;
            u64::from(lo) | u64::from(hi) << 32
        }};
    }
    Masks {
        stops: eq!(b'\n') | eq!(b'\r') | eq!(b'"'),
        commas: eq!(b','),
        firsts: eq!(first),
    }
}

/// [`classify_avx2`] without SIMD: [`bytes_equal`] on eight-byte words, each word's eight high
/// bits gathered into one byte of the mask.
fn classify_swar(block: &[u8; 64], first: u8) -> Masks {
    let mut m = Masks {
        stops: 0,
        commas: 0,
        firsts: 0,
    };
    for (w, word) in block.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(word.try_into().unwrap());
        let gather = |high: u64| ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * w);
        m.stops |= gather(bytes_equal(x, b'\n') | bytes_equal(x, b'\r') | bytes_equal(x, b'"'));
        m.commas |= gather(bytes_equal(x, b','));
        m.firsts |= gather(bytes_equal(x, first));
    }
    m
}

/// Whether `needle` (not empty) occurs in `haystack`, a record short enough that trying
/// each occurrence of its first byte beats building a substring searcher.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memchr_iter(needle[0], haystack).any(|i| haystack[i..].starts_with(needle))
}

/// The high bit of each byte of `x` that equals `b`, and no other bit (exact: no carry
/// crosses a byte, so there are no false positives).
#[inline(always)]
fn bytes_equal(x: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let y = x ^ (u64::from(b) * 0x0101_0101_0101_0101);
    !(((y & LOW7) + LOW7) | y) & !LOW7
}

/// The full record automaton of `csv-core` for the default dialect, for records with a
/// quoted field: writes the unescaped fields into `data`/`ends`.
#[cold]
fn scan_quoted(
    buf: &[u8],
    p: usize,
    eof: bool,
    want: &[Option<&[u8]>],
    data: &mut Vec<u8>,
    ends: &mut Vec<usize>,
) -> Scan {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        StartField,
        InField,
        InQuoted,
        /// A quote inside a quoted field: a doubled quote or the end of the quoting.
        QuoteInQuoted,
    }
    data.clear();
    ends.clear();
    let mut state = State::StartField;
    let mut i = p;
    let next = loop {
        let Some(&b) = buf.get(i) else {
            if !eof {
                return Scan::NeedMore;
            }
            ends.push(data.len());
            break i;
        };
        i += 1;
        state = match (state, b) {
            (State::InQuoted, b'"') => State::QuoteInQuoted,
            (State::InQuoted, _) => {
                data.push(b);
                State::InQuoted
            }
            (State::StartField, b'"') => State::InQuoted,
            (State::QuoteInQuoted, b'"') => {
                data.push(b'"');
                State::InQuoted
            }
            (_, b',') => {
                ends.push(data.len());
                State::StartField
            }
            (_, b'\r' | b'\n') => {
                ends.push(data.len());
                break i;
            }
            _ => {
                data.push(b);
                State::InField
            }
        };
    };
    let mut keep = true;
    for (index, wanted) in want.iter().enumerate() {
        if let (Some(v), Some(&to)) = (wanted, ends.get(index)) {
            let from = if index == 0 { 0 } else { ends[index - 1] };
            keep &= data[from..to] == **v;
        }
    }
    Scan::Done {
        next,
        fields: ends.len(),
        keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field() -> FieldReader<'static> {
        FieldReader {
            source_name: "nyt",
            line: 7,
        }
    }

    #[test]
    fn dates_must_be_real_and_iso() {
        let f = field();
        assert_eq!(
            f.date("date", b"2020-02-29").unwrap(),
            NaiveDate::from_ymd_opt(2020, 2, 29).unwrap()
        );
        for (bad, reason) in [
            ("2021-02-29", "is not a real calendar date"),
            ("2020-13-05", "is not a real calendar date"),
            ("2020-04-31", "is not a real calendar date"),
            ("05/13/2020", "is not a date in YYYY-MM-DD form"),
            ("2020-5-13", "is not a date in YYYY-MM-DD form"),
            ("2020-05-13T00", "is not a date in YYYY-MM-DD form"),
            ("", "is not a date in YYYY-MM-DD form"),
        ] {
            let e = f.date("date", bad.as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("nyt line 7 column \"date\": \"{bad}\" {reason}"),
            );
        }
    }

    #[test]
    fn counts_are_non_negative_whole_numbers() {
        let f = field();
        assert_eq!(f.count("cases", b"0").unwrap(), 0);
        assert_eq!(f.count("cases", b"80000000").unwrap(), 80_000_000);
        assert_eq!(f.count("deaths", b"227685.0").unwrap(), 227_685);
        assert_eq!(f.count("deaths", b"227685.000").unwrap(), 227_685);
        assert_eq!(f.count("cases", b"9223372036854775807").unwrap(), MAX_COUNT);
        for (bad, reason) in [
            ("-88", "is negative"),
            ("12.5", "is not a whole number"),
            ("abc", "is not a whole number"),
            ("-", "is not a whole number"),
            ("", "is empty"),
            (" 5", "is not a whole number"),
            ("99999999999999999999999", TOO_LARGE),
            ("9223372036854775808", TOO_LARGE),
            ("12.50", "is not a whole number"),
            ("12.", "is not a whole number"),
            ("-3.0", "is negative"),
        ] {
            let e = f.count("cases", bad.as_bytes()).unwrap_err();
            assert_eq!(e.name(), "DataQualityError");
            assert!(e.to_string().ends_with(reason), "{bad}: {e}");
        }
        assert_eq!(f.optional_count("Recovered", b"").unwrap(), None);
        assert_eq!(f.optional_count("Recovered", b"3").unwrap(), Some(3));
    }

    #[test]
    fn decreases_become_warnings() {
        let d = |day| NaiveDate::from_ymd_opt(2021, 6, day).unwrap();
        let recs = [
            DailyRecord::new(d(3), 10, 5, Some(2)),
            DailyRecord::new(d(4), 9, 5, Some(1)),
            DailyRecord::new(d(5), 11, 6, None),
            // Recovered at 0 after positive values: reporting stopped, no revision.
            DailyRecord::new(d(6), 12, 7, Some(3)),
            DailyRecord::new(d(7), 13, 8, Some(0)),
        ];
        assert_eq!(
            decreases("nyt", &recs),
            [
                "nyt cases fell from 10 on 2021-06-03 to 9 on 2021-06-04",
                "nyt recovered fell from 2 on 2021-06-03 to 1 on 2021-06-04",
            ]
        );
    }

    /// The records read (line, fields) and the first error, if any.
    type ReadOutcome = (Vec<(u64, Vec<Vec<u8>>)>, Option<String>);

    /// What the `csv` crate (configured as the parsers configured it) reads from `input`:
    /// the records passing `keep`, each with its line, or the first field-count error.
    fn csv_oracle(input: &[u8], keep: &dyn Fn(&ByteRecord) -> bool) -> ReadOutcome {
        let mut csv = super::super::csv_reader(input);
        let mut out = Vec::new();
        let mut row = ByteRecord::new();
        let mut first = true;
        loop {
            match super::super::next_record("jhu", &mut csv, &mut row) {
                Ok(true) => {
                    if first || keep(&row) {
                        let line = row.position().unwrap().line();
                        out.push((line, row.iter().map(<[u8]>::to_vec).collect()));
                    }
                    first = false;
                }
                Ok(false) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    /// The same through [`Records`], reading `input` in pieces of at most `chunk` bytes.
    fn records(input: &[u8], chunk: usize, wanted: &[(usize, &'static [u8])]) -> ReadOutcome {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut rows = Records::new("jhu", Trickle(input, chunk));
        // Odd chunk sizes take the portable fast path, the others the CPU's best.
        #[cfg(target_arch = "x86_64")]
        if chunk % 2 == 1 {
            rows.avx2 = false;
        }
        let mut out = Vec::new();
        let mut first = true;
        loop {
            match rows.next() {
                Ok(true) => {
                    let fields = (0..rows.len()).map(|i| rows.field(i).to_vec()).collect();
                    out.push((rows.line(), fields));
                    if first {
                        rows.keep_only(wanted);
                        first = false;
                    }
                }
                Ok(false) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    fn us_rows(r: &ByteRecord) -> bool {
        r.get(1) == Some(b"US") && r.get(2) == Some(b"")
    }

    fn assert_same_as_csv(input: &[u8]) {
        let wanted: &[(usize, &[u8])] = &[(1, b"US"), (2, b"")];
        let expected = csv_oracle(input, &us_rows);
        for chunk in [1, 2, 3, 7, 64, 1 << 20] {
            assert_eq!(
                records(input, chunk, wanted),
                expected,
                "filtered, chunk {chunk}, input {:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            records(input, 5, &[]),
            csv_oracle(input, &|_| true),
            "unfiltered, input {:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn records_match_the_csv_crate_on_edge_cases() {
        for input in [
            "",
            "\n\n",
            "a,b,c\n",
            "a,b,c",
            "d,c,p\n1,US,\n2,US,x\n3,\"US\",\n4,\"U\"\"S\",\n",
            "d,c,p\r\n1,US,\r\n2,Peru,\r\n3,US,\r\n",
            "d,c,p\r1,US,\r2,Peru,\r\r3,US,",
            "d,c,p\n\n\n1,US,\n\r\n2,US,\n",
            "d,c,p\n1,\"Korea, South\",\n2,US,\n",
            "d,c,p\n1,Peru,\"a\nb\"\n2,US,\n3,\"x\r\ny\",\n4,US,\n",
            "d,c,p\n1,US,\n2,Peru,,\n3,US,\n",
            "d,c,p\n1,US,\n2,Peru\n",
            "d,c,p\n1,US\n",
            "d,c,p\n1,US,,\n",
            "d,c,p\n1,Pe\"ru,\n2,US,x\"y\n3,US,\n",
            "d,c,p\n1,\"Peru\"x,\n2,\"US\"\"\",\n3,\"\",\n",
            "d,c,p\n1,US,\"\"\n2,US,\"unterminated\n3,US,\n",
            "\u{feff}d,c,p\n1,US,\n",
            "\u{feff}\"d\",c,p\n1,US,\n",
            "d,c,p\n\u{feff}1,\"US\",\n",
            "d,c,p\n1,US,\n2,US,",
            "d,c,p\n1,Peru,",
            "d,c,p\n1,Peru,\"",
            "d,c,p\n,,\n,US,\n",
        ] {
            assert_same_as_csv(input.as_bytes());
        }
    }

    /// A fixed xorshift stream: the same inputs on every run.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn records_match_the_csv_crate_on_random_inputs() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let pieces: [&[u8]; 10] = [
            b"US", b",", b"\"", b"\n", b"\r", b"\r\n", b"x", b"U", b",,", b"1",
        ];
        for _ in 0..4000 {
            let mut input = b"d,c,p\n".to_vec();
            for _ in 0..next() % 40 {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            assert_same_as_csv(&input);
        }
    }

    /// The portable classifier agrees with the AVX2 one, bit for bit, on blocks full of the
    /// bytes they look for.
    #[test]
    fn both_block_classifiers_agree() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let alphabet = b",\n\r\"US x1";
        for _ in 0..2000 {
            let mut block = [0u8; 64];
            for b in &mut block {
                *b = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let swar = classify_swar(&block, b'U');
            let expected = |f: &dyn Fn(u8) -> bool| {
                (0..64)
                    .filter(|&i| f(block[i]))
                    .fold(0u64, |m, i| m | 1 << i)
            };
            assert_eq!(swar.stops, expected(&|b| matches!(b, b'\n' | b'\r' | b'"')));
            assert_eq!(swar.commas, expected(&|b| b == b','));
            assert_eq!(swar.firsts, expected(&|b| b == b'U'));
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: checked just above.
                let simd = unsafe { classify_avx2(&block, b'U') };
                assert_eq!(
                    (simd.stops, simd.commas, simd.firsts),
                    (swar.stops, swar.commas, swar.firsts)
                );
            }
        }
    }

    /// A record cut by the buffer's end is scanned again from its start; the buffer at least
    /// doubles between two scans, so a line of any length costs a number of refills that
    /// grows with its logarithm (one per chunk, as before, would be 256 for 16 MiB and the
    /// scans quadratic: 86 s for 128 MiB over HTTP). Read in 16 KiB pieces, as a download
    /// delivers it.
    #[test]
    fn one_long_line_is_read_with_logarithmically_many_refills() {
        struct Pieces(std::io::Cursor<Vec<u8>>);
        impl Read for Pieces {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(16 * 1024);
                self.0.read(&mut buf[..n])
            }
        }
        let mut input = b"d,c,p\n1,US,".to_vec();
        input.resize(input.len() + (16 << 20), b'x');
        input.extend_from_slice(b"\n2,US,\n");
        let mut rows = Records::new("jhu", Pieces(std::io::Cursor::new(input)));
        rows.next().unwrap();
        rows.keep_only(&[(1, b"US")]);
        assert!(rows.next().unwrap());
        assert_eq!(rows.field(2).len(), 16 << 20);
        assert!(rows.next().unwrap());
        assert!(!rows.next().unwrap());
        assert!(rows.fills < 16, "{} refills", rows.fills);
    }

    #[test]
    fn a_date_after_tomorrow_is_refused_and_tomorrow_is_not() {
        let mut series = SeriesBuilder::new("nyt");
        let day = |d| NaiveDate::from_ymd_opt(2020, 3, d).unwrap();
        series.latest = day(2);
        series
            .push(2, "date", DailyRecord::new(day(2), 1, 0, None))
            .unwrap();
        let e = series
            .push(3, "date", DailyRecord::new(day(3), 1, 0, None))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nyt line 3 column \"date\": \"2020-03-03\" is in the future (after tomorrow, 2020-03-02, UTC)"
        );
    }

    #[test]
    fn a_record_longer_than_the_buffer_grows_it() {
        let long = "x".repeat(3 * READ_CHUNK);
        let input = format!("d,c,p\n1,\"{long}\",\n2,US,\n3,{long},\n4,US,\n");
        assert_same_as_csv(input.as_bytes());
    }
}
