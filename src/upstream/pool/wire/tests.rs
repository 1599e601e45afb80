use super::*;
use http::Request;

fn buf(s: &[u8]) -> BytesMut {
    BytesMut::from(s)
}

fn head(s: &[u8], method: &Method) -> Result<Option<ResponseHead>, WireError> {
    parse_head(&mut buf(s), &mut Names::default(), method, 8192)
}

fn framing(s: &[u8]) -> ResponseFraming {
    head(s, &Method::GET).unwrap().unwrap().framing
}

/// Decodes all of `wire`, fed one byte at a time (every split point a socket could make).
fn decode_bytewise(framing: ResponseFraming, wire: &[u8]) -> (Vec<u8>, Option<HeaderMap>, bool) {
    let mut decoder = Decoder::new(framing);
    let mut pending = BytesMut::new();
    let (mut body, mut trailers) = (Vec::new(), None);
    for &byte in wire {
        pending.extend_from_slice(&[byte]);
        loop {
            match decoder.decode(&mut pending, 1024).unwrap() {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End | Decoded::More => break,
            }
        }
    }
    (body, trailers, decoder.is_done())
}

#[test]
fn request_head_is_origin_form_with_headers_in_order() {
    let (mut parts, ()) = Request::post("http://ignored/upload?x=1")
        .header("host", "app.example")
        .header("x-a", "1")
        .header("x-a", "2")
        .body(())
        .unwrap()
        .into_parts();
    parts.uri = "/upload?x=1".parse().unwrap();
    let mut out = Vec::new();
    encode_head(&mut out, &parts, &[], RequestFraming::Chunked, true);
    assert_eq!(
        out,
        b"POST /upload?x=1 HTTP/1.1\r\nhost: app.example\r\nx-a: 1\r\nx-a: 2\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let added = [(
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_static("abc"),
    )];
    encode_head(&mut out, &parts, &added, RequestFraming::Length(1234), true);
    assert!(out.ends_with(b"x-a: 2\r\nx-request-id: abc\r\ncontent-length: 1234\r\n\r\n"));
}

#[test]
fn request_framing_follows_the_request() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        request_framing(&headers, true, Some(0)).unwrap(),
        (RequestFraming::Empty, false)
    );
    assert_eq!(
        request_framing(&headers, false, Some(10)).unwrap(),
        (RequestFraming::Length(10), true)
    );
    assert_eq!(
        request_framing(&headers, false, None).unwrap(),
        (RequestFraming::Chunked, true)
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("42"));
    assert_eq!(
        request_framing(&headers, false, None).unwrap(),
        (RequestFraming::Length(42), false)
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("4x"));
    assert!(request_framing(&headers, false, None).is_err());
}

#[test]
fn a_response_head_is_parsed_and_consumed() {
    let mut wire = buf(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Two: a\r\nX-Two: b\r\n\r\nhello",
    );
    let parsed = parse_head(&mut wire, &mut Names::default(), &Method::GET, 8192)
        .unwrap()
        .unwrap();
    assert_eq!(parsed.parts.status, StatusCode::OK);
    assert_eq!(parsed.parts.version, Version::HTTP_11);
    assert_eq!(parsed.parts.headers["content-type"], "text/plain");
    assert_eq!(
        parsed
            .parts
            .headers
            .get_all("x-two")
            .iter()
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(parsed.framing, ResponseFraming::Length(5));
    assert!(parsed.keep_alive);
    assert_eq!(&wire[..], b"hello");
}

#[test]
fn a_partial_head_waits_for_more_and_an_endless_one_is_too_large() {
    assert!(
        head(b"HTTP/1.1 200 OK\r\nServer: x\r\n", &Method::GET)
            .unwrap()
            .is_none()
    );
    let mut long = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 9000));
    let err = head(&long, &Method::GET).unwrap_err();
    assert_eq!(err.kind, ErrorKind::ResponseHeadTooLarge);
    // A complete head over the limit, read in one go, is refused too.
    long.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        head(&long, &Method::GET).unwrap_err().kind,
        ErrorKind::ResponseHeadTooLarge
    );
}

#[test]
fn many_header_fields_parse_and_too_many_are_refused() {
    let mut wire = b"HTTP/1.1 204 No Content\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        wire.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
    }
    let mut ok = wire.clone();
    ok.extend_from_slice(b"\r\n");
    assert_eq!(
        head(&ok, &Method::GET)
            .unwrap()
            .unwrap()
            .parts
            .headers
            .len(),
        MAX_HEADERS
    );
    wire.extend_from_slice(b"x-last: 1\r\n\r\n");
    assert!(head(&wire, &Method::GET).is_err());
}

#[test]
fn informational_heads_are_skipped_but_101_is_final() {
    let mut wire = buf(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    let parsed = parse_head(&mut wire, &mut Names::default(), &Method::POST, 8192)
        .unwrap()
        .unwrap();
    assert_eq!(parsed.parts.status, StatusCode::CREATED);
    assert!(wire.is_empty());
    let upgrade = head(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        &Method::GET,
    );
    assert_eq!(
        upgrade.unwrap().unwrap().parts.status,
        StatusCode::SWITCHING_PROTOCOLS
    );
}

#[test]
fn framing_follows_rfc_9112() {
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
        ResponseFraming::Length(10)
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ResponseFraming::Empty
    );
    assert_eq!(framing(b"HTTP/1.1 200 OK\r\n\r\n"), ResponseFraming::Close);
    assert_eq!(
        framing(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"),
        ResponseFraming::Empty
    );
    assert_eq!(
        framing(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
        ResponseFraming::Empty
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        ResponseFraming::Chunked
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ResponseFraming::Close
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"),
        ResponseFraming::Length(7)
    );
    let to_head = head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        &Method::HEAD,
    );
    assert_eq!(to_head.unwrap().unwrap().framing, ResponseFraming::Empty);
    let to_connect = head(b"HTTP/1.1 200 OK\r\n\r\n", &Method::CONNECT);
    assert_eq!(to_connect.unwrap().unwrap().framing, ResponseFraming::Empty);
}

#[test]
fn a_transfer_coding_voids_the_content_length() {
    let parsed = head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        &Method::GET,
    )
    .unwrap()
    .unwrap();
    assert_eq!(parsed.framing, ResponseFraming::Chunked);
    assert!(!parsed.parts.headers.contains_key(CONTENT_LENGTH));
    assert!(!parsed.parts.headers.contains_key(TRANSFER_ENCODING));
}

#[test]
fn connection_fields_the_pool_consumed_are_left_out() {
    let fields = |s: &[u8]| head(s, &Method::GET).unwrap().unwrap().parts.headers;
    let plain = fields(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n");
    assert!(plain.get(CONNECTION).is_none());
    assert!(plain.get("keep-alive").is_none());
    assert_eq!(plain[CONTENT_LENGTH], "0");
    // One that names other fields stays, for the proxy to strip those.
    let naming = fields(b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(naming[CONNECTION], "close, X-Secret");
}

#[test]
fn ambiguous_or_malformed_lengths_are_refused() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
    ] {
        assert!(
            head(wire, &Method::GET).is_err(),
            "{}",
            String::from_utf8_lossy(wire)
        );
    }
    assert!(head(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", &Method::GET).is_err());
    assert!(
        head(
            b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n",
            &Method::GET
        )
        .is_err()
    );
    assert!(head(b"HTTP/1.1 2000 OK\r\n\r\n", &Method::GET).is_err());
}

#[test]
fn persistence_follows_version_and_connection() {
    let keep = |s: &[u8]| head(s, &Method::GET).unwrap().unwrap().keep_alive;
    assert!(keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!keep(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!keep(
        b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(!keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(keep(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    ));
    // A body delimited by the close cannot leave the connection reusable.
    assert!(!keep(b"HTTP/1.1 200 OK\r\n\r\n"));
}

#[test]
fn chunked_bodies_decode_at_every_split_point() {
    let wire = b"5\r\nhello\r\n1;ext=\"x\"\r\n \r\nA \r\n0123456789\r\n0\r\n\r\n";
    let (body, trailers, done) = decode_bytewise(ResponseFraming::Chunked, wire);
    assert_eq!(body, b"hello 0123456789");
    assert!(trailers.is_none());
    assert!(done);
}

#[test]
fn chunked_trailers_are_returned() {
    let wire = b"3\r\nabc\r\n0\r\nX-Checksum: 42\r\nX-Other: y\r\n\r\n";
    let (body, trailers, done) = decode_bytewise(ResponseFraming::Chunked, wire);
    assert_eq!(body, b"abc");
    let trailers = trailers.unwrap();
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(trailers.len(), 2);
    assert!(done);
}

#[test]
fn the_decoder_leaves_the_next_message_alone() {
    let mut pending = buf(b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
    let mut decoder = Decoder::new(ResponseFraming::Chunked);
    assert_eq!(
        decoder.decode(&mut pending, 1024).unwrap(),
        Decoded::Data(Bytes::from_static(b"abc"))
    );
    assert_eq!(decoder.decode(&mut pending, 1024).unwrap(), Decoded::End);
    assert_eq!(&pending[..], b"HTTP/1.1 200 OK\r\n");

    let mut pending = buf(b"abcdefgh");
    let mut decoder = Decoder::new(ResponseFraming::Length(5));
    assert_eq!(
        decoder.decode(&mut pending, 0).unwrap(),
        Decoded::Data(Bytes::from_static(b"abcde"))
    );
    assert!(decoder.is_done());
    assert_eq!(&pending[..], b"fgh");
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    for wire in [
        &b"x\r\n"[..],
        b"5\nhello\r\n",
        b"5\r\nhelloX\r\n",
        b" 5\r\nhello\r\n",
        b"11111111111111111\r\n",
        b"5\r\nhello\r\r",
    ] {
        let mut decoder = Decoder::new(ResponseFraming::Chunked);
        let mut pending = buf(wire);
        let result: Result<(), WireError> = (|| loop {
            match decoder.decode(&mut pending, 1024)? {
                Decoded::More | Decoded::End => return Ok(()),
                _ => {}
            }
        })();
        assert!(result.is_err(), "{}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn eof_ends_only_a_close_delimited_body() {
    let mut close = Decoder::new(ResponseFraming::Close);
    let mut pending = buf(b"tail");
    assert_eq!(
        close.decode(&mut pending, 0).unwrap(),
        Decoded::Data(Bytes::from_static(b"tail"))
    );
    assert!(close.eof().is_ok());
    assert!(close.is_done());
    assert_eq!(
        Decoder::new(ResponseFraming::Length(3))
            .eof()
            .unwrap_err()
            .kind,
        ErrorKind::Closed
    );
    assert_eq!(
        Decoder::new(ResponseFraming::Chunked)
            .eof()
            .unwrap_err()
            .kind,
        ErrorKind::Closed
    );
}

#[test]
fn chunk_lines_are_hex() {
    assert_eq!(&chunk_line(255)[..], b"ff\r\n");
    assert_eq!(&chunk_line(1)[..], b"1\r\n");
    assert_eq!(&chunk_line(0)[..], b"0\r\n");
    assert_eq!(&chunk_line(65536)[..], b"10000\r\n");
}
