//! Waveform peaks and durations (issue 15) of every file in `../shared/fixtures/audio`, and
//! of files that cannot be decoded.

use parley_server::peaks::{PEAK_PAIRS, compute};

use crate::helpers::shared_dir;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(shared_dir().join("fixtures/audio").join(name)).unwrap()
}

/// Every file in `../shared/fixtures/audio` decodes, with the WAV's length (3.67 s for the
/// sentence, 21.833 s for the call; README of the fixtures) within 150 ms (the MP3's
/// encoder delay and an Opus frame are below that), and a waveform that is not flat.
#[test]
fn every_fixture_decodes_with_its_length() {
    for (name, mime, ms) in [
        ("en_sentence_16k_mono.wav", "audio/wav", 3670),
        ("en_sentence_16k_mono.opus", "audio/ogg", 3670),
        ("en_sentence_16k_mono.webm", "audio/webm", 3670),
        ("call_two_speakers_8k_mono.wav", "audio/wav", 21833),
        ("call_two_speakers_8k_mono.mp3", "audio/mpeg", 21833),
    ] {
        let p = compute(fixture(name), Some(mime));
        assert!(p.decoded, "{name}: {:?}", p.note);
        assert!(
            p.duration_ms.abs_diff(ms) <= 150,
            "{name}: {} ms, expected {ms}",
            p.duration_ms
        );
        assert_eq!(p.peaks.len(), PEAK_PAIRS * 2, "{name}");
        let loudest = p.peaks.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        assert!(loudest > 20, "{name}: flat waveform ({loudest})");
        // Without a hint too (the backfill knows no MIME type).
        let q = compute(fixture(name), None);
        assert_eq!(q.duration_ms, p.duration_ms, "{name} without a hint");
    }
}

/// Bytes that are not audio, and audio cut short, still get an answer: a flat waveform
/// with a note, or what could be decoded.
#[test]
fn undecodable_files_get_a_flat_waveform() {
    let p = compute(b"this is not audio at all".to_vec(), Some("audio/ogg"));
    assert!(!p.decoded);
    assert!(p.note.is_some());
    assert!(p.peaks.iter().all(|v| *v == 0));
    let mut cut = fixture("call_two_speakers_8k_mono.mp3");
    cut.truncate(cut.len() / 2);
    let q = compute(cut, Some("audio/mpeg"));
    assert!(q.decoded && q.duration_ms > 5000 && q.duration_ms < 15000);
}
