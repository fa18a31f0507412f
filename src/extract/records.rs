//! [`Records`], the streaming CSV record reader of both parsers: the `csv` crate's reading of
//! a file (without header handling), with physical line numbers in every error and, for the
//! JHU file, a prefilter that skips the rows of other countries without copying them.
//!
//! Three paths, and no `unsafe`: SIMD comes from `memchr`.
//! - The prefilter's fast path ([`Records::skip_hopeless`]): a run of buffered lines with no
//!   quote and without a wanted value (`US`): nearly every JHU row. `memchr2` finds each
//!   line's end; the next quote and the next `US` are searched once per occurrence in the
//!   buffer, not once per line ([`Next`]); only the line's commas are counted ([`commas`]).
//! - Any other record with no field starting with a quote: split at its commas with
//!   `memchr_iter`, its fields left in the buffer (never copied).
//! - A record with a field starting with a quote: `csv_core::Reader`, the automaton of the
//!   `csv` crate itself, so quoted commas, doubled quotes and quoted line breaks are read
//!   exactly as that crate reads them.
//!
//! Measured on the JHU file concatenated 100 times (419 MB, release with LTO, hyperfine
//! medians): the hand-written AVX2 reader this replaces took 264 ms; this one 252 ms. The
//! first version, counting commas with `memchr_iter(..).count()` and taking every line
//! through the general path, took 329 ms (30% of its samples in `memchr`'s count on JHU's
//! 30 to 60-byte lines); counting eight bytes at a time (safe SWAR, [`commas`]) 289 ms; and
//! the fast path's own loop 252 ms.

use crate::error::{EtlError, Result};
use csv::ByteRecord;
use memchr::memmem::Finder;
use std::io::Read;

/// How many bytes the reader asks its source for at a time; its buffer starts at twice that,
/// so a read can always take a whole chunk.
const READ_CHUNK: usize = 64 * 1024;

/// A streaming CSV record reader with the semantics of the `csv` crate configured with no
/// header handling: `,` delimiter, `"` quotes that
/// are doubled inside quoted fields, CR, LF or CRLF terminators, blank lines skipped, a
/// leading UTF-8 BOM stripped, every record as many fields as the first.
///
/// One difference: [`line`](Self::line) and every error name the physical line a record
/// starts on (1-based; CRLF, LF and a lone CR each end one line), where the `csv` crate
/// counts the LF bytes consumed before the record was asked for (one less on a CRLF file,
/// and blind to the blank lines in front of a record).
///
/// One addition: a prefilter ([`keep_only`](Self::keep_only)). A record it rejects is never
/// copied, but its fields are still counted, so a malformed skipped row is rejected as the
/// `csv` crate rejects it.
pub(crate) struct Records<'a, R> {
    source_name: &'a str,
    inner: R,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    started: bool,
    /// Line breaks consumed so far.
    breaks: u64,
    /// The last byte consumed was a CR: an LF right after it ends no further line.
    after_cr: bool,
    /// The first record's field count.
    expected: Option<usize>,
    /// The prefilter, by field index.
    want: Vec<Option<&'a [u8]>>,
    /// The non-empty wanted values: a line that lacks one of them cannot pass, and is only
    /// counted, never split.
    needles: Vec<Needle<'a>>,
    /// The next quote in the buffer: a line before it has no quoted field.
    quote: Next,
    /// The full CSV automaton, for records with a quoted field.
    core: csv_core::Reader,
    /// The current record: field `i` is `buf[bounds[i].0..bounds[i].1]` when `in_buf` (an
    /// unquoted line, never copied), else the same range of `data` (unescaped by `core`).
    bounds: Vec<(usize, usize)>,
    in_buf: bool,
    data: Vec<u8>,
    /// `core`'s field ends in `data`.
    ends: Vec<usize>,
    line: u64,
    /// How many times the buffer was refilled (the linearity test counts them).
    #[cfg(test)]
    fills: usize,
}

/// A wanted value and where it next occurs in the buffer.
struct Needle<'a> {
    finder: Finder<'a>,
    next: Next,
}

/// Where a byte string next occurs in the buffer at or after some position, kept between
/// lines: one search over the buffer answers for every line before the occurrence, so a
/// value rare in the input (a quote, `US` among all countries) costs one pass per buffer,
/// not one search per line.
#[derive(Clone, Copy)]
struct Next {
    /// The search started here...
    from: usize,
    /// ...and found the first occurrence here, or nothing before the buffer's end (`NONE`).
    at: usize,
}

const NONE: usize = usize::MAX;

impl Next {
    /// Not searched since the buffer last changed.
    const STALE: Self = Self {
        from: usize::MAX,
        at: NONE,
    };

    /// The first occurrence at or after `pos` (`NONE` if none before the buffer's end),
    /// searching with `find` (from a position, to the buffer's end) only when the cached
    /// answer does not tell.
    #[inline]
    fn at_or_after(&mut self, pos: usize, find: impl FnOnce(usize) -> Option<usize>) -> usize {
        if pos < self.from || self.at < pos {
            self.from = pos;
            self.at = find(pos).map_or(NONE, |i| pos + i);
        }
        self.at
    }
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
            breaks: 0,
            after_cr: false,
            expected: None,
            want: Vec::new(),
            needles: Vec::new(),
            quote: Next::STALE,
            core: {
                // csv_core strips a BOM from the first bytes it is given; here those are a
                // record's, in the middle of the file (the file's BOM is stripped in `next`).
                // A line break read first is skipped, and leaves it at a record's start.
                let mut core = csv_core::Reader::new();
                core.read_record(b"\n", &mut [], &mut []);
                core
            },
            bounds: Vec::with_capacity(16),
            in_buf: true,
            data: Vec::new(),
            ends: Vec::new(),
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
            .map(|&(_, v)| Needle {
                finder: Finder::new(v),
                next: Next::STALE,
            })
            .collect();
    }

    /// The physical line (1-based) the current record starts on.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    pub(crate) fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Field `i` of the current record, unescaped.
    pub(crate) fn field(&self, i: usize) -> &[u8] {
        let (from, to) = self.bounds[i];
        if self.in_buf {
            &self.buf[from..to]
        } else {
            &self.data[from..to]
        }
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
            self.skip_hopeless();
            if !self.skip_terminators()? {
                self.bounds.clear();
                return Ok(false);
            }
            let line = self.breaks + 1;
            let (fields, keep) = match self.unquoted_line()? {
                Some(len) => self.take_line(len),
                None => self.take_quoted()?,
            };
            self.check_fields(line, fields)?;
            if keep {
                self.line = line;
                return Ok(true);
            }
        }
    }

    /// The prefilter's fast path: consumes the buffered lines from `start` on that have no
    /// quote and lack a wanted value (with the line breaks between them), checking only
    /// their field counts. Stops in front of the first other line (or a cut one), left to
    /// the general path of [`next`](Self::next).
    #[inline]
    fn skip_hopeless(&mut self) {
        let Some(expected) = self.expected else {
            return;
        };
        if self.needles.is_empty() {
            return;
        }
        let (buf, end) = (&self.buf[..self.end], self.end);
        let mut pos = self.start;
        // A line ending at `to` holds a quote when the next quote is before `to`, a wanted
        // value when its next occurrence ends at `to` or before: the lines ending before
        // `limit` hold neither.
        let quote = self
            .quote
            .at_or_after(pos, |p| memchr::memchr(b'"', &buf[p..end]));
        let mut limit = quote.saturating_add(1);
        for n in &mut self.needles {
            let at = n.next.at_or_after(pos, |p| n.finder.find(&buf[p..end]));
            limit = limit.min(at.saturating_add(n.finder.needle().len()));
        }
        let (mut breaks, mut after_cr) = (self.breaks, self.after_cr);
        while let Some(len) = memchr::memchr2(b'\n', b'\r', &buf[pos..]) {
            let to = pos + len;
            if to >= limit {
                break;
            }
            if len > 0 {
                let fields = 1 + commas(&buf[pos..to]);
                if fields != expected {
                    break; // the general path reports it
                }
            }
            // A line's terminator, or a blank line's, or the LF of a CRLF.
            breaks += u64::from(len > 0 || buf[to] == b'\r' || !after_cr);
            after_cr = buf[to] == b'\r';
            pos = to + 1;
            if after_cr && buf.get(pos) == Some(&b'\n') {
                // The LF of a CRLF, taken here rather than by one more search.
                after_cr = false;
                pos += 1;
            }
        }
        (self.start, self.breaks, self.after_cr) = (pos, breaks, after_cr);
    }

    /// Skips the CR and LF bytes in front of a record, counting the line breaks; `false`
    /// when the input ends first.
    #[inline]
    fn skip_terminators(&mut self) -> Result<bool> {
        loop {
            while let Some(&b) = self.buf[..self.end].get(self.start) {
                match b {
                    b'\n' => self.breaks += u64::from(!self.after_cr),
                    b'\r' => self.breaks += 1,
                    _ => return Ok(true),
                }
                self.after_cr = b == b'\r';
                self.start += 1;
            }
            if !self.fill()? {
                return Ok(false);
            }
        }
    }

    /// The length (terminator excluded) of the record at `start` when none of its fields
    /// starts with a quote, refilling the buffer until it holds the record's end; `None`
    /// when a field does (the record is then read by [`take_quoted`](Self::take_quoted)).
    #[inline]
    fn unquoted_line(&mut self) -> Result<Option<usize>> {
        let mut searched = 0;
        let len = loop {
            let rest = &self.buf[self.start..self.end];
            match memchr::memchr2(b'\n', b'\r', &rest[searched..]) {
                Some(n) => break searched + n,
                None if self.eof => break rest.len(),
                None => {
                    // The refill moves the record to the front of the buffer and at least
                    // doubles the bytes buffered for it (see `fill`).
                    searched = rest.len();
                    self.fill()?;
                }
            }
        };
        let (start, to) = (self.start, self.start + len);
        let (buf, end) = (&self.buf, self.end);
        let mut pos = start;
        loop {
            let q = self
                .quote
                .at_or_after(pos, |p| memchr::memchr(b'"', &buf[p..end]));
            if q >= to {
                return Ok(Some(len));
            }
            // Inside an unquoted field a quote is a plain byte; one that opens a field
            // needs the full automaton.
            if q == start || buf[q - 1] == b',' {
                return Ok(None);
            }
            pos = q + 1;
        }
    }

    /// Consumes the unquoted record of `len` bytes at `start` (and its terminator): its
    /// field count and whether it passes the prefilter, its fields in `bounds` when it may.
    #[inline]
    fn take_line(&mut self, len: usize) -> (usize, bool) {
        let (from, to) = (self.start, self.start + len);
        let (buf, end) = (&self.buf, self.end);
        let line = &buf[from..to];
        // A line lacking a wanted value cannot pass: only its commas are counted.
        let hopeless = self.needles.iter_mut().any(|n| {
            let at = n.next.at_or_after(from, |p| n.finder.find(&buf[p..end]));
            at.saturating_add(n.finder.needle().len()) > to
        });
        let result = if hopeless {
            (1 + commas(line), false)
        } else {
            self.bounds.clear();
            self.in_buf = true;
            let mut field = from;
            for comma in memchr::memchr_iter(b',', line) {
                self.bounds.push((field, from + comma));
                field = from + comma + 1;
            }
            self.bounds.push((field, to));
            let keep = wanted(&self.want, &self.bounds, buf);
            (self.bounds.len(), keep)
        };
        // The terminator, unless the input ended first.
        if to < end {
            self.breaks += 1;
            self.after_cr = buf[to] == b'\r';
            self.start = to + 1;
        } else {
            self.start = to;
        }
        result
    }

    /// Reads the record at `start`, one of whose fields starts with a quote, with the `csv`
    /// crate's own automaton: its field count and whether it passes the prefilter, its
    /// unescaped fields in `data` and `bounds`. The automaton takes the input as it comes,
    /// a buffer at a time, so a quoted field of any length is read once.
    #[cold]
    fn take_quoted(&mut self) -> Result<(usize, bool)> {
        use csv_core::ReadRecordResult as Read;
        // `core` is at a record's start: the last record it read ended at a terminator
        // (after a CR it would skip an LF, but this record starts with neither).
        if self.data.is_empty() {
            self.data.resize(1024, 0);
            self.ends.resize(16, 0);
        }
        let (mut out, mut fields) = (0, 0);
        loop {
            let input = &self.buf[self.start..self.end];
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.data[out..], &mut self.ends[fields..]);
            self.count_breaks(self.start, self.start + nin);
            self.start += nin;
            out += nout;
            fields += nend;
            match result {
                // At the end of the input the automaton is given no bytes, which ends the
                // record (an unterminated quoted field included, as the csv crate reads it).
                Read::InputEmpty => _ = self.fill()?,
                Read::OutputFull => self.data.resize(2 * self.data.len(), 0),
                Read::OutputEndsFull => self.ends.resize(2 * self.ends.len(), 0),
                Read::Record | Read::End => break,
            }
        }
        self.bounds.clear();
        self.in_buf = false;
        let mut from = 0;
        for &to in &self.ends[..fields] {
            self.bounds.push((from, to));
            from = to;
        }
        Ok((fields, wanted(&self.want, &self.bounds, &self.data)))
    }

    /// Counts the line breaks of `buf[from..to]`, consumed bytes of a quoted record.
    fn count_breaks(&mut self, from: usize, to: usize) {
        for &b in &self.buf[from..to] {
            match b {
                b'\n' => self.breaks += u64::from(!self.after_cr),
                b'\r' => self.breaks += 1,
                _ => {}
            }
            self.after_cr = b == b'\r';
        }
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
        self.quote = Next::STALE;
        for n in &mut self.needles {
            n.next = Next::STALE;
        }
        // A record cut by the buffer's end is searched on from where its search stopped, but
        // its bytes are moved on every refill. So this reads at least as many bytes as that
        // record already has (and a whole chunk): the bytes buffered at least double between
        // two refills within one record, and the moves of a line of any length add up to at
        // most its length. (One chunk at a time, a 128 MiB line took 86 s over HTTP.) Small
        // reads (a slow download) only mean more reads.
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

/// The commas of an unquoted line, eight bytes at a time (SWAR, safe code): on JHU's short
/// lines `memchr_iter(..).count()` cost more in setup than in search (see the module's
/// documentation for the measurements).
#[inline]
fn commas(line: &[u8]) -> usize {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // 1 in each byte of the word that is a comma, 0 in the others (exact: no carry
    // crosses a byte).
    let lanes = |word: &[u8]| {
        let y = u64::from_le_bytes(word.try_into().unwrap()) ^ (u64::from(b',') * ONES);
        (!(((y & LOW7) + LOW7) | y) & !LOW7) >> 7
    };
    // The sum of the eight byte lanes, which must not exceed 255.
    let total = |lanes: u64| (lanes.wrapping_mul(ONES) >> 56) as usize;
    if line.len() < 8 {
        return line.iter().filter(|&&b| b == b',').count();
    }
    let rest = line.len() % 8;
    let mut n = 0;
    for block in line[..line.len() - rest].chunks(31 * 8) {
        n += total(block.chunks_exact(8).map(lanes).sum());
    }
    if rest > 0 {
        // The last eight bytes, less those already counted.
        n += total(lanes(&line[line.len() - 8..]) >> (8 * (8 - rest)));
    }
    n
}

/// Whether the record whose field `i` is `bytes[bounds[i].0..bounds[i].1]` passes the
/// prefilter `want` (a record without a wanted field does not).
#[inline]
fn wanted(want: &[Option<&[u8]>], bounds: &[(usize, usize)], bytes: &[u8]) -> bool {
    want.iter()
        .enumerate()
        .all(|(i, w)| match (w, bounds.get(i)) {
            (None, _) => true,
            (Some(v), Some(&(from, to))) => bytes[from..to] == **v,
            (Some(_), None) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records read (line, fields) and the first error, if any.
    type ReadOutcome = (Vec<(u64, Vec<Vec<u8>>)>, Option<String>);

    /// The physical line (1-based) of the record the `csv` crate began to read at byte
    /// `pos` of `input`: its first byte is the first after `pos` that is not CR or LF, and
    /// every CRLF, LF and lone CR before that byte ends one line. The oracle of
    /// [`Records::line`], independent of its code.
    fn physical_line(input: &[u8], pos: usize) -> u64 {
        let first = input[pos..]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .map_or(input.len(), |n| pos + n);
        let before = &input[..first];
        let crlf = before.windows(2).filter(|w| w == b"\r\n").count();
        let ends = before.iter().filter(|&&b| b == b'\r' || b == b'\n').count();
        (ends - crlf + 1) as u64
    }

    /// What the `csv` crate reads from `input`: the records passing `keep`, each with its
    /// physical line, or the first error, as the reader words it but at the physical line.
    fn csv_oracle(input: &[u8], keep: &dyn Fn(&ByteRecord) -> bool) -> ReadOutcome {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(input);
        let mut out = Vec::new();
        let mut row = ByteRecord::new();
        let mut first = true;
        loop {
            match csv.read_byte_record(&mut row) {
                Ok(true) => {
                    if first || keep(&row) {
                        let line = physical_line(input, row.position().unwrap().byte() as usize);
                        out.push((line, row.iter().map(<[u8]>::to_vec).collect()));
                    }
                    first = false;
                }
                Ok(false) => return (out, None),
                Err(e) => {
                    let line = physical_line(input, e.position().unwrap().byte() as usize);
                    let csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } = e.kind()
                    else {
                        panic!("unexpected csv error {e}");
                    };
                    let e = EtlError::DataQualityError {
                        source_name: "jhu".into(),
                        line,
                        column: "(row)".into(),
                        value: format!("{len} fields"),
                        reason: format!("does not match the header's {expected_len} fields"),
                    };
                    return (out, Some(e.to_string()));
                }
            }
        }
    }

    /// A source that gives at most `.1` bytes a read.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The same through [`Records`], reading `input` in pieces of at most `chunk` bytes.
    fn records(input: &[u8], chunk: usize, wanted: &[(usize, &'static [u8])]) -> ReadOutcome {
        let mut rows = Records::new("jhu", Trickle(input, chunk));
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
            "d,c,p\n1,\"US\"\r\n2,US,\"a\r\rb\"\n\r3,US,\n",
            "d,c,p\n1,US,\"x\r",
            "d,c,p\n\"1\nUS\",US,\r\n\n2,US,\"\"\"\r\n3,Peru,\"US\"\n",
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
        let pieces: [&[u8]; 12] = [
            b"US",
            b",",
            b"\"",
            b"\n",
            b"\r",
            b"\r\n",
            b"x",
            b"U",
            b",,",
            b"1",
            b"2020-01-22",
            b"Korea, South,,",
        ];
        for _ in 0..4000 {
            let mut input = b"d,c,p\n".to_vec();
            for _ in 0..next() % 40 {
                input.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            assert_same_as_csv(&input);
        }
    }

    #[test]
    fn commas_are_counted_at_any_length_and_offset() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        for _ in 0..3000 {
            let len = (next() % 600) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| b",,x\xAC\x2D\xFF"[(next() % 6) as usize])
                .collect();
            let from = (next() % 9) as usize;
            let line = &line[from.min(len)..];
            let naive = line.iter().filter(|&&b| b == b',').count();
            assert_eq!(commas(line), naive, "{line:?}");
        }
        assert_eq!(commas(&[b','; 1000]), 1000);
    }

    /// The lines of the records `Records` reads from `input`, unfiltered.
    fn lines(input: &str) -> Vec<u64> {
        let mut rows = Records::new("jhu", input.as_bytes());
        let mut out = Vec::new();
        while rows.next().unwrap() {
            out.push(rows.line());
        }
        out
    }

    #[test]
    fn lines_are_physical_whatever_the_line_breaks() {
        assert_eq!(lines("d,c\n1,a\n2,b\n"), [1, 2, 3]);
        assert_eq!(lines("d,c\r\n1,a\r\n2,b\r\n"), [1, 2, 3]);
        assert_eq!(lines("d,c\r1,a\r2,b\r"), [1, 2, 3]);
        assert_eq!(lines("d,c\r\n1,a\n2,b\r3,c"), [1, 2, 3, 4]);
        // Blank lines count, whichever break makes them; LF then CR is two breaks.
        assert_eq!(lines("\n\r\nd,c\n\n1,a\r\r\n\r2,b\n\r3,c\n"), [3, 5, 8, 10]);
        // A BOM is not a line.
        assert_eq!(lines("\u{feff}d,c\r\n1,a\r\n"), [1, 2]);
    }

    #[test]
    fn a_quoted_field_spanning_lines_moves_the_next_record_down() {
        let input = "d,c\r\n1,\"a\r\nb\rc\nd\"\r\n2,x\r\n\"3\n\",\"\"\"\n\"\n4,y\n";
        assert_eq!(lines(input), [1, 2, 6, 7, 10]);
        let mut rows = Records::new("jhu", input.as_bytes());
        rows.next().unwrap();
        rows.next().unwrap();
        assert_eq!(rows.field(1), b"a\r\nb\rc\nd");
    }

    #[test]
    fn errors_name_the_physical_line() {
        let cases = [
            ("d,c,p\r\n1,US,\r\n2,Peru\r\n", 3, 2),
            ("d,c,p\r1,US,\r\r2,Peru,,\r", 4, 4),
            ("d,c,p\n1,\"x\ny\",\n\n2,Peru\n", 5, 2),
        ];
        for (input, line, fields) in cases {
            let mut rows = Records::new("jhu", input.as_bytes());
            rows.next().unwrap();
            rows.keep_only(&[(1, b"US"), (2, b"")]);
            let e = loop {
                match rows.next() {
                    Ok(true) => {}
                    Ok(false) => panic!("no error in {input:?}"),
                    Err(e) => break e,
                }
            };
            assert_eq!(
                e.to_string(),
                format!(
                    "jhu line {line} column \"(row)\": \"{fields} fields\" does not match the header's 3 fields"
                ),
                "{input:?}"
            );
        }
    }

    #[test]
    fn an_empty_file_and_a_failing_source_are_errors_of_their_kind() {
        let e = Records::new("jhu", "\r\n\n".as_bytes())
            .headers()
            .unwrap_err();
        assert_eq!(e.to_string(), "jhu: the file is empty (no header line)");
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("connection reset"))
            }
        }
        let e = Records::new("jhu", Broken).next().unwrap_err();
        assert_eq!(e.name(), "SourceUnavailable");
    }

    /// A record cut by the buffer's end is searched on after a refill; the buffer at least
    /// doubles between two refills, so a line of any length costs a number of refills that
    /// grows with its logarithm (one per chunk would be 256 for 16 MiB, and the moves of its
    /// bytes quadratic: 86 s for 128 MiB over HTTP). Read in 16 KiB pieces, as a download
    /// delivers it; once unquoted, once quoted (through `csv_core`).
    #[test]
    fn one_long_line_is_read_with_logarithmically_many_refills() {
        struct Pieces(std::io::Cursor<Vec<u8>>);
        impl Read for Pieces {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(16 * 1024);
                self.0.read(&mut buf[..n])
            }
        }
        for quote in ["", "\""] {
            let mut input = format!("d,c,p\n1,US,{quote}").into_bytes();
            input.resize(input.len() + (16 << 20), b'x');
            input.extend_from_slice(format!("{quote}\n2,US,\n").as_bytes());
            let mut rows = Records::new("jhu", Pieces(std::io::Cursor::new(input)));
            rows.next().unwrap();
            rows.keep_only(&[(1, b"US")]);
            assert!(rows.next().unwrap());
            assert_eq!(rows.field(2).len(), 16 << 20);
            assert!(rows.next().unwrap());
            assert_eq!(rows.line(), 3);
            assert!(!rows.next().unwrap());
            // Quoted, the automaton takes each buffer whole: one refill per 64 KiB chunk,
            // but no byte is moved or read twice.
            let most = if quote.is_empty() { 16 } else { 300 };
            assert!(rows.fills < most, "{quote:?}: {} refills", rows.fills);
        }
    }

    #[test]
    fn a_record_longer_than_the_buffer_grows_it() {
        let long = "x".repeat(3 * READ_CHUNK);
        let input = format!("d,c,p\n1,\"{long}\",\n2,US,\n3,{long},\n4,US,\n");
        assert_same_as_csv(input.as_bytes());
        let input = format!("d,c,p\n1,US,\"{long}\n{long}\"\n2,US,\n3,{long},\n4,US,\n");
        assert_same_as_csv(input.as_bytes());
    }
}
