//! AI voice platforms' post-call webhooks (issue 15): phone calls from **Retell** and **Vapi**
//! become conversations on channel `voip`, one per call, through the same path as
//! `POST /api/v1/calls` ([`crate::api::calls`]).
//!
//! **Connecting.** A connection of kind `retell` or `vapi` ties a platform account to an
//! assistant (`POST /api/v1/assistants/{id}/channels`, or the assistant page's Channels
//! section). There is no sender to claim (calls come to the connection's own URL, and only the
//! platform account that knows the secret can sign them), so nothing is proven at the
//! platform and the connection's `external_key` is its own id. Its secret is sealed like the
//! other channel secrets: Retell's `api_key` (the key with the webhook badge, which signs
//! Retell's webhooks), Vapi's `server_secret` (the server URL secret, or the token or HMAC key
//! of the Custom Credential attached to the server URL). The webhook URL to enter on the
//! platform is `{this server}/webhooks/retell/{id}` or `/webhooks/vapi/{id}`.
//!
//! **Retell** (`POST /webhooks/retell/{id}`): every delivery must carry `x-retell-signature`
//! signing the raw body with the API key ([`retell::signature_valid`], within 5 minutes of
//! now); missing: 401 `signature_missing`, wrong or stale: 401 `signature_invalid`.
//! `call_ended` and `call_analyzed` are stored in the durable inbox (a `retell.delivery` job)
//! before the 200; `call_started` and any other event are acknowledged with 200 and not stored:
//! the conversation is created when the call has ended, with its transcript, so Parley never
//! shows half a call (a live view of ongoing calls is not built). `call_analyzed` after
//! `call_ended` finds the same conversation (its key is the call id) and adds what the
//! analysis brings ([`crate::api::calls::update_call`]: `call_analysis` with its
//! `call_summary`, `user_sentiment` as the client's sentiment) without storing any turn twice;
//! either event may come first.
//!
//! **Vapi** (`POST /webhooks/vapi/{id}`): a server message `{"message": {"type", ...}}`.
//! Vapi's documented ways to authenticate a server URL are accepted ([`vapi::authentic`]):
//! the `X-Vapi-Secret` header (the legacy server URL secret, or a Bearer Token credential
//! with that header name), `Authorization: Bearer <secret>` (a Bearer Token credential with
//! its defaults), or an HMAC credential with SHA-256 (`x-signature` or `x-vapi-signature`,
//! hex or base64, an optional `sha256=` prefix, over `{timestamp}.{body}` when an
//! `x-timestamp` header comes, else over the body). None of them: 401 `signature_missing`;
//! a wrong one: 401 `signature_invalid`. `end-of-call-report` is stored in the inbox (a
//! `vapi.delivery` job) before the 200; every other message type (status updates, live
//! transcripts, tool calls...) is acknowledged with 200 `{}` and not stored.
//!
//! **Processing** (the inbox worker, [`crate::jobs`]): the call is stored with
//! [`crate::api::calls::store_call_as`] under the conversation key
//! `{kind}:{connection}:{call id}` ([`crate::channels::conversation_key`]), so a replayed
//! delivery stores nothing twice, and its recording is downloaded by the durable
//! `voip.recording` job through the guarded client ([`crate::net`]). A call stored before is
//! brought up to date by [`crate::api::calls::update_call`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parley_core::channel::{ChannelConnection, ChannelKind};
use parley_core::model::AssistantRef;
use parley_core::{ChannelConnectionId, Timestamp};
use serde_json::{Value, json};

use super::{conversation_key, open_secret};
use crate::AppState;
use crate::api::calls::{store_call_as, update_call};
use crate::error::ApiError;
use crate::jobs::JobError;

/// The bytes of a hex text (either case; an even number of digits), `None` for anything else.
fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The secret of each voice platform's connections: Retell's `api_key`, Vapi's `server_secret`.
pub fn secret_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Vapi => "server_secret",
        _ => "api_key",
    }
}

/// The connection `id` of `kind`, whatever its workspace. Errors: 404 `not_found` for an
/// unknown id or a connection of another kind.
async fn connection(
    st: &AppState,
    id: &str,
    kind: ChannelKind,
) -> Result<ChannelConnection, ApiError> {
    let id: ChannelConnectionId = id.parse().map_err(|_| ApiError::not_found("connection"))?;
    st.store
        .channels()
        .channel_by_id(id)
        .await?
        .filter(|c| c.kind == kind)
        .ok_or_else(|| ApiError::not_found("connection"))
}

/// 401 `signature_missing` / `signature_invalid` for a delivery of `c` that does not prove it
/// comes from the platform (logged).
fn refused(c: &ChannelConnection, missing: bool, what: &str) -> ApiError {
    if missing {
        tracing::warn!(connection = %c.id, kind = %c.kind, "refused a webhook without {what}");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_missing",
            format!("{what} is required"),
        )
    } else {
        tracing::warn!(connection = %c.id, kind = %c.kind, "refused a webhook with a wrong {what}");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
            format!("{what} does not match this connection's secret"),
        )
    }
}

/// The body as JSON. Errors: 400 `invalid_json`.
fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not JSON",
        )
    })
}

/// `POST /webhooks/retell/{id}`: a Retell webhook (see the [module docs](self)). 404 for an
/// unknown connection, 401 `signature_missing` / `signature_invalid`, 400 `invalid_json`, 500
/// when it cannot be stored (Retell retries); otherwise 200, `call_ended` and `call_analyzed`
/// stored in the inbox first.
pub async fn retell_webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = connection(&st, &id, ChannelKind::Retell).await?;
    let key = open_secret(&st, &c, secret_name(c.kind)).map_err(ApiError::internal)?;
    let Some(signature) = headers.get("x-retell-signature") else {
        return Err(refused(&c, true, "x-retell-signature"));
    };
    let signature = signature.to_str().unwrap_or_default();
    if !retell::signature_valid(&body, signature, &key, Timestamp::now().0) {
        return Err(refused(&c, false, "x-retell-signature"));
    }
    let event = json_body(&body)?;
    match event["event"].as_str() {
        Some("call_ended" | "call_analyzed") => {
            crate::jobs::enqueue_delivery(&st, crate::jobs::RETELL_DELIVERY, &c, &body).await?;
        }
        other => {
            tracing::debug!(connection = %c.id, event = ?other, "a Retell event Parley does not store");
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `POST /webhooks/vapi/{id}`: a Vapi server message (see the [module docs](self)). 404 for
/// an unknown connection, 401 `signature_missing` / `signature_invalid`, 400 `invalid_json`,
/// 500 when it cannot be stored; otherwise 200 `{}`, an `end-of-call-report` stored in the
/// inbox first.
pub async fn vapi_webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = connection(&st, &id, ChannelKind::Vapi).await?;
    let secret = open_secret(&st, &c, secret_name(c.kind)).map_err(ApiError::internal)?;
    match vapi::authentic(&headers, &body, &secret, Timestamp::now().0) {
        vapi::Auth::Valid => {}
        vapi::Auth::Missing => return Err(refused(&c, true, "X-Vapi-Secret or a signature")),
        vapi::Auth::Invalid => return Err(refused(&c, false, "the Vapi secret or signature")),
    }
    let message = json_body(&body)?;
    match message["message"]["type"].as_str() {
        Some("end-of-call-report") => {
            crate::jobs::enqueue_delivery(&st, crate::jobs::VAPI_DELIVERY, &c, &body).await?;
        }
        other => {
            tracing::debug!(connection = %c.id, kind = ?other, "a Vapi server message Parley does not store");
        }
    }
    Ok((StatusCode::OK, Json(json!({}))).into_response())
}

/// Processes one stored delivery of a voice platform (the `retell.delivery` and
/// `vapi.delivery` jobs; `body` is the raw body): the call it reports is stored, or brought
/// up to date when it was stored before. A delivery that names no call is skipped (logged).
/// Errors: `Retry` when the store fails, `Permanent` for a body that is not JSON or a call
/// the calls path refuses (422).
pub async fn process_delivery(
    state: &AppState,
    c: &ChannelConnection,
    body: &str,
) -> Result<(), JobError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|e| JobError::Permanent(format!("the delivery is not JSON: {e}")))?;
    let assistant = AssistantRef {
        id: Some(c.assistant_id),
        name: None,
        company: None,
    };
    let call = match c.kind {
        ChannelKind::Retell => retell::call_input(&v, assistant),
        ChannelKind::Vapi => vapi::call_input(&v["message"], assistant),
        other => {
            return Err(JobError::Permanent(format!(
                "{other} is not a voice platform"
            )));
        }
    };
    let call = match call {
        Ok(call) => call,
        Err(why) => {
            tracing::warn!(connection = %c.id, kind = %c.kind, why, "a call report Parley cannot read; skipped");
            return Ok(());
        }
    };
    let key = conversation_key(c, call.call_id.trim());
    let (created, id) = store_call_as(state, c.workspace_id, &call, &key).await?;
    if !created {
        update_call(state, c.workspace_id, id, &call).await?;
    }
    Ok(())
}

/// Retell AI's post-call webhooks (`call_ended`, `call_analyzed`): the `x-retell-signature`
/// check and the call object's mapping to a [`CallInput`].
pub mod retell {
    use hmac::{KeyInit, Mac};
    use serde_json::Value;

    use crate::api::calls::{CallInput, Segment, Speaker};
    use parley_core::model::{AssistantRef, Sentiment};

    type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

    /// How far a signature's timestamp may be from now, in ms (Retell's SDKs: 5 minutes).
    pub const TOLERANCE_MS: i64 = 300_000;

    /// Whether `header` (`x-retell-signature`: `v=<timestamp ms>,d=<hex HMAC-SHA256>`) signs
    /// `body` with the Retell API key `api_key` at a time within [`TOLERANCE_MS`] of `now_ms`.
    /// The digest is HMAC-SHA256 (key = the API key) of the raw body followed by the decimal
    /// timestamp, as Retell's SDKs compute it (`webhook_auth` in retell-python-sdk); the
    /// header must be exactly that shape, lowercase hex, and is compared in constant time.
    pub fn signature_valid(body: &[u8], header: &str, api_key: &str, now_ms: i64) -> bool {
        let Some(rest) = header.strip_prefix("v=") else {
            return false;
        };
        let Some((ts, digest)) = rest.split_once(",d=") else {
            return false;
        };
        if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) || ts.len() > 18 {
            return false;
        }
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return false;
        }
        let Ok(at) = ts.parse::<i64>() else {
            return false;
        };
        if (now_ms - at).abs() > TOLERANCE_MS {
            return false;
        }
        let Some(expected) = super::hex_bytes(digest) else {
            return false;
        };
        let mut mac =
            HmacSha256::new_from_slice(api_key.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(body);
        mac.update(ts.as_bytes());
        mac.verify_slice(&expected).is_ok()
    }

    /// The call of a Retell webhook body (`{"event", "call": {…}}`, the call object of
    /// Retell's API: `call_id`, `from_number`, `to_number`, `direction`, `start_timestamp` /
    /// `end_timestamp` in ms, `disconnection_reason`, `recording_url` (and the stereo
    /// `recording_multi_channel_url`, kept as `stereo_recording_url`), `transcript_object[]`
    /// with `words[{start, end}]` in seconds, `call_analysis.user_sentiment`, `call_cost.
    /// combined_cost` in cents) as a [`CallInput`] for `assistant`. A turn's offsets are its
    /// first word's start and last word's end. Errors: what is missing.
    pub fn call_input(body: &Value, assistant: AssistantRef) -> Result<CallInput, String> {
        let c = &body["call"];
        let id = c["call_id"].as_str().ok_or("call.call_id is missing")?;
        let ms = |v: &Value| v.as_i64().map(parley_core::Timestamp);
        let started = ms(&c["start_timestamp"]).ok_or("call.start_timestamp is missing")?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let mut transcript = Vec::new();
        for t in c["transcript_object"].as_array().into_iter().flatten() {
            let words = t["words"].as_array();
            let secs = |w: Option<&Value>, k: &str| {
                w.and_then(|w| w[k].as_f64())
                    .map(|s| (s * 1000.0).round().max(0.0) as u64)
            };
            let start_ms = secs(words.and_then(|w| w.first()), "start").unwrap_or(0);
            let end_ms = secs(words.and_then(|w| w.last()), "end")
                .unwrap_or(start_ms)
                .max(start_ms);
            let content = t["content"].as_str().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            transcript.push(Segment {
                speaker: if t["role"] == "user" {
                    Speaker::User
                } else {
                    Speaker::Assistant
                },
                start_ms,
                end_ms,
                text: content.to_owned(),
            });
        }
        let analysis = c["call_analysis"].as_object().cloned();
        let sentiment = c["call_analysis"]["user_sentiment"]
            .as_str()
            .and_then(|s| match s.to_ascii_lowercase().as_str() {
                "positive" => Some("positive"),
                "negative" => Some("negative"),
                "neutral" => Some("neutral"),
                _ => None,
            })
            .and_then(|label| {
                serde_json::from_value::<Sentiment>(serde_json::json!({"label": label})).ok()
            });
        Ok(CallInput {
            call_id: id.to_owned(),
            assistant,
            platform: Some("retell".into()),
            caller: text(&c["from_number"]),
            callee: text(&c["to_number"]),
            direction: text(&c["direction"]),
            started_at: started,
            ended_at: ms(&c["end_timestamp"]),
            end_reason: text(&c["disconnection_reason"]),
            cost_nanousd: c["call_cost"]["combined_cost"]
                .as_f64()
                .map(|cents| (cents * 10_000_000.0).round() as i64),
            recording_url: text(&c["recording_url"]),
            recording: None,
            stereo_recording_url: text(&c["recording_multi_channel_url"]),
            sentiment,
            analysis,
            transcript,
        })
    }
}
/// Vapi's server messages: authentication of a delivery ([`authentic`]) and the mapping of an
/// `end-of-call-report` to a [`CallInput`] ([`call_input`]). The shapes are Vapi's OpenAPI
/// document (`ServerMessageEndOfCallReport`, `Artifact`, `UserMessage` / `BotMessage`,
/// `Analysis`, `HMACAuthenticationPlan`, in the `VapiAI/docs` repository's
/// `fern/apis/api/openapi.json`) and its server-authentication guide.
pub mod vapi {
    use axum::http::HeaderMap;
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    use parley_core::Timestamp;
    use parley_core::model::AssistantRef;
    use serde_json::Value;
    use subtle::ConstantTimeEq;

    use crate::api::calls::{CallInput, Segment, Speaker};

    type HmacSha256 = hmac::Hmac<sha2_hmac::Sha256>;

    /// How far an HMAC timestamp (`x-timestamp`) may be from now, in ms (5 minutes, as
    /// Retell's; Vapi documents the header but no tolerance).
    pub const TOLERANCE_MS: i64 = 300_000;

    /// What a delivery's headers prove.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Auth {
        /// A secret or signature that matches.
        Valid,
        /// None of the headers Vapi authenticates with.
        Missing,
        /// One of them, not matching (or an HMAC timestamp too far from now).
        Invalid,
    }

    fn same(a: &[u8], b: &[u8]) -> bool {
        bool::from(a.ct_eq(b))
    }

    /// Whether `headers` prove a delivery of `body` comes from the Vapi account that knows
    /// `secret`, at `now_ms` (ms since the epoch). Accepted, as Vapi's server-authentication
    /// guide and its `HMACAuthenticationPlan` define them:
    /// - `X-Vapi-Secret: <secret>` (the legacy server URL secret; a Bearer Token credential
    ///   named `X-Vapi-Secret` without the prefix);
    /// - `Authorization: Bearer <secret>` (a Bearer Token credential's defaults);
    /// - an HMAC-SHA256 signature of the body keyed with `secret` in `x-signature` (Vapi's
    ///   default header) or `x-vapi-signature`, lowercase or uppercase hex or base64, with
    ///   an optional `sha256=` prefix; the signed text is `{timestamp}.{body}` (Vapi's
    ///   default payload format) when an `x-timestamp` header comes (seconds or ms since the
    ///   epoch, within [`TOLERANCE_MS`]), else the body alone.
    ///
    /// Every comparison is constant-time.
    pub fn authentic(headers: &HeaderMap, body: &[u8], secret: &str, now_ms: i64) -> Auth {
        let text = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let mut seen = false;
        if let Some(given) = text("x-vapi-secret") {
            if same(given, secret.as_bytes()) {
                return Auth::Valid;
            }
            seen = true;
        }
        if let Some(given) = text("authorization") {
            let token = given
                .strip_prefix(b"Bearer ")
                .or_else(|| given.strip_prefix(b"bearer "));
            if let Some(token) = token {
                if same(token, secret.as_bytes()) {
                    return Auth::Valid;
                }
                seen = true;
            }
        }
        let signature = text("x-vapi-signature").or_else(|| text("x-signature"));
        if let Some(sig) = signature {
            seen = true;
            let timestamp = text("x-timestamp");
            if hmac_valid(sig, timestamp, body, secret, now_ms) {
                return Auth::Valid;
            }
        }
        if seen { Auth::Invalid } else { Auth::Missing }
    }

    fn hmac_valid(
        sig: &[u8],
        timestamp: Option<&[u8]>,
        body: &[u8],
        secret: &str,
        now_ms: i64,
    ) -> bool {
        let Ok(sig) = std::str::from_utf8(sig) else {
            return false;
        };
        let sig = sig.trim();
        let sig = sig.strip_prefix("sha256=").unwrap_or(sig);
        let expected = if sig.len() == 64 {
            super::hex_bytes(sig)
        } else {
            base64::engine::general_purpose::STANDARD.decode(sig).ok()
        };
        let Some(expected) = expected else {
            return false;
        };
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        if let Some(ts) = timestamp {
            let Some(at) = std::str::from_utf8(ts)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
            else {
                return false;
            };
            // Seconds or ms: a value below 10^11 is seconds (year 5138 in seconds, 1973 in ms).
            let at_ms = if at.abs() < 100_000_000_000 {
                at.saturating_mul(1000)
            } else {
                at
            };
            if (now_ms - at_ms).abs() > TOLERANCE_MS {
                return false;
            }
            mac.update(ts);
            mac.update(b".");
        }
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    }

    /// An ISO 8601 / RFC 3339 time of the report.
    fn time(v: &Value) -> Option<Timestamp> {
        v.as_str()
            .and_then(|s| Timestamp::parse_bound(s, false).ok())
    }

    /// The call of an `end-of-call-report` (`message`, the body's `message` object) as a
    /// [`CallInput`] for `assistant`:
    /// - `call_id` = `call.id`; `started_at` / `ended_at` = `startedAt` / `endedAt` (or the
    ///   call's); `end_reason` = `endedReason`; `cost_nanousd` = `cost` (USD) × 10⁹;
    /// - `caller` / `callee`: the customer's number and the Vapi phone number, swapped for an
    ///   `outboundPhoneCall`; `direction` from `call.type` (`inbound`, `outbound`, `web`);
    /// - the recording: `artifact.recordingUrl`, else `artifact.recording.mono.combinedUrl`,
    ///   else the older top-level `recordingUrl`, else the stereo one; the stereo recording
    ///   (`artifact.stereoRecordingUrl` / `artifact.recording.stereoUrl` /
    ///   `stereoRecordingUrl`) is kept as `stereo_recording_url`;
    /// - `analysis` = `analysis` (`summary`, `structuredData`, `successEvaluation`) as sent;
    /// - the transcript: `artifact.messages` (else the older top-level `messages`) of role
    ///   `user` (the caller) and `bot` or `assistant` (the AI), other roles (system prompt,
    ///   tool calls) left out. A turn starts at `secondsFromStart` × 1000 ms and lasts
    ///   `endTime - time` (both epoch ms), else `duration` (seconds, as the schema says).
    ///
    /// Errors: what is missing (`call.id`, a start time).
    pub fn call_input(message: &Value, assistant: AssistantRef) -> Result<CallInput, String> {
        let call = &message["call"];
        let id = call["id"].as_str().ok_or("message.call.id is missing")?;
        let artifact = &message["artifact"];
        let messages = artifact["messages"]
            .as_array()
            .or(message["messages"].as_array())
            .cloned()
            .unwrap_or_default();
        let started = time(&message["startedAt"])
            .or_else(|| time(&call["startedAt"]))
            .or_else(|| {
                // The first message's epoch time less its offset.
                messages.iter().find_map(|m| {
                    let t = m["time"].as_f64()?;
                    let s = m["secondsFromStart"].as_f64()?;
                    Some(Timestamp((t - s * 1000.0).round() as i64))
                })
            })
            .ok_or("message.startedAt is missing")?;
        let ended = time(&message["endedAt"]).or_else(|| time(&call["endedAt"]));
        let url = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        let stereo = url(&artifact["stereoRecordingUrl"])
            .or_else(|| url(&artifact["recording"]["stereoUrl"]))
            .or_else(|| url(&message["stereoRecordingUrl"]));
        let mono = url(&artifact["recordingUrl"])
            .or_else(|| url(&artifact["recording"]["mono"]["combinedUrl"]))
            .or_else(|| url(&message["recordingUrl"]));
        let customer =
            url(&message["customer"]["number"]).or_else(|| url(&call["customer"]["number"]));
        let number =
            url(&message["phoneNumber"]["number"]).or_else(|| url(&call["phoneNumber"]["number"]));
        let (direction, caller, callee) = match call["type"].as_str() {
            Some("outboundPhoneCall") => (Some("outbound"), number, customer),
            Some("inboundPhoneCall") => (Some("inbound"), customer, number),
            Some("webCall") => (Some("web"), customer, number),
            _ => (None, customer, number),
        };
        let mut transcript = Vec::new();
        for m in &messages {
            let speaker = match m["role"].as_str() {
                Some("user") => Speaker::User,
                Some("bot" | "assistant") => Speaker::Assistant,
                _ => continue,
            };
            let text = m["message"].as_str().unwrap_or_default().trim();
            if text.is_empty() {
                continue;
            }
            let start = m["secondsFromStart"].as_f64().unwrap_or(0.0).max(0.0) * 1000.0;
            let length = match (m["time"].as_f64(), m["endTime"].as_f64()) {
                (Some(t), Some(e)) if e >= t => e - t,
                _ => m["duration"].as_f64().unwrap_or(0.0).max(0.0) * 1000.0,
            };
            transcript.push(Segment {
                speaker,
                start_ms: start.round() as u64,
                end_ms: (start + length).round() as u64,
                text: text.to_owned(),
            });
        }
        Ok(CallInput {
            call_id: id.to_owned(),
            assistant,
            platform: Some("vapi".into()),
            caller,
            callee,
            direction: direction.map(str::to_owned),
            started_at: started,
            ended_at: ended,
            end_reason: url(&message["endedReason"]),
            cost_nanousd: message["cost"]
                .as_f64()
                .filter(|c| *c >= 0.0)
                .map(|usd| (usd * 1e9).round() as i64),
            recording_url: mono.or_else(|| stereo.clone()),
            recording: None,
            stereo_recording_url: stereo,
            sentiment: None,
            analysis: message["analysis"].as_object().cloned(),
            transcript,
        })
    }
}
