//! Is this really audio of the declared type? A check of the container's signature and first
//! structure, for uploads whose `Content-Type` is only the client's claim (the web widget's
//! voice messages).
//!
//! Each check reads the first bytes of the file as its format's specification lays them out;
//! it does not decode the audio. What it catches: bytes that are not a recording at all (zeros,
//! text, an image, an archive) and a recording labelled with another type. A crafted file that
//! starts like a real container passes, which is why uploads also count against the
//! workspace's attachment quota.
//!
//! | declared type | what must be there | source |
//! | --- | --- | --- |
//! | `audio/webm` | an EBML header (element `0x1A45DFA3`) whose `DocType` (`0x4282`) is `webm` or `matroska` | RFC 8794 (EBML) §8, §11.2.7; RFC 9559 (Matroska) §4.2; WebM is a Matroska profile |
//! | `audio/ogg` | a first Ogg page: capture pattern `OggS`, stream structure version 0, the beginning-of-stream flag | RFC 3533 §6 |
//! | `audio/mp4` | a first box of type `ftyp` whose size covers its major brand and minor version and fits the file | ISO/IEC 14496-12 §4.2, §4.3 |
//! | `audio/mpeg` | an ID3v2 tag (`ID3`, version 2-4, a syncsafe size) followed by, or else, an MPEG audio frame header: 11 sync bits, no reserved version, layer, bitrate or sampling-rate value | ID3v2.4 structure §3.1; ISO/IEC 11172-3 §2.4.2.3 and ISO/IEC 13818-3 (with the MPEG 2.5 extension) |
//! | `audio/wav` | a RIFF header with form type `WAVE` | Microsoft/IBM *Multimedia Programming Interface and Data Specifications 1.0* (RIFF, WAVE) |
//!
//! Types outside this table are not audio this check knows: [`matches_declared`] answers
//! `false` for them.

/// Whether `bytes` start like a file of MIME type `mime` (parameters such as `;codecs=opus`
/// ignored, case-insensitive). See the [module docs](self) for what each type must show.
pub fn matches_declared(mime: &str, bytes: &[u8]) -> bool {
    let mime = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "audio/webm" => is_ebml_webm(bytes),
        "audio/ogg" => is_ogg(bytes),
        "audio/mp4" => is_mp4(bytes),
        "audio/mpeg" => is_mpeg_audio(bytes),
        "audio/wav" => is_wave(bytes),
        _ => false,
    }
}

/// What the format check expects for `mime`, in a few words for an error message.
pub fn expected_signature(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or("").trim() {
        "audio/webm" => "a WebM/Matroska file (EBML header with DocType webm)",
        "audio/ogg" => "an Ogg file (first page starting with OggS)",
        "audio/mp4" => "an MP4 file (starting with an ftyp box)",
        "audio/mpeg" => "an MP3 file (an ID3 tag or an MPEG audio frame header)",
        "audio/wav" => "a WAV file (RIFF header with form type WAVE)",
        _ => "a supported audio type",
    }
}

/// An EBML variable-length integer (RFC 8794 §4): the number of leading zero bits of the first
/// byte gives the length (1-8 bytes). Returns (value without the length marker, length). For
/// element ids the marker is kept by the caller reading the raw bytes instead.
fn vint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || bytes.len() < len {
        return None;
    }
    let mut value = u64::from(first) & (0xFF >> len);
    for b in &bytes[1..len] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

/// RFC 8794: the file starts with the EBML header element (id `1A 45 DF A3`); among its
/// children, `DocType` (id `42 82`) names the document type: `webm` or `matroska`.
fn is_ebml_webm(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(&[0x1A, 0x45, 0xDF, 0xA3]) else {
        return false;
    };
    let Some((size, n)) = vint(rest) else {
        return false;
    };
    let body = &rest[n..];
    let Some(header) = usize::try_from(size).ok().and_then(|s| body.get(..s)) else {
        return false;
    };
    let mut at = 0;
    while at < header.len() {
        // Element ids keep their length marker; the EBML header's children use 1-2 byte ids.
        let Some((_, id_len)) = vint(&header[at..]) else {
            return false;
        };
        let id = &header[at..at + id_len];
        let Some((len, size_len)) = vint(&header[at + id_len..]) else {
            return false;
        };
        let start = at + id_len + size_len;
        let Some(value) = usize::try_from(len)
            .ok()
            .and_then(|l| header.get(start..start.checked_add(l)?))
        else {
            return false;
        };
        if id == [0x42, 0x82] {
            let doc_type = value.split(|b| *b == 0).next().unwrap_or(value);
            return doc_type == b"webm" || doc_type == b"matroska";
        }
        at = start + value.len();
    }
    false
}

/// RFC 3533 §6: capture pattern `OggS`, version 0, and the first page of a stream carries the
/// beginning-of-stream flag (`0x02`) in its header type; the page header is 27 bytes plus its
/// segment table.
fn is_ogg(bytes: &[u8]) -> bool {
    bytes.len() >= 27
        && bytes.starts_with(b"OggS")
        && bytes[4] == 0
        && bytes[5] & 0x02 != 0
        && bytes[5] & !0x07 == 0
        && bytes.len() >= 27 + usize::from(bytes[26])
}

/// ISO/IEC 14496-12: a file is a sequence of boxes (32-bit big-endian size, 4-character type);
/// it starts with the `ftyp` box: major brand (4), minor version (4), compatible brands.
fn is_mp4(bytes: &[u8]) -> bool {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return false;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    // major brand, minor version and whole 4-byte compatible brands.
    size >= 16 && size & 3 == 0 && size <= bytes.len()
}

/// An MPEG audio frame header (ISO/IEC 11172-3 §2.4.2.3; MPEG-2 and 2.5 share it): 11 sync
/// bits, version (`01` reserved), layer (`00` reserved), bitrate index (`1111` invalid),
/// sampling-frequency index (`11` reserved).
fn is_frame_header(h: &[u8]) -> bool {
    h.len() >= 4
        && h[0] == 0xFF
        && h[1] & 0xE0 == 0xE0
        && (h[1] >> 3) & 0x03 != 0x01
        && (h[1] >> 1) & 0x03 != 0x00
        && h[2] >> 4 != 0x0F
        && (h[2] >> 2) & 0x03 != 0x03
}

/// MP3: an ID3v2 tag (`ID3`, major version 2-4, revision below `0xFF`, a 28-bit syncsafe size
/// whose bytes each stay below `0x80`) and then, or without a tag, an MPEG audio frame header.
fn is_mpeg_audio(bytes: &[u8]) -> bool {
    if let Some(tag) = bytes.strip_prefix(b"ID3") {
        if tag.len() < 7 || !(2..=4).contains(&tag[0]) || tag[1] == 0xFF {
            return false;
        }
        let size = &tag[3..7];
        if size.iter().any(|b| *b >= 0x80) {
            return false;
        }
        let len = size.iter().fold(0usize, |n, b| (n << 7) | usize::from(*b));
        let footer = if tag[2] & 0x10 != 0 { 10 } else { 0 };
        // The tag alone (a file cut short after it) is still an MP3 upload's start.
        return match bytes.get(10 + len + footer..) {
            Some(after) if after.len() >= 4 => is_frame_header(after),
            Some(_) => true,
            None => false,
        };
    }
    is_frame_header(bytes)
}

/// RIFF: `RIFF`, a 32-bit little-endian size, form type `WAVE`.
fn is_wave(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WAVE"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/audio")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn real_recordings_match_their_type_and_no_other() {
        let files = [
            ("audio/webm", fixture("en_sentence_16k_mono.webm")),
            ("audio/ogg", fixture("en_sentence_16k_mono.opus")),
            ("audio/mpeg", fixture("call_two_speakers_8k_mono.mp3")),
            ("audio/wav", fixture("en_sentence_16k_mono.wav")),
        ];
        for (mime, bytes) in &files {
            assert!(matches_declared(mime, bytes), "{mime}");
            assert!(matches_declared(&format!("{mime};codecs=opus"), bytes));
            for (other, _) in files.iter().filter(|(m, _)| m != mime) {
                assert!(!matches_declared(other, bytes), "{mime} file as {other}");
            }
            assert!(!matches_declared("audio/mp4", bytes), "{mime} as mp4");
        }
    }

    #[test]
    fn an_mp4_header_is_recognised() {
        // ISO/IEC 14496-12 ftyp box as Safari's MediaRecorder writes it: size 20, major brand
        // iso5, minor version 512, compatible brand iso6, then the next box.
        let mut mp4 = vec![0, 0, 0, 20];
        mp4.extend_from_slice(b"ftypiso5\0\0\x02\0iso6");
        mp4.extend_from_slice(&[0, 0, 0, 8]);
        mp4.extend_from_slice(b"free");
        assert!(matches_declared("audio/mp4", &mp4));
        mp4[3] = 200; // a box larger than the file
        assert!(!matches_declared("audio/mp4", &mp4));
    }

    #[test]
    fn zeros_text_and_bare_signatures_are_refused() {
        let zeros = vec![0u8; 4096];
        for mime in [
            "audio/webm",
            "audio/ogg",
            "audio/mp4",
            "audio/mpeg",
            "audio/wav",
        ] {
            assert!(!matches_declared(mime, &zeros), "{mime}");
            assert!(
                !matches_declared(mime, b"hello, this is not audio"),
                "{mime}"
            );
            assert!(!matches_declared(mime, &[]), "{mime}");
        }
        assert!(!matches_declared("audio/ogg", b"OggS fake"));
        assert!(!matches_declared(
            "audio/webm",
            b"\x1a\x45\xdf\xa3 webm fake"
        ));
        assert!(!matches_declared("audio/mpeg", &[0xFF, 0xFF, 0xFF, 0xFF]));
        assert!(!matches_declared("text/plain", b"RIFF\0\0\0\0WAVE"));
        assert!(matches_declared("audio/wav", b"RIFF\0\0\0\0WAVE"));
    }
}
