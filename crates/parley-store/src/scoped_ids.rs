//! Client-given ids that another workspace already uses.
//!
//! Conversation and message ids are unique across the whole database, and a client may choose
//! them (an import of an export keeps Parley's ids, so a re-import stores nothing twice). When
//! a client of workspace B sends an id that workspace A already uses, refusing it (409) would
//! tell B that the id exists somewhere else. Instead the record is stored in B under a stand-in
//! id, [`scoped_id`]: derived from B's id and the client's, so the same request (a retried or
//! repeated import) finds the same stand-in and stores nothing twice, and it answers as for any
//! create. The stand-in keeps the client id's first 48 bits (a UUIDv7's millisecond time), so
//! it sorts where the original would.
//!
//! Both backends run [`scope_foreign_ids`] inside their ingest transaction, after asking which
//! of the batch's client ids ([`client_ids`]) belong to another workspace.

use std::collections::HashSet;

use parley_core::{ConversationId, MessageId, WorkspaceId};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{IngestBatch, IngestTarget};

/// The id that stands in, in `workspace`, for the client-given `id` another workspace uses: a
/// UUIDv7 with `id`'s first 48 bits and 74 bits of SHA-256 over the workspace and `id`.
pub fn scoped_id(workspace: WorkspaceId, id: Uuid) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"parley scoped id\0")
        .chain_update(workspace.0.as_bytes())
        .chain_update(id.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&id.as_bytes()[..6]);
    b[6..].copy_from_slice(&digest[..10]);
    b[6] = (b[6] & 0x0f) | 0x70; // version 7
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    Uuid::from_bytes(b)
}

/// The client-given ids of `batches`: (conversation ids, message ids).
pub(crate) fn client_ids(batches: &[IngestBatch]) -> (Vec<Uuid>, Vec<Uuid>) {
    let conversations = batches
        .iter()
        .filter_map(|b| match &b.target {
            IngestTarget::New(nc) if nc.id_from_client => Some(nc.id.0),
            _ => None,
        })
        .collect();
    let messages = batches
        .iter()
        .flat_map(|b| &b.messages)
        .filter(|m| m.id_from_client)
        .map(|m| m.id.0)
        .collect();
    (conversations, messages)
}

/// Replaces each client-given conversation id in `foreign_conversations` and message id in
/// `foreign_messages` (those another workspace uses) with its [`scoped_id`] in `workspace`.
pub(crate) fn scope_foreign_ids(
    batches: &mut [IngestBatch],
    workspace: WorkspaceId,
    foreign_conversations: &HashSet<Uuid>,
    foreign_messages: &HashSet<Uuid>,
) {
    for b in batches {
        if let IngestTarget::New(nc) = &mut b.target
            && nc.id_from_client
            && foreign_conversations.contains(&nc.id.0)
        {
            nc.id = ConversationId(scoped_id(workspace, nc.id.0));
        }
        for m in &mut b.messages {
            if m.id_from_client && foreign_messages.contains(&m.id.0) {
                m.id = MessageId(scoped_id(workspace, m.id.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_are_stable_v7_per_workspace_and_keep_the_time() {
        let id = Uuid::now_v7();
        let (a, b) = (WorkspaceId(Uuid::now_v7()), WorkspaceId(Uuid::now_v7()));
        let s = scoped_id(a, id);
        assert_eq!(s, scoped_id(a, id), "deterministic");
        assert_ne!(s, scoped_id(b, id), "per workspace");
        assert_ne!(s, id);
        assert_eq!(s.get_version_num(), 7);
        assert_eq!(s.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(s.as_bytes()[..6], id.as_bytes()[..6], "same time");
    }
}
