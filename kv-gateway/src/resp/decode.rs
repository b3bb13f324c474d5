//! The request decoder: RESP multibulk (`*N\r\n$L\r\n...`) and inline
//! commands, fed with whatever bytes the socket delivered.
//!
//! The decoder is incremental: it keeps a partly received multibulk between
//! calls, so a request that arrives in many small pieces is scanned once, not
//! once per piece. It never panics and never allocates more than the limits
//! allow for one request. Oversized bulks (or a request over the request size
//! limit) are skipped byte by byte and answered with an error, so the
//! connection stays usable; input that cannot be framed any more (a bad
//! header, a wrong type byte) is a fatal error: the caller answers it and
//! closes that connection.

/// Bounds on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest bulk string (one argument).
    pub bulk_bytes_max: usize,
    /// Most arguments in one multibulk request.
    pub multibulk_len_max: usize,
    /// Largest request (sum of its arguments).
    pub request_bytes_max: usize,
    /// Longest inline command line.
    pub inline_bytes_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            bulk_bytes_max: 64 << 20,
            multibulk_len_max: 1 << 20,
            request_bytes_max: 256 << 20,
            inline_bytes_max: 64 << 10,
        }
    }
}

/// Longest `*N` or `$N` header line we accept, digits and sign included.
const HEADER_LINE_BYTES_MAX: usize = 32;

/// What a decode step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete request: its arguments, the command name first.
    Command(Vec<Vec<u8>>),
    /// A request that was read entirely but refused; the stream stays in sync.
    Refused(String),
    /// The stream cannot be framed any more; answer and close.
    Fatal(String),
}

/// A multibulk request being received.
#[derive(Debug)]
struct Partial {
    /// Arguments not yet read (stored or skipped).
    args_left: usize,
    args: Vec<Vec<u8>>,
    request_bytes: usize,
    /// Set once the request is refused: the rest is read and dropped.
    refused: Option<String>,
    /// Bytes of an oversized bulk (payload and CRLF) still to skip.
    skip_bytes: usize,
}

/// Incremental decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: DecodeLimits,
    partial: Option<Partial>,
}

impl Decoder {
    pub fn new(limits: DecodeLimits) -> Self {
        Decoder { limits, partial: None }
    }

    /// True while a request has been started but not finished.
    pub fn in_request(&self) -> bool {
        self.partial.is_some()
    }

    /// Decodes from `buf`. Returns the bytes consumed (the caller drops them)
    /// and a frame when one is complete. `(0, None)` means "need more bytes".
    /// After a `Fatal` frame the decoder must not be fed again.
    pub fn decode(&mut self, buf: &[u8]) -> (usize, Option<Frame>) {
        if self.partial.is_none() {
            match buf.first() {
                None => return (0, None),
                Some(b'*') => {}
                Some(_) => return self.decode_inline(buf),
            }
            match self.start_multibulk(buf) {
                Step::Done(n, frame) => return (n, frame),
                Step::Continue(n) => {
                    let (m, frame) = self.continue_multibulk(&buf[n..]);
                    return (n + m, frame);
                }
            }
        }
        self.continue_multibulk(buf)
    }

    fn decode_inline(&mut self, buf: &[u8]) -> (usize, Option<Frame>) {
        let Some(nl) = find_newline(buf, self.limits.inline_bytes_max) else {
            if buf.len() > self.limits.inline_bytes_max {
                return (buf.len(), Some(Frame::Fatal("Protocol error: too big inline request".into())));
            }
            return (0, None);
        };
        let line = strip_cr(&buf[..nl]);
        if line.len() > self.limits.inline_bytes_max {
            return (buf.len(), Some(Frame::Fatal("Protocol error: too big inline request".into())));
        }
        match split_inline(line) {
            Some(args) if args.is_empty() => (nl + 1, None),
            Some(args) => (nl + 1, Some(Frame::Command(args))),
            None => (nl + 1, Some(Frame::Fatal("Protocol error: unbalanced quotes in request".into()))),
        }
    }

    /// Parses `*N\r\n`.
    fn start_multibulk(&mut self, buf: &[u8]) -> Step {
        let (n, count) = match read_header(buf, b'*') {
            Header::Incomplete => return Step::Done(0, None),
            Header::Invalid(why) => return Step::Done(buf.len(), Some(Frame::Fatal(why))),
            Header::Value(n, count) => (n, count),
        };
        if count <= 0 {
            // Redis ignores empty and null multibulks.
            return Step::Done(n, None);
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > self.limits.multibulk_len_max {
            return Step::Done(buf.len(), Some(Frame::Fatal("Protocol error: invalid multibulk length".into())));
        }
        // Reserve for small requests only; a huge count grows as bytes arrive.
        let args = Vec::with_capacity(count.min(16));
        self.partial = Some(Partial { args_left: count, args, request_bytes: 0, refused: None, skip_bytes: 0 });
        Step::Continue(n)
    }

    fn continue_multibulk(&mut self, buf: &[u8]) -> (usize, Option<Frame>) {
        let limits = self.limits;
        let Some(p) = self.partial.as_mut() else { return (0, None) };
        let mut pos = 0;
        loop {
            if p.skip_bytes > 0 {
                let skipped = p.skip_bytes.min(buf.len() - pos);
                p.skip_bytes -= skipped;
                pos += skipped;
                if p.skip_bytes > 0 {
                    return (pos, None);
                }
            }
            if p.args_left == 0 {
                let p = self.partial.take().expect("partial request present");
                let frame = match p.refused {
                    Some(why) => Frame::Refused(why),
                    None => Frame::Command(p.args),
                };
                return (pos, Some(frame));
            }
            let rest = &buf[pos..];
            let (n, len) = match read_header(rest, b'$') {
                Header::Incomplete => return (pos, None),
                Header::Invalid(why) => {
                    self.partial = None;
                    return (buf.len(), Some(Frame::Fatal(why)));
                }
                Header::Value(n, len) => (n, len),
            };
            let Ok(len) = usize::try_from(len) else {
                self.partial = None;
                return (buf.len(), Some(Frame::Fatal("Protocol error: invalid bulk length".into())));
            };
            let too_big = len > limits.bulk_bytes_max
                || p.request_bytes.saturating_add(len) > limits.request_bytes_max
                || p.refused.is_some();
            if too_big {
                if p.refused.is_none() {
                    p.refused = Some(if len > limits.bulk_bytes_max {
                        format!(
                            "Protocol error: bulk of {len} bytes exceeds the limit of {} bytes",
                            limits.bulk_bytes_max
                        )
                    } else {
                        format!("Protocol error: request exceeds the limit of {} bytes", limits.request_bytes_max)
                    });
                    p.args = Vec::new();
                }
                // Arguments of a refused request are skipped, never stored.
                pos += n;
                p.skip_bytes = len.saturating_add(2);
                p.args_left -= 1;
                continue;
            }
            let body = &rest[n..];
            if body.len() < len + 2 {
                return (pos, None);
            }
            if &body[len..len + 2] != b"\r\n" {
                self.partial = None;
                return (buf.len(), Some(Frame::Fatal("Protocol error: bulk string not terminated by CRLF".into())));
            }
            p.args.push(body[..len].to_vec());
            p.args_left -= 1;
            p.request_bytes += len;
            pos += n + len + 2;
        }
    }
}

enum Step {
    Done(usize, Option<Frame>),
    Continue(usize),
}

enum Header {
    Incomplete,
    Invalid(String),
    /// Bytes consumed (line and CRLF), value.
    Value(usize, i64),
}

/// Reads a `<marker><integer>\r\n` line.
fn read_header(buf: &[u8], marker: u8) -> Header {
    let Some(&first) = buf.first() else { return Header::Incomplete };
    if first != marker {
        let got = char::from(first).escape_default().to_string();
        return Header::Invalid(format!("Protocol error: expected '{}', got '{got}'", char::from(marker)));
    }
    let Some(nl) = find_newline(buf, HEADER_LINE_BYTES_MAX) else {
        if buf.len() > HEADER_LINE_BYTES_MAX {
            return Header::Invalid("Protocol error: header line too long".into());
        }
        return Header::Incomplete;
    };
    if nl < 2 || buf[nl - 1] != b'\r' {
        return Header::Invalid("Protocol error: header not terminated by CRLF".into());
    }
    match parse_i64(&buf[1..nl - 1]) {
        Some(v) => Header::Value(nl + 1, v),
        None if marker == b'*' => Header::Invalid("Protocol error: invalid multibulk length".into()),
        None => Header::Invalid("Protocol error: invalid bulk length".into()),
    }
}

/// Position of the first `\n` within the first `limit + 2` bytes.
fn find_newline(buf: &[u8], limit: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(limit.saturating_add(2))];
    window.iter().position(|&b| b == b'\n')
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A strict decimal integer: optional '-', digits, no overflow.
pub fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, body) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if body.is_empty() || body.len() > 19 {
        return None;
    }
    let mut value: i64 = 0;
    for &d in body {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative { value.checked_sub(digit)? } else { value.checked_add(digit)? };
    }
    Some(value)
}

/// Splits an inline command line into arguments: whitespace separated, with
/// double quotes (backslash escapes `\"`, `\\`, `\n`, `\r`, `\t`, `\xHH`) and
/// single quotes (only `\'` escaped), as redis-cli and telnet users type them.
/// `None` when quotes are unbalanced.
pub fn split_inline(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            break;
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => i = read_double_quoted(line, i + 1, &mut arg)?,
            b'\'' => i = read_single_quoted(line, i + 1, &mut arg)?,
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    arg.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
    Some(args)
}

/// Reads after an opening `"`; returns the index after the closing quote,
/// which must be followed by whitespace or the end of the line.
fn read_double_quoted(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Option<usize> {
    loop {
        match *line.get(i)? {
            b'"' => return closing_ok(line, i + 1),
            b'\\' => {
                let escaped = *line.get(i + 1)?;
                let hex = line.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok());
                match (escaped, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                    (b'x', Some(byte)) => {
                        arg.push(byte);
                        i += 4;
                        continue;
                    }
                    (b'n', _) => arg.push(b'\n'),
                    (b'r', _) => arg.push(b'\r'),
                    (b't', _) => arg.push(b'\t'),
                    (b'b', _) => arg.push(8),
                    (b'a', _) => arg.push(7),
                    (other, _) => arg.push(other),
                }
                i += 2;
            }
            b => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

fn read_single_quoted(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Option<usize> {
    loop {
        match *line.get(i)? {
            b'\'' => return closing_ok(line, i + 1),
            b'\\' if line.get(i + 1) == Some(&b'\'') => {
                arg.push(b'\'');
                i += 2;
            }
            b => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

fn closing_ok(line: &[u8], after: usize) -> Option<usize> {
    match line.get(after) {
        None => Some(after),
        Some(b) if b.is_ascii_whitespace() => Some(after),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], limits: DecodeLimits) -> Vec<Frame> {
        let mut d = Decoder::new(limits);
        let mut frames = Vec::new();
        let mut pos = 0;
        loop {
            let (n, frame) = d.decode(&input[pos..]);
            pos += n;
            let fatal = matches!(frame, Some(Frame::Fatal(_)));
            if let Some(f) = frame {
                frames.push(f);
            }
            if fatal || (n == 0) {
                break;
            }
        }
        frames
    }

    fn cmd(args: &[&str]) -> Frame {
        Frame::Command(args.iter().map(|a| a.as_bytes().to_vec()).collect())
    }

    #[test]
    fn pipelined_multibulk_requests_decode_in_order() {
        let frames =
            decode_all(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", DecodeLimits::default());
        assert_eq!(frames, vec![cmd(&["PING"]), Frame::Command(vec![b"SET".to_vec(), b"k".to_vec(), Vec::new()])]);
    }

    #[test]
    fn a_request_split_at_every_byte_decodes_the_same() {
        let input = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\nPING\r\n";
        let mut d = Decoder::new(DecodeLimits::default());
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for &b in input.iter() {
            buf.push(b);
            loop {
                let (n, frame) = d.decode(&buf);
                buf.drain(..n);
                match frame {
                    Some(f) => frames.push(f),
                    None if n == 0 => break,
                    None => {}
                }
            }
        }
        assert_eq!(frames, vec![cmd(&["GET", "hello"]), cmd(&["PING"])]);
    }

    #[test]
    fn inline_commands_split_on_whitespace_and_quotes() {
        let frames = decode_all(b"SET k \"a b\\x41\"\r\n\r\nGET 'it\\'s'\n", DecodeLimits::default());
        assert_eq!(frames, vec![cmd(&["SET", "k", "a bA"]), cmd(&["GET", "it's"])]);
    }

    #[test]
    fn an_oversized_bulk_is_refused_and_the_stream_stays_in_sync() {
        let limits = DecodeLimits { bulk_bytes_max: 4, ..DecodeLimits::default() };
        let frames = decode_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n*1\r\n$4\r\nPING\r\n", limits);
        assert!(matches!(&frames[0], Frame::Refused(why) if why.contains("exceeds")), "{frames:?}");
        assert_eq!(frames[1], cmd(&["PING"]));
    }

    #[test]
    fn malformed_headers_are_fatal() {
        for bad in [&b"*x\r\n"[..], b"*1\r\n:3\r\n", b"*1\r\n$-5\r\n", b"*1\r\n$3\r\nabcXY", b"*99999999999\r\n"] {
            let frames = decode_all(bad, DecodeLimits::default());
            assert!(matches!(frames.last(), Some(Frame::Fatal(_))), "{:?} -> {frames:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn too_many_arguments_or_too_long_inline_lines_are_fatal() {
        let limits = DecodeLimits { multibulk_len_max: 2, inline_bytes_max: 8, ..DecodeLimits::default() };
        assert!(matches!(decode_all(b"*3\r\n", limits).last(), Some(Frame::Fatal(_))));
        assert!(matches!(decode_all(b"PING and much more text", limits).last(), Some(Frame::Fatal(_))));
    }

    #[test]
    fn integers_are_parsed_strictly() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
    }
}
