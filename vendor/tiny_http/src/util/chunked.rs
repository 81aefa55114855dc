//! A decoder for chunked request bodies with bounds (onepush patch
//! "limits"). `chunked_transfer::Decoder` read a chunk-size line (and its
//! extensions) without any bound, so one request could grow memory at line
//! rate. Here a chunk-size line and each trailer line are at most
//! `MAX_LINE` bytes, trailers at most `MAX_TRAILERS` lines, and the size
//! itself is parsed by `httparse`. Malformed input is `InvalidData`.

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

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Size => {
                    let line = self.read_line()?;
                    match httparse::parse_chunk_size(&line) {
                        Ok(httparse::Status::Complete((_, 0))) => {
                            // the last chunk: trailers up to an empty line, ignored
                            for _ in 0..=MAX_TRAILERS {
                                if self.read_line()? == b"\r\n" {
                                    self.state = State::Done;
                                    return Ok(0);
                                }
                            }
                            return Err(invalid("too many trailer lines"));
                        }
                        Ok(httparse::Status::Complete((_, size))) => self.state = State::Data(size),
                        _ => return Err(invalid("malformed chunk size")),
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
    }
}
