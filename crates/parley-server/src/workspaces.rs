//! Choosing the workspace a command acts on (`--workspace SLUG`, else the only one), shared by
//! the CLI's commands and `migrate-store`.

use parley_core::model::Workspace;
use parley_store::Store;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The workspace `slug`, or the only one; never creates one.
/// Errors: unknown slug, no workspace, or several and none named.
pub async fn select_existing_workspace(
    store: &dyn Store,
    slug: Option<&str>,
) -> Result<Workspace, BoxError> {
    let all = store.workspaces().list_workspaces().await?;
    if all.is_empty() {
        return Err("the source has no workspace".into());
    }
    select_workspace(store, slug).await
}

/// The workspace a command acts on: `--workspace SLUG`, else the only one (creating `default`
/// when there is none). Errors: the slug is unknown, or there are several and none was named.
pub async fn select_workspace(
    store: &dyn Store,
    slug: Option<&str>,
) -> Result<Workspace, BoxError> {
    if let Some(slug) = slug {
        return store
            .workspaces()
            .workspace_by_slug(slug)
            .await?
            .ok_or_else(|| format!("no workspace {slug:?}; see `parley workspaces list`").into());
    }
    let mut all = store.workspaces().list_workspaces().await?;
    match all.len() {
        0 => Ok(store
            .workspaces()
            .create_workspace("default", "Default")
            .await?),
        1 => Ok(all.remove(0)),
        _ => Err(format!(
            "there are {} workspaces; choose one with --workspace ({})",
            all.len(),
            all.iter()
                .map(|w| w.slug.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into()),
    }
}
