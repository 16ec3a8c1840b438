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
//! **Twilio** (`POST /webhooks/twilio/{id}`): Twilio Programmable Voice's call status callback
//! and RecordingStatusCallback, form-encoded, signed with the account's auth token in
//! `X-Twilio-Signature` ([`twilio::signature_valid`]). Twilio signs the URL it called, so the
//! URL checked is the operator's `public_base_url` setting followed by the request's path and
//! query, never one built from the request's `Host` header; without that setting every
//! delivery answers 503 `public_base_url_missing`. Missing signature: 401
//! `signature_missing`; wrong: 401 `signature_invalid`. A call status callback with
//! `CallStatus=completed` and a recording status callback with `RecordingStatus=completed`
//! are stored in the inbox (a `twilio.delivery` job) before the 204; every other status is
//! acknowledged with 204 and not stored. Both name the call by `CallSid`, so they meet in one
//! conversation whichever comes first. The recording (`RecordingUrl` + `.wav`) is downloaded
//! by the `voip.recording` job, with HTTP basic auth (account SID, auth token) only when its
//! URL is on Twilio's API (`twilio_api_base_url`), then transcribed with the connection's
//! `transcription_model` through the assistant's provider into one `user` message spanning
//! the recording: Twilio sends no transcript and the speech-to-text answer has no speaker
//! separation, so the caller and the assistant are not told apart.
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

/// The secret of each voice platform's connections: Retell's `api_key`, Vapi's
/// `server_secret`, Twilio's `auth_token`.
pub fn secret_name(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Vapi => "server_secret",
        ChannelKind::Twilio => "auth_token",
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

/// `POST /webhooks/twilio/{id}`: a Twilio call status or recording status callback (see the
/// [module docs](self)). 404 for an unknown connection; 503 `public_base_url_missing` when the
/// operator has not set `public_base_url`; 401 `signature_missing` / `signature_invalid`;
/// 500 when it cannot be stored (Twilio retries); otherwise 204, a completed call or
/// recording stored in the inbox first.
pub async fn twilio_webhook(
    State(st): State<AppState>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = connection(&st, &id, ChannelKind::Twilio).await?;
    let Some(base) = st.settings.public_base_url.as_deref() else {
        tracing::warn!(connection = %c.id, "a Twilio webhook cannot be verified: public_base_url is not set");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "public_base_url_missing",
            "the server's public_base_url is not configured, so Twilio's signature cannot be checked",
        ));
    };
    let token = open_secret(&st, &c, secret_name(c.kind)).map_err(ApiError::internal)?;
    let Some(signature) = headers.get("x-twilio-signature") else {
        return Err(refused(&c, true, "X-Twilio-Signature"));
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{base}{path}");
    let signature = signature.to_str().unwrap_or_default();
    let form = twilio::form(&body);
    let signed = if twilio::body_hash(&url).is_some() {
        twilio::Signed::Json(&body)
    } else {
        twilio::Signed::Form(&form)
    };
    if !twilio::signature_valid(&url, signed, signature, &token) {
        return Err(refused(&c, false, "X-Twilio-Signature"));
    }
    if matches!(signed, twilio::Signed::Form(_)) && twilio::worth_storing(&form) {
        crate::jobs::enqueue_delivery(&st, crate::jobs::TWILIO_DELIVERY, &c, &body).await?;
    } else {
        tracing::debug!(connection = %c.id, "a Twilio callback Parley does not store");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
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
    let assistant = AssistantRef {
        id: Some(c.assistant_id),
        name: None,
        company: None,
    };
    if c.kind == ChannelKind::Twilio {
        let form = twilio::form(body.as_bytes());
        return match twilio::call_input(&form, assistant, Timestamp::now()) {
            Ok(call) => store_or_update(state, c, &call).await,
            Err(why) => {
                tracing::warn!(connection = %c.id, why, "a Twilio callback Parley cannot read; skipped");
                Ok(())
            }
        };
    }
    let v: Value = serde_json::from_str(body)
        .map_err(|e| JobError::Permanent(format!("the delivery is not JSON: {e}")))?;
    let call = match c.kind {
        ChannelKind::Retell => retell::call_input(&v, assistant),
        ChannelKind::Vapi => vapi::call_input(&v["message"], assistant),
        ChannelKind::Twilio => Err("a Twilio delivery is form-encoded, read above".to_owned()),
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
    store_or_update(state, c, &call).await
}

/// Stores `call` from connection `c` under its conversation key, or brings the stored one up
/// to date (its details, and the recording when the stored call has none yet: Twilio's
/// status callback may come before the recording's). Errors: as [`process_delivery`].
async fn store_or_update(
    state: &AppState,
    c: &ChannelConnection,
    call: &crate::api::calls::CallInput,
) -> Result<(), JobError> {
    let key = conversation_key(c, call.call_id.trim());
    let (created, id) = store_call_as(state, c.workspace_id, call, &key, Some(c.id)).await?;
    if !created {
        update_call(state, c.workspace_id, id, call).await?;
        crate::api::calls::add_recording(state, c.workspace_id, id, call, Some(c.id)).await?;
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

/// Twilio Programmable Voice: the `X-Twilio-Signature` check ([`signature_valid`]) and the
/// mapping of its call status callback and RecordingStatusCallback to a [`CallInput`]
/// ([`call_input`]). The signature scheme is the one of Twilio's helper libraries
/// (`RequestValidator` in twilio-python's `twilio/request_validator.py`); the parameter names
/// are those of Twilio's docs (voice webhooks' "Call status callbacks" and the recording
/// status callback parameters).
pub mod twilio {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    use parley_core::Timestamp;
    use parley_core::model::AssistantRef;
    use sha2::Digest as _;
    use subtle::ConstantTimeEq;

    use crate::api::calls::CallInput;

    type HmacSha1 = hmac::Hmac<sha1::Sha1>;

    /// Twilio's REST API, where its recording URLs point (the default of the
    /// `twilio_api_base_url` setting).
    pub const DEFAULT_API_BASE_URL: &str = "https://api.twilio.com";

    /// What a delivery's signature covers besides the URL.
    #[derive(Debug, Clone, Copy)]
    pub enum Signed<'a> {
        /// A form-encoded body's parameters (decoded, in body order; names may repeat).
        Form(&'a [(String, String)]),
        /// A JSON (or any raw) body: the URL carries `bodySHA256`, the hex SHA-256 of it.
        Json(&'a [u8]),
    }

    /// The decoded name/value pairs of a form-encoded body (`application/x-www-form-urlencoded`,
    /// `+` as space), in order.
    pub fn form(body: &[u8]) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body).into_owned().collect()
    }

    /// The first value of `name` in `form`, trimmed, when not empty.
    pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The `bodySHA256` query parameter of `url`, when it has one.
    pub fn body_hash(url: &str) -> Option<String> {
        let query = url.split_once('?')?.1;
        let query = query.split('#').next().unwrap_or_default();
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == "bodySHA256")
            .map(|(_, v)| v.into_owned())
    }

    /// The signature Twilio sends for a request to `url` with `params`, keyed by the account's
    /// `auth_token`: base64 of HMAC-SHA1 over the URL followed, for each parameter name in
    /// sorted order, by the name and its value; a repeated name contributes each of its
    /// distinct values, sorted (what twilio-python's `compute_signature` does).
    pub fn signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
        let mut sorted: Vec<(&str, &str)> = params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut mac =
            HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(url.as_bytes());
        for (n, v) in sorted {
            mac.update(n.as_bytes());
            mac.update(v.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    /// Where the authority (`host[:port]`, after any `user@`) of `url` starts and ends.
    fn authority(url: &str) -> Option<(usize, usize)> {
        let start = url.find("://")? + 3;
        let end = url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| start + i);
        let at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
        Some((at, end))
    }

    /// Where the `:port` of `url`'s authority starts, when it has one.
    fn port_at(url: &str) -> Option<usize> {
        let (start, end) = authority(url)?;
        let colon = start + url[start..end].rfind(':')?;
        let digits = &url[colon + 1..end];
        // An IPv6 literal's colons are inside brackets.
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(colon)
    }

    /// `url` with its port removed (as is when it has none).
    pub fn without_port(url: &str) -> String {
        match (port_at(url), authority(url)) {
            (Some(colon), Some((_, end))) => format!("{}{}", &url[..colon], &url[end..]),
            _ => url.to_owned(),
        }
    }

    /// `url` with its scheme's default port (443 for https, 80 otherwise) added when it names
    /// none (as is when it does).
    pub fn with_port(url: &str) -> String {
        if port_at(url).is_some() {
            return url.to_owned();
        }
        let Some((_, end)) = authority(url) else {
            return url.to_owned();
        };
        let port = if url[..5].eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{}:{port}{}", &url[..end], &url[end..])
    }

    /// Whether `header` (`X-Twilio-Signature`) signs a request to `url` with `signed`, keyed
    /// by `auth_token`, as Twilio's helper libraries validate it: the signature of `url`
    /// without its port or with its scheme's default port added (Twilio may sign either way;
    /// a non-default port is removed before checking), over the form parameters; for a raw
    /// body, over the URL alone, and the body's hex SHA-256 must equal the URL's
    /// `bodySHA256`. Comparisons are constant-time.
    pub fn signature_valid(url: &str, signed: Signed<'_>, header: &str, auth_token: &str) -> bool {
        let same = |a: &str, b: &str| bool::from(a.as_bytes().ct_eq(b.as_bytes()));
        let params: &[(String, String)] = match signed {
            Signed::Form(p) => p,
            Signed::Json(body) => {
                let Some(given) = body_hash(url) else {
                    return false;
                };
                let actual: String = sha2::Sha256::digest(body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if !same(&given.to_ascii_lowercase(), &actual) {
                    return false;
                }
                &[]
            }
        };
        let header = header.trim();
        let bare = same(&signature(&without_port(url), params, auth_token), header);
        let ported = same(&signature(&with_port(url), params, auth_token), header);
        bare | ported
    }

    /// Whether a callback is one Parley stores: a call status callback with
    /// `CallStatus=completed`, or a recording status callback with `RecordingStatus=completed`
    /// (Twilio also reports `in-progress`, `absent` for a recording too short or silent, and a
    /// call's `ringing`, `busy`, `no-answer`...).
    pub fn worth_storing(form: &[(String, String)]) -> bool {
        if field(form, "CallSid").is_none() {
            return false;
        }
        match field(form, "RecordingSid") {
            Some(_) => field(form, "RecordingStatus") == Some("completed"),
            None => field(form, "CallStatus") == Some("completed"),
        }
    }

    /// An RFC 2822 time (`Mon, 22 Aug 2011 19:04:22 +0000`, Twilio's `Timestamp` and
    /// `RecordingStartTime`).
    fn time(v: Option<&str>) -> Option<Timestamp> {
        let t =
            time::OffsetDateTime::parse(v?, &time::format_description::well_known::Rfc2822).ok()?;
        Some(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// Whole seconds of a duration field, in ms.
    fn seconds(v: Option<&str>) -> Option<i64> {
        v?.parse::<u32>().ok().map(|s| i64::from(s) * 1000)
    }

    /// The call of a Twilio callback (`form`, decoded) as a [`CallInput`] for `assistant`;
    /// `now` stands in for a time Twilio did not send:
    /// - `call_id` = `CallSid`; `caller` / `callee` = `From` / `To`; `direction` =
    ///   `Direction` (`inbound`, `outbound-api`, `outbound-dial`);
    /// - a recording status callback (it has `RecordingSid`): `started_at` =
    ///   `RecordingStartTime`, `ended_at` = start + `RecordingDuration` s, and the recording
    ///   `RecordingUrl` + `.wav` (Twilio's URL has no extension; WAV is the file as recorded);
    ///   `RecordingChannels` and `RecordingSid` go into the call's `analysis`;
    /// - a call status callback: `ended_at` = `Timestamp` (when the call completed), the
    ///   start `CallDuration` s before it; `end_reason` = `CallStatus`.
    ///
    /// No transcript: Twilio sends none (the recording is transcribed after download).
    /// Errors: `CallSid` missing, or a recording status callback without `RecordingUrl`.
    pub fn call_input(
        form: &[(String, String)],
        assistant: AssistantRef,
        now: Timestamp,
    ) -> Result<CallInput, String> {
        let f = |name: &str| field(form, name);
        let id = f("CallSid").ok_or("CallSid is missing")?;
        let text = |name: &str| f(name).map(str::to_owned);
        let mut call = CallInput {
            call_id: id.to_owned(),
            assistant,
            platform: Some("twilio".into()),
            caller: text("From"),
            callee: text("To"),
            direction: text("Direction"),
            started_at: now,
            ended_at: None,
            end_reason: None,
            cost_nanousd: None,
            recording_url: None,
            recording: None,
            stereo_recording_url: None,
            sentiment: None,
            analysis: None,
            transcript: Vec::new(),
        };
        if f("RecordingSid").is_some() {
            let url = f("RecordingUrl").ok_or("RecordingUrl is missing")?;
            let last = url.rsplit('/').next().unwrap_or_default();
            call.recording_url = Some(if last.contains('.') {
                url.to_owned()
            } else {
                format!("{url}.wav")
            });
            let length = seconds(f("RecordingDuration"));
            call.started_at = time(f("RecordingStartTime"))
                .or_else(|| length.map(|l| now.add_millis(-l)))
                .unwrap_or(now);
            call.ended_at = length.map(|l| call.started_at.add_millis(l));
            let mut analysis = serde_json::Map::new();
            for (key, name) in [
                ("recording_sid", "RecordingSid"),
                ("recording_channels", "RecordingChannels"),
                ("recording_source", "RecordingSource"),
            ] {
                if let Some(v) = f(name) {
                    analysis.insert(key.into(), v.into());
                }
            }
            call.analysis = Some(analysis);
        } else {
            let end = time(f("Timestamp")).unwrap_or(now);
            call.started_at = end.add_millis(-seconds(f("CallDuration")).unwrap_or(0));
            call.ended_at = Some(end);
            call.end_reason = text("CallStatus");
        }
        Ok(call)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::Value;

        /// Twilio's own test vectors (twilio-python's `test_request_validator.py`), from
        /// `../shared/fixtures/voip`.
        fn vectors() -> Value {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/voip/twilio_python_test_request_validator.json");
            serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e}", path.display());
            }))
            .unwrap()
        }

        fn params(v: &Value) -> Vec<(String, String)> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect()
        }

        #[test]
        fn the_base_vector_is_computed_and_accepted() {
            let v = vectors();
            let (url, token) = (
                v["url"].as_str().unwrap(),
                v["auth_token"].as_str().unwrap(),
            );
            let p = params(&v["form_params"]);
            let expected = v["expected_signature"].as_str().unwrap();
            assert_eq!(signature(url, &p, token), expected);
            assert!(signature_valid(url, Signed::Form(&p), expected, token));
            assert!(!signature_valid(url, Signed::Form(&p), expected, "54321"));
            assert!(!signature_valid(
                url,
                Signed::Form(&p[1..]),
                expected,
                token
            ));
            let mut changed = p.clone();
            changed[0].1.push('0');
            assert!(!signature_valid(
                url,
                Signed::Form(&changed),
                expected,
                token
            ));
            assert!(!signature_valid(
                &format!("{url}&x=1"),
                Signed::Form(&p),
                expected,
                token
            ));
            assert!(!signature_valid(url, Signed::Form(&p), "", token));
        }

        #[test]
        fn every_port_variant_is_accepted_as_twilio_validates_it() {
            let v = vectors();
            let (base, token) = (
                v["url"].as_str().unwrap(),
                v["auth_token"].as_str().unwrap(),
            );
            let p = params(&v["form_params"]);
            let expected = v["expected_signature"].as_str().unwrap();
            for (url, sig) in v["port_variants"].as_object().unwrap() {
                // "X= (port removed before checking)": the base signature, accepted there.
                let sig = sig.as_str().unwrap().split(' ').next().unwrap();
                assert_eq!(
                    signature(url, &p, token) == sig,
                    sig != expected,
                    "{url}: a signature over the URL as written, unless the note says removed"
                );
                assert!(signature_valid(url, Signed::Form(&p), sig, token), "{url}");
                // A URL with its default port also accepts the signature of the bare URL, and
                // the bare URL the signature of the URL with its default port.
                let bare = without_port(url);
                assert!(signature_valid(
                    &bare,
                    Signed::Form(&p),
                    &signature(&with_port(&bare), &p, token),
                    token
                ));
            }
            let https = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
            let sig = v["port_variants"][https].as_str().unwrap();
            assert!(
                signature_valid(base, Signed::Form(&p), sig, token),
                "default port added"
            );
            assert!(
                signature_valid(https, Signed::Form(&p), expected, token),
                "default port removed"
            );
            assert_eq!(
                without_port("http://[::1]:8080/x?a=1"),
                "http://[::1]/x?a=1"
            );
            assert_eq!(with_port("http://[::1]/x"), "http://[::1]:80/x");
            assert_eq!(
                with_port("https://u:p@h.example/x"),
                "https://u:p@h.example:443/x"
            );
        }

        #[test]
        fn repeated_parameters_are_sorted_and_deduplicated() {
            let v = vectors();
            let (url, token) = (
                v["url"].as_str().unwrap(),
                v["auth_token"].as_str().unwrap(),
            );
            let d = &v["duplicate_params"];
            let p = form(d["form_body"].as_str().unwrap().as_bytes());
            assert_eq!(p.len(), 5);
            let expected = d["expected_signature"].as_str().unwrap();
            assert_eq!(signature(url, &p, token), expected);
            assert!(signature_valid(url, Signed::Form(&p), expected, token));
            let mut reordered = p.clone();
            reordered.reverse();
            assert!(signature_valid(
                url,
                Signed::Form(&reordered),
                expected,
                token
            ));
            let once: Vec<_> = p.iter().take(4).cloned().collect();
            assert!(
                signature_valid(url, Signed::Form(&once), expected, token),
                "a repeat adds nothing"
            );
            assert!(!signature_valid(
                url,
                Signed::Form(&p[..3]),
                expected,
                token
            ));
        }

        #[test]
        fn a_json_body_is_checked_by_its_hash() {
            let v = vectors();
            let token = v["auth_token"].as_str().unwrap();
            let j = &v["json_body"];
            let url = j["url_with_body_hash"].as_str().unwrap();
            let body = j["body"].as_str().unwrap().as_bytes();
            let expected = j["expected_signature"].as_str().unwrap();
            assert_eq!(body_hash(url).as_deref(), j["body_sha256_hex"].as_str());
            assert_eq!(signature(url, &[], token), expected);
            assert!(signature_valid(url, Signed::Json(body), expected, token));
            assert!(!signature_valid(
                url,
                Signed::Json(b"{\"property\": \"other\"}"),
                expected,
                token
            ));
            assert!(!signature_valid(
                v["url"].as_str().unwrap(),
                Signed::Json(body),
                expected,
                token
            ));
        }

        #[test]
        fn callbacks_become_calls() {
            let now = Timestamp(1_764_496_900_000);
            let a = || AssistantRef {
                id: None,
                name: Some("x".into()),
                company: None,
            };
            let rec = form(b"AccountSid=AC1&CallSid=CA1&RecordingSid=RE1&RecordingUrl=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC1%2FRecordings%2FRE1&RecordingStatus=completed&RecordingDuration=22&RecordingChannels=1&RecordingStartTime=Sun%2C+30+Nov+2025+10%3A00%3A00+%2B0000");
            assert!(worth_storing(&rec));
            let c = call_input(&rec, a(), now).unwrap();
            assert_eq!(
                c.recording_url.as_deref(),
                Some("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1.wav")
            );
            assert_eq!(c.started_at, Timestamp(1_764_496_800_000));
            assert_eq!(c.ended_at, Some(Timestamp(1_764_496_822_000)));
            let status = form(b"CallSid=CA1&CallStatus=completed&From=%2B15550001111&To=%2B15550002222&CallDuration=25&Direction=inbound&Timestamp=Sun%2C+30+Nov+2025+10%3A00%3A25+%2B0000");
            assert!(worth_storing(&status));
            let c = call_input(&status, a(), now).unwrap();
            assert_eq!(
                (c.caller.as_deref(), c.end_reason.as_deref()),
                (Some("+15550001111"), Some("completed"))
            );
            assert_eq!(c.started_at, Timestamp(1_764_496_800_000));
            assert!(!worth_storing(&form(b"CallSid=CA1&CallStatus=ringing")));
            assert!(!worth_storing(&form(
                b"CallSid=CA1&RecordingSid=RE1&RecordingStatus=absent"
            )));
        }
    }
}
