//! Typed access to raw fields for validation: each accessor applies the default when a value
//! is absent, and records an error and returns the default when it is bad, so that checking
//! can go on and report every problem.

use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;
use ipnet::IpNet;
use toml::Spanned;

use super::error::Diag;
use super::raw::{DurationText, Field, List, SizeValue};
use super::units::{format_size, parse_duration, parse_size};

/// What validation needs besides the raw values.
pub(crate) struct Ctx<'d, 'a> {
    pub(crate) diag: &'d mut Diag<'a>,
    /// Directory of the config file; relative paths in the file are relative to it.
    pub(crate) base_dir: PathBuf,
}

/// A DNS host name, lower-case: labels of a-z, 0-9, `-`, `_` (container names use `_`).
pub(crate) fn is_host_name(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_'))
        })
}

/// Typed accessors: each returns the default (after recording an error) when a value is bad.
impl Ctx<'_, '_> {
    pub(crate) fn bool(&self, value: &Field<bool>, default: bool) -> bool {
        value.as_ref().map_or(default, |v| *v.get_ref())
    }

    pub(crate) fn int<T: TryFrom<i64>>(
        &mut self,
        key: &str,
        value: &Field<i64>,
        default: T,
        range: RangeInclusive<i64>,
    ) -> T {
        let Some(v) = value else { return default };
        let n = *v.get_ref();
        if !range.contains(&n) {
            let message = if *range.end() == i64::MAX {
                format!("must be at least {}, got {n}", range.start())
            } else {
                format!(
                    "must be between {} and {}, got {n}",
                    range.start(),
                    range.end()
                )
            };
            self.diag.error(key, Some(v.span()), message);
            return default;
        }
        T::try_from(n).unwrap_or(default)
    }

    pub(crate) fn duration(
        &mut self,
        key: &str,
        value: &Field<DurationText>,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some(v) = value else { return default };
        match parse_duration(&v.get_ref().0) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.diag
                    .error(key, Some(v.span()), "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(message) => {
                let message = if v.get_ref().0 == "off" {
                    "cannot be \"off\"; give a duration".to_owned()
                } else {
                    message
                };
                self.diag.error(key, Some(v.span()), message);
                default
            }
        }
    }

    /// A duration where `"off"` and `"0s"` mean none.
    pub(crate) fn duration_or_off(
        &mut self,
        key: &str,
        value: &Field<DurationText>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let Some(v) = value else { return default };
        if v.get_ref().0 == "off" {
            return None;
        }
        match parse_duration(&v.get_ref().0) {
            Ok(d) => (!d.is_zero()).then_some(d),
            Err(message) => {
                let message = format!("{message}, or \"off\"");
                self.diag.error(key, Some(v.span()), message);
                default
            }
        }
    }

    pub(crate) fn size(
        &mut self,
        key: &str,
        value: &Field<SizeValue>,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> u64 {
        let Some(v) = value else { return default };
        let parsed = match v.get_ref() {
            SizeValue::Bytes(n) => u64::try_from(*n).map_err(|_| "must not be negative".to_owned()),
            SizeValue::Text(text) => parse_size(text),
        };
        let message = match parsed {
            Ok(n) if range.contains(&n) => return n,
            Ok(_) if *range.end() == u64::MAX => {
                format!("must be at least {}", format_size(*range.start()))
            }
            Ok(_) => format!(
                "must be between {} and {}",
                format_size(*range.start()),
                format_size(*range.end())
            ),
            Err(message) => message,
        };
        self.diag.error(key, Some(v.span()), message);
        default
    }

    pub(crate) fn addr(&mut self, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
        let parsed = value.get_ref().parse();
        if parsed.is_err() {
            let message = format!(
                "invalid socket address {:?}: expected IP:port, e.g. \"0.0.0.0:8080\" or \"[::]:8443\"",
                value.get_ref()
            );
            self.diag.error(key, Some(value.span()), message);
        }
        parsed.ok()
    }

    /// CIDRs or bare addresses (a bare address is a /32 or /128). Host bits are cleared.
    pub(crate) fn nets(&mut self, key: &str, list: &List) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for (i, item) in list.iter().flatten().enumerate() {
            let text = item.get_ref();
            let parsed = text
                .parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => {
                    let message = format!(
                        "invalid CIDR {text:?}: expected e.g. \"10.0.0.0/8\", \"fd00::/8\" or \"127.0.0.1\""
                    );
                    self.diag
                        .error(format!("{key}[{i}]"), Some(item.span()), message);
                }
            }
        }
        nets
    }

    pub(crate) fn header_value(
        &mut self,
        key: &str,
        value: &Spanned<String>,
    ) -> Option<HeaderValue> {
        let parsed = HeaderValue::from_str(value.get_ref());
        if parsed.is_err() {
            let message = format!(
                "invalid header value {:?} (control characters are not allowed)",
                value.get_ref()
            );
            self.diag.error(key, Some(value.span()), message);
        }
        parsed.ok()
    }

    /// Resolves a PEM file path against the config directory and checks that it is readable
    /// and holds at least one PEM block. Parsing the PEM is the TLS module's job.
    pub(crate) fn pem_file(
        &mut self,
        base: &str,
        field: &str,
        value: &Field<String>,
        entry_span: Range<usize>,
    ) -> Option<PathBuf> {
        let key = format!("{base}.{field}");
        let Some(value) = value else {
            self.diag.error(
                key,
                Some(entry_span),
                format!("missing {field} (path to a PEM file)"),
            );
            return None;
        };
        let path = self.base_dir.join(value.get_ref());
        let problem = match std::fs::read(&path) {
            Err(e) => format!("cannot read {}: {e}", path.display()),
            Ok(bytes) if !contains(&bytes, b"-----BEGIN") => {
                format!(
                    "{} holds no PEM block (no \"-----BEGIN\" line)",
                    path.display()
                )
            }
            Ok(_) => return Some(path),
        };
        self.diag.error(key, Some(value.span()), problem);
        None
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The directory relative paths in `config_file` are resolved against, made absolute.
pub(crate) fn base_dir(config_file: &Path) -> PathBuf {
    let dir = match config_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}
