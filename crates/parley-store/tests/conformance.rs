//! The store conformance suite: one "database story" per test, written against `dyn Store`
//! and run against every backend (the `backends!` macro at the bottom instantiates each test
//! per backend). Every test gets a fresh, empty database.

use std::collections::HashSet;
use std::sync::Arc;

use parley_core::assistant::AssistantSettings;
use parley_core::model::{
    AssistantRef, ConversationPatch, MessageError, MessageMeta, Rating, Sentiment, ToolCall,
    Variable,
};
use parley_core::pricing::{CostSource, Usage};
use parley_core::query::{ConversationFilter, Cursor, ListQuery, Sort, TranscriptQuery};
use parley_core::{
    AssistantMode, Channel, ConversationId, ConversationStatus, MessageId, Role, SentimentLabel,
    Timestamp, VariableSource, WorkspaceId,
};
use parley_store::{
    IngestBatch, IngestTarget, MessageOutcome, NewAssistant, NewConversation, NewMessage, Store,
    StoreError,
};

const T0: i64 = 1_785_000_000_000; // 2026-07-25T17:20:00Z

fn msg(role: Role, content: &str, at: i64) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        id_from_client: false,
        external_id: None,
        role,
        content: content.to_owned(),
        created_at: Timestamp(at),
        model: None,
        usage: None,
        cost_nanousd: None,
        cost_source: None,
        meta: Default::default(),
    }
}

fn ext(mut m: NewMessage, id: &str) -> NewMessage {
    m.external_id = Some(id.to_owned());
    m
}

fn conv(assistant: &str, started: i64) -> NewConversation {
    NewConversation {
        id: ConversationId::new(),
        id_from_client: false,
        external_id: None,
        assistant: AssistantRef {
            id: None,
            name: Some(assistant.to_owned()),
            company: Some("Acme".into()),
        },
        channel: Channel::Widget,
        status: ConversationStatus::Active,
        contact: None,
        session_id: None,
        started_at: Timestamp(started),
        ended_at: None,
        end_reason: None,
        rating: None,
        sentiment: None,
        converted: None,
        variables: Vec::new(),
        memory: Default::default(),
        assistant_version: None,
    }
}

fn new_batch(c: NewConversation, messages: Vec<NewMessage>) -> IngestBatch {
    IngestBatch {
        target: IngestTarget::New(Box::new(c)),
        messages,
    }
}

async fn workspace(store: &dyn Store, slug: &str) -> WorkspaceId {
    store
        .workspaces()
        .create_workspace(slug, slug)
        .await
        .unwrap()
        .id
}

async fn create(
    store: &dyn Store,
    ws: WorkspaceId,
    c: NewConversation,
    messages: Vec<NewMessage>,
) -> ConversationId {
    let out = store
        .conversations()
        .ingest(ws, vec![new_batch(c, messages)])
        .await
        .unwrap();
    out[0].conversation_id
}

fn list(filter: ConversationFilter, sort: &str, limit: u32) -> ListQuery {
    ListQuery {
        filter,
        sort: sort.parse().unwrap(),
        limit,
        cursor: None,
    }
}

fn q(term: &str) -> ConversationFilter {
    ConversationFilter {
        q: Some(term.to_owned()),
        ..Default::default()
    }
}

async fn ids(store: &dyn Store, ws: WorkspaceId, query: ListQuery) -> Vec<ConversationId> {
    store
        .conversations()
        .list_conversations(ws, &query)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.conversation.id)
        .collect()
}

async fn workspaces_and_api_keys(store: Arc<dyn Store>) {
    let ws = store
        .workspaces()
        .create_workspace("acme", "Acme Inc")
        .await
        .unwrap();
    assert!(matches!(
        store.workspaces().create_workspace("acme", "Other").await,
        Err(StoreError::Conflict {
            code: "workspace_exists",
            ..
        })
    ));
    assert_eq!(
        store
            .workspaces()
            .workspace_by_slug("acme")
            .await
            .unwrap()
            .unwrap()
            .id,
        ws.id
    );
    assert_eq!(store.workspaces().list_workspaces().await.unwrap().len(), 1);

    let key = store
        .workspaces()
        .create_api_key(ws.id, "ci", "pk_abcd", [7; 32])
        .await
        .unwrap();
    let found = store
        .workspaces()
        .api_key_by_hash([7; 32])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.workspace_id, found.revoked_at),
        (key.id, ws.id, None)
    );
    assert!(
        store
            .workspaces()
            .api_key_by_hash([8; 32])
            .await
            .unwrap()
            .is_none()
    );
    store
        .workspaces()
        .revoke_api_key(ws.id, key.id)
        .await
        .unwrap();
    assert!(
        store
            .workspaces()
            .api_key_by_hash([7; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let other = workspace(&*store, "other").await;
    assert!(matches!(
        store.workspaces().revoke_api_key(other, key.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn assistants_are_unique_by_name_and_company(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let input = NewAssistant {
        name: "Ava".into(),
        company: "Acme".into(),
        mode: AssistantMode::Hybrid,
        settings: Default::default(),
    };
    let a = store
        .assistants()
        .create_assistant(ws, &input)
        .await
        .unwrap();
    assert!(matches!(
        store.assistants().create_assistant(ws, &input).await,
        Err(StoreError::Conflict {
            code: "assistant_exists",
            ..
        })
    ));
    let b = store
        .assistants()
        .create_assistant(
            ws,
            &NewAssistant {
                company: "Other".into(),
                ..input.clone()
            },
        )
        .await
        .unwrap();
    let all = store.assistants().list_assistants(ws).await.unwrap();
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(
        store
            .assistants()
            .get_assistant(ws, a.id)
            .await
            .unwrap()
            .unwrap()
            .mode,
        AssistantMode::Hybrid
    );
    // A conversation naming an existing assistant reuses it; a new name creates one.
    let mut c = conv("Ava", T0);
    c.assistant.company = Some("Acme".into());
    let id = create(&*store, ws, c, vec![]).await;
    assert_eq!(
        store
            .conversations()
            .get_conversation(ws, id)
            .await
            .unwrap()
            .unwrap()
            .summary
            .assistant
            .id,
        a.id
    );
    create(&*store, ws, conv("Brand New", T0), vec![]).await;
    assert_eq!(
        store.assistants().list_assistants(ws).await.unwrap().len(),
        3
    );
    // By id: must be in the workspace.
    let other = workspace(&*store, "o").await;
    let mut c = conv("x", T0);
    c.assistant = AssistantRef {
        id: Some(a.id),
        name: None,
        company: None,
    };
    let err = store
        .conversations()
        .ingest(other, vec![new_batch(c, vec![])])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "assistant" }));
}

/// Every change makes a version; the history keeps each; a stale expected version is refused;
/// a rename reaches the assistant's conversations (their sort and search key).
async fn assistants_keep_versions(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let settings: AssistantSettings = serde_json::from_value(serde_json::json!({
        "provider": {"base_url": "http://127.0.0.1:9/v1", "model": "gpt-4o-mini",
                     "api_key": {"kind": "env", "name": "OPENAI_API_KEY"}},
        "system_prompt": "Be brief.",
        "memory_fields": [{"name": "email", "description": "Their email"}]
    }))
    .unwrap();
    let v1 = NewAssistant {
        name: "Ava".into(),
        company: "Acme".into(),
        mode: AssistantMode::Active,
        settings: settings.clone(),
    };
    let a = store.assistants().create_assistant(ws, &v1).await.unwrap();
    assert_eq!((a.version, &a.settings), (1, &settings));
    let id = create(&*store, ws, conv("Ava", T0), vec![]).await;
    let mut changed = settings.clone();
    changed.system_prompt = "Be very brief.".into();
    let v2 = NewAssistant {
        name: "Ava Prime".into(),
        settings: changed.clone(),
        ..v1.clone()
    };
    let b = store
        .assistants()
        .update_assistant(ws, a.id, &v2, Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.version, b.name.as_str(), b.created_at),
        (2, "Ava Prime", a.created_at)
    );
    assert_eq!(
        store
            .assistants()
            .get_assistant(ws, a.id)
            .await
            .unwrap()
            .unwrap(),
        b
    );
    assert!(matches!(
        store
            .assistants()
            .update_assistant(ws, a.id, &v1, Some(1))
            .await,
        Err(StoreError::Conflict {
            code: "version_conflict",
            ..
        })
    ));
    let history = store
        .assistants()
        .assistant_versions(ws, a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (
                v.version,
                v.name.as_str(),
                v.settings.system_prompt.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![(2, "Ava Prime", "Be very brief."), (1, "Ava", "Be brief.")]
    );
    let renamed = store
        .conversations()
        .get_conversation(ws, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.summary.assistant.name, "Ava Prime");
    assert_eq!(
        ids(&*store, ws, list(q("prime"), "-date", 10)).await,
        vec![id],
        "the new name is searchable"
    );
    // Another workspace sees nothing.
    let other = workspace(&*store, "o").await;
    assert_eq!(
        store
            .assistants()
            .update_assistant(other, a.id, &v1, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .assistants()
            .assistant_versions(other, a.id)
            .await
            .unwrap(),
        None
    );
    // A name and company another assistant has is a conflict.
    store
        .assistants()
        .create_assistant(
            ws,
            &NewAssistant {
                name: "Bo".into(),
                ..v1.clone()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .assistants()
            .update_assistant(
                ws,
                a.id,
                &NewAssistant {
                    name: "Bo".into(),
                    ..v1.clone()
                },
                None
            )
            .await,
        Err(StoreError::Conflict {
            code: "assistant_exists",
            ..
        })
    ));
}

/// Message meta (tool calls, errors, estimates) and the conversation's assistant version are
/// stored and read back exactly; tool messages stay hidden from the transcript.
async fn message_meta_round_trips(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut c = conv("Ava", T0);
    c.assistant_version = Some(3);
    let mut call = msg(Role::Tool, "", T0 + 1);
    call.meta = MessageMeta {
        tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "save_memory".into(),
            arguments: r#"{"field":"email","value":"a@b.c"}"#.into(),
        }],
        finish_reason: Some("tool_calls".into()),
        assistant_version: Some(3),
        ..Default::default()
    };
    let mut result = msg(Role::Tool, r#"{"saved":"email"}"#, T0 + 2);
    result.meta.tool_call_id = Some("call_1".into());
    let mut failed = msg(Role::Assistant, "Sorry, I cannot answer right now.", T0 + 3);
    failed.meta = MessageMeta {
        error: Some(MessageError {
            code: "provider_timeout".into(),
            message: "no answer within 60 s".into(),
        }),
        usage_estimated: true,
        history_dropped: Some(4),
        ..Default::default()
    };
    let id = create(
        &*store,
        ws,
        c,
        vec![
            msg(Role::User, "hi", T0),
            call.clone(),
            result.clone(),
            failed.clone(),
        ],
    )
    .await;
    let export = store
        .conversations()
        .export_conversations(ws, &[id])
        .await
        .unwrap();
    let stored: Vec<&MessageMeta> = export[0].messages.iter().map(|m| &m.meta).collect();
    assert_eq!(
        stored,
        vec![
            &MessageMeta::default(),
            &call.meta,
            &result.meta,
            &failed.meta
        ]
    );
    assert_eq!(export[0].detail.assistant_version, Some(3));
    let page = store
        .conversations()
        .list_messages(
            ws,
            id,
            &TranscriptQuery {
                newest_first: false,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        page.items.iter().map(|m| m.role).collect::<Vec<_>>(),
        vec![Role::User, Role::Assistant],
        "tool messages are stored but hidden"
    );
    assert_eq!(page.items[1].meta, failed.meta);
}

async fn ingest_keeps_counters(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        0
    );
    let mut priced = msg(Role::Assistant, "Hello **there**", T0 + 2_000);
    priced.model = Some("gpt-4o".into());
    priced.usage = Some(Usage {
        prompt_tokens: 100,
        completion_tokens: 20,
    });
    priced.cost_nanousd = Some(450_000);
    priced.cost_source = Some(CostSource::PriceTable);
    let mut unpriced = msg(Role::Assistant, "Second answer", T0 + 4_000);
    unpriced.usage = Some(Usage {
        prompt_tokens: 5,
        completion_tokens: 5,
    });
    unpriced.cost_source = Some(CostSource::UnknownModel);
    let mut c = conv("Ava", T0);
    c.variables = vec![Variable {
        key: "email".into(),
        value: "a@b.c".into(),
        source: VariableSource::PreChat,
    }];
    c.memory = serde_json::json!({"name": "Alice", "nested": {"a": [1, 2]}})
        .as_object()
        .unwrap()
        .clone();
    let id = create(
        &*store,
        ws,
        c,
        vec![
            msg(Role::System, "You are helpful", T0),
            msg(Role::User, "Hi", T0 + 1_000),
            priced,
            msg(Role::User, "Thanks", T0 + 3_000),
            msg(Role::Tool, "{\"ok\":true}", T0 + 3_500),
            unpriced,
        ],
    )
    .await;
    let d = store
        .conversations()
        .get_conversation(ws, id)
        .await
        .unwrap()
        .unwrap();
    let s = &d.summary;
    assert_eq!(s.message_count, 4, "visible messages");
    assert_eq!(d.stored_message_count, 6);
    assert_eq!(
        (
            s.usage.prompt_tokens,
            s.usage.completion_tokens,
            s.usage.total_tokens
        ),
        (105, 25, 130)
    );
    assert_eq!(s.cost_nanousd, 450_000);
    assert_eq!(d.unpriced_message_count, 1);
    assert_eq!(s.last_message_at, Timestamp(T0 + 4_000));
    assert_eq!(s.last_message_preview.as_deref(), Some("Second answer"));
    assert_eq!(d.last_inbound_at, Some(Timestamp(T0 + 3_000)));
    assert_eq!(s.duration_ms, None, "active: ongoing");
    assert_eq!(d.variables.len(), 1);
    assert_eq!(d.memory["nested"]["a"][1], 2, "memory kept exactly");
    assert_eq!(d.memory.keys().collect::<Vec<_>>(), ["name", "nested"]);
    let patched = store
        .conversations()
        .update_conversation(
            ws,
            id,
            &serde_json::from_value(serde_json::json!({"memory": {"zeta": 1, "alpha": 2}}))
                .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        patched.memory.keys().collect::<Vec<_>>(),
        ["name", "nested", "zeta", "alpha"],
        "key order as stored"
    );
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        1
    );
    // Appending updates the counters again.
    store
        .conversations()
        .ingest(
            ws,
            vec![IngestBatch {
                target: IngestTarget::Existing(id),
                messages: vec![msg(Role::Agent, "A human here", T0 + 9_000)],
            }],
        )
        .await
        .unwrap();
    let d = store
        .conversations()
        .get_conversation(ws, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.summary.message_count, d.stored_message_count), (5, 7));
    assert_eq!(
        d.summary.last_message_preview.as_deref(),
        Some("A human here")
    );
}

async fn ingest_is_idempotent(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut c = conv("Ava", T0);
    c.external_id = Some("chat-1".into());
    let messages = vec![
        ext(msg(Role::User, "one", T0), "m1"),
        msg(Role::Assistant, "two", T0 + 1),
    ];
    let first = store
        .conversations()
        .ingest(ws, vec![new_batch(c.clone(), messages.clone())])
        .await
        .unwrap();
    assert!(first[0].created);
    assert_eq!(first[0].stored(), 2);
    // The same request again (a client retry): the same conversation, nothing stored twice.
    let mut retry = c.clone();
    retry.id = ConversationId::new();
    let again = store
        .conversations()
        .ingest(ws, vec![new_batch(retry, messages.clone())])
        .await
        .unwrap();
    assert_eq!(again[0].conversation_id, first[0].conversation_id);
    assert!(!again[0].created);
    assert!(matches!(
        again[0].messages[0],
        MessageOutcome::Duplicate { .. }
    ));
    assert_eq!(again[0].messages[1], MessageOutcome::Skipped);
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        1
    );
    // Appends de-duplicate by external id, also within one batch.
    let id = first[0].conversation_id;
    let out = store
        .conversations()
        .ingest(
            ws,
            vec![IngestBatch {
                target: IngestTarget::Existing(id),
                messages: vec![
                    ext(msg(Role::User, "one again", T0 + 5), "m1"),
                    ext(msg(Role::User, "three", T0 + 6), "m3"),
                    ext(msg(Role::User, "three again", T0 + 7), "m3"),
                ],
            }],
        )
        .await
        .unwrap();
    assert_eq!(out[0].stored(), 1);
    let d = store
        .conversations()
        .get_conversation(ws, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.summary.message_count, 3);
    // Two creates of one new external id in one request: one conversation.
    let mut twin = conv("Ava", T0);
    twin.external_id = Some("chat-2".into());
    let out = store
        .conversations()
        .ingest(
            ws,
            vec![
                new_batch(twin.clone(), vec![ext(msg(Role::User, "a", T0), "x1")]),
                new_batch(
                    NewConversation {
                        id: ConversationId::new(),
                        ..twin
                    },
                    vec![ext(msg(Role::User, "b", T0 + 1), "x2")],
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out[0].conversation_id, out[1].conversation_id);
    assert!(out[0].created && !out[1].created);
    assert_eq!(
        store
            .conversations()
            .get_conversation(ws, out[0].conversation_id)
            .await
            .unwrap()
            .unwrap()
            .summary
            .message_count,
        2
    );
    // Export ids: a re-import of the same ids stores nothing.
    let export = store
        .conversations()
        .export_conversations(ws, &[id])
        .await
        .unwrap()
        .remove(0);
    let mut by_id = conv("Ava", T0);
    by_id.id = id;
    by_id.id_from_client = true;
    let replay: Vec<NewMessage> = export
        .messages
        .iter()
        .map(|m| NewMessage {
            id: m.id,
            id_from_client: true,
            ..msg(m.role, &m.content, m.created_at.0)
        })
        .collect();
    let out = store
        .conversations()
        .ingest(ws, vec![new_batch(by_id.clone(), replay.clone())])
        .await
        .unwrap();
    assert!(!out[0].created && out[0].stored() == 0);
    // The same client ids in another workspace: stored there under stand-ins, answered as any
    // create (nothing says that the ids exist elsewhere), and a repeat stores nothing twice.
    let other = workspace(&*store, "o").await;
    let stand_in = parley_store::scoped_ids::scoped_id(other, id.0);
    for repeat in [false, true] {
        let out = store
            .conversations()
            .ingest(other, vec![new_batch(by_id.clone(), replay.clone())])
            .await
            .unwrap();
        assert_eq!(out[0].conversation_id.0, stand_in);
        assert_eq!(out[0].created, !repeat);
        let expected: Vec<MessageOutcome> = replay
            .iter()
            .map(|m| {
                let id = MessageId(parley_store::scoped_ids::scoped_id(other, m.id.0));
                if repeat {
                    MessageOutcome::Duplicate { id }
                } else {
                    MessageOutcome::Stored { id }
                }
            })
            .collect();
        assert_eq!(out[0].messages, expected, "repeat {repeat}");
    }
    // Appending a message whose id the first workspace uses, to the other's conversation.
    let borrowed = NewMessage {
        id: MessageId::new(),
        id_from_client: true,
        ..msg(Role::User, "mine", T0 + 99)
    };
    store
        .conversations()
        .ingest(
            ws,
            vec![IngestBatch {
                target: IngestTarget::Existing(id),
                messages: vec![borrowed.clone()],
            }],
        )
        .await
        .unwrap();
    let out = store
        .conversations()
        .ingest(
            other,
            vec![IngestBatch {
                target: IngestTarget::Existing(ConversationId(stand_in)),
                messages: vec![borrowed.clone()],
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        out[0].messages[0],
        MessageOutcome::Stored {
            id: MessageId(parley_store::scoped_ids::scoped_id(other, borrowed.id.0))
        }
    );
    // The first workspace's record is untouched.
    let mine = store
        .conversations()
        .get_conversation(ws, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mine.summary.message_count,
        export.detail.summary.message_count + 1
    );
    assert!(
        store
            .conversations()
            .get_conversation(other, id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn ingest_batches_are_atomic(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let good = new_batch(conv("Ava", T0), vec![msg(Role::User, "kept?", T0)]);
    let bad = IngestBatch {
        target: IngestTarget::Existing(ConversationId::new()),
        messages: vec![msg(Role::User, "x", T0)],
    };
    let err = store
        .conversations()
        .ingest(ws, vec![good, bad])
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotFound {
            what: "conversation"
        }
    ));
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        0
    );
    assert!(
        ids(&*store, ws, list(Default::default(), "-date", 50))
            .await
            .is_empty()
    );
    assert!(
        store
            .assistants()
            .list_assistants(ws)
            .await
            .unwrap()
            .is_empty(),
        "the assistant created on the way is rolled back too"
    );
}

async fn patch_updates_and_merges(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut c = conv("Ava", T0);
    c.variables = vec![
        Variable {
            key: "a".into(),
            value: "1".into(),
            source: VariableSource::PreChat,
        },
        Variable {
            key: "b".into(),
            value: "2".into(),
            source: VariableSource::Extracted,
        },
    ];
    c.memory = serde_json::json!({"keep": 1, "drop": 2})
        .as_object()
        .unwrap()
        .clone();
    let id = create(&*store, ws, c, vec![msg(Role::User, "hi", T0 + 10_000)]).await;
    let patch: ConversationPatch = serde_json::from_value(serde_json::json!({
        "status": "closed", "ended_at": "2026-07-25T17:30:00Z", "end_reason": "visitor_closed",
        "rating": {"score": 4, "comment": "good"}, "sentiment": {"label": "positive", "score": 0.8},
        "converted": true, "contact": "+49 170 000",
        "variables": [{"key": "b", "value": "3", "source": "post_conversation"}, {"key": "c", "value": "4"}],
        "memory": {"drop": null, "added": {"x": true}}
    }))
    .unwrap();
    let d = store
        .conversations()
        .update_conversation(ws, id, &patch)
        .await
        .unwrap()
        .unwrap();
    let s = &d.summary;
    assert_eq!(s.status, ConversationStatus::Closed);
    assert_eq!(
        s.ended_at,
        Some(Timestamp::parse_rfc3339("2026-07-25T17:30:00Z").unwrap())
    );
    assert_eq!(s.duration_ms, Some(600_000));
    assert_eq!(s.end_reason.as_deref(), Some("visitor_closed"));
    assert_eq!(
        s.rating.as_ref().map(|r| (r.score, r.comment.clone())),
        Some((4, Some("good".into())))
    );
    assert_eq!(
        s.sentiment,
        Some(Sentiment {
            label: SentimentLabel::Positive,
            score: Some(0.8)
        })
    );
    assert_eq!(
        (s.converted, s.contact.as_deref()),
        (Some(true), Some("+49 170 000"))
    );
    let vars: Vec<(&str, &str, VariableSource)> = d
        .variables
        .iter()
        .map(|v| (v.key.as_str(), v.value.as_str(), v.source))
        .collect();
    assert_eq!(
        vars,
        vec![
            ("a", "1", VariableSource::PreChat),
            ("b", "3", VariableSource::PostConversation),
            ("c", "4", VariableSource::Api)
        ]
    );
    assert_eq!(
        serde_json::Value::Object(d.memory.clone()),
        serde_json::json!({"keep": 1, "added": {"x": true}})
    );
    // null removes the rating.
    let d = store
        .conversations()
        .update_conversation(
            ws,
            id,
            &serde_json::from_value(serde_json::json!({"rating": null})).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.summary.rating, None);
    let other = workspace(&*store, "o").await;
    assert!(
        store
            .conversations()
            .update_conversation(other, id, &patch)
            .await
            .unwrap()
            .is_none()
    );
}

/// Builds 30 conversations with varied keys for filter and sort tests.
async fn corpus(store: &dyn Store, ws: WorkspaceId) -> Vec<ConversationId> {
    corpus_of(store, ws, 30).await
}

/// Builds `n` conversations, one minute apart, cycling agents, channels, statuses and ratings.
async fn corpus_of(store: &dyn Store, ws: WorkspaceId, n: i64) -> Vec<ConversationId> {
    let agents = ["Zed", "Ava", "Mia"];
    let channels = [Channel::Widget, Channel::Whatsapp, Channel::Test];
    let statuses = [
        ConversationStatus::Active,
        ConversationStatus::Closed,
        ConversationStatus::Archived,
    ];
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = conv(agents[(i % 3) as usize], T0 + i * 60_000);
        c.channel = channels[(i / 3 % 3) as usize];
        c.status = statuses[(i / 9 % 3) as usize];
        if i % 4 != 0 {
            c.rating = Some((
                Rating {
                    score: (i % 5 + 1) as u8,
                    comment: None,
                    rated_at: None,
                },
                Timestamp(T0),
            ));
        }
        let n = (i * 7 % 5) as usize; // 0..4 messages; several ties on every key
        let messages = (0..n)
            .map(|k| {
                msg(
                    Role::User,
                    &format!("message {k} of {i}"),
                    T0 + i * 60_000 + k as i64,
                )
            })
            .collect();
        out.push(create(store, ws, c, messages).await);
    }
    out
}

/// Every sort, paged 7 at a time through its cursor, visits every row once, in order.
async fn keyset_pagination_covers_every_sort(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let all = corpus(&*store, ws).await;
    for sort in Sort::ALL {
        let mut query = list(Default::default(), &sort.to_string(), 7);
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = store
                .conversations()
                .list_conversations(ws, &query)
                .await
                .unwrap();
            seen.extend(page.items.iter().map(|i| i.conversation.clone()));
            pages += 1;
            match page.next_cursor {
                Some(c) => query.cursor = Some(Cursor::decode(&c, sort).unwrap()),
                None => break,
            }
        }
        assert_eq!(pages, 5, "{sort}: 30 rows in pages of 7");
        if sort.key_name() == "created" {
            let mut expected = all.clone();
            if sort.descending {
                expected.reverse();
            }
            assert_eq!(
                seen.iter().map(|s| s.id).collect::<Vec<_>>(),
                expected,
                "{sort}"
            );
            continue;
        }
        assert_eq!(
            seen.iter().map(|s| s.id).collect::<HashSet<_>>().len(),
            all.len(),
            "{sort}: every row once"
        );
        // The order is the sort key, then date, then id, all in the sort's direction.
        let key = |s: &parley_core::model::ConversationSummary| -> (String, i64, ConversationId) {
            let k = match sort.key_name() {
                "messages" => format!("{:08}", s.message_count),
                "rating" => format!("{}", s.rating.as_ref().map_or(0, |r| r.score)),
                "assistant" => s.assistant.name.clone(),
                "status" => s.status.as_str().to_owned(),
                _ => String::new(),
            };
            (k, s.last_message_at.0, s.id)
        };
        for pair in seen.windows(2) {
            let (a, b) = (key(&pair[0]), key(&pair[1]));
            if sort.descending {
                assert!(a > b, "{sort}: {a:?} before {b:?}")
            } else {
                assert!(a < b, "{sort}: {a:?} before {b:?}")
            }
        }
    }
}

/// The sort key, then date, then id: the order every sort promises (see `keyset_pagination_covers_every_sort`).
fn sort_key(
    sort: Sort,
    s: &parley_core::model::ConversationSummary,
) -> (String, i64, ConversationId) {
    let k = match sort.key_name() {
        "messages" => format!("{:08}", s.message_count),
        "rating" => format!("{}", s.rating.as_ref().map_or(0, |r| r.score)),
        "assistant" => s.assistant.name.clone(),
        "status" => s.status.as_str().to_owned(),
        "created" => String::new(),
        _ => String::new(),
    };
    (k, s.last_message_at.0, s.id)
}

/// Filters under every sort, paged through their cursors, give exactly the filtered rows in
/// order: a date range wide enough that the store walks the sort order and tests dates per
/// row, a narrow one it seeks, and an assistant filter (which the agent sort seeks by name).
async fn filtered_pages_agree_under_every_sort(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    corpus_of(&*store, ws, 120).await;
    let everything: Vec<_> = store
        .conversations()
        .list_conversations(ws, &list(Default::default(), "-date", 200))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.conversation)
        .collect();
    assert_eq!(everything.len(), 120);
    let mia = everything
        .iter()
        .find(|c| c.assistant.name == "Mia")
        .unwrap()
        .assistant
        .id;
    let filters = [
        ConversationFilter {
            from: Some(Timestamp(T0 + 5 * 60_000)),
            to: Some(Timestamp(T0 + 115 * 60_000)),
            ..Default::default()
        },
        ConversationFilter {
            from: Some(Timestamp(T0 + 40 * 60_000)),
            to: Some(Timestamp(T0 + 52 * 60_000)),
            ..Default::default()
        },
        ConversationFilter {
            assistants: vec![mia],
            ..Default::default()
        },
        ConversationFilter {
            assistants: vec![mia],
            from: Some(Timestamp(T0)),
            channels: vec![Channel::Widget, Channel::Test],
            ..Default::default()
        },
    ];
    for filter in filters {
        let inside = |c: &parley_core::model::ConversationSummary| {
            filter.from.is_none_or(|t| c.last_message_at >= t)
                && filter.to.is_none_or(|t| c.last_message_at < t)
                && (filter.assistants.is_empty() || filter.assistants.contains(&c.assistant.id))
                && (filter.channels.is_empty() || filter.channels.contains(&c.channel))
        };
        let expected: HashSet<ConversationId> = everything
            .iter()
            .filter(|c| inside(c))
            .map(|c| c.id)
            .collect();
        assert!(!expected.is_empty() && expected.len() < 120, "{filter:?}");
        for sort in Sort::ALL {
            let mut query = list(filter.clone(), &sort.to_string(), 7);
            let mut seen = Vec::new();
            loop {
                let page = store
                    .conversations()
                    .list_conversations(ws, &query)
                    .await
                    .unwrap();
                seen.extend(page.items.into_iter().map(|i| i.conversation));
                match page.next_cursor {
                    Some(c) => query.cursor = Some(Cursor::decode(&c, sort).unwrap()),
                    None => break,
                }
            }
            let got: HashSet<ConversationId> = seen.iter().map(|c| c.id).collect();
            assert_eq!(got.len(), seen.len(), "{sort} {filter:?}: no row twice");
            assert_eq!(got, expected, "{sort} {filter:?}");
            if sort.key_name() != "created" {
                for pair in seen.windows(2) {
                    let (a, b) = (sort_key(sort, &pair[0]), sort_key(sort, &pair[1]));
                    assert!(
                        if sort.descending { a > b } else { a < b },
                        "{sort}: {a:?} before {b:?}"
                    );
                }
            }
        }
    }
}

/// A date range under the messages sort with a filter that matches one conversation in ten:
/// pages visit more distinct message counts than the store reads key by key, so the rest of
/// each page comes from its fallback query. Pages must still be exact and in order.
async fn sparse_keys_under_a_date_range_page_exactly(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut batches = Vec::new();
    for i in 0..150i64 {
        let mut c = conv("Ava", T0 + i * 60_000);
        c.channel = if i % 10 == 0 {
            Channel::Telegram
        } else {
            Channel::Widget
        };
        let messages = (0..=i)
            .map(|k| msg(Role::User, "hi", T0 + i * 60_000 + k))
            .collect();
        batches.push(new_batch(c, messages));
    }
    store.conversations().ingest(ws, batches).await.unwrap();
    let filter = ConversationFilter {
        channels: vec![Channel::Telegram],
        from: Some(Timestamp(T0)),
        to: Some(Timestamp(T0 + 145 * 60_000)),
        ..Default::default()
    };
    for sort in ["-messages", "messages"] {
        let mut query = list(filter.clone(), sort, 7);
        let mut seen = Vec::new();
        loop {
            let page = store
                .conversations()
                .list_conversations(ws, &query)
                .await
                .unwrap();
            seen.extend(page.items.iter().map(|i| i.conversation.message_count));
            match page.next_cursor {
                Some(c) => query.cursor = Some(Cursor::decode(&c, query.sort).unwrap()),
                None => break,
            }
        }
        // Conversations 0, 10, ..., 140 (1, 11, ..., 141 messages); 150 is outside the range.
        let mut expected: Vec<i64> = (0..15).map(|i| i * 10 + 1).collect();
        if sort.starts_with('-') {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{sort}");
    }
}

async fn filters_combine_with_and(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    corpus(&*store, ws).await;
    let everything = store
        .conversations()
        .list_conversations(ws, &list(Default::default(), "-date", 200))
        .await
        .unwrap()
        .items;
    let check = |filter: ConversationFilter,
                 pred: &dyn Fn(&parley_core::model::ConversationSummary) -> bool| {
        let expected: Vec<ConversationId> = everything
            .iter()
            .map(|i| &i.conversation)
            .filter(|c| pred(c))
            .map(|c| c.id)
            .collect();
        (filter, expected)
    };
    let ava = everything
        .iter()
        .find(|i| i.conversation.assistant.name == "Ava")
        .unwrap()
        .conversation
        .assistant
        .id;
    let cases = vec![
        check(
            ConversationFilter {
                statuses: vec![ConversationStatus::Closed],
                ..Default::default()
            },
            &|c| c.status == ConversationStatus::Closed,
        ),
        check(
            ConversationFilter {
                channels: vec![Channel::Whatsapp, Channel::Test],
                ..Default::default()
            },
            &|c| matches!(c.channel, Channel::Whatsapp | Channel::Test),
        ),
        check(
            ConversationFilter {
                assistants: vec![ava],
                ..Default::default()
            },
            &|c| c.assistant.id == ava,
        ),
        check(
            ConversationFilter {
                min_rating: Some(4),
                ..Default::default()
            },
            &|c| c.rating.as_ref().is_some_and(|r| r.score >= 4),
        ),
        check(
            ConversationFilter {
                from: Some(Timestamp(T0 + 10 * 60_000)),
                to: Some(Timestamp(T0 + 20 * 60_000)),
                ..Default::default()
            },
            &|c| c.last_message_at.0 >= T0 + 10 * 60_000 && c.last_message_at.0 < T0 + 20 * 60_000,
        ),
        check(
            ConversationFilter {
                statuses: vec![ConversationStatus::Active, ConversationStatus::Closed],
                channels: vec![Channel::Widget],
                min_rating: Some(2),
                assistants: vec![ava],
                ..Default::default()
            },
            &|c| {
                c.status != ConversationStatus::Archived
                    && c.channel == Channel::Widget
                    && c.rating.as_ref().is_some_and(|r| r.score >= 2)
                    && c.assistant.id == ava
            },
        ),
    ];
    for (filter, expected) in cases {
        assert!(
            !expected.is_empty() || filter.min_rating.is_some(),
            "the corpus exercises {filter:?}"
        );
        let got = ids(&*store, ws, list(filter.clone(), "-date", 200)).await;
        assert_eq!(got, expected, "{filter:?}");
        let count = store
            .conversations()
            .count_conversations(ws, &filter)
            .await
            .unwrap();
        assert_eq!(
            (count.count, count.exact),
            (expected.len() as u64, true),
            "{filter:?}"
        );
    }
    assert_eq!(
        store
            .conversations()
            .count_conversations(ws, &Default::default())
            .await
            .unwrap()
            .count,
        30
    );
}

async fn search_is_case_insensitive_substring(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut a = conv("Ava", T0);
    a.session_id = Some("sess-ALPHA-42".into());
    let a = create(
        &*store,
        ws,
        a,
        vec![
            msg(Role::User, "Das Hotel war wirklich schön", T0),
            msg(Role::Assistant, "I can book a table at Zuñi Café", T0 + 1),
        ],
    )
    .await;
    let mut b = conv("Mia Support", T0 + 1_000);
    b.contact = Some("+49 151 2345".into());
    let b = create(
        &*store,
        ws,
        b,
        vec![
            msg(Role::User, "My balance please", T0 + 1_000),
            msg(Role::System, "secret system prompt", T0 + 1_001),
        ],
    )
    .await;
    let c = create(
        &*store,
        ws,
        conv("Zed", T0 + 2_000),
        vec![msg(Role::User, "Ok 👍 x", T0 + 2_000)],
    )
    .await;

    let find = |term: &'static str| {
        let store = store.clone();
        async move { ids(&*store, ws, list(q(term), "-date", 50)).await }
    };
    assert_eq!(find("SCHÖN").await, vec![a], "non-ASCII case folding");
    assert_eq!(find("zuñi café").await, vec![a]);
    assert_eq!(find("BALANCE").await, vec![b]);
    assert_eq!(find("alpha-4").await, vec![a], "session id");
    assert_eq!(find("151 23").await, vec![b], "contact");
    assert_eq!(find("mia sup").await, vec![b], "assistant name");
    assert_eq!(
        find("ok").await,
        vec![c, a],
        "2 characters: Ok, and bOOKing"
    );
    assert_eq!(find("ñ").await, vec![a], "1 character, non-ASCII");
    assert_eq!(find("👍").await, vec![c]);
    assert!(
        find("secret system").await.is_empty(),
        "hidden messages are not searched"
    );
    assert!(find("nothing like this").await.is_empty());
    assert_eq!(
        find("\"quoted\" term").await,
        Vec::<ConversationId>::new(),
        "quotes are literal"
    );

    let page = store
        .conversations()
        .list_conversations(ws, &list(q("SCHÖN"), "-date", 50))
        .await
        .unwrap();
    let m = page.items[0].search_match.as_ref().unwrap();
    assert_eq!((m.field, m.snippet.matched.as_str()), ("content", "schön"));
    assert_eq!(m.snippet.before, "Das Hotel war wirklich ");
    let page = store
        .conversations()
        .list_conversations(ws, &list(q("alpha"), "-date", 50))
        .await
        .unwrap();
    assert_eq!(
        page.items[0].search_match.as_ref().unwrap().field,
        "session_id"
    );

    // Search combines with the other filters and with counts.
    let mut f = q("a");
    f.channels = vec![Channel::Widget];
    assert_eq!(
        store
            .conversations()
            .count_conversations(ws, &f)
            .await
            .unwrap()
            .count,
        2,
        "a and b; c (\"Ok 👍 x\", Zed) has no a"
    );
    f.assistants = vec![
        store
            .conversations()
            .get_conversation(ws, b)
            .await
            .unwrap()
            .unwrap()
            .summary
            .assistant
            .id,
    ];
    assert_eq!(
        ids(&*store, ws, list(f.clone(), "-date", 50)).await,
        vec![b]
    );
    assert_eq!(
        store
            .conversations()
            .count_conversations(ws, &q("schön"))
            .await
            .unwrap()
            .count,
        1
    );
}

async fn transcript_pages(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut messages = Vec::new();
    for i in 0..120 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        messages.push(msg(role, &format!("m{i}"), T0 + i * 1_000));
        if i % 10 == 0 {
            messages.push(msg(Role::Tool, &format!("tool{i}"), T0 + i * 1_000 + 1));
        }
    }
    let id = create(&*store, ws, conv("Ava", T0), messages).await;
    let page = |p: u32, newest_first: bool, include_hidden: bool| {
        let store = store.clone();
        async move {
            store
                .conversations()
                .list_messages(
                    ws,
                    id,
                    &TranscriptQuery {
                        page: p,
                        per_page: 50,
                        newest_first,
                        include_hidden,
                    },
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    let first = page(1, true, false).await;
    assert_eq!(
        (first.total, first.total_pages, first.items.len()),
        (120, 3, 50)
    );
    assert_eq!(first.items[0].content, "m119");
    assert_eq!(first.items[49].content, "m70");
    let last = page(3, true, false).await;
    assert_eq!(
        (last.items.len(), last.items[19].content.as_str()),
        (20, "m0")
    );
    assert!(page(4, true, false).await.items.is_empty());
    let asc = page(1, false, false).await;
    assert_eq!(
        (
            asc.items[0].content.as_str(),
            asc.items[49].content.as_str()
        ),
        ("m0", "m49")
    );
    let all = page(1, false, true).await;
    assert_eq!(all.total, 132);
    assert_eq!(all.items[1].content, "tool0");
    assert!(all.items.iter().any(|m| m.role == Role::Tool));
    let other = workspace(&*store, "o").await;
    assert!(
        store
            .conversations()
            .list_messages(other, id, &TranscriptQuery::default())
            .await
            .unwrap()
            .is_none()
    );
}

async fn delete_leaves_no_trace(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let mut c = conv("Ava", T0);
    c.variables = vec![Variable {
        key: "k".into(),
        value: "v".into(),
        source: VariableSource::Api,
    }];
    c.session_id = Some("unique-session-xyz".into());
    let gone = create(
        &*store,
        ws,
        c,
        (0..1000)
            .map(|i| msg(Role::User, &format!("doomed words {i}"), T0 + i))
            .collect(),
    )
    .await;
    let kept = create(
        &*store,
        ws,
        conv("Ava", T0),
        vec![msg(Role::User, "kept words", T0)],
    )
    .await;
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        2
    );
    assert!(
        store
            .conversations()
            .delete_conversation(ws, gone)
            .await
            .unwrap()
    );
    assert!(
        !store
            .conversations()
            .delete_conversation(ws, gone)
            .await
            .unwrap(),
        "second delete: not found"
    );
    assert!(
        store
            .conversations()
            .get_conversation(ws, gone)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .conversations()
            .list_messages(ws, gone, &TranscriptQuery::default())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .conversations()
            .update_conversation(
                ws,
                gone,
                &ConversationPatch {
                    converted: Some(Some(true)),
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .conversations()
            .export_conversations(ws, &[gone])
            .await
            .unwrap()
            .is_empty()
    );
    for term in ["doomed", "unique-session", "oo"] {
        assert!(
            ids(&*store, ws, list(q(term), "-date", 50))
                .await
                .is_empty(),
            "{term}"
        );
    }
    assert_eq!(
        ids(&*store, ws, list(q("words"), "-date", 50)).await,
        vec![kept]
    );
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        1
    );
    let append = IngestBatch {
        target: IngestTarget::Existing(gone),
        messages: vec![msg(Role::User, "late", T0)],
    };
    assert!(matches!(
        store.conversations().ingest(ws, vec![append]).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn workspaces_are_isolated(store: Arc<dyn Store>) {
    let a = workspace(&*store, "a").await;
    let b = workspace(&*store, "b").await;
    let mut c = conv("Ava", T0);
    c.external_id = Some("shared-ext".into());
    let in_a = create(
        &*store,
        a,
        c.clone(),
        vec![msg(Role::User, "tenant A secret", T0)],
    )
    .await;
    assert!(
        store
            .conversations()
            .get_conversation(b, in_a)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ids(&*store, b, list(Default::default(), "-date", 50))
            .await
            .is_empty()
    );
    assert!(
        ids(&*store, b, list(q("secret"), "-date", 50))
            .await
            .is_empty()
    );
    assert_eq!(
        store
            .conversations()
            .count_conversations(b, &q("secret"))
            .await
            .unwrap()
            .count,
        0
    );
    assert_eq!(
        store.conversations().conversation_total(b).await.unwrap(),
        0
    );
    assert!(
        !store
            .conversations()
            .delete_conversation(b, in_a)
            .await
            .unwrap()
    );
    assert!(
        store
            .assistants()
            .list_assistants(b)
            .await
            .unwrap()
            .is_empty()
    );
    // The same external id in another workspace is another conversation.
    c.id = ConversationId::new();
    let in_b = create(&*store, b, c, vec![]).await;
    assert_ne!(in_a, in_b);
    assert!(
        store
            .conversations()
            .get_conversation(a, in_a)
            .await
            .unwrap()
            .is_some()
    );
}

async fn concurrent_appends_lose_nothing(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let id = create(&*store, ws, conv("Ava", T0), vec![]).await;
    let mut tasks = Vec::new();
    for client in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let m = ext(
                    msg(Role::User, &format!("c{client} m{i}"), T0 + i),
                    &format!("{client}-{i}"),
                );
                // Every message is sent twice, as a client retrying after a timeout would.
                for _ in 0..2 {
                    store
                        .conversations()
                        .ingest(
                            ws,
                            vec![IngestBatch {
                                target: IngestTarget::Existing(id),
                                messages: vec![m.clone()],
                            }],
                        )
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let d = store
        .conversations()
        .get_conversation(ws, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.summary.message_count, d.stored_message_count),
        (500, 500)
    );
    let export = store
        .conversations()
        .export_conversations(ws, &[id])
        .await
        .unwrap()
        .remove(0);
    let unique: HashSet<_> = export
        .messages
        .iter()
        .map(|m| m.external_id.clone().unwrap())
        .collect();
    assert_eq!(unique.len(), 500);
}

async fn users_sessions_and_login_failures(store: Arc<dyn Store>) {
    use parley_core::UserRole;
    use parley_store::NewSession;
    let ws = workspace(&*store, "w").await;
    let user = store
        .auth()
        .create_user(
            ws,
            "ana@example.com",
            "$argon2id$v=19$fake",
            UserRole::Admin,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .auth()
            .create_user(ws, "ana@example.com", "x", UserRole::Member)
            .await,
        Err(StoreError::Conflict {
            code: "user_exists",
            ..
        })
    ));
    let (found, hash) = store
        .auth()
        .user_for_login("ana@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.role, hash.as_str()),
        (user.id, UserRole::Admin, "$argon2id$v=19$fake")
    );
    assert!(
        store
            .auth()
            .user_for_login("bob@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.auth().list_users(ws).await.unwrap().len(), 1);

    let now = Timestamp(T0);
    let session = NewSession {
        token_hash: [1; 32],
        user_id: user.id,
        csrf_token: "csrf".into(),
        created_at: now,
        expires_at: now.add_millis(1_000),
    };
    store.auth().create_session(&session).await.unwrap();
    let got = store.auth().session([1; 32], now).await.unwrap().unwrap();
    assert_eq!((got.user.id, got.csrf_token.as_str()), (user.id, "csrf"));
    assert!(
        store
            .auth()
            .session([1; 32], now.add_millis(1_000))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(store.auth().session([2; 32], now).await.unwrap().is_none());
    store.auth().delete_session([1; 32]).await.unwrap();
    assert!(
        store.auth().session([1; 32], now).await.unwrap().is_none(),
        "signed out"
    );

    let subjects = vec![
        "email:ana@example.com".to_owned(),
        "ip:127.0.0.1".to_owned(),
    ];
    for i in 0..3 {
        store
            .auth()
            .record_login_failure(&subjects, now.add_millis(i * 1_000))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .auth()
            .login_failures_since("ip:127.0.0.1", now)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .auth()
            .login_failures_since("ip:127.0.0.1", now.add_millis(1_500))
            .await
            .unwrap(),
        1
    );
    store
        .auth()
        .clear_login_failures("email:ana@example.com", now.add_millis(10_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .auth()
            .login_failures_since("email:ana@example.com", now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .auth()
            .login_failures_since("ip:127.0.0.1", now)
            .await
            .unwrap(),
        3
    );
}

/// Sign-in attempts are claimed atomically: at most `limit` claims succeed per subject in a
/// window, even all at once; a refused claim records nothing for any subject; a released claim
/// frees its place.
async fn login_attempts_are_claimed_atomically(store: Arc<dyn Store>) {
    let now = Timestamp(T0);
    let since = Timestamp(T0 - 60_000);
    let email = "email:ana@example.com".to_owned();
    let ip = "ip:192.0.2.1".to_owned();
    let limits = vec![(email.clone(), 5), (ip.clone(), 8)];
    let claims: Vec<_> = (0..30)
        .map(|_| {
            let (store, limits) = (store.clone(), limits.clone());
            tokio::spawn(async move {
                store
                    .auth()
                    .claim_login_attempt(&limits, since, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for c in claims {
        granted += usize::from(c.await.unwrap());
    }
    assert_eq!(
        granted, 5,
        "the email's limit holds under 30 concurrent claims"
    );
    let count = |s: String| {
        let store = store.clone();
        async move { store.auth().login_failures_since(&s, since).await.unwrap() }
    };
    assert_eq!(count(email.clone()).await, 5);
    assert_eq!(count(ip.clone()).await, 5, "refused claims record nothing");

    // Another email from the same address: the address's limit (8) is what stops it now.
    let other = vec![("email:bob@example.com".to_owned(), 5), (ip.clone(), 8)];
    for expected in [true, true, true, false] {
        assert_eq!(
            store
                .auth()
                .claim_login_attempt(&other, since, now)
                .await
                .unwrap(),
            expected
        );
    }
    assert_eq!(count("email:bob@example.com".into()).await, 3);
    store.auth().release_login_attempt(&ip, now).await.unwrap();
    assert_eq!(count(ip.clone()).await, 7, "one entry taken back");
    assert!(
        store
            .auth()
            .claim_login_attempt(&other, since, now)
            .await
            .unwrap()
    );
    // Entries before the window do not count.
    let later = Timestamp(T0 + 120_000);
    assert!(
        store
            .auth()
            .claim_login_attempt(&limits, Timestamp(T0 + 1), later)
            .await
            .unwrap()
    );
    store
        .auth()
        .release_login_attempt("ip:unknown", now)
        .await
        .unwrap();
}

/// Concurrent batches that create conversations for the same new assistants and append to the
/// same existing conversations, in opposite orders, all succeed (no deadlock surfaces).
async fn concurrent_batches_in_opposite_orders_all_succeed(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "w").await;
    let shared: Vec<ConversationId> = {
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(create(&*store, ws, conv("Seed", T0 + i), vec![]).await);
        }
        ids
    };
    let mut tasks = Vec::new();
    for t in 0..8usize {
        let (store, shared) = (store.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let mut names = ["Ana", "Ben", "Cai", "Dee", "Eli", "Fay"];
                let mut targets = shared.clone();
                if (t + round) % 2 == 1 {
                    names.reverse();
                    targets.reverse();
                }
                let mut batches: Vec<IngestBatch> = names
                    .iter()
                    .map(|n| new_batch(conv(n, T0), vec![msg(Role::User, "hi", T0)]))
                    .collect();
                for id in targets {
                    batches.push(IngestBatch {
                        target: IngestTarget::Existing(id),
                        messages: vec![msg(Role::User, &format!("t{t} r{round}"), T0)],
                    });
                }
                store
                    .conversations()
                    .ingest(ws, batches)
                    .await
                    .expect("no deadlock reaches the caller");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        store.conversations().conversation_total(ws).await.unwrap(),
        4 + 8 * 5 * 6
    );
    assert_eq!(
        store.assistants().list_assistants(ws).await.unwrap().len(),
        7,
        "each new assistant created once"
    );
    for id in shared {
        assert_eq!(
            store
                .conversations()
                .get_conversation(ws, id)
                .await
                .unwrap()
                .unwrap()
                .summary
                .message_count,
            40
        );
    }
}

/// Channel connections: created for an assistant of the workspace, unique per sender across
/// the server, scoped to their workspace except for the webhook lookup; channel updates of
/// stored messages (the platform id of a sent reply, delivery status) are scoped too.
async fn channel_connections_and_message_updates(store: Arc<dyn Store>) {
    use parley_core::channel::{
        ChannelConnection, ChannelKind, ChannelMessageMeta, Delivery, DeliveryStatus, SealedSecret,
    };
    let a = workspace(&*store, "a").await;
    let b = workspace(&*store, "b").await;
    let new_assistant = NewAssistant {
        name: "Ava".into(),
        company: "Acme".into(),
        mode: AssistantMode::Active,
        settings: AssistantSettings::default(),
    };
    let ava = store
        .assistants()
        .create_assistant(a, &new_assistant)
        .await
        .unwrap();
    let bob = store
        .assistants()
        .create_assistant(b, &new_assistant)
        .await
        .unwrap();
    let mut config = serde_json::Map::new();
    config.insert("phone_number_id".into(), serde_json::json!("1122334455667"));
    let connection = ChannelConnection {
        id: parley_core::ChannelConnectionId::new(),
        workspace_id: a,
        assistant_id: ava.id,
        kind: ChannelKind::Whatsapp,
        external_key: "1122334455667".into(),
        config,
        secrets: [(
            "access_token".to_owned(),
            SealedSecret {
                sealed: "c2VhbGVk".into(),
                hint: "…1234".into(),
            },
        )]
        .into_iter()
        .collect(),
        created_at: Timestamp(T0),
    };
    let channels = store.channels();
    channels.create_channel(&connection).await.unwrap();
    assert_eq!(
        channels.get_channel(a, connection.id).await.unwrap(),
        Some(connection.clone())
    );
    assert_eq!(
        channels.list_channels(a, Some(ava.id)).await.unwrap(),
        vec![connection.clone()]
    );
    assert_eq!(channels.list_channels(a, None).await.unwrap().len(), 1);
    assert!(channels.list_channels(b, None).await.unwrap().is_empty());
    assert_eq!(channels.get_channel(b, connection.id).await.unwrap(), None);
    assert_eq!(
        channels.channel_by_id(connection.id).await.unwrap(),
        Some(connection.clone())
    );
    assert_eq!(
        channels
            .channel_by_key(ChannelKind::Whatsapp, "1122334455667")
            .await
            .unwrap()
            .map(|c| c.id),
        Some(connection.id)
    );
    assert_eq!(
        channels
            .channel_by_key(ChannelKind::Telegram, "1122334455667")
            .await
            .unwrap(),
        None
    );
    // The same sender in another workspace: refused.
    let mut again = connection.clone();
    again.id = parley_core::ChannelConnectionId::new();
    again.workspace_id = b;
    again.assistant_id = bob.id;
    assert!(matches!(
        channels.create_channel(&again).await,
        Err(StoreError::Conflict {
            code: "channel_exists",
            ..
        })
    ));
    // Another workspace's assistant: not found.
    again.external_key = "999".into();
    again.assistant_id = ava.id;
    assert!(matches!(
        channels.create_channel(&again).await,
        Err(StoreError::NotFound { what: "assistant" })
    ));
    let mut config = connection.config.clone();
    config.insert("messaging_limit_tier".into(), serde_json::json!("TIER_1K"));
    assert!(
        !channels
            .update_channel_config(b, connection.id, &config)
            .await
            .unwrap()
    );
    assert!(
        channels
            .update_channel_config(a, connection.id, &config)
            .await
            .unwrap()
    );
    assert_eq!(
        channels
            .get_channel(a, connection.id)
            .await
            .unwrap()
            .unwrap()
            .config,
        config
    );

    // Messages by their channel id, and their channel updates.
    let mut keyed = conv("Ava", T0);
    keyed.external_id = Some("messenger:c1:psid-1".into());
    let id = create(
        &*store,
        a,
        keyed,
        vec![
            ext(msg(Role::User, "hi", T0), "wamid.in"),
            msg(Role::Assistant, "hello", T0 + 1),
            msg(Role::Assistant, "anything else?", T0 + 2),
        ],
    )
    .await;
    let (found_in, inbound) = channels
        .message_by_external_id(a, "wamid.in")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found_in, inbound.content.as_str()), (id, "hi"));
    // Conversations by their channel key, in their workspace only.
    assert_eq!(
        channels
            .conversation_by_external_id(a, "messenger:c1:psid-1")
            .await
            .unwrap(),
        Some(id)
    );
    for (ws, key) in [(b, "messenger:c1:psid-1"), (a, "messenger:c1:psid-2")] {
        assert_eq!(
            channels.conversation_by_external_id(ws, key).await.unwrap(),
            None
        );
    }
    assert_eq!(
        channels
            .message_by_external_id(b, "wamid.in")
            .await
            .unwrap(),
        None
    );
    let export = store
        .conversations()
        .export_conversations(a, &[id])
        .await
        .unwrap()
        .pop()
        .unwrap();
    let (answer, second) = (&export.messages[1], &export.messages[2]);
    let meta = MessageMeta {
        channel: Some(ChannelMessageMeta {
            kind: "text".into(),
            delivery: Some(Delivery {
                status: DeliveryStatus::Read,
                at: Timestamp(T0 + 5),
                errors: vec![],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(
        !channels
            .update_message_channel(b, answer.id, Some("wamid.out"), &meta)
            .await
            .unwrap()
    );
    assert!(
        channels
            .update_message_channel(a, answer.id, Some("wamid.out"), &meta)
            .await
            .unwrap()
    );
    let (_, updated) = channels
        .message_by_external_id(a, "wamid.out")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((updated.id, &updated.meta), (answer.id, &meta));
    // Without an external id, only the meta changes.
    assert!(
        channels
            .update_message_channel(a, answer.id, None, &MessageMeta::default())
            .await
            .unwrap()
    );
    let (_, updated) = channels
        .message_by_external_id(a, "wamid.out")
        .await
        .unwrap()
        .unwrap();
    assert!(updated.meta.is_empty());
    assert!(matches!(
        channels
            .update_message_channel(a, second.id, Some("wamid.out"), &meta)
            .await,
        Err(StoreError::Conflict {
            code: "external_id_taken",
            ..
        })
    ));

    assert!(!channels.delete_channel(b, connection.id).await.unwrap());
    assert!(channels.delete_channel(a, connection.id).await.unwrap());
    assert_eq!(channels.channel_by_id(connection.id).await.unwrap(), None);
}

/// The job queue: a job is claimed by one worker at a time, counts its attempts, comes back
/// when its lease runs out, is retried, failed or completed only by the worker holding it;
/// jobs written with an ingest exist only when its message was newly stored.
async fn jobs_are_claimed_once_and_survive_their_worker(store: Arc<dyn Store>) {
    use parley_store::jobs::{IngestJob, JobState, NewJob};
    let jobs = store.jobs();
    let t = Timestamp(T0);
    let mut first = NewJob::new("test.kind", "{\"n\": 1}".into(), 3);
    first.run_after = t;
    let mut later = NewJob::new("test.kind", "later".into(), 3);
    later.run_after = Timestamp(T0 + 60_000);
    jobs.enqueue(&first).await.unwrap();
    jobs.enqueue(&later).await.unwrap();
    assert!(matches!(
        jobs.enqueue(&first).await,
        Err(StoreError::Conflict {
            code: "job_exists",
            ..
        })
    ));
    let lease = Timestamp(T0 + 1_000);
    let claimed = jobs.claim("w1", t, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the due job");
    assert_eq!(
        (
            claimed[0].id,
            claimed[0].attempts,
            claimed[0].payload.as_str()
        ),
        (first.id, 1, "{\"n\": 1}")
    );
    assert!(
        jobs.claim("w2", t, lease, 10).await.unwrap().is_empty(),
        "held by w1"
    );
    // Only the holder may finish it.
    assert!(!jobs.complete(first.id, "w2").await.unwrap());
    assert!(
        jobs.renew(first.id, "w1", Timestamp(T0 + 2_000))
            .await
            .unwrap()
    );
    // w1 dies: after its lease another worker takes the job over, a second attempt.
    let after = Timestamp(T0 + 2_001);
    let taken = jobs
        .claim("w2", after, Timestamp(T0 + 5_000), 10)
        .await
        .unwrap();
    assert_eq!((taken[0].id, taken[0].attempts), (first.id, 2));
    assert!(
        !jobs
            .renew(first.id, "w1", Timestamp(T0 + 9_000))
            .await
            .unwrap()
    );
    assert!(
        !jobs.complete(first.id, "w1").await.unwrap(),
        "no longer w1's"
    );
    // Retried later with its error, then given up.
    assert!(
        jobs.retry_later(first.id, "w2", Timestamp(T0 + 10_000), "boom")
            .await
            .unwrap()
    );
    assert!(
        jobs.claim("w2", Timestamp(T0 + 9_999), Timestamp(T0 + 20_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = jobs
        .claim("w3", Timestamp(T0 + 10_000), Timestamp(T0 + 20_000), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].attempts, again[0].last_error.as_deref()),
        (3, Some("boom"))
    );
    assert!(jobs.fail(first.id, "w3", "gave up").await.unwrap());
    let stats = jobs.queue_stats().await.unwrap();
    let failed = stats.iter().find(|s| s.state == JobState::Failed).unwrap();
    assert_eq!((failed.kind.as_str(), failed.count), ("test.kind", 1));
    let queued = stats.iter().find(|s| s.state == JobState::Queued).unwrap();
    assert_eq!(queued.count, 1);
    // A clean stop hands back what a worker holds, its attempt not counted.
    let l = jobs
        .claim("w4", Timestamp(T0 + 60_000), Timestamp(T0 + 70_000), 10)
        .await
        .unwrap();
    assert_eq!((l[0].id, l[0].attempts), (later.id, 1));
    assert_eq!(jobs.release("w4").await.unwrap(), 1);
    // Released jobs are due at once (now, in real time).
    let now = Timestamp::now();
    let l = jobs
        .claim("w5", now, now.add_millis(10_000), 10)
        .await
        .unwrap();
    assert_eq!((l[0].id, l[0].attempts), (later.id, 1));
    assert_eq!(jobs.requeue_running().await.unwrap(), 1);
    assert!(
        !jobs.complete(later.id, "w5").await.unwrap(),
        "requeued: not w5's any more"
    );
    let l = jobs
        .claim("w6", Timestamp::now(), now.add_millis(10_000), 10)
        .await
        .unwrap();
    assert!(jobs.complete(l[0].id, "w6").await.unwrap());
    assert!(
        jobs.claim("w7", Timestamp::now(), now.add_millis(10_000), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Jobs written with an ingest: only for a newly stored last message.
    let ws = workspace(&*store, "jobs").await;
    let mut c = conv("Ava", T0);
    c.external_id = Some("wa:1".into());
    let batch = || new_batch(c.clone(), vec![ext(msg(Role::User, "hi", T0), "wamid.1")]);
    let follow = || IngestJob {
        batch: 0,
        job: NewJob::new("answer", "{}".into(), 3),
    };
    let out = jobs
        .ingest_with_jobs(
            ws,
            vec![batch()],
            vec![
                follow(),
                IngestJob {
                    batch: 7,
                    job: NewJob::new("x", "".into(), 1),
                },
            ],
        )
        .await
        .unwrap();
    let MessageOutcome::Stored { id: stored } = out[0].messages[0] else {
        panic!("stored")
    };
    let due = jobs
        .claim(
            "w",
            Timestamp::now(),
            Timestamp::now().add_millis(1_000),
            10,
        )
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (
            due[0].kind.as_str(),
            due[0].conversation_id,
            due[0].message_id
        ),
        ("answer", Some(out[0].conversation_id), Some(stored))
    );
    assert!(jobs.complete(due[0].id, "w").await.unwrap());
    // A repeat stores nothing and enqueues nothing.
    jobs.ingest_with_jobs(ws, vec![batch()], vec![follow()])
        .await
        .unwrap();
    assert!(
        jobs.claim(
            "w",
            Timestamp::now(),
            Timestamp::now().add_millis(1_000),
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
    // A failed ingest enqueues nothing either.
    let missing = IngestBatch {
        target: IngestTarget::Existing(ConversationId::new()),
        messages: vec![msg(Role::User, "x", T0)],
    };
    assert!(
        jobs.ingest_with_jobs(ws, vec![missing], vec![follow()])
            .await
            .is_err()
    );
    assert!(
        jobs.claim(
            "w",
            Timestamp::now(),
            Timestamp::now().add_millis(1_000),
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
}

/// Several workers claiming at once never get the same job.
async fn concurrent_claims_never_share_a_job(store: Arc<dyn Store>) {
    use parley_store::jobs::NewJob;
    for i in 0..60 {
        let mut j = NewJob::new("test.kind", i.to_string(), 1);
        j.run_after = Timestamp(T0);
        store.jobs().enqueue(&j).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .jobs()
                    .claim(
                        &format!("w{w}"),
                        Timestamp(T0 + 1),
                        Timestamp(T0 + 100_000),
                        4,
                    )
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|j| j.payload));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|p| p.parse::<u32>().unwrap());
    assert_eq!(all, (0..60).map(|i| i.to_string()).collect::<Vec<_>>());
}

/// A connection's inbox counts its pending and failed deliveries; leases have one holder at a
/// time until released or expired; rate windows count every hit.
async fn inbox_leases_and_rate_windows(store: Arc<dyn Store>) {
    use parley_store::jobs::NewJob;
    let jobs = store.jobs();
    let ws = WorkspaceId::new();
    let connection = parley_core::ChannelConnectionId::new();
    for kind in ["whatsapp.delivery", "whatsapp.delivery", "answer"] {
        let mut j = NewJob::new(kind, "{}".into(), 1);
        j.workspace_id = Some(ws);
        j.connection_id = Some(connection);
        j.run_after = Timestamp(T0);
        jobs.enqueue(&j).await.unwrap();
    }
    let inbox = jobs.inbox_stats(ws, connection).await.unwrap();
    assert_eq!((inbox.pending, inbox.failed), (2, 0));
    assert!(inbox.oldest_pending_at.is_some());
    assert_eq!(
        jobs.inbox_stats(WorkspaceId::new(), connection)
            .await
            .unwrap()
            .pending,
        0
    );
    let claimed = jobs
        .claim("w", Timestamp(T0), Timestamp(T0 + 10), 1)
        .await
        .unwrap();
    jobs.fail(claimed[0].id, "w", "bad").await.unwrap();
    let inbox = jobs.inbox_stats(ws, connection).await.unwrap();
    assert_eq!(inbox.pending + inbox.failed, 2);
    assert!(inbox.pending <= 2);

    let t = |ms: i64| Timestamp(T0 + ms);
    assert!(jobs.try_lease("turn:1", "a", t(0), t(100)).await.unwrap());
    assert!(
        !jobs.try_lease("turn:1", "b", t(50), t(150)).await.unwrap(),
        "a holds it"
    );
    assert!(
        jobs.try_lease("turn:1", "a", t(60), t(160)).await.unwrap(),
        "a renews"
    );
    assert!(
        jobs.try_lease("turn:2", "b", t(60), t(160)).await.unwrap(),
        "another name"
    );
    assert!(
        jobs.try_lease("turn:1", "b", t(161), t(300)).await.unwrap(),
        "a's expired"
    );
    jobs.release_lease("turn:1", "a").await.unwrap();
    assert!(
        !jobs.try_lease("turn:1", "a", t(200), t(300)).await.unwrap(),
        "not a's to release"
    );
    jobs.release_lease("turn:1", "b").await.unwrap();
    assert!(jobs.try_lease("turn:1", "a", t(200), t(300)).await.unwrap());

    let subjects = vec!["k:1".to_owned(), "v:1".to_owned()];
    assert_eq!(
        jobs.count_hits(&subjects, 60_000, 0).await.unwrap(),
        vec![1, 1]
    );
    assert_eq!(
        jobs.count_hits(&subjects[1..], 60_000, 0).await.unwrap(),
        vec![2]
    );
    assert_eq!(
        jobs.count_hits(&subjects, 60_000, 0).await.unwrap(),
        vec![2, 3]
    );
    assert_eq!(
        jobs.count_hits(&subjects, 120_000, 60_000).await.unwrap(),
        vec![1, 1],
        "a new window"
    );
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .jobs()
                .count_hits(&["c".to_owned()], 0, 0)
                .await
                .unwrap()[0]
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<u64>>(),
        "every hit counted once"
    );
}

/// Concurrent edits of one message and one connection config never lose each other's change.
async fn concurrent_edits_lose_nothing(store: Arc<dyn Store>) {
    use parley_core::channel::{ChannelConnection, ChannelKind};
    let ws = workspace(&*store, "edits").await;
    let id = create(
        &*store,
        ws,
        conv("Ava", T0),
        vec![msg(Role::User, "count: 0", T0)],
    )
    .await;
    let export = store
        .conversations()
        .export_conversations(ws, &[id])
        .await
        .unwrap();
    let message = export[0].messages[0].id;
    let assistant = export[0].detail.summary.assistant.id;
    let connection = ChannelConnection {
        id: parley_core::ChannelConnectionId::new(),
        workspace_id: ws,
        assistant_id: assistant,
        kind: ChannelKind::Telegram,
        external_key: "42".into(),
        config: Default::default(),
        secrets: Default::default(),
        created_at: Timestamp(T0),
    };
    store.channels().create_channel(&connection).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        let cid = connection.id;
        tasks.push(tokio::spawn(async move {
            let wrote = store
                .channels()
                .edit_message(
                    ws,
                    message,
                    None,
                    Box::new(move |content, meta| {
                        let n: u32 = content.trim_start_matches("count: ").parse().unwrap();
                        *content = format!("count: {}", n + 1);
                        meta.tool_call_id = Some(format!("edit {i}"));
                        true
                    }),
                )
                .await
                .unwrap();
            assert!(wrote);
            store
                .channels()
                .edit_channel_config(
                    ws,
                    cid,
                    Box::new(move |config| {
                        config.insert(format!("k{i}"), serde_json::json!(i));
                        true
                    }),
                )
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    let export = store
        .conversations()
        .export_conversations(ws, &[id])
        .await
        .unwrap();
    assert_eq!(export[0].messages[0].content, "count: 24");
    assert!(export[0].messages[0].meta.tool_call_id.is_some());
    let config = store
        .channels()
        .get_channel(ws, connection.id)
        .await
        .unwrap()
        .unwrap()
        .config;
    assert_eq!(config.len(), 24, "{config:?}");
    // The new text is what search finds.
    let found = ids(&*store, ws, list(q("count: 24"), "-date", 10)).await;
    assert_eq!(found, vec![id]);
    // A declined edit writes nothing; another workspace's message is not found.
    assert!(
        !store
            .channels()
            .edit_message(
                ws,
                message,
                None,
                Box::new(|c, _| {
                    c.push('!');
                    false
                })
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .channels()
            .edit_message(WorkspaceId::new(), message, None, Box::new(|_, _| true))
            .await
            .unwrap()
    );
    let export = store
        .conversations()
        .export_conversations(ws, &[id])
        .await
        .unwrap();
    assert_eq!(export[0].messages[0].content, "count: 24");
}

/// The attachment record and quota: a file is admitted only while the workspace stays within
/// the limit (concurrent admissions cannot together pass it), usage is maintained per
/// workspace, and forgetting touches only the workspace's own records.
async fn attachment_usage_is_maintained_and_bounded(store: Arc<dyn Store>) {
    use parley_store::{Admission, AttachmentUsage};
    let a = workspace(&*store, "a").await;
    let b = workspace(&*store, "b").await;
    let files = store.attachments();
    assert_eq!(
        files.attachment_usage(a).await.unwrap(),
        AttachmentUsage::default()
    );
    let key = |ws: WorkspaceId, n: u32| format!("{ws}/{}", uuid::Uuid::from_u128(u128::from(n)));
    // 20 concurrent uploads of 100 bytes against a limit of 1,000: exactly 10 get in.
    let mut uploads = tokio::task::JoinSet::new();
    for n in 0..20 {
        let store = store.clone();
        let k = key(a, n);
        uploads.spawn(async move {
            store
                .attachments()
                .record_attachment(a, &k, 100, Some(1_000), Timestamp(T0))
                .await
                .unwrap()
        });
    }
    let admitted = uploads.join_all().await;
    let recorded = admitted
        .iter()
        .filter(|x| matches!(x, Admission::Recorded(_)))
        .count();
    assert_eq!(recorded, 10, "{admitted:?}");
    let full = AttachmentUsage {
        bytes: 1_000,
        files: 10,
    };
    assert_eq!(files.attachment_usage(a).await.unwrap(), full);
    assert_eq!(
        files
            .record_attachment(a, &key(a, 99), 1, Some(1_000), Timestamp(T0))
            .await
            .unwrap(),
        Admission::OverLimit(full)
    );
    // Without a limit (channel media kept over the quota) it is recorded and counted.
    assert_eq!(
        files
            .record_attachment(a, &key(a, 99), 1, None, Timestamp(T0))
            .await
            .unwrap(),
        Admission::Recorded(AttachmentUsage {
            bytes: 1_001,
            files: 11
        })
    );
    // Recording a known key again counts nothing.
    assert!(matches!(
        files
            .record_attachment(a, &key(a, 99), 1, None, Timestamp(T0))
            .await
            .unwrap(),
        Admission::Recorded(AttachmentUsage { bytes: 1_001, .. })
    ));
    // Another workspace has its own count, and cannot forget a's files.
    files
        .record_attachment(b, &key(b, 1), 7, Some(1_000), Timestamp(T0))
        .await
        .unwrap();
    let a_keys: Vec<String> = (0..20).map(|n| key(a, n)).chain([key(a, 99)]).collect();
    assert!(
        files
            .forget_attachments(b, &a_keys)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(files.attachment_usage(a).await.unwrap().bytes, 1_001);
    let mut forgotten = files.forget_attachments(a, &a_keys).await.unwrap();
    forgotten.sort();
    assert_eq!(forgotten.len(), 11, "the recorded ones only");
    assert_eq!(
        files.attachment_usage(a).await.unwrap(),
        AttachmentUsage::default()
    );
    assert_eq!(
        files.attachment_usage(b).await.unwrap(),
        AttachmentUsage { bytes: 7, files: 1 }
    );
    assert!(
        files
            .forget_attachments(a, &a_keys)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn assistant(store: &dyn Store, ws: WorkspaceId, name: &str) -> parley_core::AssistantId {
    let input = NewAssistant {
        name: name.into(),
        company: "Acme".into(),
        mode: AssistantMode::Active,
        settings: AssistantSettings::default(),
    };
    store
        .assistants()
        .create_assistant(ws, &input)
        .await
        .unwrap()
        .id
}

async fn widgets_are_found_by_assistant_and_key(store: Arc<dyn Store>) {
    use parley_core::widget::{WidgetRecord, WidgetSettings};
    let ws = workspace(&*store, "w").await;
    let other = workspace(&*store, "other").await;
    let ava = assistant(&*store, ws, "Ava").await;
    let bea = assistant(&*store, ws, "Bea").await;
    let elsewhere = assistant(&*store, other, "Cleo").await;
    assert_eq!(
        store.widgets().widget_for_assistant(ws, ava).await.unwrap(),
        None
    );
    assert_eq!(store.widgets().widget_by_key("pk_one").await.unwrap(), None);

    let mut first = WidgetRecord {
        workspace_id: ws,
        assistant_id: ava,
        public_key: "pk_one".into(),
        settings: WidgetSettings {
            allowed_origins: vec!["https://shop.example.com".into()],
            title: "Ask Ava".into(),
            ..Default::default()
        },
        updated_at: Timestamp(T0),
    };
    store.widgets().save_widget(&first).await.unwrap();
    assert_eq!(
        store
            .widgets()
            .widget_for_assistant(ws, ava)
            .await
            .unwrap()
            .as_ref(),
        Some(&first)
    );
    assert_eq!(
        store
            .widgets()
            .widget_by_key("pk_one")
            .await
            .unwrap()
            .as_ref(),
        Some(&first)
    );
    assert_eq!(
        store.widgets().widget_for_assistant(ws, bea).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .widgets()
            .widget_for_assistant(other, ava)
            .await
            .unwrap(),
        None,
        "another workspace does not see it"
    );

    // Replacing the key revokes the old one; the settings are replaced, not merged.
    first.public_key = "pk_two".into();
    first.settings = WidgetSettings {
        enabled: false,
        ..Default::default()
    };
    first.updated_at = Timestamp(T0 + 1000);
    store.widgets().save_widget(&first).await.unwrap();
    assert_eq!(store.widgets().widget_by_key("pk_one").await.unwrap(), None);
    assert_eq!(
        store
            .widgets()
            .widget_by_key("pk_two")
            .await
            .unwrap()
            .as_ref(),
        Some(&first)
    );
    assert_eq!(
        store
            .widgets()
            .widget_for_assistant(ws, ava)
            .await
            .unwrap()
            .as_ref(),
        Some(&first)
    );

    // A key is one widget's only.
    let taken = WidgetRecord {
        assistant_id: bea,
        ..first.clone()
    };
    assert!(matches!(
        store.widgets().save_widget(&taken).await,
        Err(StoreError::Conflict {
            code: "widget_key_taken",
            ..
        })
    ));
    assert_eq!(
        store.widgets().widget_for_assistant(ws, bea).await.unwrap(),
        None
    );
    // An assistant of another workspace cannot get a widget here.
    let foreign = WidgetRecord {
        assistant_id: elsewhere,
        public_key: "pk_three".into(),
        ..first.clone()
    };
    assert!(matches!(
        store.widgets().save_widget(&foreign).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.widgets().widget_by_key("pk_three").await.unwrap(),
        None
    );

    // create_widget keeps the first widget: a second, racing first visit gets the stored one.
    let made = WidgetRecord {
        assistant_id: bea,
        public_key: "pk_bea".into(),
        ..first.clone()
    };
    assert_eq!(store.widgets().create_widget(&made).await.unwrap(), made);
    let racing = WidgetRecord {
        public_key: "pk_bea_later".into(),
        ..made.clone()
    };
    assert_eq!(
        store.widgets().create_widget(&racing).await.unwrap(),
        made,
        "the stored widget, not the new one"
    );
    assert_eq!(
        store.widgets().widget_by_key("pk_bea_later").await.unwrap(),
        None
    );
    assert!(matches!(
        store
            .widgets()
            .create_widget(&WidgetRecord {
                public_key: "pk_four".into(),
                ..foreign.clone()
            })
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn tracker_records_a_visit_and_follows_its_conversations(store: Arc<dyn Store>) {
    use parley_core::widget::{TrackerItem, TrackerItemKind, TrackerSession};
    let ws = workspace(&*store, "w").await;
    let other = workspace(&*store, "other").await;
    let ava = assistant(&*store, ws, "Ava").await;
    let mut visit = TrackerSession {
        id: uuid::Uuid::now_v7(),
        workspace_id: Some(ws),
        assistant_id: Some(ava),
        started_at: Some(Timestamp(T0)),
        last_seen_at: Some(Timestamp(T0 + 5_000)),
        device: "desktop".into(),
        browser: "Firefox 140.0".into(),
        os: "Linux".into(),
        country: "DE".into(),
        city: "Berlin".into(),
        landing_page: "https://shop.example.com/".into(),
        referrer: "https://www.google.com/".into(),
        traffic_source: "search".into(),
        utm_source: "news".into(),
        utm_medium: "email".into(),
        utm_campaign: "spring".into(),
    };
    store.widgets().save_tracker_session(&visit).await.unwrap();
    assert_eq!(
        store
            .widgets()
            .tracker_session(ws, visit.id)
            .await
            .unwrap()
            .as_ref(),
        Some(&visit)
    );
    assert_eq!(
        store
            .widgets()
            .tracker_session(other, visit.id)
            .await
            .unwrap(),
        None
    );
    visit.last_seen_at = Some(Timestamp(T0 + 60_000));
    store.widgets().save_tracker_session(&visit).await.unwrap();
    assert_eq!(
        store
            .widgets()
            .tracker_session(ws, visit.id)
            .await
            .unwrap()
            .as_ref(),
        Some(&visit),
        "saving again replaces"
    );
    // Another workspace cannot take the id over.
    let hijack = TrackerSession {
        workspace_id: Some(other),
        assistant_id: None,
        device: "mobile".into(),
        ..visit.clone()
    };
    assert!(matches!(
        store.widgets().save_tracker_session(&hijack).await,
        Err(StoreError::Conflict {
            code: "tracker_session_taken",
            ..
        })
    ));
    assert_eq!(
        store
            .widgets()
            .tracker_session(ws, visit.id)
            .await
            .unwrap()
            .as_ref(),
        Some(&visit)
    );

    let item = |kind, name: &str, at: i64| TrackerItem {
        id: uuid::Uuid::now_v7(),
        session_id: visit.id,
        kind,
        name: name.into(),
        url: "https://shop.example.com/shoes".into(),
        at: Timestamp(at),
        time_spent_ms: None,
        scroll_depth: None,
        data: serde_json::Value::Null,
    };
    // Saved out of order: the record lists them by time.
    let mut form = item(TrackerItemKind::Trigger, "form_submit", T0 + 30_000);
    form.data = serde_json::json!({"email": "ann@example.com", "size": "42"});
    let mut page = item(TrackerItemKind::Pageview, "Shoes", T0 + 1_000);
    page.time_spent_ms = Some(2_000);
    page.scroll_depth = Some(40);
    let mut click = item(TrackerItemKind::Event, "click", T0 + 20_000);
    click.data = serde_json::json!({"element": "buy"});
    for i in [&form, &page, &click] {
        store.widgets().save_tracker_item(ws, i).await.unwrap();
    }
    // The script resends a pageview as it learns more: one row, updated.
    page.time_spent_ms = Some(25_000);
    page.scroll_depth = Some(90);
    store.widgets().save_tracker_item(ws, &page).await.unwrap();
    assert!(matches!(
        store
            .widgets()
            .save_tracker_item(other, &item(TrackerItemKind::Event, "x", T0))
            .await,
        Err(StoreError::NotFound { .. })
    ));

    let first = create(
        &*store,
        ws,
        conv("Ava", T0),
        vec![msg(Role::User, "hi", T0)],
    )
    .await;
    let second = create(
        &*store,
        ws,
        conv("Ava", T0),
        vec![msg(Role::User, "again", T0)],
    )
    .await;
    assert_eq!(
        store
            .widgets()
            .tracker_for_conversation(ws, first)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .widgets()
            .link_tracker_session(other, visit.id, first)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .widgets()
        .link_tracker_session(ws, visit.id, first)
        .await
        .unwrap();
    store
        .widgets()
        .link_tracker_session(ws, visit.id, second)
        .await
        .unwrap();
    let record = store
        .widgets()
        .tracker_for_conversation(ws, first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.session, visit);
    assert_eq!(
        record.items,
        vec![page.clone(), click.clone(), form.clone()]
    );
    assert_eq!(record.pages_visited(), 1);
    assert!(!record.bounced());
    assert_eq!(
        store
            .widgets()
            .tracker_for_conversation(ws, second)
            .await
            .unwrap(),
        Some(record.clone())
    );
    assert_eq!(
        store
            .widgets()
            .tracker_for_conversation(other, first)
            .await
            .unwrap(),
        None
    );

    // The visit outlives one of its conversations, not the last one.
    assert!(
        store
            .conversations()
            .delete_conversation(ws, first)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .widgets()
            .tracker_for_conversation(ws, first)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .widgets()
            .tracker_for_conversation(ws, second)
            .await
            .unwrap(),
        Some(record)
    );
    assert!(
        store
            .conversations()
            .delete_conversation(ws, second)
            .await
            .unwrap()
    );
    assert_eq!(
        store.widgets().tracker_session(ws, visit.id).await.unwrap(),
        None
    );
}

async fn transfer_imports_records_verbatim(store: Arc<dyn Store>) {
    use parley_core::model::{ApiKey, Assistant, AssistantVersion, User, Workspace};
    use parley_core::{ApiKeyId, AssistantId, UserId, UserRole};
    // What `parley migrate-store` read from another store.
    let ws = Workspace {
        id: WorkspaceId::new(),
        slug: "moved".into(),
        name: "Moved Inc".into(),
        created_at: Timestamp(T0 - 86_400_000),
    };
    let settings = AssistantSettings {
        system_prompt: "Be brief.".into(),
        ..Default::default()
    };
    let assistant = Assistant {
        id: AssistantId::new(),
        name: "Ava Prime".into(),
        company: "Acme".into(),
        mode: AssistantMode::Active,
        version: 2,
        settings: settings.clone(),
        created_at: Timestamp(T0 - 1000),
        updated_at: Timestamp(T0),
    };
    let versions = vec![
        AssistantVersion {
            version: 1,
            name: "Ava".into(),
            company: "Acme".into(),
            mode: AssistantMode::Passive,
            settings: AssistantSettings::default(),
            created_at: Timestamp(T0 - 1000),
        },
        AssistantVersion {
            version: 2,
            name: "Ava Prime".into(),
            company: "Acme".into(),
            mode: AssistantMode::Active,
            settings,
            created_at: Timestamp(T0),
        },
    ];
    let user = User {
        id: UserId::new(),
        workspace_id: ws.id,
        email: "ann@example.com".into(),
        role: UserRole::Admin,
        created_at: Timestamp(T0 - 500),
        name: "Ann".into(),
        last_sign_in_at: Some(Timestamp(T0 - 450)),
    };
    let key = ApiKey {
        id: ApiKeyId::new(),
        workspace_id: ws.id,
        name: "ci".into(),
        prefix: "pk_abcd".into(),
        created_at: Timestamp(T0 - 400),
        revoked_at: Some(Timestamp(T0 - 300)),
        role: UserRole::Member,
        last_used_at: Some(Timestamp(T0 - 350)),
    };
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    store.transfer().import_workspace(&ws).await.unwrap();
    // Versions arrive in any order.
    let reversed: Vec<_> = versions.iter().rev().cloned().collect();
    store
        .transfer()
        .import_assistant(ws.id, &assistant, &reversed)
        .await
        .unwrap();
    store.transfer().import_user(&user, hash).await.unwrap();
    store
        .transfer()
        .import_api_key(&key, [9; 32])
        .await
        .unwrap();

    assert_eq!(
        store.workspaces().workspace_by_slug("moved").await.unwrap(),
        Some(ws.clone())
    );
    assert_eq!(
        store
            .assistants()
            .get_assistant(ws.id, assistant.id)
            .await
            .unwrap(),
        Some(assistant.clone())
    );
    let mut newest_first = versions.clone();
    newest_first.reverse();
    assert_eq!(
        store
            .assistants()
            .assistant_versions(ws.id, assistant.id)
            .await
            .unwrap(),
        Some(newest_first)
    );
    assert_eq!(
        store.transfer().export_users(ws.id).await.unwrap(),
        vec![(user.clone(), hash.to_owned())]
    );
    assert_eq!(
        store
            .auth()
            .user_for_login("ann@example.com")
            .await
            .unwrap(),
        Some((user.clone(), hash.to_owned()))
    );
    assert_eq!(
        store.transfer().export_api_keys(ws.id).await.unwrap(),
        vec![(key.clone(), [9; 32])]
    );
    assert_eq!(
        store.workspaces().api_key_by_hash([9; 32]).await.unwrap(),
        Some(key.clone())
    );
    // The next version continues the imported history.
    let next = NewAssistant {
        name: "Ava Prime".into(),
        company: "Acme".into(),
        mode: AssistantMode::Active,
        settings: AssistantSettings::default(),
    };
    let updated = store
        .assistants()
        .update_assistant(ws.id, assistant.id, &next, Some(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.version, 3);

    // Running the transfer again: the workspace refuses, the rest is left as it is.
    assert!(matches!(
        store.transfer().import_workspace(&ws).await,
        Err(StoreError::Conflict {
            code: "workspace_exists",
            ..
        })
    ));
    store
        .transfer()
        .import_assistant(ws.id, &assistant, &versions)
        .await
        .unwrap();
    store
        .transfer()
        .import_user(&user, "other-hash")
        .await
        .unwrap();
    store
        .transfer()
        .import_api_key(&key, [9; 32])
        .await
        .unwrap();
    assert_eq!(
        store
            .assistants()
            .get_assistant(ws.id, assistant.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert_eq!(
        store.transfer().export_users(ws.id).await.unwrap(),
        vec![(user, hash.to_owned())]
    );
    assert_eq!(
        store.transfer().export_api_keys(ws.id).await.unwrap(),
        vec![(key, [9; 32])]
    );
}

/// The analyser's watermark: changed conversations are listed past a cursor in
/// `(updated_at, pk)` order with their staleness, the lease keeps a second worker out until
/// it is released or expires, the mark never moves back, and workspaces are isolated.
async fn insight_watermarks_lease_and_order(store: Arc<dyn Store>) {
    use parley_core::Resolution;
    use parley_core::insights::ConversationInsight;
    use parley_store::InsightCursor;
    let a = workspace(&*store, "a").await;
    let b = workspace(&*store, "b").await;
    let one = create(&*store, a, conv("Bot", T0), vec![]).await;
    let two = create(&*store, a, conv("Bot", T0 + 1), vec![]).await;
    let theirs = create(&*store, b, conv("Bot", T0), vec![]).await;
    let insights = store.insights();
    assert_eq!(
        insights.insight_watermark(a).await.unwrap(),
        InsightCursor::START
    );
    let rows = insights
        .changed_conversations(a, InsightCursor::START, 10)
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![one, two]
    );
    assert!(rows.iter().all(|r| r.stale));
    assert!(rows[0].cursor < rows[1].cursor);
    let after_one = insights
        .changed_conversations(a, rows[0].cursor, 10)
        .await
        .unwrap();
    assert_eq!(
        after_one.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![two]
    );
    let theirs_rows = insights
        .changed_conversations(b, InsightCursor::START, 10)
        .await
        .unwrap();
    assert_eq!(
        theirs_rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![theirs]
    );

    // An analysed conversation is listed but not stale.
    let insight = ConversationInsight {
        sentiment: None,
        sentiment_source: None,
        sentiment_shift: None,
        language: None,
        resolution: Resolution::Ongoing,
        first_response_ms: None,
        duration_ms: None,
        key_phrases: Vec::new(),
        topic: None,
    };
    let later = Timestamp(Timestamp::now().0 + 60_000);
    insights
        .save_insight(a, one, &insight, later)
        .await
        .unwrap();
    let rows2 = insights
        .changed_conversations(a, InsightCursor::START, 10)
        .await
        .unwrap();
    assert_eq!(
        rows2.iter().map(|r| r.stale).collect::<Vec<_>>(),
        vec![false, true]
    );

    // The lease: one worker at a time, until released or expired.
    let now = Timestamp::now();
    let until = Timestamp(now.0 + 60_000);
    assert_eq!(
        insights
            .claim_insight_watermark(a, "w1", now, until)
            .await
            .unwrap(),
        Some(InsightCursor::START)
    );
    assert_eq!(
        insights
            .claim_insight_watermark(a, "w2", now, until)
            .await
            .unwrap(),
        None
    );
    assert!(
        insights
            .claim_insight_watermark(b, "w2", now, until)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        !insights
            .advance_insight_watermark(a, "w2", rows[0].cursor, until)
            .await
            .unwrap(),
        "not w2's lease"
    );
    assert!(
        insights
            .advance_insight_watermark(a, "w1", rows[1].cursor, until)
            .await
            .unwrap()
    );
    assert!(
        insights
            .advance_insight_watermark(a, "w1", rows[0].cursor, until)
            .await
            .unwrap()
    );
    assert_eq!(
        insights.insight_watermark(a).await.unwrap(),
        rows[1].cursor,
        "never back"
    );
    assert_eq!(
        insights.insight_watermark(b).await.unwrap(),
        InsightCursor::START
    );
    // Expired: another worker takes it, with the mark.
    let past_expiry = Timestamp(until.0 + 1);
    assert_eq!(
        insights
            .claim_insight_watermark(a, "w2", past_expiry, Timestamp(past_expiry.0 + 1))
            .await
            .unwrap(),
        Some(rows[1].cursor)
    );
    insights.release_insight_watermark(a, "w1").await.unwrap();
    assert_eq!(
        insights
            .claim_insight_watermark(a, "w1", now, until)
            .await
            .unwrap(),
        None,
        "releasing someone else's lease does nothing"
    );
    insights.release_insight_watermark(a, "w2").await.unwrap();
    assert_eq!(
        insights
            .claim_insight_watermark(a, "w1", now, until)
            .await
            .unwrap(),
        Some(rows[1].cursor)
    );
    assert!(
        insights
            .changed_conversations(a, rows[1].cursor, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn insights_are_stored_per_conversation(store: Arc<dyn Store>) {
    use parley_core::insights::{ConversationInsight, SentimentSource};
    use parley_core::{Resolution, SentimentShift};
    let a = workspace(&*store, "a").await;
    let b = workspace(&*store, "b").await;
    let one = create(&*store, a, conv("Bot", T0), vec![msg(Role::User, "hi", T0)]).await;
    let two = create(&*store, a, conv("Bot", T0 + 1), vec![]).await;
    let theirs = create(&*store, b, conv("Bot", T0), vec![]).await;
    let insights = store.insights();
    assert_eq!(
        insights.stale_insights(a, 10).await.unwrap(),
        vec![one, two]
    );
    assert_eq!(insights.stale_insights(a, 1).await.unwrap(), vec![one]);
    assert_eq!(insights.insight(a, one).await.unwrap(), None);

    let full = ConversationInsight {
        sentiment: Some(Sentiment {
            label: SentimentLabel::Negative,
            score: Some(-0.625),
        }),
        sentiment_source: Some(SentimentSource::Lexicon),
        sentiment_shift: Some(SentimentShift::Worsened),
        language: Some("eng".into()),
        resolution: Resolution::Unresolved,
        first_response_ms: Some(1_500),
        duration_ms: Some(60_000),
        key_phrases: vec!["late delivery".into(), "refund".into()],
        topic: Some("late delivery".into()),
    };
    let at = Timestamp::now();
    insights.save_insight(a, one, &full, at).await.unwrap();
    let stored = insights.insight(a, one).await.unwrap().expect("stored");
    assert_eq!((stored.insight, stored.analysed_at), (full.clone(), at));
    assert_eq!(insights.stale_insights(a, 10).await.unwrap(), vec![two]);

    // Replacing keeps one row; the empty insight (not analysed, nothing known) round-trips.
    let empty = ConversationInsight {
        sentiment: None,
        sentiment_source: None,
        sentiment_shift: None,
        language: None,
        resolution: Resolution::Ongoing,
        first_response_ms: None,
        duration_ms: None,
        key_phrases: Vec::new(),
        topic: None,
    };
    insights.save_insight(a, one, &empty, at).await.unwrap();
    assert_eq!(
        insights.insight(a, one).await.unwrap().unwrap().insight,
        empty
    );

    // Workspaces are isolated both ways.
    assert!(matches!(
        insights.save_insight(b, one, &full, at).await,
        Err(StoreError::NotFound {
            what: "conversation"
        })
    ));
    assert!(matches!(
        insights.save_insight(a, theirs, &full, at).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(insights.insight(b, one).await.unwrap(), None);
    assert_eq!(insights.stale_insights(b, 10).await.unwrap(), vec![theirs]);

    // A change to the conversation makes its insight stale again.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let patch = ConversationPatch {
        end_reason: Some(Some("handoff".into())),
        ..Default::default()
    };
    store
        .conversations()
        .update_conversation(a, one, &patch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        insights.stale_insights(a, 10).await.unwrap(),
        vec![one, two]
    );

    // Deleting the conversation deletes its insight.
    assert!(
        store
            .conversations()
            .delete_conversation(a, one)
            .await
            .unwrap()
    );
    assert_eq!(insights.insight(a, one).await.unwrap(), None);
    assert_eq!(insights.stale_insights(a, 10).await.unwrap(), vec![two]);
}

/// The event log follows every write, in the write's transaction: ingest (created, variables,
/// rating, messages; appends to an existing conversation), patches, message updates and
/// deletes; nothing for a duplicate or a rolled-back batch; reads are per workspace, filtered,
/// in id order; a subscriber is woken by a commit.
async fn events_follow_every_write(store: Arc<dyn Store>) {
    use parley_store::{EventFilter, EventType};
    let (a, b) = (workspace(&*store, "a").await, workspace(&*store, "b").await);
    let events = store.events();
    let mut wake = events.subscribe();
    wake.borrow_and_update();
    let start = events.latest_event_id().await.unwrap();
    let types =
        |v: &[parley_store::StoredEvent]| v.iter().map(|e| e.event_type).collect::<Vec<_>>();

    let mut c = conv("Ava", T0);
    c.variables = vec![Variable {
        key: "city".into(),
        value: "Oslo".into(),
        source: VariableSource::PreChat,
    }];
    c.rating = Some((
        Rating {
            score: 4,
            comment: None,
            rated_at: None,
        },
        Timestamp(T0),
    ));
    let m1 = ext(msg(Role::User, "hi", T0 + 1), "m1");
    let out = store
        .conversations()
        .ingest(
            a,
            vec![new_batch(
                c,
                vec![m1.clone(), msg(Role::Assistant, "hello", T0 + 2)],
            )],
        )
        .await
        .unwrap();
    let id = out[0].conversation_id;
    assert!(
        wake.has_changed().unwrap(),
        "a commit with events wakes subscribers"
    );
    let got = events
        .events_after(a, start, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        types(&got),
        [
            EventType::ConversationCreated,
            EventType::VariablesUpdated,
            EventType::RatingUpdated,
            EventType::MessageCreated,
            EventType::MessageCreated
        ]
    );
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    let e = &got[3];
    assert_eq!(e.workspace_id, a);
    assert_eq!(e.conversation_id, Some(id));
    assert_eq!(e.channel, Some(Channel::Widget));
    assert!(e.assistant_id.is_some());
    assert_eq!(e.data["role"], "user");
    let first_message = match out[0].messages[0] {
        MessageOutcome::Stored { id } => id,
        other => panic!("{other:?}"),
    };
    assert_eq!(e.data["message_id"], first_message.to_string());
    assert_eq!(got[1].data["keys"], serde_json::json!(["city"]));
    assert_eq!(got[2].data["rating"], 4);

    // A repeat stores nothing and announces nothing; an append to it is an update.
    let last = got.last().unwrap().id;
    store
        .conversations()
        .ingest(
            a,
            vec![IngestBatch {
                target: IngestTarget::Existing(id),
                messages: vec![m1.clone()],
            }],
        )
        .await
        .unwrap();
    assert!(
        events
            .events_after(a, last, &EventFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .conversations()
        .ingest(
            a,
            vec![IngestBatch {
                target: IngestTarget::Existing(id),
                messages: vec![msg(Role::User, "more", T0 + 3)],
            }],
        )
        .await
        .unwrap();
    let got = events
        .events_after(a, last, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        types(&got),
        [EventType::ConversationUpdated, EventType::MessageCreated]
    );
    assert_eq!(got[0].data["fields"], serde_json::json!(["messages"]));

    // A rolled-back batch leaves no event.
    let last = got.last().unwrap().id;
    let bad = IngestBatch {
        target: IngestTarget::Existing(ConversationId::new()),
        messages: vec![msg(Role::User, "x", T0)],
    };
    store
        .conversations()
        .ingest(a, vec![new_batch(conv("Ava", T0), vec![]), bad])
        .await
        .unwrap_err();
    assert!(
        events
            .events_after(a, last, &EventFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Patches.
    let patch = ConversationPatch {
        status: Some(ConversationStatus::Closed),
        rating: Some(None),
        ..Default::default()
    };
    store
        .conversations()
        .update_conversation(a, id, &patch)
        .await
        .unwrap()
        .unwrap();
    let got = events
        .events_after(a, last, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        types(&got),
        [EventType::ConversationUpdated, EventType::RatingUpdated]
    );
    assert_eq!(got[0].data["fields"], serde_json::json!(["status"]));
    assert_eq!(got[1].data["rating"], serde_json::Value::Null);

    // Message updates (delivery status, edits).
    let last = got.last().unwrap().id;
    assert!(
        store
            .channels()
            .update_message_channel(a, first_message, Some("wamid.1"), &MessageMeta::default())
            .await
            .unwrap()
    );
    assert!(
        store
            .channels()
            .edit_message(
                a,
                first_message,
                None,
                Box::new(|text, _| {
                    text.push('!');
                    true
                })
            )
            .await
            .unwrap()
    );
    let got = events
        .events_after(a, last, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(
        types(&got),
        [EventType::MessageUpdated, EventType::MessageUpdated]
    );
    assert_eq!(got[0].data["message_id"], first_message.to_string());

    // Filters.
    let other = create(&*store, a, conv("Bo", T0), vec![msg(Role::User, "x", T0)]).await;
    let only = |f: EventFilter| {
        let events = store.events();
        async move { events.events_after(a, start, &f, 100).await.unwrap() }
    };
    let of_other = only(EventFilter {
        conversation: Some(other),
        ..Default::default()
    })
    .await;
    assert_eq!(
        types(&of_other),
        [EventType::ConversationCreated, EventType::MessageCreated]
    );
    let created = only(EventFilter {
        types: vec![EventType::ConversationCreated],
        ..Default::default()
    })
    .await;
    assert_eq!(created.len(), 2);
    let bo = of_other[0].assistant_id;
    let by_bo = only(EventFilter {
        assistant: bo,
        ..Default::default()
    })
    .await;
    assert_eq!(by_bo.len(), 2);
    let on_whatsapp = only(EventFilter {
        channels: vec![Channel::Whatsapp],
        ..Default::default()
    })
    .await;
    assert!(on_whatsapp.is_empty());
    assert_eq!(
        events
            .events_after(a, start, &EventFilter::default(), 3)
            .await
            .unwrap()
            .len(),
        3,
        "the limit holds"
    );

    // Delete: the event keeps the conversation's channel though the row is gone.
    let last = events.latest_event_id().await.unwrap();
    assert!(
        store
            .conversations()
            .delete_conversation(a, id)
            .await
            .unwrap()
    );
    let got = events
        .events_after(a, last, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(types(&got), [EventType::ConversationDeleted]);
    assert_eq!(got[0].channel, Some(Channel::Widget));

    // Another workspace sees none of it, and a failed patch or delete announces nothing.
    assert!(
        events
            .events_after(b, start, &EventFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .conversations()
            .delete_conversation(b, other)
            .await
            .unwrap()
    );
    assert!(
        store
            .conversations()
            .update_conversation(b, other, &patch)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        events
            .events_after(b, start, &EventFilter::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        events.latest_event_id().await.unwrap(),
        got[0].id,
        "nothing was appended for the other workspace's attempts"
    );
}

/// Retention: pruning deletes old events, remembers the highest id it deleted, and ids go on
/// growing above it.
async fn events_are_pruned_and_remembered(store: Arc<dyn Store>) {
    use parley_store::EventFilter;
    let ws = workspace(&*store, "w").await;
    let events = store.events();
    assert_eq!(events.pruned_through().await.unwrap(), 0);
    create(&*store, ws, conv("Ava", T0), vec![msg(Role::User, "x", T0)]).await;
    let latest = events.latest_event_id().await.unwrap();
    assert!(latest > 0);
    assert_eq!(
        events.prune_before(Timestamp(T0)).await.unwrap(),
        0,
        "nothing that old"
    );
    let cut = Timestamp(Timestamp::now().0 + 1);
    assert_eq!(events.prune_before(cut).await.unwrap(), 2);
    assert_eq!(events.pruned_through().await.unwrap(), latest);
    assert_eq!(events.latest_event_id().await.unwrap(), latest);
    assert!(
        events
            .events_after(ws, 0, &EventFilter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    create(&*store, ws, conv("Ava", T0), vec![]).await;
    let got = events
        .events_after(ws, 0, &EventFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].id > latest, "ids are never reused");
    assert_eq!(events.prune_before(Timestamp(T0)).await.unwrap(), 0);
    assert_eq!(
        events.pruned_through().await.unwrap(),
        latest,
        "the mark never goes back"
    );
}

/// PostgreSQL: a store's subscribers are woken by another store's commit (LISTEN/NOTIFY), and
/// after the listening connection is cut, by the reconnect itself, so what was committed
/// while it was down is read from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listeners_hear_other_servers_and_recover_after_a_reconnect() {
    use parley_store::EventFilter;
    let Some(db) = parley_store::testing::TestDatabase::create().await else {
        return;
    };
    let open = || parley_store::postgres::PostgresStore::open(db.url(), Default::default());
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let ws = workspace(&a, "w").await;
    let deadline = std::time::Duration::from_secs(30);
    let mut wake = b.events().subscribe();
    // The first wake-up: B's LISTEN connection is up.
    tokio::time::timeout(deadline, wake.changed())
        .await
        .unwrap()
        .unwrap();
    let first = create(&a, ws, conv("Ava", T0), vec![]).await;
    tokio::time::timeout(deadline, wake.changed())
        .await
        .unwrap()
        .unwrap();
    let got = b
        .events()
        .events_after(ws, 0, &EventFilter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|e| e.conversation_id).collect::<Vec<_>>(),
        [Some(first)]
    );

    // Cut B's listening connection; commit on A while it is (or may be) down.
    let (admin, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let cut = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND query = 'LISTEN parley_events'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(cut, 1, "one listening connection");
    wake.borrow_and_update();
    let second = create(&a, ws, conv("Bo", T0), vec![]).await;
    // Woken by the notification or by the reconnect: either way the log has it.
    let mut seen = false;
    while !seen {
        tokio::time::timeout(deadline, wake.changed())
            .await
            .unwrap()
            .unwrap();
        let got = b
            .events()
            .events_after(ws, 0, &EventFilter::default(), 10)
            .await
            .unwrap();
        seen = got.iter().any(|e| e.conversation_id == Some(second));
    }
    // And it listens again: a later commit on A wakes B.
    tokio::time::timeout(deadline, async {
        loop {
            let n = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND query = 'LISTEN parley_events'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0);
            if n == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    wake.borrow_and_update();
    create(&a, ws, conv("Cy", T0), vec![]).await;
    tokio::time::timeout(deadline, wake.changed())
        .await
        .unwrap()
        .unwrap();
    drop(admin);
    let _ = driver.await;
}

/// Concurrent message updates and edits of one message, and appends to its conversation, all
/// succeed (the event log's ordering never deadlocks with row locks), each with its event.
async fn concurrent_event_writers_never_deadlock(store: Arc<dyn Store>) {
    use parley_store::{EventFilter, EventType};
    let ws = workspace(&*store, "w").await;
    let out = store
        .conversations()
        .ingest(
            ws,
            vec![new_batch(conv("Ava", T0), vec![msg(Role::User, "x", T0)])],
        )
        .await
        .unwrap();
    let (id, m) = match out[0].messages[0] {
        MessageOutcome::Stored { id } => (out[0].conversation_id, id),
        other => panic!("{other:?}"),
    };
    let start = store.events().latest_event_id().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => assert!(
                    store
                        .channels()
                        .update_message_channel(ws, m, None, &MessageMeta::default())
                        .await
                        .unwrap()
                ),
                1 => assert!(
                    store
                        .channels()
                        .edit_message(
                            ws,
                            m,
                            None,
                            Box::new(|t, _| {
                                t.push('.');
                                true
                            })
                        )
                        .await
                        .unwrap()
                ),
                _ => {
                    store
                        .conversations()
                        .ingest(
                            ws,
                            vec![IngestBatch {
                                target: IngestTarget::Existing(id),
                                messages: vec![msg(Role::User, "more", T0 + i)],
                            }],
                        )
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = store
        .events()
        .events_after(ws, start, &EventFilter::default(), 1000)
        .await
        .unwrap();
    let count = |t: EventType| got.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count(EventType::MessageUpdated), 16);
    assert_eq!(count(EventType::MessageCreated), 8);
    assert!(
        store
            .conversations()
            .delete_conversation(ws, id)
            .await
            .unwrap()
    );
}

/// Outgoing webhooks (issue 16): endpoints are scoped to their workspace; taking events is a
/// compare-and-set on the cursor; a claimed delivery is leased to one claimer, whose attempt
/// alone is recorded; "send again" makes it due again (refused while leased); the event log's
/// pruning keeps what an enabled endpoint has not taken, and a disabled one holds nothing.
async fn webhooks_take_claim_record_and_hold_retention(store: Arc<dyn Store>) {
    use parley_store::EventFilter;
    use parley_store::webhooks::{
        DeliveryAttempt, DeliveryStatus, NewWebhookDelivery, WebhookEndpoint, WebhookEndpointPatch,
    };
    let (ws, other) = (workspace(&*store, "w").await, workspace(&*store, "o").await);
    let start = store.events().latest_event_id().await.unwrap();
    let now = Timestamp::now();
    let endpoint = WebhookEndpoint {
        id: uuid::Uuid::now_v7(),
        workspace_id: ws,
        url: "https://hooks.example/in".into(),
        description: "CRM".into(),
        event_types: vec!["conversation.created".into(), "message.created".into()],
        enabled: true,
        secret_sealed: "sealed".into(),
        cursor: start,
        created_at: now,
        updated_at: now,
    };
    let hooks = store.webhooks();
    hooks.create_webhook(&endpoint).await.unwrap();
    assert_eq!(
        hooks.list_webhooks(ws).await.unwrap(),
        vec![endpoint.clone()]
    );
    assert!(hooks.list_webhooks(other).await.unwrap().is_empty());
    assert_eq!(hooks.get_webhook(other, endpoint.id).await.unwrap(), None);
    let p = WebhookEndpointPatch {
        description: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(
        hooks
            .update_webhook(other, endpoint.id, &p, now)
            .await
            .unwrap(),
        None
    );
    assert!(!hooks.delete_webhook(other, endpoint.id).await.unwrap());

    create(
        &*store,
        ws,
        conv("Ava", T0),
        vec![msg(Role::User, "hi", T0 + 1)],
    )
    .await;
    create(
        &*store,
        other,
        conv("Ava", T0),
        vec![msg(Role::User, "yo", T0 + 1)],
    )
    .await;
    let mine = store
        .events()
        .events_after(ws, start, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    // The hold: nothing of `ws` after the cursor is pruned; the other workspace's events are.
    let future = Timestamp(Timestamp::now().0 + 60_000);
    assert_eq!(store.events().prune_before(future).await.unwrap(), 2);
    let kept = store
        .events()
        .events_after(ws, start, &EventFilter::default(), 100)
        .await
        .unwrap();
    assert_eq!(kept, mine, "an enabled endpoint's untaken events stay");

    let latest = store.events().latest_event_id().await.unwrap();
    let deliveries: Vec<NewWebhookDelivery> = mine
        .iter()
        .map(|e| NewWebhookDelivery {
            id: uuid::Uuid::now_v7(),
            event_id: e.id,
            event_type: e.event_type.as_str().into(),
            body: format!("{{\"n\":{}}}", e.id),
        })
        .collect();
    let until = Timestamp(now.0 + 86_400_000);
    assert!(
        hooks
            .take(endpoint.id, start, latest, &deliveries, now, until)
            .await
            .unwrap()
    );
    assert!(
        !hooks
            .take(endpoint.id, start, latest, &deliveries, now, until)
            .await
            .unwrap(),
        "a second take from the same cursor writes nothing"
    );
    assert_eq!(
        hooks
            .get_webhook(ws, endpoint.id)
            .await
            .unwrap()
            .unwrap()
            .cursor,
        latest
    );
    // Taken: now the log may go.
    assert_eq!(store.events().prune_before(future).await.unwrap(), 2);

    let lease = Timestamp(Timestamp::now().0 + 60_000);
    let claimed = hooks
        .claim_deliveries("a", Timestamp::now(), lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed
            .iter()
            .all(|d| d.attempts == 1 && d.workspace_id == ws)
    );
    assert!(
        hooks
            .claim_deliveries("b", Timestamp::now(), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased deliveries go to no one else"
    );
    let first = claimed[0].id;
    let retry = DeliveryAttempt {
        status: DeliveryStatus::Pending,
        next_attempt_at: Some(Timestamp::now()),
        attempted_at: Timestamp::now(),
        http_status: Some(500),
        response_ms: 12,
        response_excerpt: Some("oops".into()),
        error: Some("HTTP 500".into()),
    };
    assert!(!hooks.record_attempt(first, "b", &retry).await.unwrap());
    assert!(hooks.record_attempt(first, "a", &retry).await.unwrap());
    assert!(
        matches!(
            hooks
                .resend_delivery(ws, endpoint.id, claimed[1].id, Timestamp::now(), until)
                .await,
            Err(StoreError::Conflict {
                code: "delivery_in_flight",
                ..
            })
        ),
        "a leased delivery cannot be sent again meanwhile"
    );
    let again = hooks
        .claim_deliveries("b", Timestamp::now(), lease, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (first, 2));
    let done = DeliveryAttempt {
        status: DeliveryStatus::Succeeded,
        next_attempt_at: None,
        http_status: Some(204),
        error: None,
        response_excerpt: Some(String::new()),
        ..retry
    };
    assert!(hooks.record_attempt(first, "b", &done).await.unwrap());
    let log = hooks
        .list_deliveries(ws, endpoint.id, None, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 2);
    let d = log.iter().find(|d| d.id == first).unwrap();
    assert_eq!(
        (d.status, d.attempts, d.http_status, d.next_attempt_at),
        (DeliveryStatus::Succeeded, 2, Some(204), None)
    );
    assert_eq!(log[0].id, claimed[1].id.max(first), "newest first");
    let page = hooks
        .list_deliveries(ws, endpoint.id, Some(log[0].id), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert!(
        hooks
            .list_deliveries(other, endpoint.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        hooks
            .resend_delivery(other, endpoint.id, first, Timestamp::now(), until)
            .await
            .unwrap(),
        None
    );
    let resent = hooks
        .resend_delivery(ws, endpoint.id, first, Timestamp::now(), until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resent.status, DeliveryStatus::Pending);

    // Disabled: nothing is claimed, nothing held; enabled again, it starts where it is told.
    let off = WebhookEndpointPatch {
        enabled: Some(false),
        ..Default::default()
    };
    let e = hooks
        .update_webhook(ws, endpoint.id, &off, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert!(!e.enabled);
    assert!(hooks.enabled_webhooks().await.unwrap().is_empty());
    assert!(
        hooks
            .claim_deliveries("c", Timestamp(Timestamp::now().0 + 120_000), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let on = WebhookEndpointPatch {
        enabled: Some(true),
        cursor: Some(latest + 1000),
        ..Default::default()
    };
    let e = hooks
        .update_webhook(ws, endpoint.id, &on, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.enabled, e.cursor), (true, latest + 1000));
    let again_on = hooks
        .update_webhook(ws, endpoint.id, &on, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again_on.cursor,
        latest + 1000,
        "the cursor moves only when re-enabled"
    );
    assert!(hooks.delete_webhook(ws, endpoint.id).await.unwrap());
    assert!(
        hooks
            .list_deliveries(ws, endpoint.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

macro_rules! backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            use super::*;

            async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
                let dir = tempfile::tempdir().unwrap();
                let store = parley_store::sqlite::SqliteStore::open(
                    dir.path().join("parley.db"),
                    parley_store::sqlite::SqliteOptions::default(),
                )
                .await
                .unwrap();
                (dir, Arc::new(store))
            }

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (_dir, store) = store().await;
                    super::$test(store).await;
                }
            )+
        }
        mod postgres {
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = parley_store::testing::TestDatabase::create().await else { return };
                    let store = parley_store::postgres::PostgresStore::open(db.url(), parley_store::postgres::PostgresOptions { pool_size: 8, ..Default::default() })
                        .await
                        .unwrap();
                    super::$test(Arc::new(store)).await;
                }
            )+
        }
    };
}

/// The team's marks (issue 14): take over, a hand-off ("Needs a human", with its
/// `handoff.requested` event) and the assignee are written by a patch, read back on the list
/// row and the record, filter the list (Needs attention, Mine, Unassigned) and clear again.
async fn team_marks_round_trip_and_filter(store: Arc<dyn Store>) {
    use parley_core::model::Handoff;
    use parley_core::query::AssigneeFilter;
    use parley_store::{EventFilter, events::EventType};
    let ws = workspace(&*store, "w").await;
    let a = create(
        &*store,
        ws,
        conv("Ava", T0),
        vec![msg(Role::User, "a person please", T0 + 1)],
    )
    .await;
    let b = create(
        &*store,
        ws,
        conv("Ava", T0 + 5),
        vec![msg(Role::User, "hi", T0 + 6)],
    )
    .await;
    let member = store
        .auth()
        .create_user(ws, "dana@example.com", "x", parley_core::UserRole::Member)
        .await
        .unwrap();
    let after = store.events().latest_event_id().await.unwrap();
    let at = Timestamp(T0 + 100);
    let d = store
        .conversations()
        .update_conversation(
            ws,
            a,
            &ConversationPatch {
                taken_over: Some(Some(at)),
                handoff: Some(Some(Handoff {
                    reason: "asks for a person".into(),
                    requested_at: at,
                })),
                assignee: Some(Some(member.id)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let s = &d.summary;
    assert_eq!(s.taken_over_at, Some(at));
    assert_eq!(
        s.handoff,
        Some(Handoff {
            reason: "asks for a person".into(),
            requested_at: at
        })
    );
    assert_eq!(s.assignee_id, Some(member.id));
    let filter = |f: ConversationFilter| list(f, "-date", 50);
    let needs = ConversationFilter {
        needs_human: true,
        ..Default::default()
    };
    assert_eq!(ids(&*store, ws, filter(needs.clone())).await, [a]);
    assert_eq!(
        store
            .conversations()
            .count_conversations(ws, &needs)
            .await
            .unwrap()
            .count,
        1
    );
    let mine = ConversationFilter {
        assignee: Some(AssigneeFilter::User(member.id)),
        ..Default::default()
    };
    assert_eq!(ids(&*store, ws, filter(mine.clone())).await, [a]);
    let nobody = ConversationFilter {
        assignee: Some(AssigneeFilter::Unassigned),
        ..Default::default()
    };
    assert_eq!(ids(&*store, ws, filter(nobody.clone())).await, [b]);
    let page = store
        .conversations()
        .list_conversations(ws, &filter(needs.clone()))
        .await
        .unwrap();
    assert_eq!(
        page.items[0].conversation.taken_over_at,
        Some(at),
        "on the list row too"
    );
    let events = store
        .events()
        .events_after(
            ws,
            after,
            &EventFilter {
                types: vec![EventType::HandoffRequested, EventType::ConversationUpdated],
                ..Default::default()
            },
            10,
        )
        .await
        .unwrap();
    let kinds: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        kinds,
        [EventType::ConversationUpdated, EventType::HandoffRequested]
    );
    assert_eq!(events[1].data["reason"], "asks for a person");
    assert_eq!(
        events[0].data["fields"],
        serde_json::json!(["taken_over_at", "handoff", "assignee_id"])
    );
    // Cleared again.
    let d = store
        .conversations()
        .update_conversation(
            ws,
            a,
            &ConversationPatch {
                taken_over: Some(None),
                handoff: Some(None),
                assignee: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            d.summary.taken_over_at,
            d.summary.handoff,
            d.summary.assignee_id
        ),
        (None, None, None)
    );
    assert!(ids(&*store, ws, filter(needs)).await.is_empty());
    assert_eq!(ids(&*store, ws, filter(nobody)).await.len(), 2);
    assert!(ids(&*store, ws, filter(mine)).await.is_empty());
}

backends!(
    workspaces_and_api_keys,
    assistants_are_unique_by_name_and_company,
    assistants_keep_versions,
    message_meta_round_trips,
    ingest_keeps_counters,
    ingest_is_idempotent,
    ingest_batches_are_atomic,
    patch_updates_and_merges,
    keyset_pagination_covers_every_sort,
    filters_combine_with_and,
    filtered_pages_agree_under_every_sort,
    sparse_keys_under_a_date_range_page_exactly,
    search_is_case_insensitive_substring,
    transcript_pages,
    delete_leaves_no_trace,
    workspaces_are_isolated,
    concurrent_appends_lose_nothing,
    users_sessions_and_login_failures,
    login_attempts_are_claimed_atomically,
    concurrent_batches_in_opposite_orders_all_succeed,
    channel_connections_and_message_updates,
    jobs_are_claimed_once_and_survive_their_worker,
    concurrent_claims_never_share_a_job,
    inbox_leases_and_rate_windows,
    concurrent_edits_lose_nothing,
    attachment_usage_is_maintained_and_bounded,
    widgets_are_found_by_assistant_and_key,
    tracker_records_a_visit_and_follows_its_conversations,
    transfer_imports_records_verbatim,
    insights_are_stored_per_conversation,
    events_follow_every_write,
    events_are_pruned_and_remembered,
    concurrent_event_writers_never_deadlock,
    insight_watermarks_lease_and_order,
    team_marks_round_trip_and_filter,
    webhooks_take_claim_record_and_hold_retention,
);

/// SQLite only: the three search strategies give the same pages and counts — the bounded walk
/// (the default, which answers common terms), the index probe alone, and the full walk alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_strategies_agree() {
    use parley_store::sqlite::{SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parley.db");
    let default = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let ws = workspace(&default, "w").await;
    for i in 0..40i64 {
        let text = if i % 3 == 0 {
            format!("Common phrase {i}")
        } else {
            format!("other {i}")
        };
        create(
            &default,
            ws,
            conv("Ava", T0 + i),
            vec![msg(Role::User, &text, T0 + i)],
        )
        .await;
    }
    let probe_only = SqliteStore::open(
        &path,
        SqliteOptions {
            search_bounded_walk: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let walk_only = SqliteStore::open(
        &path,
        SqliteOptions {
            search_bounded_walk: 0,
            search_probe_limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let small_walk = SqliteStore::open(
        &path,
        SqliteOptions {
            search_bounded_walk: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for term in ["COMMON phr", "other 1", "phrase 39"] {
        for sort in Sort::ALL {
            let query = ListQuery {
                filter: q(term),
                sort,
                limit: 5,
                cursor: None,
            };
            let expected = default
                .conversations()
                .list_conversations(ws, &query)
                .await
                .unwrap();
            for other in [&probe_only, &walk_only, &small_walk] {
                assert_eq!(
                    other
                        .conversations()
                        .list_conversations(ws, &query)
                        .await
                        .unwrap(),
                    expected,
                    "{term} {sort}"
                );
            }
        }
    }
    for store in [&default, &probe_only, &walk_only] {
        assert_eq!(
            store
                .conversations()
                .count_conversations(ws, &q("common"))
                .await
                .unwrap()
                .count,
            14
        );
    }
}

/// Filters x search x every sort against a brute-force scan: a few hundred generated
/// conversations, every subset of the list's filters (status, channel, assistant, min_rating,
/// date range) with no search and with terms of every kind (common, medium, rare, two letters,
/// a session id, absent), under every sort, paged through their cursors. Each page sequence
/// must be exactly the rows a scan of the conversations and their messages finds, in sort
/// order. Run on each store in `stores` (the same database opened with different search
/// tunings, so the walk, the probe and their fallbacks all answer); the first one writes.
async fn filter_search_sort_matches_brute_force(stores: Vec<Arc<dyn Store>>) {
    let writer = &*stores[0];
    let ws = workspace(writer, "w").await;
    let agents = ["Ava", "Zed", "Mia", "Bo Support"];
    let channels = [
        Channel::Widget,
        Channel::Whatsapp,
        Channel::Telegram,
        Channel::Api,
    ];
    let statuses = [
        ConversationStatus::Active,
        ConversationStatus::Closed,
        ConversationStatus::Closed,
        ConversationStatus::Archived,
    ];
    let words = [
        "hello", "booking", "table", "train", "hotel", "weather", "okay", "thanks", "ticket",
    ];
    // A small deterministic generator (xorshift), so the corpus is the same on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let n = 260i64;
    let mut texts: std::collections::HashMap<ConversationId, Vec<String>> = Default::default();
    let mut batches = Vec::new();
    let mut batch_texts = Vec::new();
    for i in 0..n {
        let mut c = conv(
            agents[next(4) as usize],
            T0 + i * 60_000 + next(30_000) as i64,
        );
        c.channel = channels[next(4) as usize];
        c.status = statuses[next(4) as usize];
        c.session_id = Some(format!("sess-{i:04x}"));
        c.contact = (next(3) > 0).then(|| format!("+49 170 {:05}", next(100_000)));
        if next(10) < 6 {
            c.rating = Some((
                Rating {
                    score: next(5) as u8 + 1,
                    comment: None,
                    rated_at: None,
                },
                Timestamp(T0),
            ));
        }
        let mut visible = Vec::new();
        let mut messages = Vec::new();
        for k in 0..next(7) {
            let mut text = format!(
                "{} {} {}",
                words[next(9) as usize],
                words[next(9) as usize],
                i
            );
            match next(100) {
                0..=1 => text.push_str(" Quokkaberry!"),
                2..=19 => text.push_str(" see FERNWOOD."),
                _ => {}
            }
            let role = if k % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            // A hidden message with a term: never found by it.
            if next(20) == 0 {
                messages.push(msg(
                    Role::System,
                    "hidden fernwood quokkaberry",
                    T0 + i * 60_000 + 40_000,
                ));
            }
            messages.push(msg(role, &text, T0 + i * 60_000 + 40_000 + k as i64));
            visible.push(text);
        }
        let id = c.id;
        batches.push(new_batch(c, messages));
        batch_texts.push((id, visible));
        if batches.len() == 50 || i == n - 1 {
            let out = writer
                .conversations()
                .ingest(ws, std::mem::take(&mut batches))
                .await
                .unwrap();
            for (o, (id, t)) in out.iter().zip(batch_texts.drain(..)) {
                assert_eq!(o.conversation_id, id);
                texts.insert(id, t);
            }
        }
    }
    let mut everything = Vec::new();
    let mut query = list(Default::default(), "-date", 100);
    loop {
        let page = writer
            .conversations()
            .list_conversations(ws, &query)
            .await
            .unwrap();
        everything.extend(page.items.into_iter().map(|i| i.conversation));
        match page.next_cursor {
            Some(c) => query.cursor = Some(Cursor::decode(&c, query.sort).unwrap()),
            None => break,
        }
    }
    assert_eq!(everything.len(), n as usize);
    let ava = everything
        .iter()
        .find(|c| c.assistant.name == "Ava")
        .unwrap()
        .assistant
        .id;
    let order = |sort: Sort, s: &parley_core::model::ConversationSummary| {
        if sort.key_name() == "created" {
            (String::new(), 0, s.id)
        } else {
            sort_key(sort, s)
        }
    };
    let terms: [Option<&str>; 7] = [
        None,
        Some("booking"),
        Some("fernwood"),
        Some("QUOKKABERRY"),
        Some("ok"),
        Some("sess-00a"),
        Some("xqzvjw"),
    ];
    let (from, to) = (T0 + 60 * 60_000, T0 + 170 * 60_000);
    for term in terms {
        for mask in 0..32u32 {
            let filter = ConversationFilter {
                statuses: if mask & 1 != 0 {
                    vec![ConversationStatus::Closed]
                } else {
                    vec![]
                },
                channels: if mask & 2 != 0 {
                    vec![Channel::Whatsapp, Channel::Telegram]
                } else {
                    vec![]
                },
                assistants: if mask & 4 != 0 { vec![ava] } else { vec![] },
                min_rating: (mask & 8 != 0).then_some(3),
                from: (mask & 16 != 0).then_some(Timestamp(from)),
                to: (mask & 16 != 0).then_some(Timestamp(to)),
                q: term.map(str::to_owned),
                // The insight filters have stories of their own (insights tests).
                ..Default::default()
            };
            let matches = |c: &parley_core::model::ConversationSummary| {
                let t = term.map(str::to_lowercase);
                (filter.statuses.is_empty() || filter.statuses.contains(&c.status))
                    && (filter.channels.is_empty() || filter.channels.contains(&c.channel))
                    && (filter.assistants.is_empty() || filter.assistants.contains(&c.assistant.id))
                    && filter
                        .min_rating
                        .is_none_or(|m| c.rating.as_ref().is_some_and(|r| r.score >= m))
                    && filter.from.is_none_or(|f| c.last_message_at >= f)
                    && filter.to.is_none_or(|t| c.last_message_at < t)
                    && t.is_none_or(|t| {
                        let has = |s: &str| s.to_lowercase().contains(&t);
                        c.session_id.as_deref().is_some_and(has)
                            || c.contact.as_deref().is_some_and(has)
                            || has(&c.assistant.name)
                            || texts[&c.id].iter().any(|m| has(m))
                    })
            };
            for sort in Sort::ALL {
                let mut expected: Vec<_> = everything.iter().filter(|c| matches(c)).collect();
                expected.sort_by_key(|c| order(sort, c));
                if sort.descending {
                    expected.reverse();
                }
                let expected: Vec<ConversationId> = expected.iter().map(|c| c.id).collect();
                for (k, store) in stores.iter().enumerate() {
                    let mut query = list(filter.clone(), &sort.to_string(), 25);
                    let mut got = Vec::new();
                    loop {
                        let page = store
                            .conversations()
                            .list_conversations(ws, &query)
                            .await
                            .unwrap();
                        for item in &page.items {
                            assert_eq!(
                                item.search_match.is_some(),
                                term.is_some(),
                                "store {k}, {sort}, {filter:?}: a match with every searched row"
                            );
                        }
                        got.extend(page.items.into_iter().map(|i| i.conversation.id));
                        match page.next_cursor {
                            Some(c) => query.cursor = Some(Cursor::decode(&c, sort).unwrap()),
                            None => break,
                        }
                    }
                    assert_eq!(got, expected, "store {k}, {sort}, {filter:?}");
                }
            }
            if term.is_some() || mask != 0 {
                let count = writer
                    .conversations()
                    .count_conversations(ws, &filter)
                    .await
                    .unwrap();
                let n = everything.iter().filter(|c| matches(c)).count() as u64;
                assert!(
                    count.count == n || (!count.exact && count.count <= n),
                    "{filter:?}: count {count:?}, expected {n}"
                );
            }
        }
    }
}

/// SQLite: [`filter_search_sort_matches_brute_force`] with the default tuning, a short bounded
/// walk and a small probe (so the walk falls through to the probe and the probe to the full
/// walk), and the probe alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_filter_search_sort_matches_brute_force() {
    use parley_store::sqlite::{SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parley.db");
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for (walk, probe) in [(None, None), (Some(12), Some(6)), (Some(0), None)] {
        let defaults = SqliteOptions::default();
        let options = SqliteOptions {
            search_bounded_walk: walk.unwrap_or(defaults.search_bounded_walk),
            search_probe_limit: probe.unwrap_or(defaults.search_probe_limit),
            ..defaults
        };
        stores.push(Arc::new(SqliteStore::open(&path, options).await.unwrap()));
    }
    filter_search_sort_matches_brute_force(stores).await;
}

/// PostgreSQL: the same story as `sqlite_filter_search_sort_matches_brute_force` (default
/// tuning, and the short walk with the small probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_filter_search_sort_matches_brute_force() {
    use parley_store::postgres::{PostgresOptions, PostgresStore};
    let Some(db) = parley_store::testing::TestDatabase::create().await else {
        return;
    };
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    // Two tunings (the third of SQLite's adds little here and costs a minute in CI).
    for (walk, probe) in [(None, None), (Some(12), Some(6))] {
        let defaults = PostgresOptions::default();
        let options = PostgresOptions {
            pool_size: 4,
            search_bounded_walk: walk.unwrap_or(defaults.search_bounded_walk),
            search_probe_limit: probe.unwrap_or(defaults.search_probe_limit),
        };
        stores.push(Arc::new(
            PostgresStore::open(db.url(), options).await.unwrap(),
        ));
    }
    filter_search_sort_matches_brute_force(stores).await;
}

/// The migration files of `dialect` as today's directory holds them: (version, name, SQL), in
/// order of version, read from disk (not from the store's embedded list).
fn migration_files(dialect: &str) -> Vec<(i64, String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let (version, name) = stem.split_once('_').unwrap();
            let sql = std::fs::read_to_string(&path).unwrap();
            (version.parse().unwrap(), name.to_owned(), sql)
        })
        .collect();
    files.sort_by_key(|f| f.0);
    files
}

/// SQLite: a database migrated the way Parley did before the shared runner (its own record
/// table, one transaction per file) opens without re-running anything, keeps its data, and its
/// record of applied versions is left exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opens_a_database_migrated_by_the_old_runner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let files = migration_files("sqlite");
    assert_eq!(
        files.iter().map(|f| f.0).collect::<Vec<_>>(),
        [
            1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21, 22, 25, 26
        ]
    );
    let records = |conn: &rusqlite::Connection| -> Vec<(i64, String, i64)> {
        let mut st = conn
            .prepare("SELECT version, name, applied_at FROM parley_migrations ORDER BY version")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let before = {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS parley_migrations (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .unwrap();
        for (version, name, sql) in &files {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.execute(
                "INSERT INTO parley_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, 1000 + version],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        conn.execute(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES (?1, 'old', 'Old', 0)",
            [WorkspaceId::new().as_bytes().to_vec()],
        )
        .unwrap();
        records(&conn)
    };
    assert_eq!(before.len(), files.len());
    let store = parley_store::sqlite::SqliteStore::open(
        &path,
        parley_store::sqlite::SqliteOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .workspaces()
            .workspace_by_slug("old")
            .await
            .unwrap()
            .unwrap()
            .name,
        "Old"
    );
    store.close().await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(
        records(&conn),
        before,
        "nothing re-ran or was recorded again"
    );
}

/// PostgreSQL: the same story as `sqlite_opens_a_database_migrated_by_the_old_runner`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_opens_a_database_migrated_by_the_old_runner() {
    let Some(db) = parley_store::testing::TestDatabase::create().await else {
        return;
    };
    let files = migration_files("postgres");
    assert_eq!(
        files.iter().map(|f| f.0).collect::<Vec<_>>(),
        [
            1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 24, 25
        ]
    );
    let (mut client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    async fn records(client: &tokio_postgres::Client) -> Vec<(i64, String, i64)> {
        client
            .query(
                "SELECT version, name, applied_at FROM parley_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS parley_migrations (
             version bigint PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
    )
    .await
    .unwrap();
    for (version, name, sql) in &files {
        tx.batch_execute(sql).await.unwrap();
        tx.execute(
            "INSERT INTO parley_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[version, name, &(1000 + version)],
        )
        .await
        .unwrap();
    }
    tx.execute(
        "INSERT INTO workspaces (id, slug, name, created_at) VALUES ($1, 'old', 'Old', 0)",
        &[&uuid::Uuid::now_v7()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let before = records(&client).await;
    assert_eq!(before.len(), files.len());
    let store = parley_store::postgres::PostgresStore::open(db.url(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .workspaces()
            .workspace_by_slug("old")
            .await
            .unwrap()
            .unwrap()
            .name,
        "Old"
    );
    assert_eq!(
        records(&client).await,
        before,
        "nothing re-ran or was recorded again"
    );
    drop(store);
    drop(client);
    let _ = driver.await;
}
