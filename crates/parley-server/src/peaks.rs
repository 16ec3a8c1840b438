//! Waveform peaks and durations of stored audio (voice notes, call recordings), for the
//! dashboard's player (issue 15).
//!
//! A recording is decoded once, when it is stored ([`crate::channels::media::store_attachment`])
//! or lazily the first time its peaks are asked for (attachments stored before this existed),
//! and the result is kept beside the file as `<storage key>.peaks.json` ([`Peaks`]). The
//! `parley audio backfill` command computes the missing ones for a whole data directory.
//!
//! Decoding: [`symphonia`] demuxes WAV, MP3, Ogg, WebM/Matroska, MP4 and decodes PCM, MP3, AAC,
//! Vorbis and FLAC; Opus packets (Ogg or WebM) go to the pure-Rust [`opus_decoder`] at 48 kHz.
//! A file neither can read still gets a [`Peaks`]: a flat waveform, `decoded: false` and a
//! `note` saying why (the player then still plays it with the browser's own decoder).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Number of min/max pairs in a waveform of a decoded recording (fewer for a recording shorter
/// than that many samples).
pub const PEAK_PAIRS: usize = 1000;

/// Current version of the peaks file's layout; a file of another version is computed again.
pub const PEAKS_VERSION: u32 = 1;

/// A recording's waveform and duration, as kept in `<storage key>.peaks.json` and served by
/// the dashboard's `…/attachments/{index}/peaks` route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peaks {
    /// Layout version ([`PEAKS_VERSION`]).
    pub version: u32,
    /// Duration in milliseconds (decoded samples / sample rate; from the container's frame
    /// count when the codec could not be decoded, 0 when unknown).
    pub duration_ms: u64,
    /// Sample rate of the decoded audio, in Hz (0 when unknown).
    pub sample_rate: u32,
    /// Whether the audio was decoded; `false` means a flat waveform.
    pub decoded: bool,
    /// Min/max pairs, flattened: `[min0, max0, min1, max1, …]`, each an integer in
    /// -127..=127 (full scale = 127), over equal slices of the recording, all channels mixed.
    pub peaks: Vec<i8>,
    /// Why the waveform is flat (an undecodable or unsupported file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Peaks {
    /// A flat waveform of [`PEAK_PAIRS`] pairs for a file that could not be decoded.
    pub fn flat(duration_ms: u64, sample_rate: u32, note: String) -> Peaks {
        Peaks {
            version: PEAKS_VERSION,
            duration_ms,
            sample_rate,
            decoded: false,
            peaks: vec![0; PEAK_PAIRS * 2],
            note: Some(note),
        }
    }
}

/// Where the peaks of the attachment file at `file` are kept: `<file>.peaks.json`.
pub fn sidecar_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".peaks.json");
    PathBuf::from(name)
}

/// Min/max of the decoded samples in fixed blocks, later reduced to [`PEAK_PAIRS`].
struct Collector {
    block: usize,
    in_block: usize,
    lo: f32,
    hi: f32,
    blocks: Vec<(f32, f32)>,
    frames: u64,
}

impl Collector {
    fn new() -> Collector {
        Collector {
            block: 32,
            in_block: 0,
            lo: 0.0,
            hi: 0.0,
            blocks: Vec::new(),
            frames: 0,
        }
    }

    /// Adds interleaved samples of `channels` channels.
    fn push(&mut self, samples: &[f32], channels: usize) {
        let channels = channels.max(1);
        for frame in samples.chunks(channels) {
            for &s in frame {
                if s < self.lo {
                    self.lo = s;
                }
                if s > self.hi {
                    self.hi = s;
                }
            }
            self.frames += 1;
            self.in_block += 1;
            if self.in_block == self.block {
                self.blocks.push((self.lo, self.hi));
                self.lo = 0.0;
                self.hi = 0.0;
                self.in_block = 0;
            }
        }
    }

    /// The pairs, flattened and quantised.
    fn finish(mut self) -> Vec<i8> {
        if self.in_block > 0 {
            self.blocks.push((self.lo, self.hi));
        }
        let n = self.blocks.len();
        let pairs = n.min(PEAK_PAIRS);
        let q = |v: f32| (v.clamp(-1.0, 1.0) * 127.0).round() as i8;
        let mut out = Vec::with_capacity(pairs * 2);
        for i in 0..pairs {
            let (a, b) = (i * n / pairs, ((i + 1) * n / pairs).max(i * n / pairs + 1));
            let (mut lo, mut hi) = (0.0f32, 0.0f32);
            for &(l, h) in &self.blocks[a..b.min(n)] {
                lo = lo.min(l);
                hi = hi.max(h);
            }
            out.push(q(lo));
            out.push(q(hi));
        }
        out
    }
}

/// Decodes `bytes` (MIME type `mime` as a hint, e.g. `audio/ogg; codecs=opus`) and returns its
/// waveform and duration; never fails: an unreadable file gets [`Peaks::flat`] with a note.
/// CPU-bound (about a hundred times faster than real time): call it from a blocking task.
pub fn compute(bytes: Vec<u8>, mime: Option<&str>) -> Peaks {
    match decode(bytes, mime) {
        Ok(p) => p,
        Err((duration_ms, sample_rate, note)) => Peaks::flat(duration_ms, sample_rate, note),
    }
}

/// A decoding failure: the duration and rate known from the container, and why.
type Failure = (u64, u32, String);

fn decode(bytes: Vec<u8>, mime: Option<&str>) -> Result<Peaks, Failure> {
    let mut hint = Hint::new();
    if let Some(m) = mime {
        hint.mime_type(m.split(';').next().unwrap_or_default().trim());
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| (0, 0, format!("not a recognised audio container: {e}")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or((0, 0, "the file has no audio track".to_owned()))?;
    let params = track.codec_params.clone();
    let track_id = track.id;
    let rate = params.sample_rate.unwrap_or(0);
    let known_ms = match (params.n_frames, rate) {
        (Some(n), r) if r > 0 => n * 1000 / u64::from(r),
        _ => 0,
    };
    let fail = |note: String| (known_ms, rate, note);
    let mut collector = Collector::new();
    let mut out_rate = rate;
    if params.codec == CODEC_TYPE_OPUS {
        let channels = params.channels.map(|c| c.count()).unwrap_or(1).clamp(1, 2);
        out_rate = 48_000;
        let mut dec = opus_decoder::OpusDecoder::new(48_000, channels)
            .map_err(|e| fail(format!("opus decoder: {e}")))?;
        let mut pcm = vec![0f32; 5760 * channels];
        let mut errors = 0usize;
        loop {
            let packet = match format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(_)) | Err(SymError::ResetRequired) => break,
                Err(e) => return Err(fail(format!("could not read the file: {e}"))),
            };
            if packet.track_id() != track_id {
                continue;
            }
            match dec.decode_float(&packet.data, &mut pcm, false) {
                Ok(n) => collector.push(&pcm[..n * channels], channels),
                Err(_) => errors += 1,
            }
        }
        if collector.frames == 0 && errors > 0 {
            return Err(fail("the Opus packets could not be decoded".into()));
        }
        // The encoder's pre-skip (Ogg Opus header) is decoded but not part of the recording.
        let skip = u64::from(params.delay.unwrap_or(0));
        collector.frames = collector.frames.saturating_sub(skip);
    } else {
        let mut dec = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| fail(format!("unsupported codec: {e}")))?;
        let mut buf: Option<SampleBuffer<f32>> = None;
        loop {
            let packet = match format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(_)) | Err(SymError::ResetRequired) => break,
                Err(e) => return Err(fail(format!("could not read the file: {e}"))),
            };
            if packet.track_id() != track_id {
                continue;
            }
            match dec.decode(&packet) {
                Ok(decoded) => {
                    let spec = *decoded.spec();
                    out_rate = spec.rate;
                    let need = decoded.capacity() as u64;
                    let b = match &mut buf {
                        Some(b) if b.capacity() as u64 >= need * spec.channels.count() as u64 => b,
                        _ => buf.insert(SampleBuffer::new(need, spec)),
                    };
                    b.copy_interleaved_ref(decoded);
                    collector.push(b.samples(), spec.channels.count());
                }
                Err(SymError::DecodeError(_)) => continue,
                Err(e) => return Err(fail(format!("could not decode the audio: {e}"))),
            }
        }
    }
    if collector.frames == 0 || out_rate == 0 {
        return Err(fail("no audio could be decoded".into()));
    }
    let duration_ms = collector.frames * 1000 / u64::from(out_rate);
    Ok(Peaks {
        version: PEAKS_VERSION,
        duration_ms,
        sample_rate: out_rate,
        decoded: true,
        peaks: collector.finish(),
        note: None,
    })
}

/// The peaks of the attachment file at `file` (MIME type `mime`): read from its sidecar when
/// one of the current version is there, else computed (on a blocking thread) and written
/// beside it. Errors: the attachment file cannot be read.
pub async fn load_or_compute(file: &Path, mime: Option<&str>) -> std::io::Result<Peaks> {
    let sidecar = sidecar_of(file);
    if let Ok(raw) = tokio::fs::read(&sidecar).await
        && let Ok(p) = serde_json::from_slice::<Peaks>(&raw)
        && p.version == PEAKS_VERSION
    {
        return Ok(p);
    }
    let bytes = tokio::fs::read(file).await?;
    let peaks = compute_blocking(bytes, mime).await;
    write_sidecar(file, &peaks).await;
    Ok(peaks)
}

/// [`compute`] on a blocking thread.
pub async fn compute_blocking(bytes: Vec<u8>, mime: Option<&str>) -> Peaks {
    let mime = mime.map(str::to_owned);
    tokio::task::spawn_blocking(move || compute(bytes, mime.as_deref()))
        .await
        .unwrap_or_else(|e| Peaks::flat(0, 0, format!("the decoder failed: {e}")))
}

/// Writes `peaks` beside the attachment file at `file`; a failure is logged (the peaks are
/// then computed again on the next request).
pub async fn write_sidecar(file: &Path, peaks: &Peaks) {
    let sidecar = sidecar_of(file);
    let body = serde_json::to_vec(peaks).unwrap_or_default();
    let tmp = {
        let mut n = sidecar.as_os_str().to_owned();
        n.push(".tmp");
        PathBuf::from(n)
    };
    let written = async {
        tokio::fs::write(&tmp, &body).await?;
        tokio::fs::rename(&tmp, &sidecar).await
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(path = %sidecar.display(), error = %e, "could not keep an audio waveform");
    }
}

/// Whether an attachment of `kind` and MIME type `mime` is audio the player shows a waveform
/// for: kinds `audio`, `voice` and `recording`, or any `audio/*` type.
pub fn is_audio(kind: &str, mime: Option<&str>) -> bool {
    matches!(kind, "audio" | "voice" | "recording")
        || mime.is_some_and(|m| m.trim().to_ascii_lowercase().starts_with("audio/"))
}

/// `parley audio backfill`: computes the missing peaks files of every stored attachment under
/// `root` (the attachment storage, `<data_dir>/attachments`) that decodes as audio. Files that
/// are not audio are skipped (nothing written for them). Returns (written, skipped).
/// Errors: `root` cannot be listed.
pub async fn backfill(root: &Path) -> std::io::Result<(usize, usize)> {
    let (mut written, mut skipped) = (0, 0);
    let mut dirs = tokio::fs::read_dir(root).await?;
    while let Some(dir) = dirs.next_entry().await? {
        if !dir.file_type().await?.is_dir() {
            continue;
        }
        let mut files = tokio::fs::read_dir(dir.path()).await?;
        while let Some(f) = files.next_entry().await? {
            let path = f.path();
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() != 36
                || uuid::Uuid::try_parse(&name).is_err()
                || tokio::fs::try_exists(sidecar_of(&path))
                    .await
                    .unwrap_or(false)
            {
                continue;
            }
            let bytes = tokio::fs::read(&path).await?;
            let peaks = compute_blocking(bytes, None).await;
            if peaks.decoded {
                write_sidecar(&path, &peaks).await;
                written += 1;
            } else {
                skipped += 1;
            }
        }
    }
    Ok((written, skipped))
}
