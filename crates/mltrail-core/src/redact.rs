//! Passwords taken out of URIs before they are logged, printed or recorded in the audit trail
//! (which cannot be edited afterwards): the userinfo's password and password query parameters.

/// Query parameters that carry a secret in database URIs (libpq's and sqlx's spellings).
const SECRET_PARAMETERS: [&str; 3] = ["password", "sslpassword", "passfile"];

/// `uri` with its password replaced by `***`: `postgresql://u:***@h/db`,
/// `postgresql://h/db?user=u&password=***`. A password may hold `@` (the authority ends at the
/// last one) and `:` (the user ends at the first one).
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else {
        return uri.to_string();
    };
    let (head, query) = match uri.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (uri, None),
    };
    let rest = &head[scheme_end.min(head.len())..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{}{authority}{path}", &uri[..scheme_end.min(head.len())]);
    if let Some(query) = query {
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if SECRET_PARAMETERS.contains(&key.to_ascii_lowercase().as_str()) =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_wherever_they_are() {
        assert_eq!(
            redact_uri("postgresql://u:secret@h:5432/db"),
            "postgresql://u:***@h:5432/db"
        );
        assert_eq!(
            redact_uri("postgresql://u:p@ss@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(
            redact_uri("postgresql://h/db?user=u&password=s&sslmode=require"),
            "postgresql://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_uri("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact_uri("sqlite:///x.db"), "sqlite:///x.db");
        assert_eq!(redact_uri("sqlite:////abs/x.db"), "sqlite:////abs/x.db");
        assert_eq!(redact_uri("./mlruns"), "./mlruns");
    }
}
