//! `[acme]` -> [`Acme`]. Each value is checked on its own always; what depends on other keys
//! or on files (a listener for the challenge, the CA roots file, a Redis URL) only when ACME is
//! on, that is when `[[acme.certificates]]` has an entry.

use std::time::Duration;

use super::fields::{Ctx, is_host_name};
use super::model::Listener;
use super::model_acme::{
    Acme, AcmeCertificate, Challenge, Eab, KeyType, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING,
    Secret, Storage,
};
use super::raw::RawAcme;

const DEFAULT_STORAGE: &str = "/var/lib/edgeward/acme";
const DEFAULT_PREFIX: &str = "edgeward:acme:";

pub(crate) fn acme(raw: &RawAcme, listeners: &[Listener], ctx: &mut Ctx<'_, '_>) -> Acme {
    let certificates = certificates(raw, ctx);
    let on = !certificates.is_empty();

    let directory = match (&raw.directory, ctx.bool(&raw.staging, false)) {
        (Some(dir), staging) => {
            if staging && on {
                let message = "set either directory or staging = true, not both";
                ctx.diag.error("acme.directory", Some(dir.span()), message);
            }
            if !is_http_url(dir.get_ref()) {
                let message = format!(
                    "expected an https:// URL of the CA's directory, got {:?}",
                    dir.get_ref()
                );
                ctx.diag.error("acme.directory", Some(dir.span()), message);
            }
            dir.get_ref().clone()
        }
        (None, true) => LETS_ENCRYPT_STAGING.to_owned(),
        (None, false) => LETS_ENCRYPT_PRODUCTION.to_owned(),
    };
    let email = raw.email.as_ref().and_then(|email| {
        let text = email.get_ref().trim();
        let text = text.strip_prefix("mailto:").unwrap_or(text);
        if text.is_empty() || text.contains(char::is_whitespace) || text.contains(',') {
            let message = format!("expected one e-mail address, got {:?}", email.get_ref());
            ctx.diag.error("acme.email", Some(email.span()), message);
            return None;
        }
        Some(text.to_owned())
    });
    let eab = raw.eab.as_ref().and_then(|eab| {
        let span = eab.span();
        let eab = eab.get_ref();
        let (Some(kid), Some(hmac)) = (&eab.kid, &eab.hmac_key) else {
            let message = "external account binding needs both kid and hmac_key";
            ctx.diag.error("acme.eab", Some(span), message);
            return None;
        };
        let valid_key = !hmac.get_ref().is_empty()
            && hmac
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
        if !valid_key {
            // The value itself is never echoed: it is a secret.
            let message = "hmac_key must be the base64url-encoded key the CA gave";
            ctx.diag
                .error("acme.eab.hmac_key", Some(hmac.span()), message);
            return None;
        }
        Some(Eab {
            kid: kid.get_ref().clone(),
            hmac_key: Secret::new(hmac.get_ref().clone()),
        })
    });
    let challenge = match &raw.challenge {
        None => Challenge::Http01,
        Some(v) => match v.get_ref().as_str() {
            "http-01" => Challenge::Http01,
            "tls-alpn-01" => Challenge::TlsAlpn01,
            other => {
                let message =
                    format!("unknown challenge {other:?}; expected \"http-01\" or \"tls-alpn-01\"");
                ctx.diag.error("acme.challenge", Some(v.span()), message);
                Challenge::Http01
            }
        },
    };
    let key_type = match &raw.key_type {
        None => KeyType::EcdsaP256,
        Some(v) => match v.get_ref().as_str() {
            "ecdsa-p256" => KeyType::EcdsaP256,
            "ecdsa-p384" => KeyType::EcdsaP384,
            other => {
                let message = format!(
                    "unknown key type {other:?}; expected \"ecdsa-p256\" or \"ecdsa-p384\""
                );
                ctx.diag.error("acme.key_type", Some(v.span()), message);
                KeyType::EcdsaP256
            }
        },
    };
    let renew_before = match &raw.renew_before {
        None => 1.0 / 3.0,
        Some(v) => {
            let f = v.get_ref().0;
            if f > 0.0 && f <= 1.0 {
                f
            } else {
                let message = format!("must be above 0 and at most 1, got {f}");
                ctx.diag.error("acme.renew_before", Some(v.span()), message);
                1.0 / 3.0
            }
        }
    };
    let redis_prefix = match &raw.redis_prefix {
        Some(p) => p.get_ref().clone(),
        None => DEFAULT_PREFIX.to_owned(),
    };
    let storage = storage(raw, on, ctx);
    let ca_roots = match &raw.ca_roots {
        Some(path) if on => ctx.pem_file("acme", "ca_roots", &raw.ca_roots, path.span()),
        Some(path) => Some(ctx.base_dir.join(path.get_ref())),
        None => None,
    };
    let check_interval = ctx.duration(
        "acme.check_interval",
        &raw.check_interval,
        Duration::from_secs(3600),
        false,
    );
    let retry_interval = ctx.duration(
        "acme.retry_interval",
        &raw.retry_interval,
        Duration::from_secs(300),
        false,
    );
    if on {
        check_listeners(raw, challenge, listeners, ctx);
    }
    Acme {
        directory,
        email,
        eab,
        challenge,
        storage,
        redis_prefix,
        key_type,
        renew_before,
        check_interval,
        retry_interval,
        ca_roots,
        certificates,
    }
}

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && text.parse::<http::Uri>().is_ok()
}

fn storage(raw: &RawAcme, on: bool, ctx: &mut Ctx<'_, '_>) -> Storage {
    let Some(value) = &raw.storage else {
        return Storage::Dir(DEFAULT_STORAGE.into());
    };
    let text = value.get_ref();
    if text.starts_with("redis://") || text.starts_with("rediss://") {
        let host_present = text
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
        if on && !host_present {
            // Only the scheme is named: the URL may carry a password.
            let message = "the Redis URL names no host";
            ctx.diag.error("acme.storage", Some(value.span()), message);
        }
        return Storage::Redis(Secret::new(text.clone()));
    }
    if text.contains("://") {
        let message = "expected dir:<path>, redis://... or rediss://...";
        ctx.diag.error("acme.storage", Some(value.span()), message);
    }
    let path = text.strip_prefix("dir:").unwrap_or(text);
    if path.is_empty() {
        let message = "the storage directory must not be empty";
        ctx.diag.error("acme.storage", Some(value.span()), message);
        return Storage::Dir(DEFAULT_STORAGE.into());
    }
    Storage::Dir(ctx.base_dir.join(path))
}

fn certificates(raw: &RawAcme, ctx: &mut Ctx<'_, '_>) -> Vec<AcmeCertificate> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, entry) in raw.certificates.iter().flatten().enumerate() {
        let base = format!("acme.certificates[{i}]");
        let Some(list) = entry.get_ref().names.as_ref().filter(|l| !l.is_empty()) else {
            let message = "missing names (the DNS names this certificate covers)";
            ctx.diag.error(base, Some(entry.span()), message);
            continue;
        };
        let mut names = Vec::new();
        for (j, name) in list.iter().enumerate() {
            let key = format!("{base}.names[{j}]");
            let lowered = name.get_ref().trim_end_matches('.').to_ascii_lowercase();
            let problem = if lowered.starts_with("*.") {
                Some("wildcard names need the DNS-01 challenge, which edgeward does not do".into())
            } else if lowered.parse::<std::net::IpAddr>().is_ok() || !is_host_name(&lowered) {
                Some(format!("{:?} is not a DNS name", name.get_ref()))
            } else if let Some((_, other)) = seen.iter().find(|(n, _)| *n == lowered) {
                Some(format!(
                    "{lowered} is already in acme.certificates[{other}]; a name belongs to one certificate"
                ))
            } else {
                None
            };
            match problem {
                Some(message) => ctx.diag.error(key, Some(name.span()), message),
                None => {
                    seen.push((lowered.clone(), i));
                    names.push(lowered);
                }
            }
        }
        if !names.is_empty() {
            out.push(AcmeCertificate { names });
        }
    }
    out
}

/// The challenge needs a listener to be answered on, and certificates need a TLS listener to
/// be served at all.
fn check_listeners(
    raw: &RawAcme,
    challenge: Challenge,
    listeners: &[Listener],
    ctx: &mut Ctx<'_, '_>,
) {
    let span = raw
        .certificates
        .as_ref()
        .and_then(|c| c.first())
        .map(|c| c.span());
    if !listeners.iter().any(|l| l.tls) {
        let message = "ACME certificates need a listener with tls = true to be served on";
        ctx.diag.error("acme.certificates", span.clone(), message);
    }
    if challenge == Challenge::Http01 && !listeners.iter().any(|l| !l.tls) {
        let message = "the http-01 challenge needs a plain listener (port 80); add one or use challenge = \"tls-alpn-01\"";
        let span = raw.challenge.as_ref().map(|c| c.span()).or(span);
        ctx.diag.error("acme.challenge", span, message);
    }
}
