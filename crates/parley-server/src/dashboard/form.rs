//! The dashboard's admin form posts: [`AdminForm`] (the session, the form, its CSRF token and
//! the member's role checked before the handler runs) and [`PageError`] (an error answered as
//! the dashboard's HTML error page, not as the API's JSON body).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::Session;
use crate::error::ApiError;

/// An error of a dashboard page or form, answered as the dashboard's error page
/// ([`super::error_page`]): the status, its reason as the title, and the message with its
/// stable code ("... (error code: not_found)"). A server error shows a generic message (the
/// detail is logged, not shown).
#[derive(Debug)]
pub(crate) struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<parley_store::StoreError> for PageError {
    fn from(e: parley_store::StoreError) -> Self {
        PageError(ApiError::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = e.status.canonical_reason().unwrap_or("Error");
        let message = if e.status.is_server_error() {
            tracing::error!(code = e.code, error = %e.message, "dashboard page failed");
            "Something went wrong on the server. Try again in a moment.".to_owned()
        } else {
            e.message.clone()
        };
        super::error_page(
            e.status,
            title,
            &format!("{message} (error code: {})", e.code),
        )
    }
}

/// A form an admin-only dashboard action posts: its body type names the action and carries
/// the `_csrf` field.
pub(crate) trait AdminFormBody: Sized + Send {
    /// What the form does, for the refusal "Only administrators can {ACTION}.".
    const ACTION: &'static str;
    /// The form's `_csrf` field.
    fn csrf(&self) -> &str;
    /// Reads the form from the request body (`application/x-www-form-urlencoded`).
    /// Errors: the body is not such a form (axum's `Form` rejections: 415, 422, 400).
    fn read(req: Request, st: &AppState) -> impl Future<Output = Result<Self, Response>> + Send;
}

/// Implements [`AdminFormBody`] for form structs read with axum's `Form` (a `csrf` field
/// renamed from `_csrf`), each with the action it is for.
macro_rules! admin_forms {
    ($($form:ty => $action:literal),* $(,)?) => {$(
        impl $crate::dashboard::form::AdminFormBody for $form {
            const ACTION: &'static str = $action;
            fn csrf(&self) -> &str {
                &self.csrf
            }
            async fn read(
                req: axum::extract::Request,
                st: &$crate::AppState,
            ) -> Result<Self, axum::response::Response> {
                <axum::Form<$form> as axum::extract::FromRequest<$crate::AppState>>::from_request(req, st)
                    .await
                    .map(|axum::Form(f)| f)
                    .map_err(axum::response::IntoResponse::into_response)
            }
        }
    )*};
}
pub(crate) use admin_forms;

/// An admin's form post: the signed-in [`Session`] (else the redirect to the sign-in page),
/// the form `T`, its CSRF token matching the session's, and the member being an admin.
///
/// Rejections: the sign-in redirect (303), the form's own (415, 422), 403 "Form expired" (a
/// CSRF token that is not the session's), 403 "Not allowed" ("Only administrators can
/// {ACTION}."), each as an HTML page.
#[derive(Debug)]
pub(crate) struct AdminForm<T> {
    /// Who posted it (an admin).
    pub session: Session,
    /// The form.
    pub form: T,
}

impl<T: AdminFormBody> FromRequest<AppState> for AdminForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, st).await?;
        let form = T::read(Request::from_parts(parts, body), st).await?;
        if !session.csrf_ok(Some(form.csrf())) {
            return Err(super::error_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "Reload the page and try again.",
            ));
        }
        if session.user.role != parley_core::UserRole::Admin {
            return Err(super::error_page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                &format!("Only administrators can {}.", T::ACTION),
            ));
        }
        Ok(AdminForm { session, form })
    }
}
