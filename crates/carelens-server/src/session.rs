//! Signed-in web sessions: a person signs in once with their API token; the browser then
//! holds only a random session id in a cookie (`HttpOnly`, `Secure`, `SameSite=Strict`).
//!
//! The token stays on the server, in memory, and every page authenticates it again: a
//! revoked or expired token ends its sessions at the next page. A session also ends
//! after [`IDLE`] without a page, after [`LIFETIME`] in all, at sign-out, and when the
//! server restarts. Each session has its own CSRF secret, which every form carries and
//! every form post must return; the sign-in form, before there is a session, is guarded
//! the same way by a secret in a cookie of its own (a double submit). Posts whose
//! `Origin` is another site are refused too.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::response::Response;
use carelens_service::{Caller, ServiceError};

use crate::AppState;
use crate::observe::CallerSlot;

/// A session ends after this long without a page.
pub(crate) const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Sessions kept at once; beyond, the least recently used ends.
const MAX_SESSIONS: usize = 10_000;

/// The session cookie's name. The `__Host-` prefix makes browsers take it only from this
/// host over HTTPS (or localhost), `Secure`, `Path=/` and without a `Domain`: a sibling
/// subdomain cannot plant a session of its own.
pub(crate) const SESSION_COOKIE: &str = "__Host-carelens_session";
/// The sign-in form's own CSRF cookie.
pub(crate) const SIGNIN_COOKIE: &str = "__Host-carelens_signin";

struct Session {
    secret: String,
    csrf: String,
    started: Instant,
    last: Instant,
}

/// Every live session, by id.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

/// A signed-in person on a page: a page handler that takes one is answered with a redirect
/// to sign-in when there is no live session; the call's log line names them.
#[derive(Clone)]
pub(crate) struct SignedIn {
    pub caller: Caller,
    /// The secret this session's forms carry.
    pub csrf: String,
}

impl Sessions {
    /// A new session for the holder of the token `secret`; its id (for the cookie).
    pub(crate) fn start(&self, secret: String) -> Result<String, ServiceError> {
        let id = random()?;
        let csrf = random()?;
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                secret,
                csrf,
                started: now,
                last: now,
            },
        );
        Ok(id)
    }

    /// Ends session `id`.
    pub(crate) fn end(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// The token and CSRF secret of live session `id`, marking it used.
    fn touch(&self, id: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let session = map.get_mut(id)?;
        if !live(session, now) {
            map.remove(id);
            return None;
        }
        session.last = now;
        Some((session.secret.clone(), session.csrf.clone()))
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last) < IDLE && now.duration_since(session.started) < LIFETIME
}

fn random() -> Result<String, ServiceError> {
    carelens_privacy::random_hex(32).map_err(|e| ServiceError::Internal(e.to_string().into()))
}

/// A fresh secret for the sign-in form and its cookie.
pub(crate) fn signin_secret() -> Result<String, ServiceError> {
    random()
}

/// The value of cookie `name` in `headers`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The person signed in with the session in `headers`, if its token still stands for
/// them; a session whose token was revoked or has expired is ended here.
pub(crate) async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<SignedIn> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let (secret, csrf) = state.sessions.touch(id)?;
    match state.service.authenticate(&secret).await {
        Ok(caller) => Some(SignedIn { caller, csrf }),
        // Revoked, expired or no longer in the catalog: the session ends with its token.
        Err(ServiceError::Unauthenticated) => {
            state.sessions.end(id);
            None
        }
        // The ledger busy or failing: not signed in for this page, the session kept.
        Err(_) => None,
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // Found already by the middleware in front of the gate, or found now.
        let found = match parts.extensions.remove::<SignedIn>() {
            Some(who) => Some(who),
            None => signed_in(state, &parts.headers).await,
        };
        let Some(who) = found else {
            return Err(crate::web::redirect("/signin", &[]));
        };
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            slot.set(who.caller.name());
        }
        Ok(who)
    }
}

/// A form that carries the session's CSRF secret.
pub(crate) trait CarriesCsrf {
    /// The secret as posted.
    fn csrf(&self) -> &str;
}

/// A form posted by a signed-in person from one of this session's pages: the person, and
/// the form, whose CSRF secret (and `Origin`) is checked before any handler sees it — a
/// post without the secret is answered 403 with nothing done; one without a session is
/// sent to sign in.
pub(crate) struct Posted<T>(pub SignedIn, pub T);

impl<T> axum::extract::FromRequest<AppState> for Posted<T>
where
    T: serde::de::DeserializeOwned + CarriesCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Response> {
        use axum::response::IntoResponse;
        let (mut parts, body) = request.into_parts();
        let who = SignedIn::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let request = axum::extract::Request::from_parts(parts, body);
        let axum::Form(form) = axum::Form::<T>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !form_is_genuine(&headers, form.csrf(), &who.csrf) {
            return Err(crate::web::forbidden_form());
        }
        Ok(Self(who, form))
    }
}

/// Whether a form post's `given` CSRF value is `expected`, and the post comes from this
/// site (no `Origin`, or one naming the `Host` it was sent to).
pub(crate) fn form_is_genuine(headers: &HeaderMap, given: &str, expected: &str) -> bool {
    let same_site = match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| !host.is_empty() && authority == host)
        }
    };
    same_site && !expected.is_empty() && equal(given.as_bytes(), expected.as_bytes())
}

/// `a == b` in time that does not depend on where they differ.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A `Set-Cookie` value for `name`, ending with the browser's session unless `max_age`.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    cookie
}
