//! The server name (SNI) of a TLS ClientHello, read with a bounds check on every byte.
//! Works on the start of the first TLS record as the kernel copied it (which may be cut).

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("not a TLS ClientHello")]
    NotClientHello,
    #[error("ClientHello cut before its server name (only {0} bytes seen)")]
    Truncated(usize),
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(SniError::Malformed("length overflow"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(SniError::Truncated(self.data.len()))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<usize, SniError> {
        Ok(self.take(1)?[0] as usize)
    }
    fn u16(&mut self) -> Result<usize, SniError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
}

/// `Ok(Some(name))`: the host name, lowercased. `Ok(None)`: a complete ClientHello without
/// a server name (e.g. a connection to a bare IP).
pub fn server_name(data: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader { data, pos: 0 };
    let header = r.take(5).map_err(|_| SniError::NotClientHello)?;
    if header[0] != 0x16 || header[1] != 0x03 {
        return Err(SniError::NotClientHello);
    }
    if r.u8()? != 0x01 {
        return Err(SniError::NotClientHello);
    }
    r.take(3)?; // handshake length
    r.take(2 + 32)?; // client_version, random
    let session_id = r.u8()?;
    r.take(session_id)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = r.u8()?;
    r.take(compression)?;
    if r.pos == data.len() {
        return Ok(None); // no extensions at all
    }
    let ext_total = r.u16()?;
    let ext_end = r.pos + ext_total;
    while r.pos < ext_end {
        let ext_type = r.u16()?;
        let ext_len = r.u16()?;
        if ext_type != 0 {
            r.take(ext_len)?;
            continue;
        }
        let mut ext = Reader {
            data: r.take(ext_len)?,
            pos: 0,
        };
        let list_len = ext.u16()?;
        let list = ext
            .take(list_len)
            .map_err(|_| SniError::Malformed("server name list"))?;
        let mut names = Reader { data: list, pos: 0 };
        while names.pos < list.len() {
            let kind = names
                .u8()
                .map_err(|_| SniError::Malformed("server name entry"))?;
            let len = names
                .u16()
                .map_err(|_| SniError::Malformed("server name entry"))?;
            let name = names
                .take(len)
                .map_err(|_| SniError::Malformed("server name entry"))?;
            if kind == 0 {
                return valid_host(name).map(Some);
            }
        }
        return Ok(None);
    }
    Ok(None)
}

fn valid_host(name: &[u8]) -> Result<String, SniError> {
    if name.is_empty() || name.len() > 255 {
        return Err(SniError::Malformed("server name length"));
    }
    if !name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(SniError::Malformed("server name characters"));
    }
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::names::fixture;

    /// A ClientHello as clients send it: TLS 1.2 record, session id, suites, compression,
    /// extensions with SNI somewhere among them.
    pub fn client_hello(sni: Option<&str>, extensions_before: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        for i in 0..extensions_before {
            ext.extend_from_slice(&[0x00, 0x0a + i as u8, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]);
        }
        if let Some(name) = sni {
            let n = name.as_bytes();
            let entry_len = 3 + n.len();
            ext.extend_from_slice(&[0x00, 0x00]);
            ext.extend_from_slice(&((entry_len + 2) as u16).to_be_bytes());
            ext.extend_from_slice(&(entry_len as u16).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
            ext.extend_from_slice(n);
        }
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(32);
        body.extend_from_slice(&[9u8; 32]);
        body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[0x01, 0x00]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn real_client_hellos() {
        assert_eq!(
            server_name(&fixture("clienthello-openssl.bin")),
            Ok(Some("llm.sovereign.example".into()))
        );
        assert_eq!(
            server_name(&fixture("clienthello-curl.bin")),
            Ok(Some("api.openai.com".into()))
        );
        assert_eq!(server_name(&fixture("clienthello-no-sni.bin")), Ok(None));
        // Every cut of a real hello is an error or no name, never a panic or a wrong name.
        let real = fixture("clienthello-curl.bin");
        for cut in 0..real.len() {
            if let Ok(Some(name)) = server_name(&real[..cut]) {
                assert_eq!(name, "api.openai.com");
            }
        }
    }

    #[test]
    fn reads_the_server_name_wherever_the_extension_is() {
        for before in [0, 1, 5] {
            let hello = client_hello(Some("API.OpenAI.com"), before);
            assert_eq!(server_name(&hello), Ok(Some("api.openai.com".into())));
        }
        assert_eq!(server_name(&client_hello(None, 3)), Ok(None));
    }

    #[test]
    fn cut_hello_is_truncated_and_never_panics() {
        let hello = client_hello(Some("llm.sovereign.example"), 3);
        for cut in 0..hello.len() {
            let r = server_name(&hello[..cut]);
            assert!(r.is_err() || r == Ok(None), "cut at {cut}: {r:?}");
        }
        assert_eq!(
            server_name(&hello[..hello.len() - 3]),
            Err(SniError::Truncated(hello.len() - 3))
        );
    }

    #[test]
    fn other_traffic_is_not_a_client_hello() {
        assert_eq!(
            server_name(b"GET / HTTP/1.1\r\n"),
            Err(SniError::NotClientHello)
        );
        let mut server_hello = client_hello(Some("x.example"), 0);
        server_hello[5] = 0x02;
        assert_eq!(server_name(&server_hello), Err(SniError::NotClientHello));
    }

    #[test]
    fn bad_names_are_malformed() {
        let hello = client_hello(Some("bad name!"), 0);
        assert_eq!(
            server_name(&hello),
            Err(SniError::Malformed("server name characters"))
        );
        let long = "a".repeat(300);
        assert!(server_name(&client_hello(Some(&long), 0)).is_err());
    }
}
