//! Signing in and out of the web UI, and where its forms may come from.

use super::*;

/// Whether a browser's POST came from a page of this server: its `Origin` (or, without one,
/// `Referer`) names the host the request was sent to. Requests with neither (not a browser's
/// form) are judged by the CSRF token alone.
///
/// Behind a reverse proxy that rewrites `Host`, the proxy's `X-Forwarded-Host` names the host
/// the browser used; it counts too (another site's page cannot set that header on a browser's
/// request without the server's consent to a preflight, which it never gives).
pub(super) fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok());
    let Some(origin) = origin else {
        return true;
    };
    let Some(origin_host) = origin
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
    else {
        return false;
    };
    let forwarded = headers
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split(',').next())
        .map(str::trim);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    [host, forwarded]
        .into_iter()
        .flatten()
        .any(|h| h == origin_host)
}

/// Where a sign-in may send the browser back to: a path of this server, never another site
/// (`//host` and `/\\host` are other sites to a browser).
pub(super) fn local_next(next: &str) -> &str {
    // Browsers drop tabs and newlines from URLs and read a backslash as `/`: `/<tab>/evil` is `//evil`.
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c == '\\' || c.is_control());
    if local {
        next
    } else {
        "/"
    }
}

pub(super) async fn sign_in_page(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Html<String> {
    let next = first(&pairs(&raw), "next");
    let off = state.auth.mode == crate::auth::AuthMode::Off;
    Html(layout::sign_in(local_next(&next), None, off).into_string())
}

/// Checks the user name and password as HTTP Basic would, and on success sets the session
/// cookie (HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it) and
/// returns to the page asked for.
pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let fields = form(&body);
    let (username, password) = (first(&fields, "username"), first(&fields, "password"));
    let next = first(&fields, "next");
    let next = local_next(&next).to_string();
    let refuse = |status: StatusCode, why: &str| {
        (
            status,
            Html(layout::sign_in(&next, Some(why), false).into_string()),
        )
            .into_response()
    };
    if state.auth.mode == crate::auth::AuthMode::Off {
        return Redirect::to(&next).into_response();
    }
    if !same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This form did not come from this server's page.",
        );
    }
    match mltrail_store::access::users::check_password(&state.store, &username, &password).await {
        Ok(Some(user)) => {
            let value = state
                .auth
                .sessions
                .issue(&user.username, mltrail_core::now_millis());
            let cookie = format!(
                "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                crate::auth::SESSION_COOKIE,
                crate::auth::Sessions::LIFETIME_MS / 1000,
                if state.ui.secure { "; Secure" } else { "" }
            );
            tracing::info!(user = %user.username, "signed in to the web UI");
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(None) => {
            state
                .auth
                .counters
                .failed_logins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                reason = "wrong user name or password",
                "web UI sign-in failed"
            );
            refuse(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check credentials");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Credentials cannot be checked right now; try again.",
            )
        }
    }
}

/// Ends the session: the cookie is cleared (its form carries the CSRF token).
pub(super) async fn sign_out(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let token = first(&form(&body), "csrf");
    let who = crate::auth::session_cookie(&headers)
        .and_then(|c| state.auth.sessions.open(c, mltrail_core::now_millis()))
        .map(|(user, _)| mltrail_core::Principal::User(user).to_string());
    // Without a session there is nothing to end (a browser keeps HTTP Basic credentials
    // itself); with one, the form must be this server's.
    let forged = who
        .as_deref()
        .is_some_and(|w| !state.ui.csrf_holds(w, &token));
    if !same_origin(&headers) || forged {
        return (
            StatusCode::FORBIDDEN,
            Html(
                layout::sign_in(
                    "/",
                    Some("That sign-out did not come from this server's page."),
                    false,
                )
                .into_string(),
            ),
        )
            .into_response();
    }
    if let Some(cookie) = crate::auth::session_cookie(&headers) {
        state
            .auth
            .sessions
            .revoke(cookie, mltrail_core::now_millis());
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mltrail_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_form_counts_as_ours_only_from_our_host() {
        assert!(same_origin(&headers(&[
            ("host", "ml:5000"),
            ("origin", "http://ml:5000")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "ml:5000"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "ml:5000"),
            ("origin", "null")
        ])));
        assert!(
            same_origin(&headers(&[("host", "ml:5000")])),
            "no Origin: the token decides"
        );
        // Behind a proxy that rewrites Host.
        let proxied = [
            ("host", "10.0.0.7:5000"),
            ("x-forwarded-host", "ml.example.com"),
            ("origin", "https://ml.example.com"),
        ];
        assert!(same_origin(&headers(&proxied)));
        let other = [
            ("host", "10.0.0.7:5000"),
            ("x-forwarded-host", "ml.example.com"),
            ("origin", "https://evil.example"),
        ];
        assert!(!same_origin(&headers(&other)));
    }

    #[test]
    fn sign_in_sends_back_only_to_our_own_paths() {
        assert_eq!(local_next("/ui/models?x=1"), "/ui/models?x=1");
        for elsewhere in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "https://evil.example",
            "ui/x",
        ] {
            assert_eq!(local_next(elsewhere), "/", "{elsewhere:?}");
        }
    }
}
