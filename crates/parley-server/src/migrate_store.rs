//! `parley migrate-store --from URL --to URL`: copies one workspace between stores (typically
//! from the embedded SQLite to PostgreSQL, when a team outgrows one machine) without loss.
//!
//! Everything keeps its id: the workspace, assistants, users (with their password hashes, so
//! they sign in as before), API keys (with their hashes, so clients keep working) and every
//! conversation and message. Conversations are copied in creation order, a page of 100 per
//! transaction, through the store's ingest with the original ids, so an interrupted migration
//! can simply be run again: what was copied is recognised and skipped. Sign-in sessions are not
//! copied (people sign in again).
//!
//! Verification: the conversation totals must match, and a SHA-256 digest computed the same way
//! on both sides must match: over every assistant (settings and version history, by name), then
//! every conversation's list row (counters, tokens, cost, dates, rating, assistant) and its full
//! JSONL export (every field and message), in creation order. Sealed provider keys are copied as
//! they are: the target server needs the same secret key (`PARLEY_SECRET_KEY`) to use them.

use std::fmt::Write as _;

use parley_core::model::{AssistantRef, ConversationExport, Workspace};
use parley_core::query::{Cursor, ListQuery, Sort, SortKey};
use parley_store::{IngestBatch, IngestTarget, NewConversation, NewMessage, Store};
use sha2::{Digest, Sha256};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Conversations per page (and per target transaction).
const PAGE: u32 = 100;

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The workspace's slug.
    pub workspace: String,
    /// Assistants in the source.
    pub assistants: usize,
    /// Users in the source.
    pub users: usize,
    /// API keys in the source.
    pub api_keys: usize,
    /// Conversations created in the target by this run.
    pub conversations_copied: u64,
    /// Conversations the target already had (a resumed migration).
    pub conversations_present: u64,
    /// Messages stored in the target by this run.
    pub messages_copied: u64,
    /// Conversation totals of source and target after the copy.
    pub totals: (u64, u64),
    /// SHA-256 digests of source and target (hex).
    pub digests: (String, String),
}

impl MigrationReport {
    /// Whether the target holds exactly the source's data.
    pub fn verified(&self) -> bool {
        self.totals.0 == self.totals.1 && self.digests.0 == self.digests.1
    }
}

fn to_batch(c: &ConversationExport) -> IngestBatch {
    let s = &c.detail.summary;
    let conversation = NewConversation {
        id: s.id,
        id_from_client: true,
        external_id: s.external_id.clone(),
        assistant: AssistantRef {
            id: Some(s.assistant.id),
            name: None,
            company: None,
        },
        channel: s.channel,
        status: s.status,
        contact: s.contact.clone(),
        session_id: s.session_id.clone(),
        started_at: s.started_at,
        ended_at: s.ended_at,
        end_reason: s.end_reason.clone(),
        rating: s.rating.as_ref().map(|r| {
            (
                parley_core::model::Rating {
                    score: r.score,
                    comment: r.comment.clone(),
                    rated_at: Some(r.rated_at),
                },
                r.rated_at,
            )
        }),
        sentiment: s.sentiment.clone(),
        converted: s.converted,
        variables: c.detail.variables.clone(),
        memory: c.detail.memory.clone(),
        assistant_version: c.detail.assistant_version,
    };
    let messages = c
        .messages
        .iter()
        .map(|m| NewMessage {
            id: m.id,
            id_from_client: true,
            external_id: m.external_id.clone(),
            role: m.role,
            content: m.content.clone(),
            created_at: m.created_at,
            model: m.model.clone(),
            usage: m.usage,
            cost_nanousd: m.cost_nanousd,
            cost_source: m.cost_source,
            meta: m.meta.clone(),
        })
        .collect();
    IngestBatch {
        target: IngestTarget::New(Box::new(conversation)),
        messages,
    }
}

/// Visits the workspace's conversations in creation order, a page at a time.
async fn for_each_page<F>(
    store: &dyn Store,
    workspace: &Workspace,
    mut f: F,
) -> Result<(), BoxError>
where
    F: AsyncFnMut(
        Vec<parley_store::ListedConversation>,
        Vec<ConversationExport>,
    ) -> Result<(), BoxError>,
{
    let mut query = ListQuery {
        filter: Default::default(),
        sort: Sort {
            key: SortKey::Created,
            descending: false,
        },
        limit: PAGE,
        cursor: None,
    };
    loop {
        let page = store
            .conversations()
            .list_conversations(workspace.id, &query)
            .await?;
        let ids: Vec<_> = page.items.iter().map(|i| i.conversation.id).collect();
        let full = store
            .conversations()
            .export_conversations(workspace.id, &ids)
            .await?;
        f(page.items, full).await?;
        match page.next_cursor {
            Some(c) => query.cursor = Some(Cursor::decode(&c, query.sort)?),
            None => return Ok(()),
        }
    }
}

/// The digest described in the module docs.
pub async fn digest(store: &dyn Store, workspace: &Workspace) -> Result<String, BoxError> {
    let mut hasher = Sha256::new();
    // Assistants with their settings and every version, then the conversations.
    for a in store.assistants().list_assistants(workspace.id).await? {
        hasher.update(serde_json::to_vec(&a)?);
        let versions = store
            .assistants()
            .assistant_versions(workspace.id, a.id)
            .await?;
        hasher.update(serde_json::to_vec(&versions)?);
        hasher.update(b"\n");
    }
    for_each_page(store, workspace, async |rows, full| {
        for (row, export) in rows.iter().zip(&full) {
            hasher.update(serde_json::to_vec(&row.conversation)?);
            hasher.update(serde_json::to_vec(&export.to_input())?);
            hasher.update(b"\n");
        }
        Ok(())
    })
    .await?;
    let mut hex = String::with_capacity(64);
    for b in hasher.finalize() {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// Copies the workspace `slug` (or the only one) from `from` to `to`, then verifies.
/// `progress` is called after every page with the conversations done so far.
/// Errors: the workspace is unknown or ambiguous, exists in the target with another id, or a
/// store fails (what was copied stays, and a new run resumes).
pub async fn migrate(
    from: &dyn Store,
    to: &dyn Store,
    slug: Option<&str>,
    mut progress: impl FnMut(u64),
) -> Result<MigrationReport, BoxError> {
    let ws = crate::workspaces::select_existing_workspace(from, slug).await?;
    match to.workspaces().workspace_by_slug(&ws.slug).await? {
        Some(existing) if existing.id != ws.id => {
            return Err(format!(
                "the target already has a different workspace {:?}; migrate into an empty database",
                ws.slug
            )
            .into());
        }
        Some(_) => {} // a resumed migration
        None => to.transfer().import_workspace(&ws).await?,
    }
    let mut report = MigrationReport {
        workspace: ws.slug.clone(),
        ..Default::default()
    };
    let assistants = from.assistants().list_assistants(ws.id).await?;
    for a in &assistants {
        let versions = from
            .assistants()
            .assistant_versions(ws.id, a.id)
            .await?
            .unwrap_or_default();
        to.transfer().import_assistant(ws.id, a, &versions).await?;
    }
    report.assistants = assistants.len();
    let users = from.transfer().export_users(ws.id).await?;
    for (u, hash) in &users {
        to.transfer().import_user(u, hash).await?;
    }
    report.users = users.len();
    let keys = from.transfer().export_api_keys(ws.id).await?;
    for (k, hash) in &keys {
        to.transfer().import_api_key(k, *hash).await?;
    }
    report.api_keys = keys.len();
    // The workspace's time zone and analysis switch, when it ever saved them (pending invites
    // are not copied: their links are made anew on the target).
    let settings = from.settings().workspace_settings(ws.id).await?;
    if let Some(at) = settings.updated_at {
        to.settings()
            .save_workspace_settings(ws.id, &settings, at)
            .await?;
    }

    let mut done = 0u64;
    for_each_page(from, &ws, async |_, full| {
        // The attachment files the messages keep (their bytes stay in the data directory):
        // recorded in the target so they count against the workspace's quota there too.
        for m in full.iter().flat_map(|c| &c.messages) {
            for a in m.meta.channel.iter().flat_map(|c| &c.attachments) {
                if let Some(key) = a
                    .storage_key
                    .as_deref()
                    .filter(|k| crate::channels::media::key_of_workspace(ws.id, k))
                {
                    let size = a.size_bytes.unwrap_or(0);
                    to.attachments()
                        .record_attachment(ws.id, key, size, None, m.created_at)
                        .await?;
                }
            }
        }
        let batches: Vec<IngestBatch> = full.iter().map(to_batch).collect();
        for outcome in to.conversations().ingest(ws.id, batches).await? {
            if outcome.created {
                report.conversations_copied += 1;
            } else {
                report.conversations_present += 1;
            }
            report.messages_copied += outcome.stored() as u64;
        }
        done += full.len() as u64;
        progress(done);
        Ok(())
    })
    .await?;

    report.totals = (
        from.conversations().conversation_total(ws.id).await?,
        to.conversations().conversation_total(ws.id).await?,
    );
    report.digests = (digest(from, &ws).await?, digest(to, &ws).await?);
    Ok(report)
}
