//! The CSV import's file (API.md, admin import): its bytes → text (UTF-8,
//! or Shift_JIS as Excel in Japan saves "CSV") → records, each with the line
//! it starts on as an editor shows it.
//!
//! Owns the encodings and the CSV syntax; knows nothing of users. The rows
//! are checked and written, all or nothing, by `accounts::import_csv`. A
//! line that cannot be read is reported like any bad line: (line, message).

use encoding_rs::{Encoding, SHIFT_JIS, UTF_8};

use super::*;

/// Bad lines of the file, each with what is wrong with it.
pub(super) type BadLines = Vec<(usize, String)>;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The encodings an import file may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    /// Windows-31J, Microsoft's CP932: `encoding_rs::SHIFT_JIS` is that
    /// superset (NEC and IBM extensions such as ① and 髙), not bare JIS X 0208.
    ShiftJis,
}

impl Charset {
    /// A `charset` parameter: the WHATWG labels encoding_rs knows (`utf-8`,
    /// `utf8`, `shift_jis`, `sjis`, `windows-31j`, `ms932`, …, any case), and
    /// `cp932`, the name Windows tools use, which WHATWG lacks.
    fn parse(label: &str) -> Result<Charset> {
        let label = label.trim().trim_matches('"');
        if label.eq_ignore_ascii_case("cp932") {
            return Ok(Charset::ShiftJis);
        }
        match Encoding::for_label(label.as_bytes()) {
            Some(e) if e == UTF_8 => Ok(Charset::Utf8),
            Some(e) if e == SHIFT_JIS => Ok(Charset::ShiftJis),
            _ => Err(Error::bad_field("charset", "must be utf-8 or shift_jis (also windows-31j, cp932)")),
        }
    }
}

/// The text of an import file. A UTF-8 BOM means UTF-8 (and is dropped),
/// whatever was declared; otherwise the declared charset is the one tried;
/// with none, UTF-8, then Shift_JIS (CP932) if the bytes are not UTF-8.
/// Err: the lines that could not be read, so nothing is guessed.
fn decode(bytes: &[u8], declared: Option<Charset>) -> std::result::Result<String, BadLines> {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return utf8(rest).map_err(|lines| bad(lines, "not UTF-8 text, though the file starts with a UTF-8 BOM"));
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(vec![(1, "encoding: UTF-16 (Excel's \"Unicode Text\") is not accepted; save as \"CSV UTF-8\" or \"CSV\"".into())]);
    }
    match declared {
        Some(Charset::Utf8) => utf8(bytes).map_err(|lines| bad(lines, "not UTF-8 text (charset=utf-8)")),
        Some(Charset::ShiftJis) => shift_jis(bytes).map_err(|lines| bad(lines, "not Shift_JIS (CP932) text (charset=shift_jis)")),
        None => utf8(bytes).or_else(|not_utf8| {
            shift_jis(bytes).map_err(|not_sjis| {
                // Name the lines of the reading that fits more of the file:
                // one stray byte in a UTF-8 file is one line, not hundreds.
                let lines = if not_utf8.len() < not_sjis.len() { not_utf8 } else { not_sjis };
                bad(lines, "neither UTF-8 nor Shift_JIS (CP932) text; save as \"CSV UTF-8\"")
            })
        }),
    }
}

fn bad(lines: Vec<usize>, why: &str) -> BadLines {
    lines.into_iter().map(|line| (line, format!("encoding: {why}"))).collect()
}

/// Err: the lines with bytes that are not UTF-8.
fn utf8(bytes: &[u8]) -> std::result::Result<String, Vec<usize>> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let (mut line, mut lines) = (1, Vec::new());
    for chunk in bytes.utf8_chunks() {
        // A newline is always valid, so it is never inside an invalid run.
        line += chunk.valid().bytes().filter(|&b| b == b'\n').count();
        if !chunk.invalid().is_empty() && lines.last() != Some(&line) {
            lines.push(line);
        }
    }
    Err(lines)
}

/// Err: the lines with bytes that are not Shift_JIS (CP932).
fn shift_jis(bytes: &[u8]) -> std::result::Result<String, Vec<usize>> {
    let (text, had_errors) = SHIFT_JIS.decode_without_bom_handling(bytes);
    if !had_errors {
        return Ok(text.into_owned());
    }
    // No Shift_JIS byte sequence means U+FFFD, so each one in the text marks
    // bytes that could not be read; a newline is never a trail byte, and
    // survives a bad lead byte, so the lines are the file's.
    Err(text.split('\n').enumerate().filter(|(_, l)| l.contains('\u{FFFD}')).map(|(i, _)| i + 1).collect())
}

/// One record of the file.
pub(super) struct Record {
    /// The line it starts on, as an editor numbers them: a quoted newline
    /// makes a record span lines, and blank lines count.
    pub line: usize,
    /// Spaces around an unquoted field are dropped (as the import always
    /// did); a quoted field is kept exactly as it is between its quotes.
    /// Never empty, nor all empty strings: blank records are skipped.
    pub fields: Vec<String>,
}

/// The records of the file (RFC 4180: `"…"` quotes a field, so it may hold
/// commas and newlines, and `""` inside it is a quote), skipping blank ones
/// (empty lines, and the `,,,,,` rows Excel leaves). `columns` name the
/// fields in the messages. Err: a record's line and why it cannot be used.
pub(super) fn records(text: &str, columns: &[&str]) -> Vec<std::result::Result<Record, (usize, String)>> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let bytes = text.as_bytes();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut record = csv::StringRecord::new();
    let mut out = Vec::new();
    loop {
        let start = reader.position().clone();
        let read = reader.read_record(&mut record);
        let end = reader.position().byte() as usize;
        // csv's position is where the last record ended: before a CRLF's LF
        // and any blank lines, which belong to no record. Count those too.
        let raw = bytes.get(start.byte() as usize..end).unwrap_or_default();
        let skipped = raw.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        let line = start.line() as usize + raw[..skipped].iter().filter(|&&b| b == b'\n').count();
        match read {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Only a reader of bytes that are not UTF-8 fails, and this text is.
                out.push(Err((line, format!("could not be read as CSV: {e}"))));
                break;
            }
        }
        let column = |i: usize| columns.get(i).copied().unwrap_or("field");
        let quoted = match quoted_fields(&raw[skipped..]) {
            Ok(quoted) => quoted,
            Err(BadQuote::Unclosed) => {
                out.push(Err((line, "a quote opens a field here and is never closed".to_string())));
                continue;
            }
            Err(BadQuote::AfterClosing(i)) => {
                out.push(Err((line, format!("{}: only a comma may follow the closing quote", column(i)))));
                continue;
            }
        };
        let mut fields = Vec::with_capacity(record.len());
        let mut bad = None;
        for (i, value) in record.iter().enumerate() {
            let column = column(i);
            let quoted = quoted.get(i).copied().unwrap_or(false);
            let value = if quoted { value } else { value.trim() };
            if !quoted && value.starts_with('"') {
                bad = Some(format!("{column}: a quote must be the field's first character, with no space before it"));
            } else if value.contains('\u{FFFD}') {
                // Text decoded in the wrong encoding before it was sent
                // (a browser's file.text() reads Shift_JIS so): never a name.
                bad = Some(format!(
                    "{column}: contains U+FFFD, the mark of text read in the wrong encoding; send the file's bytes as they are"
                ));
            }
            if bad.is_some() {
                break;
            }
            fields.push(value.to_string());
        }
        match bad {
            Some(why) => out.push(Err((line, why))),
            None if fields.iter().all(String::is_empty) => {}
            None => out.push(Ok(Record { line, fields })),
        }
    }
    out
}

/// Why a record's quotes are not RFC 4180's.
#[derive(Debug, PartialEq, Eq)]
enum BadQuote {
    /// A quote opens a field and nothing closes it: the rest of the file
    /// would be that one field.
    Unclosed,
    /// Field `i` has something other than a comma or the line's end after
    /// its closing quote (csv would append it to the field).
    AfterClosing(usize),
}

/// Which fields of one record, as its bytes stand in the file, are quoted.
/// The rule is csv's: a quote opens a quoted field only as the field's first
/// byte; inside, `""` is a quote and a lone `"` closes it.
fn quoted_fields(raw: &[u8]) -> std::result::Result<Vec<bool>, BadQuote> {
    let mut quoted = vec![raw.first() == Some(&b'"')];
    let (mut in_quotes, mut closed, mut i) = (quoted[0], false, usize::from(quoted[0]));
    while i < raw.len() {
        match (in_quotes, raw[i]) {
            (true, b'"') if raw.get(i + 1) == Some(&b'"') => i += 1,
            (true, b'"') => (in_quotes, closed) = (false, true),
            (true, _) => {}
            (false, b',') => {
                in_quotes = raw.get(i + 1) == Some(&b'"');
                closed = false;
                quoted.push(in_quotes);
                i += usize::from(in_quotes);
            }
            (false, b'\r' | b'\n') => break,
            (false, _) if closed => return Err(BadQuote::AfterClosing(quoted.len() - 1)),
            (false, _) => {}
        }
        i += 1;
    }
    if in_quotes {
        Err(BadQuote::Unclosed)
    } else {
        Ok(quoted)
    }
}

impl App {
    /// `POST /api/v1/admin/import`: the body's bytes, in the `charset` of its
    /// Content-Type if it names one (400 if it names another than UTF-8 or
    /// Shift_JIS); see `decode`. Lines that cannot be read are bad lines.
    pub fn import_csv_bytes(
        &self,
        actor: &str,
        bytes: &[u8],
        charset: Option<&str>,
        now: Ms,
    ) -> Result<std::result::Result<usize, BadLines>> {
        let declared = charset.map(Charset::parse).transpose()?;
        match decode(bytes, declared) {
            Ok(text) => self.import_csv(actor, &text, now),
            Err(lines) => Ok(Err(lines)),
        }
    }

    /// The text of a file for `onepush import FILE`, decoded as the HTTP
    /// import decodes a body without a charset. The CLI sends text to the
    /// server, so it decodes first; an associated function for that reason.
    pub fn import_file_text(bytes: &[u8]) -> std::result::Result<String, BadLines> {
        decode(bytes, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [&str; 3] = ["a", "b", "c"];

    fn sjis(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = SHIFT_JIS.encode(text);
        assert!(!unmappable, "{text} has no Shift_JIS form");
        bytes.into_owned()
    }

    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        records(text, &COLUMNS).into_iter().map(|r| r.map(|r| (r.line, r.fields)).unwrap_or_else(|e| panic!("{e:?}"))).collect()
    }

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn utf8_is_read_as_it_is_and_a_bom_is_dropped() {
        assert_eq!(decode("a,山田\n".as_bytes(), None).unwrap(), "a,山田\n");
        assert_eq!(decode("\u{FEFF}a,山田\n".as_bytes(), None).unwrap(), "a,山田\n");
        // A BOM wins over a declared charset, as in browsers.
        assert_eq!(decode("\u{FEFF}山田".as_bytes(), Some(Charset::ShiftJis)).unwrap(), "山田");
        assert_eq!(decode(b"", None).unwrap(), "");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_cp932() {
        // ① and 髙 are CP932's NEC and IBM extensions, common in Japanese names.
        let text = "1000000001,t1,山田　太郎,user\r\n1000000001,t2,髙橋①ｶﾅ,user\r\n";
        assert_eq!(decode(&sjis(text), None).unwrap(), text);
        assert_eq!(decode(&sjis(text), Some(Charset::ShiftJis)).unwrap(), text);
        // Declared UTF-8 is not guessed past: the lines with Japanese are named.
        let err = decode(&sjis(text), Some(Charset::Utf8)).unwrap_err();
        assert_eq!(err.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2]);
        assert!(err[0].1.contains("charset=utf-8"), "{err:?}");
    }

    #[test]
    fn charset_labels() {
        for l in ["utf-8", "UTF-8", "utf8", "\"utf-8\""] {
            assert_eq!(Charset::parse(l).unwrap(), Charset::Utf8, "{l}");
        }
        for l in ["shift_jis", "Shift_JIS", "windows-31j", "Windows-31J", "cp932", "CP932", "ms932", "sjis", "shift-jis"] {
            assert_eq!(Charset::parse(l).unwrap(), Charset::ShiftJis, "{l}");
        }
        for l in ["euc-jp", "iso-2022-jp", "utf-16le", "latin1", "", "nonsense"] {
            let e = Charset::parse(l).unwrap_err();
            assert_eq!(e.to_string(), "charset: must be utf-8 or shift_jis (also windows-31j, cp932)", "{l}");
        }
    }

    #[test]
    fn unreadable_bytes_name_their_lines() {
        // 0xA0 is neither UTF-8 here nor Shift_JIS.
        let mut bytes = sjis("a,山田\nb,c\n");
        bytes.extend_from_slice(b"d,\xA0\ne\n");
        let err = decode(&bytes, None).unwrap_err();
        assert_eq!(err, [(3, "encoding: neither UTF-8 nor Shift_JIS (CP932) text; save as \"CSV UTF-8\"".to_string())]);
        // A UTF-8 file with one stray byte: its line, not every Japanese line.
        let mut bytes = "a,山田\nb,鈴木\nc,佐藤\n".as_bytes().to_vec();
        bytes.extend_from_slice(b"d,caf\xE9\n");
        assert_eq!(decode(&bytes, None).unwrap_err().iter().map(|e| e.0).collect::<Vec<_>>(), [4]);
        let err = decode(b"\xFF\xFEa\x00,\x00", None).unwrap_err();
        assert!(err[0].1.contains("UTF-16"), "{err:?}");
        let err = decode(b"\xEF\xBB\xBFa\n\xFF\n", None).unwrap_err();
        assert_eq!(err[0].0, 2);
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_newlines_and_spaces() {
        let text = "x,\"Yamada, Taro\",\"say \"\"hi\"\"\"\n\" padded \",\"\", z \n";
        assert_eq!(fields(text), [(1, owned(&["x", "Yamada, Taro", "say \"hi\""])), (2, owned(&[" padded ", "", "z"]))]);
    }

    #[test]
    fn lines_are_the_files_with_crlf_blank_lines_and_quoted_newlines() {
        let text = "a,b\r\n\r\n,,\r\n  \r\nc,\"two\r\nlines\"\r\nd,e\r\n\r\nf";
        let got: Vec<usize> = fields(text).into_iter().map(|r| r.0).collect();
        assert_eq!(got, [1, 5, 7, 9]);
        assert_eq!(fields(text)[1].1, owned(&["c", "two\r\nlines"]));
        assert_eq!(fields("\u{FEFF}a,b\nc,d").iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(fields("\u{FEFF}a,b\nc,d")[0].1, owned(&["a", "b"]));
    }

    #[test]
    fn a_broken_record_is_named_with_its_line() {
        let got = records("a,b\nc, \"d, e\",f\ng,\"h\nend", &COLUMNS);
        assert_eq!(got[0].as_ref().map(|r| r.line).ok(), Some(1));
        assert_eq!(
            got[1].as_ref().err(),
            Some(&(2, "b: a quote must be the field's first character, with no space before it".to_string()))
        );
        assert_eq!(got[2].as_ref().err(), Some(&(3, "a quote opens a field here and is never closed".to_string())));
        assert_eq!(got.len(), 3);
        let got = records("a,\"b\" ,c\n", &COLUMNS);
        assert_eq!(got[0].as_ref().err(), Some(&(1, "b: only a comma may follow the closing quote".to_string())));
        let got = records("a,\u{FFFD}\n", &COLUMNS);
        assert!(got[0].as_ref().is_err_and(|e| e.1.starts_with("b: contains U+FFFD")), "{:?}", got[0].as_ref().err());
    }

    #[test]
    fn quoted_fields_follow_csv() {
        assert_eq!(quoted_fields(b"a,\"b,c\",d\r\n"), Ok(vec![false, true, false]));
        assert_eq!(quoted_fields(b"\"a\"\"\",b,"), Ok(vec![true, false, false]));
        assert_eq!(quoted_fields(b"\"a\nb\"\r\n"), Ok(vec![true]));
        assert_eq!(quoted_fields(b"a\"b,\"\""), Ok(vec![false, true]));
        assert_eq!(quoted_fields(b""), Ok(vec![false]));
        assert_eq!(quoted_fields(b"a,\"b"), Err(BadQuote::Unclosed));
        assert_eq!(quoted_fields(b"a,\"b\"x,c"), Err(BadQuote::AfterClosing(1)));
        assert_eq!(quoted_fields(b"\"a\" ,c"), Err(BadQuote::AfterClosing(0)));
    }
}
