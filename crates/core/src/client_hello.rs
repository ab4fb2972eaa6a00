//! Reading the server name (SNI) out of the first bytes a TLS client sends, without
//! terminating TLS. Used by `reqMode=sni` listeners and by `reqMode=tcp` listeners with domain
//! routing.
//!
//! The reader is deliberately small and bounded: it looks at TLS handshake records only, joins
//! a ClientHello split over several records, and gives up ([`Peek::NotTls`]) on anything it
//! does not understand or on a ClientHello larger than [`MAX_HELLO`]. It never panics: every
//! length is checked before it is used (see the property tests).

/// The largest ClientHello (handshake message body) the reader accepts.
pub const MAX_HELLO: usize = 16 * 1024;

/// What the bytes received so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// More bytes are needed to decide.
    Incomplete,
    /// The bytes are not a TLS ClientHello this reader can parse.
    NotTls,
    /// A complete ClientHello: its server name (lower-case, trailing dot removed), if any.
    Hello(Option<String>),
}

const RECORD_HEADER: usize = 5;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// The largest TLS plaintext record (2^14) plus room for legacy padding.
const MAX_RECORD: usize = 16 * 1024 + 2048;

/// Looks at the bytes a client sent so far and says whether they hold a complete ClientHello.
pub fn peek(buf: &[u8]) -> Peek {
    // Join the payloads of the handshake records until the handshake message is complete.
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < RECORD_HEADER {
            return Peek::Incomplete;
        }
        let content_type = rest[0];
        let major = rest[1];
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if content_type != CONTENT_HANDSHAKE || major != 3 || len == 0 || len > MAX_RECORD {
            return Peek::NotTls;
        }
        let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            return Peek::Incomplete;
        };
        handshake.extend_from_slice(payload);
        rest = &rest[RECORD_HEADER + len..];
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != HANDSHAKE_CLIENT_HELLO {
            return Peek::NotTls;
        }
        let body_len = (usize::from(handshake[1]) << 16)
            | (usize::from(handshake[2]) << 8)
            | usize::from(handshake[3]);
        if body_len > MAX_HELLO {
            return Peek::NotTls;
        }
        if handshake.len() - 4 >= body_len {
            return match server_name(&handshake[4..4 + body_len]) {
                Ok(name) => Peek::Hello(name),
                Err(Malformed) => Peek::NotTls,
            };
        }
    }
}

struct Malformed;

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], Malformed> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], Malformed> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

/// The host name in a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3).
fn server_name(body: &[u8]) -> Result<Option<String>, Malformed> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let mut extensions = Reader(r.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == NAME_TYPE_HOST {
                return host_name(name).map(Some);
            }
        }
        return Ok(None);
    }
    Ok(None)
}

fn host_name(raw: &[u8]) -> Result<String, Malformed> {
    if raw.is_empty()
        || raw.len() > 255
        || !raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*'))
    {
        return Err(Malformed);
    }
    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
    Ok(text.trim_end_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A ClientHello body with the given extensions block (None = no extensions field).
    fn hello_body(extensions: Option<Vec<u8>>) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[7u8; 32]);
        b.push(0); // session id
        b.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        b.extend_from_slice(&[1, 0]); // null compression
        if let Some(ext) = extensions {
            b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
            b.extend_from_slice(&ext);
        }
        b
    }

    fn sni_extension(name: &str) -> Vec<u8> {
        let mut entry = vec![NAME_TYPE_HOST];
        entry.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = u16::try_from(entry.len()).unwrap().to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&u16::try_from(list.len()).unwrap().to_be_bytes());
        ext.extend_from_slice(&list);
        ext
    }

    fn handshake(body: &[u8]) -> Vec<u8> {
        let mut h = vec![HANDSHAKE_CLIENT_HELLO];
        h.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        h.extend_from_slice(body);
        h
    }

    /// Wraps handshake bytes into records of at most `chunk` bytes each.
    fn records(handshake: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in handshake.chunks(chunk) {
            out.extend_from_slice(&[CONTENT_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&u16::try_from(piece.len()).unwrap().to_be_bytes());
            out.extend_from_slice(piece);
        }
        out
    }

    fn client_hello(name: &str) -> Vec<u8> {
        let mut ext = vec![0x00, 0x0b, 0, 2, 1, 0]; // ec_point_formats first
        ext.extend_from_slice(&sni_extension(name));
        records(&handshake(&hello_body(Some(ext))), 16 * 1024)
    }

    #[test]
    fn reads_the_server_name() {
        let bytes = client_hello("API.Example.com.");
        assert_eq!(peek(&bytes), Peek::Hello(Some("api.example.com".into())));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let bytes = client_hello("db.example.com");
        for end in 0..bytes.len() {
            assert_eq!(peek(&bytes[..end]), Peek::Incomplete, "prefix {end}");
        }
    }

    #[test]
    fn joins_a_hello_split_over_records() {
        let mut ext = sni_extension("split.example.com");
        ext.extend_from_slice(&[0xff, 0x01, 0, 1, 0]);
        let bytes = records(&handshake(&hello_body(Some(ext))), 7);
        assert_eq!(peek(&bytes), Peek::Hello(Some("split.example.com".into())));
    }

    #[test]
    fn hello_without_sni() {
        let bytes = records(&handshake(&hello_body(None)), 1000);
        assert_eq!(peek(&bytes), Peek::Hello(None));
        let bytes = records(&handshake(&hello_body(Some(vec![0, 0x0b, 0, 1, 0]))), 1000);
        assert_eq!(peek(&bytes), Peek::Hello(None));
    }

    #[test]
    fn other_protocols_are_not_tls() {
        assert_eq!(peek(b"PING\r\n"), Peek::NotTls);
        assert_eq!(peek(b"GET / HTTP/1.1\r\n\r\n"), Peek::NotTls);
        assert_eq!(peek(&[22, 3, 1, 0, 0]), Peek::NotTls, "empty record");
        // A handshake record that is not a ClientHello.
        assert_eq!(peek(&[22, 3, 3, 0, 4, 2, 0, 0, 0]), Peek::NotTls);
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert_eq!(peek(&client_hello("bad name")), Peek::NotTls);
    }

    #[test]
    fn oversized_hellos_are_rejected() {
        let mut h = vec![HANDSHAKE_CLIENT_HELLO];
        h.extend_from_slice(&u32::try_from(MAX_HELLO + 1).unwrap().to_be_bytes()[1..]);
        assert_eq!(peek(&records(&h, 100)), Peek::NotTls);
    }

    proptest! {
        #[test]
        fn never_panics_on_any_input(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = peek(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_hellos(
            name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = client_hello(&name);
            prop_assert_eq!(peek(&bytes), Peek::Hello(Some(name.clone())));
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            let cut = cut % (bytes.len() + 1);
            let _ = peek(&bytes[..cut]);
        }

        #[test]
        fn structurally_mutated_hellos_are_decided_once_and_for_all(
            name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
            chunk in 1usize..64,
            edits in proptest::collection::vec((any::<usize>(), 0u8..3, any::<u8>()), 0..6),
            suffix in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut ext = vec![0x00, 0x0b, 0, 2, 1, 0];
            ext.extend_from_slice(&sni_extension(&name));
            let mut bytes = records(&handshake(&hello_body(Some(ext))), chunk);
            for (at, kind, value) in edits {
                let at = at % (bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = value,
                    1 => bytes.insert(at, value),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            // Whatever was decided stays decided when more bytes arrive: the reader never
            // needs more than the ClientHello itself.
            let first = peek(&bytes);
            if first != Peek::Incomplete {
                let mut longer = bytes.clone();
                longer.extend_from_slice(&suffix);
                prop_assert_eq!(peek(&longer), first);
            }
        }

        #[test]
        fn work_is_bounded_by_the_hello_size(
            len in 0usize..(MAX_HELLO + 64),
            chunk in 1usize..16,
            fill in any::<u8>(),
        ) {
            // A hello of any declared size, in records as small as 1 byte: once every byte it
            // declares has arrived the answer is known, and one past MAX_HELLO is refused
            // from its header alone.
            let mut h = vec![HANDSHAKE_CLIENT_HELLO];
            h.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes()[1..]);
            let header_only = records(&h, 4);
            if len > MAX_HELLO {
                prop_assert_eq!(peek(&header_only), Peek::NotTls);
            } else {
                h.resize(4 + len, fill);
                prop_assert_ne!(peek(&records(&h, chunk)), Peek::Incomplete);
            }
        }

        #[test]
        fn record_splitting_does_not_change_the_answer(
            name in "[a-z0-9]{1,30}\\.example\\.com",
            chunk in 1usize..300,
        ) {
            let ext = sni_extension(&name);
            let bytes = records(&handshake(&hello_body(Some(ext))), chunk);
            prop_assert_eq!(peek(&bytes), Peek::Hello(Some(name)));
        }
    }
}
