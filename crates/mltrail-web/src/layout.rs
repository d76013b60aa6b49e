//! The frame every page shares: head, navigation, breadcrumbs, and the links between pages.

use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The stylesheet and the script, embedded in the binary (`/ui/static/…`).
pub const STYLESHEET: &str = include_str!("../assets/app.css");
pub const SCRIPT: &str = include_str!("../assets/app.js");

/// The sections of the navigation bar; a page names the one it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Experiments,
    Models,
    Datasets,
    Deployments,
    Monitors,
    Predictions,
    Audit,
    Server,
}

impl Section {
    const ALL: [Section; 8] = [
        Section::Experiments,
        Section::Models,
        Section::Datasets,
        Section::Deployments,
        Section::Monitors,
        Section::Predictions,
        Section::Audit,
        Section::Server,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Experiments => "Experiments",
            Section::Models => "Models",
            Section::Datasets => "Datasets",
            Section::Deployments => "Deployments",
            Section::Monitors => "Monitors",
            Section::Predictions => "Predictions",
            Section::Audit => "Audit trail",
            Section::Server => "Server",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Section::Experiments => "/ui/experiments",
            Section::Models => "/ui/models",
            Section::Datasets => "/ui/datasets",
            Section::Deployments => "/ui/deployments",
            Section::Monitors => "/ui/monitors",
            Section::Predictions => "/ui/predictions",
            Section::Audit => "/ui/audit",
            Section::Server => "/ui/server",
        }
    }
}

/// Who is looking, shown in the corner with a sign-out button (`who` is `None` with auth
/// off); `csrf` is the token the user's forms carry.
pub struct Viewer<'a> {
    pub who: Option<&'a str>,
    pub csrf: &'a str,
}

/// A whole HTML page around `body`. `crumbs` lead from the section to this page (each a label
/// and a link); `title` is the heading and the window title.
pub fn page(
    section: Section,
    viewer: &Viewer<'_>,
    crumbs: &[(String, String)],
    title: &str,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mltrail" }
                link rel="stylesheet" href="/ui/static/app.css";
                // No icon to fetch: a browser otherwise asks for /favicon.ico on every site.
                link rel="icon" href="data:,";
                script src="/ui/static/app.js" {}
            }
            body {
                a.skip href="#content" { "Skip to content" }
                header.top {
                    a.brand href="/" { "mltrail" }
                    nav aria-label="Sections" {
                        @for s in Section::ALL {
                            @if s == section {
                                a href=(s.href()) aria-current="page" { (s.title()) }
                            } @else {
                                a href=(s.href()) { (s.title()) }
                            }
                        }
                    }
                    @if let Some(who) = viewer.who {
                        form.who method="post" action="/ui/logout" {
                            span { "Signed in as " (who) " " }
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main id="content" {
                    @if !crumbs.is_empty() {
                        nav.crumbs aria-label="Breadcrumbs" {
                            @for (i, (label, href)) in crumbs.iter().enumerate() {
                                @if i > 0 { " / " }
                                a href=(href) { (label) }
                            }
                        }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The sign-in page: user name and password, sent back to `next` afterwards; `error` when the
/// last try failed; `off` when the server does not authenticate (nothing to sign in to).
pub fn sign_in(next: &str, error: Option<&str>, off: bool) -> Markup {
    let body = html! {
        @if off {
            p { "This server runs with authentication off: there is nothing to sign in to. " a href=(next) { "Continue" } "." }
        } @else {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form.login method="post" action="/ui/login" {
                input type="hidden" name="next" value=(next);
                p { label for="username" { "User name" } br; input type="text" id="username" name="username" autocomplete="username" required autofocus; }
                p { label for="password" { "Password" } br; input type="password" id="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            p.muted { "Scripts and the mlflow client sign in with HTTP Basic (" code { "MLFLOW_TRACKING_USERNAME" } ", " code { "MLFLOW_TRACKING_PASSWORD" } ") or a token (" code { "MLFLOW_TRACKING_TOKEN" } ")." }
        }
    };
    page(
        Section::Experiments,
        &Viewer {
            who: None,
            csrf: "",
        },
        &[],
        "Sign in to mltrail",
        body,
    )
}

/// A page saying what went wrong (not found, not allowed, bad input), in the same frame.
pub fn problem(section: Section, viewer: &Viewer<'_>, title: &str, message: &str) -> Markup {
    page(
        section,
        viewer,
        &[(section.title().to_string(), section.href().to_string())],
        title,
        html! { p.error role="alert" { (message) } },
    )
}

/// What may stay unescaped in a path segment: letters, digits and `-._~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, escaped (a model named `a/b?c` stays one segment).
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A query string from pairs, each escaped; empty values are left out.
pub fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", segment(k), segment(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub fn experiment_href(id: &str) -> String {
    format!("/ui/experiments/{}", segment(id))
}

pub fn run_href(id: &str) -> String {
    format!("/ui/runs/{}", segment(id))
}

pub fn model_href(name: &str) -> String {
    format!("/ui/models/{}", segment(name))
}

pub fn version_href(name: &str, version: &str) -> String {
    format!("/ui/models/{}/versions/{}", segment(name), segment(version))
}

/// The value of `key` among key–value pairs (a run's params or tags, a version's tags).
pub fn value_of<'a>(pairs: &'a [mltrail_store::records::KeyValue], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

/// At most the first `n` characters of `text` (a digest shortened for a table; never cut
/// inside a character, whatever a client sent as a digest).
pub fn short(text: &str, n: usize) -> &str {
    text.char_indices().nth(n).map_or(text, |(i, _)| &text[..i])
}

/// A time in epoch milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: i64) -> String {
    mltrail_core::time::rfc3339_seconds(ms)
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// How long a run took, or has been running for.
pub fn duration(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => mltrail_core::time::duration_text(e - s),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_names_whole() {
        assert_eq!(model_href("a/b?c d"), "/ui/models/a%2Fb%3Fc%20d");
        assert_eq!(
            query([("filter", "metrics.acc > 0.9"), ("empty", "")]),
            "?filter=metrics.acc%20%3E%200.9"
        );
        assert_eq!(query([("x", "")]), "");
    }

    #[test]
    fn a_page_escapes_its_title_and_crumbs() {
        let html = page(
            Section::Experiments,
            &Viewer {
                who: Some("<b>eve</b>"),
                csrf: "",
            },
            &[("<i>x</i>".into(), "/ui/\"experiments".into())],
            "<script>alert(1)</script>",
            html! {},
        )
        .into_string();
        assert!(
            !html.contains("<script>alert") && !html.contains("<b>eve") && !html.contains("<i>x")
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("href=\"/ui/&quot;experiments\""));
    }
}
