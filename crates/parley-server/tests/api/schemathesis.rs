//! The OpenAPI document agrees with the server: schemathesis (PyPI) generates requests from
//! `/openapi.json` for every operation of the API, the gateway and the `/widget/v1` routes and
//! checks each answer (`--checks all`: no 5xx, documented status codes, content types, headers
//! and bodies; values the document allows are accepted and values it forbids are refused).
//!
//! The interpreter comes from `PARLEY_TEST_PYTHON` (`.ci/run` installs `schemathesis` in
//! `target/ci-venv`); without one the test prints a loud SKIPPED and passes, except under
//! `CI=true`, where it fails. `PARLEY_SCHEMATHESIS_EXAMPLES` sets the examples per operation
//! (default 200); `PARLEY_SCHEMATHESIS_SPEC` points at a document file instead of the served one
//! (to iterate on `openapi.json` without rebuilding; the served document is the one CI checks).

use std::process::Command;

use parley_testkit::stub_provider::StubProvider;
use serde_json::json;

use crate::helpers::TestApp;

/// Schemathesis has no serializer for `application/jsonl` (the import's body): this hook writes
/// a generated array of conversations one JSON object per line, and a generated string as is.
const HOOKS: &str = r#"
import json
import schemathesis

# CPython 3.11.7 raises "SystemError: AST constructor recursion depth mismatch" from ast.parse
# when called deep in the stack (CPython gh-106905, fixed in 3.11.8); hypothesis calls it only
# to describe a filter's lambda in a strategy's repr, so a failure there gets a plain name.
try:
    import hypothesis.internal.lambda_sources as _lambda_sources
    _describe = _lambda_sources.lambda_description
    def _lambda_description(f):
        try:
            return _describe(f)
        except SystemError:
            return "lambda"
    _lambda_sources.lambda_description = _lambda_description
except (ImportError, AttributeError):
    pass

@schemathesis.serializer("application/jsonl")
def jsonl(ctx, value):
    if isinstance(value, list):
        return "".join(json.dumps(v) + "\n" for v in value).encode()
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()

# Voice uploads: the generated binary string as the body (the server sniffs real audio).
for media_type in ("audio/webm", "audio/ogg", "audio/mp4", "audio/mpeg", "audio/wav"):
    @schemathesis.serializer(media_type)
    def audio(ctx, value):
        return value if isinstance(value, bytes) else str(value).encode()
"#;

/// The allowed origin of the test widget.
const ORIGIN: &str = "https://shop.example";

/// Schemathesis' configuration: credentials by security scheme, and the widget's `Origin` and
/// visitor token fixed to valid values, so generated requests get past the front door and
/// exercise the bodies and parameters (requests without them are covered by the `ignored_auth`
/// and `missing_required_header` checks).
///
/// `positive_data_acceptance` also allows 422 on the operations whose bodies have rules JSON
/// Schema cannot state: a conversation's `ended_at` not before its `started_at` and variable
/// keys unique within a list (conversations, messages, patches), and a widget's pre-chat
/// fields, which are each widget's own form; and on a channel connection, whose credentials are
/// proven with the platform (unreachable here, so 422 `ownership_not_proven`). The list's
/// A call (`POST /api/v1/calls`) has such rules too: `ended_at` not before `started_at`, each
/// turn's `end_ms` not before its `start_ms`, a recording as a URL or an upload but not both,
/// and an upload that decodes as base64. A team reply (`POST .../replies`) is refused with 422
/// for free-form WhatsApp text outside the 24-hour window and for a template off WhatsApp, and
/// an assignment (`PUT .../assignee`) names a user who must be a member of the workspace.
/// Workspace settings (issue 16): a time zone must be one the tz database knows, an invite's
/// email an address nobody uses yet, a key's name not blank, and the last admin stays admin.
/// An erasure (`POST /api/v1/contacts/erase`) needs a real email (an `@`), a phone number of
/// 5 digits or more, and a conversation with a contact; a retention run answers 409 while
/// another one holds the workspace.
/// The list's
/// `cursor` is opaque: only a `next_cursor` the server wrote decodes, so any other string is a
/// 400 there. The gateway answers 400 `provider_not_configured` for an assistant (named by
/// header or model) that exists without a provider, which other operations create.
fn config(widget_key: &str, api_key: &str, visitor: &str, tracker: &str) -> String {
    format!(
        r#"
# 413 `body_too_large` is a refusal too (a generated body over a route's limit).
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

[auth.openapi.apiKey]
bearer = "{api_key}"

[auth.openapi.widgetKey]
api_key = "{widget_key}"

# The import's `from_line` skips lines unread (they were imported before), so a generated body
# under a large `from_line` is never parsed: the import is fuzzed from its first line.
[[operations]]
include-name = "POST /api/v1/import"
parameters = {{ "query.from_line" = 1 }}

[[operations]]
include-path-regex = "^/widget/v1/"
parameters = {{ "header.Origin" = "{ORIGIN}", "header.X-Parley-Visitor" = "{visitor}", "header.X-Parley-Tracker" = "{tracker}" }}

[[operations]]
include-name = ["POST /api/v1/conversations", "PATCH /api/v1/conversations/{{id}}", "POST /api/v1/conversations/{{id}}/messages", "POST /api/v1/import", "POST /api/v1/assistants", "PATCH /api/v1/assistants/{{id}}", "POST /api/v1/assistants/{{id}}/channels", "POST /widget/v1/conversations", "POST /api/v1/calls", "POST /api/v1/conversations/{{id}}/replies", "PUT /api/v1/conversations/{{id}}/assignee", "PATCH /api/v1/settings", "POST /api/v1/invites", "POST /api/v1/keys", "PATCH /api/v1/members/{{id}}", "POST /api/v1/contacts/erase", "POST /api/v1/retention/run"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# Outgoing webhooks: a URL JSON Schema allows may still not parse as one (a bad port, a bad
# host) and a workspace has at most 20 endpoints (409 `too_many_webhooks`).
[[operations]]
include-name = ["POST /api/v1/webhooks", "PATCH /api/v1/webhooks/{{id}}"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# The event streams never end by themselves; tests/api/events.rs and widget_live.rs cover them.
[[operations]]
include-name = ["GET /api/v1/events", "GET /widget/v1/stream"]
enabled = false

# Bulk actions: a filter or id list JSON Schema allows may still be refused (422: a filter
# value the list refuses, an unknown member; 409: an idempotency key reused with another body).
[[operations]]
include-name = ["POST /api/v1/conversations/bulk"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422"]

[[operations]]
include-name = ["POST /v1/chat/completions", "GET /v1/models"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422"]

[[operations]]
include-name = ["GET /api/v1/conversations", "GET /api/v1/conversations/count", "GET /api/v1/export", "GET /api/v1/conversations/export", "GET /api/v1/conversations/finetune", "GET /api/v1/conversations/finetune/estimate"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# The insights window's rules relate its parameters (`to` after `from`, at most 400 days), which
# a JSON Schema cannot say: a schema-valid window may still be refused with 400.
[[operations]]
include-name = ["GET /api/v1/insights/summary", "GET /api/v1/insights/timeseries", "GET /api/v1/insights/heatmap", "GET /api/v1/insights/assistants", "GET /api/v1/insights/topics"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_document_and_the_server_in_agreement() {
    let Some(python) = crate::helpers::python_importing("schemathesis") else {
        return;
    };
    let app = TestApp::spawn().await;
    // Thousands of requests from one client: the widget's limits would answer most with 429.
    let limits = &app.state.widget.limits;
    limits
        .per_key
        .store(1_000_000, std::sync::atomic::Ordering::Relaxed);
    limits
        .per_visitor
        .store(1_000_000, std::sync::atomic::Ordering::Relaxed);
    // An assistant with a provider (the gateway answers), a conversation to read, and a widget
    // with a started visitor conversation.
    let stub = StubProvider::start().await.unwrap();
    let r = app
        .post(
            "/api/v1/assistants",
            &json!({"name": "Ava", "settings": {"provider": {"base_url": stub.base_url, "model": "gpt-4o-mini"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let assistant: parley_core::AssistantId = r.body["id"].as_str().unwrap().parse().unwrap();
    app.create(crate::helpers::conversation("Ava", 4)).await;
    let widget_key = app.widget_for(assistant, ORIGIN).await;
    let started = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/conversations?key={widget_key}")))
                .header("origin", ORIGIN)
                .json(&json!({})),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.text);
    let visitor = started.body["visitor_token"].as_str().unwrap().to_owned();
    let session = app
        .send(
            app.client
                .post(app.url(&format!("/widget/v1/track/session?key={widget_key}")))
                .header("origin", ORIGIN)
                .json(&json!({"landing_page": "https://shop.example/"})),
        )
        .await;
    assert_eq!(session.status, 200, "{}", session.text);
    let tracker = session.body["tracker"].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        config(&widget_key, &app.key, &visitor, &tracker),
    )
    .unwrap();
    std::fs::write(dir.path().join("parley_hooks.py"), HOOKS).unwrap();
    let examples =
        std::env::var("PARLEY_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "200".to_owned());
    let location =
        std::env::var("PARLEY_SCHEMATHESIS_SPEC").unwrap_or_else(|_| app.url("/openapi.json"));
    let base = app.url("");
    let cwd = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .current_dir(&cwd)
            .env("SCHEMATHESIS_HOOKS", "parley_hooks")
            .env("PYTHONPATH", &cwd)
            .args([
                "-c",
                "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
                "run",
                &location,
                "--url",
                &base,
                "--checks",
                "all",
                "--max-examples",
                &examples,
                "--seed",
                "20261202",
                "--workers",
                "2",
                "--no-color",
                "--continue-on-failure",
                "--suppress-health-check",
                "too_slow",
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found disagreements:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary (operations, phases, test cases generated) in the test's output.
    if let Some(at) = stdout.find("SUMMARY") {
        eprintln!("schemathesis {}", &stdout[at..]);
    }
    // It really tested every operation.
    assert!(stdout.contains("Tested: 80"), "{stdout}");
}
