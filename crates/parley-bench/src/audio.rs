//! `parley-bench audio`: the voice rows of BENCHMARKS.md (issue 15).
//!
//! - **Peak computation speed**: [`parley_server::peaks::compute`] (decode + min/max pairs) on
//!   each file of the audio fixtures and on a generated 10-minute recording, timed over
//!   `--runs` runs after one warm-up; the row gives the median wall time and the speed as
//!   "× real time" (the recording's length divided by that time). Run it on a release build.
//! - **Waveform paint time**: in headless Chromium (driven through chromedriver's WebDriver
//!   HTTP protocol), a page with the dashboard's own `player.js` / `player.css` inserts a
//!   `.player` for the 10-minute recording, as the panel does when it opens, and measures from
//!   the insertion to the first animation frame after the player marked its waveform drawn
//!   (`data-drawn`): the peaks' fetch from a local server, their parse and the canvas paint.
//!   Each run asks for the peaks afresh (no HTTP cache); the row gives the median and the
//!   slowest of `--runs` runs.
//!
//! Nothing here is asserted: the figures are printed (and written as JSON with `--out`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `parley-bench audio` options.
#[derive(Debug, Clone)]
pub struct AudioOptions {
    /// The audio fixtures directory (`../shared/fixtures/audio`).
    pub fixtures: PathBuf,
    /// Timed runs per measurement (after one warm-up).
    pub runs: usize,
    /// The chromedriver binary; the paint rows are skipped when it cannot be started.
    pub chromedriver: PathBuf,
    /// The Chromium binary chromedriver drives.
    pub chromium: PathBuf,
    /// Where to write the JSON results (none: printed only).
    pub out: Option<PathBuf>,
}

/// Length of the generated long recording, in seconds (10 minutes).
pub const LONG_SECONDS: u32 = 600;

/// A 16-bit mono PCM WAV of `seconds` at 8 kHz: a tone whose loudness swells and fades every
/// few seconds (speech-like bursts), so the waveform has shape.
pub fn long_wav(seconds: u32) -> Vec<u8> {
    let rate = 8000u32;
    let n = rate * seconds;
    let data_len = n * 2;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..n {
        let t = i as f64 / rate as f64;
        let envelope = (t * 0.7).sin().abs() * (0.4 + 0.6 * (t * 0.13).sin().abs());
        let s = (t * 2.0 * std::f64::consts::PI * 220.0).sin() * envelope * 20_000.0;
        w.extend_from_slice(&(s as i16).to_le_bytes());
    }
    w
}

fn mime_of(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "wav" => Some("audio/wav"),
        "mp3" => Some("audio/mpeg"),
        "opus" | "ogg" => Some("audio/ogg"),
        "webm" => Some("audio/webm"),
        _ => None,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One peaks row: (median ms, duration ms, × real time).
fn time_peaks(bytes: &[u8], mime: &str, runs: usize) -> (f64, u64, f64) {
    let first = parley_server::peaks::compute(bytes.to_vec(), Some(mime));
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let copy = bytes.to_vec();
        let t = Instant::now();
        let p = parley_server::peaks::compute(copy, Some(mime));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(p);
    }
    let ms = median(times);
    (
        ms,
        first.duration_ms,
        first.duration_ms as f64 / ms.max(1e-6),
    )
}

/// Runs the voice rows (see the [module docs](self)). Errors: an unreadable fixtures
/// directory, a results file that cannot be written.
pub async fn run(opts: AudioOptions) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&opts.fixtures)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| mime_of(p).is_some())
        .collect();
    files.sort();
    println!("peaks ({} runs each, median):", opts.runs);
    for path in &files {
        let bytes = std::fs::read(path)?;
        let mime = mime_of(path).unwrap_or("audio/wav");
        let (ms, dur, speed) = time_peaks(&bytes, mime, opts.runs);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!("  {name:<32} {dur:>7} ms audio  {ms:>8.2} ms  {speed:>8.0}x real time");
        rows.push(
            json!({"row": "peaks", "file": name, "audio_ms": dur, "median_ms": ms,
                         "x_real_time": speed}),
        );
    }
    let long = long_wav(LONG_SECONDS);
    let (ms, dur, speed) = time_peaks(&long, "audio/wav", opts.runs);
    println!(
        "  {:<32} {dur:>7} ms audio  {ms:>8.2} ms  {speed:>8.0}x real time",
        "generated 10-minute WAV (8 kHz)"
    );
    rows.push(
        json!({"row": "peaks", "file": "generated-10min-8k.wav", "audio_ms": dur,
                     "median_ms": ms, "x_real_time": speed}),
    );

    let peaks = parley_server::peaks::compute(long.clone(), Some("audio/wav"));
    match paint(&opts, long, serde_json::to_vec(&peaks)?).await {
        Ok(times) => {
            let slowest = times.iter().cloned().fold(0.0, f64::max);
            let med = median(times.clone());
            println!(
                "waveform paint, 10-minute recording ({} runs): median {med:.1} ms, slowest {slowest:.1} ms",
                times.len()
            );
            rows.push(json!({"row": "paint", "audio_ms": dur, "runs_ms": times,
                             "median_ms": med, "slowest_ms": slowest}));
        }
        Err(e) => println!("waveform paint: skipped ({e})"),
    }
    if let Some(out) = &opts.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_vec_pretty(&json!({"rows": rows}))?)?;
        println!("results: {}", out.display());
    }
    Ok(())
}

/// The measuring page: the dashboard's player assets, and a script that opens the player
/// `runs` times (one after another) and leaves the times in `window.paintTimes`.
fn page(runs: usize) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/player.css"><script src="/player.js"></script></head>
<body><div id="slot" style="width:720px"></div><script>
window.paintTimes = [];
function once(i) {{
  const slot = document.getElementById("slot");
  slot.textContent = "";
  const t0 = performance.now();
  const p = document.createElement("div");
  p.className = "player call-player";
  p.setAttribute("data-src", "/audio.wav");
  p.setAttribute("data-peaks", "/peaks?run=" + i);
  p.setAttribute("data-label", "Call recording");
  new MutationObserver(function (list, obs) {{
    if (!p.hasAttribute("data-drawn")) return;
    obs.disconnect();
    requestAnimationFrame(function () {{
      window.paintTimes.push(performance.now() - t0);
      if (i + 1 < {runs}) setTimeout(function () {{ once(i + 1); }}, 50);
    }});
  }}).observe(p, {{attributes: true}});
  slot.appendChild(p);
}}
window.addEventListener("load", function () {{ once(0); }});
</script></body></html>"#
    )
}

/// Serves the page, the player's assets, the peaks and the recording on 127.0.0.1; returns
/// the base URL.
async fn serve(runs: usize, wav: Vec<u8>, peaks: Vec<u8>) -> std::io::Result<String> {
    use axum::routing::get;
    let html = page(runs);
    let app = axum::Router::new()
        .route(
            "/",
            get(move || async move { ([("content-type", "text/html; charset=utf-8")], html) }),
        )
        .route(
            "/player.js",
            get(|| async {
                (
                    [("content-type", "text/javascript")],
                    parley_server::dashboard::PLAYER_JS,
                )
            }),
        )
        .route(
            "/player.css",
            get(|| async {
                (
                    [("content-type", "text/css")],
                    parley_server::dashboard::PLAYER_CSS,
                )
            }),
        )
        .route(
            "/peaks",
            get(move || async move {
                (
                    [
                        ("content-type", "application/json"),
                        ("cache-control", "no-store"),
                    ],
                    peaks,
                )
            }),
        )
        .route(
            "/audio.wav",
            get(move || async move { ([("content-type", "audio/wav")], wav) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

/// A chromedriver child process, killed when dropped.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The paint times in ms (see the [module docs](self)). Errors: chromedriver or Chromium
/// could not be started, or the page did not finish within a minute.
async fn paint(
    opts: &AudioOptions,
    wav: Vec<u8>,
    peaks: Vec<u8>,
) -> Result<Vec<f64>, Box<dyn std::error::Error + Send + Sync>> {
    let base = serve(opts.runs, wav, peaks).await?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let _driver = Driver(
        std::process::Command::new(&opts.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", opts.chromedriver.display()))?,
    );
    let wd = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{wd}/status")).send().await.is_err() {
        if Instant::now() > deadline {
            return Err("chromedriver did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
        "goog:chromeOptions": {"binary": opts.chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--autoplay-policy=no-user-gesture-required"]}}}});
    let s: Value = http
        .post(format!("{wd}/session"))
        .json(&caps)
        .send()
        .await?
        .json()
        .await?;
    let id = s["value"]["sessionId"]
        .as_str()
        .ok_or_else(|| format!("no WebDriver session: {s}"))?
        .to_owned();
    let session = format!("{wd}/session/{id}");
    let result = async {
        http.post(format!("{session}/url"))
            .json(&json!({"url": base}))
            .send()
            .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r: Value = http
                .post(format!("{session}/execute/sync"))
                .json(&json!({"script": "return window.paintTimes || []", "args": []}))
                .send()
                .await?
                .json()
                .await?;
            let times: Vec<f64> = serde_json::from_value(r["value"].clone()).unwrap_or_default();
            if times.len() >= opts.runs {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(times);
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the page measured {} of {} runs", times.len(), opts.runs).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let _ = http.delete(&session).send().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_recording_decodes_to_its_length() {
        let p = parley_server::peaks::compute(long_wav(3), Some("audio/wav"));
        assert!(p.decoded, "{:?}", p.note);
        assert_eq!(p.duration_ms, 3000);
        assert!(
            p.peaks.iter().any(|v| *v > 30),
            "not silent: {:?}",
            p.peaks.iter().max()
        );
    }
}
