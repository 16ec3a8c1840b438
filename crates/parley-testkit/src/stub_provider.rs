//! A stand-in OpenAI-compatible provider on 127.0.0.1, for the tests and the benchmark harness
//! (an LLM provider cannot be reached from here, and must not be in tests). It speaks the chat
//! completions protocol — `POST /v1/chat/completions`, streamed (`text/event-stream` chunks,
//! the usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`) or not, and
//! `GET /v1/models` — and answers from a script: each request takes the next scripted
//! [`Reply`] (or the default one), so a test can replay a recorded response, fail on demand
//! (slow, 429, 500, a cut stream, a malformed chunk) and then see what Parley sent
//! ([`StubProvider::requests`]).
//!
//! It also speaks OpenAI's audio API: `POST /v1/audio/transcriptions` (multipart `model` +
//! `file`; refuses a file that is no known audio container with OpenAI's 400 `Invalid file
//! format`; answers `json`, `text` or `verbose_json` with the duration read from a WAV header;
//! the text is the one set by [`StubProvider::set_transcript`], else the known words of a
//! recording from `../shared/fixtures/audio` sent as it is, else a default sentence) and
//! `POST /v1/audio/speech` (JSON `model`, `input`, `voice`, `response_format`; answers the audio
//! files of `../shared/fixtures/audio`: `wav` the 21.8 s two-speaker call, `mp3` the same as
//! MP3, `opus` the Ogg/Opus sentence; see [`StubProvider::speeches`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parley_core::pricing::Usage;
use serde_json::{Value, json};

use parley_server::assistant::tokens;

/// What the stub answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completion with this text, shaped to the request: streamed word by word when it asks
    /// for `stream`, with the usage chunk when it asks for `include_usage`; usage counted by
    /// the tokenizer unless given.
    Text {
        /// The answer.
        content: String,
        /// Usage to report instead of the tokenizer's count.
        usage: Option<Usage>,
        /// Pause before each streamed chunk.
        delay: Duration,
    },
    /// A JSON body, as it is, with this status and extra headers.
    Json {
        /// HTTP status.
        status: u16,
        /// The body.
        body: Value,
        /// Extra headers (`Retry-After`...).
        headers: Vec<(&'static str, String)>,
    },
    /// A server-sent event stream of these `data:` payloads, as they are.
    Stream {
        /// Each event's data (a chunk's JSON, or `[DONE]`).
        events: Vec<String>,
        /// Pause before each event.
        delay: Duration,
        /// Break the connection after this many events.
        cut_after: Option<usize>,
    },
    /// Waits, then answers with the inner reply.
    Slow(Duration, Box<Reply>),
}

impl Reply {
    /// [`Reply::Text`] without delay, usage from the tokenizer.
    pub fn text(content: impl Into<String>) -> Reply {
        Reply::Text {
            content: content.into(),
            usage: None,
            delay: Duration::ZERO,
        }
    }

    /// An OpenAI error body (`{"error": {"message", "type", "param", "code"}}`) with `status`.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::Json {
            status,
            body: json!({"error": {"message": message, "type": "invalid_request_error",
                                   "param": null, "code": code}}),
            headers: Vec::new(),
        }
    }

    /// The `data:` payloads of a recorded stream's text (`data: ...` lines).
    pub fn recorded_stream(body: &str) -> Reply {
        Reply::Stream {
            events: body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
                .collect(),
            delay: Duration::ZERO,
            cut_after: None,
        }
    }
}

struct StubState {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Value>>,
    /// What `/v1/audio/transcriptions` answers, and the uploads it received (model, bytes).
    transcript: Mutex<String>,
    transcriptions: Mutex<Vec<(String, usize)>>,
    /// The `file` parts' file names, in the same order.
    transcription_files: Mutex<Vec<String>>,
    /// The `Authorization` header of every request (any route), in order of arrival.
    authorizations: Mutex<Vec<Option<String>>>,
    /// Whether [`StubProvider::set_transcript`] was called (else known fixtures are recognised).
    transcript_set: Mutex<bool>,
    /// Every `/v1/audio/speech` request body, in order.
    speeches: Mutex<Vec<Value>>,
    /// Replies queued for `/v1/audio/speech` (an error, say) before the fixture audio.
    speech_script: Mutex<VecDeque<Reply>>,
}

/// A running stub; it stops when dropped.
pub struct StubProvider {
    /// `http://127.0.0.1:PORT/v1`: the base URL to configure.
    pub base_url: String,
    state: Arc<StubState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl StubProvider {
    /// Starts a stub on a free loopback port; by default it answers "Hello from the stub."
    /// Errors: the port cannot be bound.
    pub async fn start() -> std::io::Result<StubProvider> {
        let state = Arc::new(StubState {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::text("Hello from the stub.")),
            requests: Mutex::new(Vec::new()),
            transcript: Mutex::new("Hello from the stub's speech to text.".into()),
            transcriptions: Mutex::new(Vec::new()),
            transcription_files: Mutex::new(Vec::new()),
            authorizations: Mutex::new(Vec::new()),
            transcript_set: Mutex::new(false),
            speeches: Mutex::new(Vec::new()),
            speech_script: Mutex::new(VecDeque::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/v1/audio/transcriptions", post(transcriptions))
            .route("/v1/audio/speech", post(speech))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                record_authorization,
            ))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = crate::serve(listener, app);
        Ok(StubProvider {
            base_url: format!("http://{addr}/v1"),
            state,
            _stop: stop,
        })
    }

    /// Queues a reply for the next request that finds the queue non-empty.
    pub fn push(&self, reply: Reply) {
        lock(&self.state.script).push_back(reply);
    }

    /// The reply used when the queue is empty.
    pub fn set_default(&self, reply: Reply) {
        *lock(&self.state.default) = reply;
    }

    /// The text `/v1/audio/transcriptions` answers from now on.
    pub fn set_transcript(&self, text: &str) {
        *lock(&self.state.transcript) = text.to_owned();
        *lock(&self.state.transcript_set) = true;
    }

    /// Every `/v1/audio/speech` request body received (`model`, `input`, `voice`,
    /// `response_format`), oldest first.
    pub fn speeches(&self) -> Vec<Value> {
        lock(&self.state.speeches).clone()
    }

    /// Queues a reply for the next `/v1/audio/speech` request (only [`Reply::Json`] and
    /// [`Reply::Slow`] of one make sense there: an error, a slow answer).
    pub fn push_speech(&self, reply: Reply) {
        lock(&self.state.speech_script).push_back(reply);
    }

    /// Every transcription request received, oldest first: (the `model` field, the audio
    /// file's size in bytes).
    pub fn transcriptions(&self) -> Vec<(String, usize)> {
        lock(&self.state.transcriptions).clone()
    }

    /// The file name of every transcription upload (`voice.webm`...), oldest first: providers
    /// tell the audio format by its extension.
    pub fn transcription_files(&self) -> Vec<String> {
        lock(&self.state.transcription_files).clone()
    }

    /// Every chat completions request body received, oldest first.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state.requests).clone()
    }

    /// The `Authorization` header of every request received (chat, models, transcriptions),
    /// oldest first; `None` for a request without one.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        lock(&self.state.authorizations).clone()
    }
}

async fn record_authorization(
    State(st): State<Arc<StubState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&st.authorizations).push(auth);
    next.run(req).await
}

/// `POST /v1/audio/transcriptions`: a multipart form with `model` and `file`; answers
/// `{"text": ...}` (OpenAI's default `json` response format), or 400 when a part is missing.
async fn transcriptions(
    State(st): State<Arc<StubState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("boundary=").nth(1))
        .map(|b| format!("--{}", b.trim_matches('"')));
    let mut model = None;
    let mut file = None;
    let mut bytes: Vec<u8> = Vec::new();
    let mut format = String::from("json");
    if let Some(boundary) = boundary {
        // Split on the raw bytes: the file part is binary audio, not text.
        let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
        let mut parts = Vec::new();
        let mut rest = &body[..];
        while let Some(at) = find(rest, boundary.as_bytes()) {
            parts.push(&rest[..at]);
            rest = &rest[at + boundary.len()..];
        }
        parts.push(rest);
        for part in parts {
            let Some(split) = find(part, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&part[..split]);
            let content = &part[split + 4..];
            let content = content.strip_suffix(b"\r\n").unwrap_or(content);
            if head.contains("name=\"model\"") {
                model = Some(String::from_utf8_lossy(content).into_owned());
            } else if head.contains("name=\"response_format\"") {
                format = String::from_utf8_lossy(content).into_owned();
            } else if head.contains("name=\"file\"") {
                file = Some(content.len());
                bytes = content.to_vec();
                let name = head
                    .split("filename=\"")
                    .nth(1)
                    .and_then(|n| n.split('"').next())
                    .unwrap_or("");
                lock(&st.transcription_files).push(name.to_owned());
            }
        }
    }
    match (model, file) {
        (Some(model), Some(size)) => {
            lock(&st.transcriptions).push((model, size));
            if !looks_like_audio(&bytes) {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": {
                        "message": "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']",
                        "type": "invalid_request_error", "param": null, "code": null}})),
                )
                    .into_response();
            }
            let text = if *lock(&st.transcript_set) {
                lock(&st.transcript).clone()
            } else {
                known_words(&bytes).unwrap_or_else(|| lock(&st.transcript).clone())
            };
            match format.as_str() {
                "text" => text.into_response(),
                "verbose_json" => {
                    let duration = wav_seconds(&bytes);
                    axum::Json(json!({
                        "task": "transcribe", "language": "english", "duration": duration,
                        "text": text,
                        "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": duration,
                                      "text": text, "temperature": 0.0}],
                    }))
                    .into_response()
                }
                _ => axum::Json(json!({"text": text})).into_response(),
            }
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "model and file are required",
                "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response(),
    }
}

/// Whether `b` starts like an audio container a provider takes: Ogg, RIFF/WAVE, EBML
/// (WebM/Matroska), MP4 (`ftyp`), FLAC, an ID3 tag or an MPEG audio frame.
fn looks_like_audio(b: &[u8]) -> bool {
    b.starts_with(b"OggS")
        || (b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WAVE"))
        || b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3])
        || b.get(4..8) == Some(b"ftyp")
        || b.starts_with(b"fLaC")
        || b.starts_with(b"ID3")
        || (b.len() > 1 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0)
}

/// The length of a PCM WAV file in seconds (from its `fmt ` byte rate and `data` size); 0.0
/// for anything else.
fn wav_seconds(b: &[u8]) -> f64 {
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    if !b.starts_with(b"RIFF") {
        return 0.0;
    }
    let (mut at, mut rate, mut data) = (12usize, None, None);
    while let (Some(id), Some(len)) = (b.get(at..at + 4), u32_at(at + 4)) {
        if id == b"fmt " {
            rate = u32_at(at + 16);
        } else if id == b"data" {
            data = Some(len);
        }
        at += 8 + len as usize + (len as usize & 1);
    }
    match (rate, data) {
        (Some(r), Some(d)) if r > 0 => f64::from(d) / f64::from(r),
        _ => 0.0,
    }
}

/// The fixtures directory, `../shared/fixtures/audio` beside the checkout.
fn audio_fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/audio")
}

/// What a fixture recording sent byte for byte says: the sentence of the `en_sentence_16k_mono`
/// files (fixtures/README.md), or the turns of the two-speaker call
/// (`call_two_speakers_turns.json`) joined.
fn known_words(bytes: &[u8]) -> Option<String> {
    let dir = audio_fixtures();
    for name in [
        "en_sentence_16k_mono.wav",
        "en_sentence_16k_mono.opus",
        "en_sentence_16k_mono.webm",
    ] {
        if std::fs::read(dir.join(name)).is_ok_and(|f| f == bytes) {
            return Some("Hello, this is a short test of the Parley voice pipeline.".into());
        }
    }
    for name in [
        "call_two_speakers_8k_mono.wav",
        "call_two_speakers_8k_mono.mp3",
    ] {
        if std::fs::read(dir.join(name)).is_ok_and(|f| f == bytes) {
            let turns: Value = serde_json::from_slice(
                &std::fs::read(dir.join("call_two_speakers_turns.json")).ok()?,
            )
            .ok()?;
            let text: Vec<&str> = turns["turns"]
                .as_array()?
                .iter()
                .filter_map(|t| t["text"].as_str())
                .collect();
            return Some(text.join(" "));
        }
    }
    None
}

/// `POST /v1/audio/speech`: JSON `{"model", "input", "voice", "response_format"?}` (OpenAI's
/// text-to-speech request); answers a fixture recording in the asked format (`mp3`, the
/// default, `wav` or `opus`), or OpenAI's 400 for a missing field or another format.
async fn speech(State(st): State<Arc<StubState>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&st.speeches).push(request.clone());
    let queued = lock(&st.speech_script).pop_front();
    if let Some(reply) = queued {
        return answer(reply, &request).await;
    }
    let bad = |message: &str| answer(Reply::error(400, "invalid_value", message), &request);
    for field in ["model", "input", "voice"] {
        if !request[field].is_string() || request[field].as_str() == Some("") {
            return bad(&format!("'{field}' is a required property")).await;
        }
    }
    let (file, mime) = match request["response_format"].as_str().unwrap_or("mp3") {
        "mp3" => ("call_two_speakers_8k_mono.mp3", "audio/mpeg"),
        "wav" => ("call_two_speakers_8k_mono.wav", "audio/wav"),
        "opus" => ("en_sentence_16k_mono.opus", "audio/ogg"),
        other => return bad(&format!("'{other}' is not one of ['mp3', 'wav', 'opus']")).await,
    };
    match std::fs::read(audio_fixtures().join(file)) {
        Ok(audio) => ([(header::CONTENT_TYPE, mime)], audio).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "fixture audio not found").into_response(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn models() -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": "stub-model", "object": "model", "created": 1_700_000_000, "owned_by": "parley-stub"}]
    }))
    .into_response()
}

async fn chat(State(st): State<Arc<StubState>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return answer(
                Reply::error(
                    400,
                    "invalid_json",
                    "We could not parse the JSON body of your request.",
                ),
                &Value::Null,
            )
            .await;
        }
    };
    lock(&st.requests).push(request.clone());
    let reply = lock(&st.script)
        .pop_front()
        .unwrap_or_else(|| lock(&st.default).clone());
    answer(reply, &request).await
}

async fn answer(reply: Reply, request: &Value) -> Response {
    match reply {
        Reply::Slow(wait, inner) => {
            tokio::time::sleep(wait).await;
            Box::pin(answer(*inner, request)).await
        }
        Reply::Json {
            status,
            body,
            headers,
        } => {
            let mut res = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(body),
            )
                .into_response();
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(name, v);
                }
            }
            res
        }
        Reply::Stream {
            events,
            delay,
            cut_after,
        } => sse(events, delay, cut_after),
        Reply::Text {
            content,
            usage,
            delay,
        } => {
            let model = request["model"].as_str().unwrap_or("stub-model").to_owned();
            let usage = usage.unwrap_or_else(|| Usage {
                prompt_tokens: request["messages"]
                    .as_array()
                    .map_or(0, |m| tokens::count_messages(&model, m))
                    as i64,
                completion_tokens: tokens::count_text(&model, &content) as i64,
            });
            let id = format!("chatcmpl-stub{}", fastrand::u64(..));
            let created = 1_700_000_000;
            let usage_json = json!({
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            });
            if request["stream"] != json!(true) {
                return axum::Json(json!({
                    "id": id, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                                 "logprobs": null, "finish_reason": "stop"}],
                    "usage": usage_json,
                }))
                .into_response();
            }
            let chunk = |delta: Value, finish: Value| {
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
                .to_string()
            };
            let mut events = vec![chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            let mut piece = String::new();
            for (i, word) in content.split_inclusive(' ').enumerate() {
                piece.push_str(word);
                if i % 2 == 1 {
                    events.push(chunk(json!({"content": piece}), Value::Null));
                    piece.clear();
                }
            }
            if !piece.is_empty() {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            events.push(chunk(json!({}), json!("stop")));
            if request.pointer("/stream_options/include_usage") == Some(&json!(true)) {
                events.push(
                    json!({"id": id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [], "usage": usage_json})
                    .to_string(),
                );
            }
            events.push("[DONE]".to_owned());
            sse(events, delay, None)
        }
    }
}

fn sse(events: Vec<String>, delay: Duration, cut_after: Option<usize>) -> Response {
    let stream = futures_util::stream::unfold(
        (events.into_iter(), 0usize),
        move |(mut it, sent)| async move {
            if sent == usize::MAX {
                return None;
            }
            if cut_after.is_some_and(|n| sent >= n) {
                // An error ends the chunked body without its terminator: a cut connection.
                // The pause lets what was sent reach the client first, as on a real network;
                // otherwise the server may drop its unflushed buffer along with the error.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Some((Err(std::io::Error::other("cut")), (it, usize::MAX)));
            }
            let data = it.next()?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((
                Ok::<Bytes, std::io::Error>(Bytes::from(format!("data: {data}\n\n"))),
                (it, sent + 1),
            ))
        },
    );
    let mut res = Response::new(Body::from_stream(stream));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    res
}
