//! A decoder for chunked request bodies with bounds (onepush patch
//! "limits"). `chunked_transfer::Decoder` read a chunk-size line (and its
//! extensions) without any bound, so one request could grow memory at line
//! rate, and accepted lines that RFC 9112 §7.1 forbids (no digits, control
//! characters in extensions), the stuff of parser differentials. Here a
//! chunk-size line is 1-16 hex digits and optional extensions without
//! control characters, at most `MAX_LINE` bytes; trailer lines are header
//! lines, at most `MAX_TRAILERS`. Malformed input is `InvalidData`.

use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};

const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64;

enum State {
    Size,
    Data(u64),
    DataEnd,
    Done,
}

pub(crate) struct ChunkedReader<R> {
    inner: R,
    state: State,
}

fn invalid(what: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, what)
}

impl<R: Read> ChunkedReader<R> {
    pub(crate) fn new(inner: R) -> ChunkedReader<R> {
        ChunkedReader { inner, state: State::Size }
    }

    /// One line, CRLF included, of at most `MAX_LINE` bytes.
    fn read_line(&mut self) -> IoResult<Vec<u8>> {
        let mut line = Vec::with_capacity(16);
        loop {
            let mut byte = [0u8];
            match self.inner.read(&mut byte) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if line.ends_with(b"\r\n") {
                return Ok(line);
            }
            if line.len() > MAX_LINE {
                return Err(invalid("chunk-size or trailer line too long"));
            }
        }
    }
}

/// The size of a chunk-size line (CRLF included): `1*16HEXDIG [ BWS ";"
/// extensions ]`, with no control character but HTAB.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = &line[digits..];
    let after_bws = rest.iter().position(|b| *b != b' ' && *b != b'\t');
    let extensions_ok = match after_bws {
        None => rest.is_empty(),
        Some(i) => rest[i] == b';',
    };
    if !extensions_ok || rest.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Size => {
                    let line = self.read_line()?;
                    match chunk_size(&line) {
                        Some(0) => {
                            // the last chunk: trailer fields up to an empty line, ignored
                            for _ in 0..=MAX_TRAILERS {
                                let line = self.read_line()?;
                                if line == b"\r\n" {
                                    self.state = State::Done;
                                    return Ok(0);
                                }
                                if !crate::limits::well_formed_header(&line[..line.len() - 2]) {
                                    return Err(invalid("malformed trailer line"));
                                }
                            }
                            return Err(invalid("too many trailer lines"));
                        }
                        Some(size) => self.state = State::Data(size),
                        None => return Err(invalid("malformed chunk size")),
                    }
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(0);
                    }
                    let want = (buf.len() as u64).min(left) as usize;
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(ErrorKind::UnexpectedEof.into());
                    }
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(n);
                }
                State::DataEnd => {
                    let mut crlf = [0u8; 2];
                    self.inner.read_exact(&mut crlf)?;
                    if &crlf != b"\r\n" {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedReader;
    use std::io::{ErrorKind, Read};

    fn decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ChunkedReader::new(input).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        assert_eq!(decode(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\nT: v\r\n\r\n").unwrap(), b"abcde");
        assert_eq!(decode(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(), b"0123456789");
    }

    #[test]
    fn refuses_what_is_malformed_or_unbounded() {
        let bad = |input: &[u8]| decode(input).unwrap_err().kind();
        assert_eq!(bad(b"zz\r\nab\r\n0\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"2\r\nabX\r\n0\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"ffffffffffffffffff\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(&[b'1'; 10_000]), ErrorKind::InvalidData);
        let mut many = b"0\r\n".to_vec();
        for _ in 0..100 {
            many.extend_from_slice(b"T: v\r\n");
        }
        assert_eq!(bad(&many), ErrorKind::InvalidData);
        assert_eq!(bad(b"5\r\nab"), ErrorKind::UnexpectedEof);
        // RFC 9112 §7.1: digits are required, extensions follow a ';', no control characters
        assert_eq!(bad(b"\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b";x\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"2 \r\nab\r\n0\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"2;\nxx\r\nab\r\n0\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"2;a\0\r\nab\r\n0\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"+2\r\nab\r\n0\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(bad(b"0\r\nno colon\r\n\r\n"), ErrorKind::InvalidData);
        assert_eq!(decode(b"2 ; a=b\r\nab\r\n0\r\n\r\n").unwrap(), b"ab");
    }
}
