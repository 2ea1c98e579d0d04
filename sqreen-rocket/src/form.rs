//! [`Form`]: rocket's urlencoded form data guard, with the body also
//! captured into the request's record.
//!
//! A fairing can only peek at a body (rocket's peek buffer holds 512
//! bytes), so the fairing alone captures small bodies. A route that reads
//! its form with `sqreen_rocket::Form<T>` instead of `rocket::form::Form<T>`
//! has the whole form captured, up to the agent's `body_capture_limit`
//! (16 KiB by default), scrubbed like any parameter; the handler gets the
//! parsed value exactly as rocket's own guard would give it.

use rocket::data::{self, Data, FromData, Limits};
use rocket::form::{Errors, FromForm};
use rocket::http::Status;
use rocket::request::Request;

use crate::fairing::RequestState;

/// A urlencoded form, parsed as [`rocket::form::Form`] parses it, whose
/// body is also captured into the request's record, whole, up to the
/// agent's `body_capture_limit` (16 KiB by default): the fairing alone can
/// only peek at 512 bytes of a body.
///
/// ```
/// use sqreen_rocket::{Form, Sqreen};
///
/// #[derive(rocket::FromForm)]
/// struct Comment {
///     author: String,
///     text: String,
/// }
///
/// #[rocket::post("/comments", data = "<comment>")]
/// fn comment(sq: Sqreen, comment: Form<Comment>) -> &'static str {
///     sq.track_event("comment.posted").with_properties([("author", comment.author.as_str())]);
///     "thanks"
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Form<T>(pub T);

impl<T> Form<T> {
    /// The parsed value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Form<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Form<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// The request's body text, kept for the request's lifetime (rocket's
/// forms borrow from it).
struct FormBody(String);

/// Reads the form's text within rocket's `form` limit.
async fn read<'r>(req: &'r Request<'_>, data: Data<'r>) -> rocket::form::Result<'r, &'r str> {
    let limit = req.limits().get("form").unwrap_or(Limits::FORM);
    let text = data.open(limit).into_string().await?;
    if !text.is_complete() {
        Err((None, Some(limit.as_u64())))?;
    }
    let text = text.into_inner();
    Ok(&req.local_cache(move || FormBody(text)).0)
}

#[rocket::async_trait]
impl<'r, T: FromForm<'r>> FromData<'r> for Form<T> {
    type Error = Errors<'r>;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        if !req.content_type().is_some_and(|c| c.is_form()) {
            return data::Outcome::Forward((data, Status::UnsupportedMediaType));
        }
        let text = match read(req, data).await {
            Ok(text) => text,
            Err(e) => return data::Outcome::Error((e.status(), e)),
        };
        // The record: opened now if it waited for a handler (the `Sqreen`
        // guard usually ran before, and copied the request).
        let state = req.local_cache(RequestState::passed);
        state.handle(req);
        state.attach_body(text.as_bytes());
        match rocket::form::Form::<T>::parse(text) {
            Ok(value) => data::Outcome::Success(Form(value)),
            Err(e) => data::Outcome::Error((e.status(), e)),
        }
    }
}
