//! The assistant form's provider picker (issue 10): the server's providers are offered by
//! name, the URL and key fields belong to Custom only, and an assistant saved with a server
//! environment variable as its key that matches no server provider says it needs one.

use parley_store::NewAssistant;
use serde_json::{Value, json};

use crate::harness::Browser;
use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_picks_a_server_provider_or_a_custom_one() {
    let Some(b) = Browser::start(false).await else {
        return;
    };
    let app = TestApp::spawn_with(|s| {
        s.providers.insert(
            "house".into(),
            serde_json::from_value(json!({"base_url": "https://api.openai.com/v1",
                "api_key_env": "OPENAI_API_KEY", "models": ["gpt-4o-mini", "gpt-4o"],
                "default_model": "gpt-4o-mini", "label": "House OpenAI"}))
            .unwrap(),
        );
    })
    .await;
    let base = b.sign_in_new_admin(&app, PASSWORD).await;

    // A new assistant starts on the server's provider: no URL or key fields in sight.
    b.goto(&format!("{base}/assistants/new")).await;
    let shown = |id: &str| format!("return !document.getElementById('{id}').hidden");
    assert_eq!(
        b.js("return document.getElementById('provider').value")
            .await,
        "house"
    );
    assert_eq!(b.js(&shown("custom-provider")).await, Value::Bool(false));
    assert!(
        b.text("#provider-card")
            .await
            .contains("Models: gpt-4o-mini, gpt-4o")
    );
    b.screenshot("assistant-form-server-provider").await;
    // Custom shows them.
    b.js(
        "const p = document.getElementById('provider'); p.value = 'custom';
          p.dispatchEvent(new Event('change')); return true",
    )
    .await;
    assert_eq!(b.js(&shown("custom-provider")).await, Value::Bool(true));
    // Back to the server's provider, and saved: stored by name with its default model.
    b.js("const f = document.getElementById('assistant-form');
          f.elements['name'].value = 'Ava';
          const p = document.getElementById('provider'); p.value = 'house';
          p.dispatchEvent(new Event('change'));
          f.elements['model'].value = '';
          f.querySelector('button[type=submit]').click(); return true")
        .await;
    b.wait_for(
        "the saved assistant",
        "return !!document.getElementById('saved')",
    )
    .await;
    let list = app.get("/api/v1/assistants").await;
    assert_eq!(
        list.body["items"][0]["settings"]["provider"],
        json!({"name": "house", "model": "gpt-4o-mini", "api_key": {"kind": "none"}})
    );

    // An assistant saved by an earlier version with an environment key at its own URL.
    let legacy = app
        .state
        .store
        .assistants()
        .create_assistant(
            app.workspace.id,
            &NewAssistant {
                name: "Old".into(),
                company: String::new(),
                mode: parley_core::AssistantMode::Active,
                settings: serde_json::from_value(json!({"provider": {
                    "base_url": "https://elsewhere.example/v1", "model": "gpt-4o-mini",
                    "api_key": {"kind": "env", "name": "PARLEY_SECRET_KEY"}}}))
                .unwrap(),
            },
        )
        .await
        .unwrap();
    b.goto(&format!("{base}/assistants/{}", legacy.id)).await;
    let alert = b.text("#needs-provider").await;
    assert!(alert.contains("Needs a provider"), "{alert}");
    assert!(alert.contains("PARLEY_SECRET_KEY"), "{alert}");
    assert_eq!(
        b.js("return document.getElementById('provider').value")
            .await,
        "custom"
    );
    b.screenshot("assistant-form-needs-provider").await;
    b.goto(&format!("{base}/assistants")).await;
    assert!(b.text("main").await.contains("Needs a provider"));
    b.close().await;
}
