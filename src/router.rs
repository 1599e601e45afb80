//! Host + longest-prefix routing. Pure: the snapshot compiles routes into a [`Router`] once,
//! and a request does one hash lookup per host group and a scan of that group's prefixes.
//!
//! Host groups are tried from most to least specific: the exact host, then the one-label
//! wildcard (`*.example.com`), then routes without a host. Within a group the longest prefix
//! that matches on a segment boundary wins; when no prefix of a group matches, the next group
//! is tried, so a catch-all route without a host still serves paths an exact host lacks.

use std::collections::HashMap;

use crate::config::HostMatch;
use crate::normalize::prefix_matches;

/// Routes grouped by host, each group sorted by descending prefix length.
#[derive(Debug)]
pub struct Router<T> {
    exact: HashMap<Box<str>, Group<T>>,
    /// Keyed by the suffix including its leading dot: `*.example.com` -> `.example.com`.
    wildcard: HashMap<Box<str>, Group<T>>,
    any: Group<T>,
}

#[derive(Debug)]
struct Group<T> {
    entries: Vec<(Box<str>, T)>,
}

impl<T> Default for Group<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> Group<T> {
    fn insert(&mut self, prefix: &str, value: T) {
        self.entries.push((prefix.into(), value));
        // Stable sort keeps file order between equal lengths; validation rejects duplicates.
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
    }

    fn lookup(&self, path: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(prefix, _)| prefix_matches(path, prefix))
            .map(|(_, v)| v)
    }
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: Group::default(),
        }
    }
}

impl<T> Router<T> {
    /// Adds a route. `prefix` is normalised (starts with `/`, no trailing `/` unless it is `/`).
    pub fn insert(&mut self, host: Option<&HostMatch>, prefix: &str, value: T) {
        let group = match host {
            None => &mut self.any,
            Some(HostMatch::Exact(h)) => self.exact.entry(h.as_str().into()).or_default(),
            Some(HostMatch::Wildcard(suffix)) => {
                self.wildcard.entry(suffix.as_str().into()).or_default()
            }
        };
        group.insert(prefix, value);
    }

    /// The route for a lower-cased host (no port, no trailing dot) and a normalised path.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&T> {
        if let Some(found) = self.exact.get(host).and_then(|g| g.lookup(path)) {
            return Some(found);
        }
        if let Some(found) = self.wildcard_group(host).and_then(|g| g.lookup(path)) {
            return Some(found);
        }
        self.any.lookup(path)
    }

    /// Whether any route names this host explicitly (exact or wildcard). Used to decide which
    /// hosts get an HTTPS redirect: an unknown `Host` must not be bounced to HTTPS.
    pub fn knows_host(&self, host: &str) -> bool {
        self.exact.contains_key(host) || self.wildcard_group(host).is_some()
    }

    /// The routes of the wildcard matching `host`. Most configurations have no wildcard host,
    /// and then the host is not searched for its first label.
    fn wildcard_group(&self, host: &str) -> Option<&Group<T>> {
        if self.wildcard.is_empty() {
            return None;
        }
        self.wildcard.get(wildcard_key(host)?)
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.any))
            .flat_map(|g| g.entries.iter().map(|(_, v)| v))
    }
}

/// `a.example.com` -> `.example.com`; a single label has no wildcard parent.
fn wildcard_key(host: &str) -> Option<&str> {
    let dot = host.find('.')?;
    (dot > 0 && dot + 1 < host.len()).then(|| &host[dot..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        let mut r = Router::default();
        r.insert(None, "/", "any-root");
        r.insert(None, "/api", "any-api");
        r.insert(
            Some(&HostMatch::Exact("app.example.com".into())),
            "/",
            "app-root",
        );
        r.insert(
            Some(&HostMatch::Exact("app.example.com".into())),
            "/api/v2",
            "app-v2",
        );
        r.insert(
            Some(&HostMatch::Exact("api.example.com".into())),
            "/v1",
            "api-v1",
        );
        r.insert(
            Some(&HostMatch::Wildcard(".example.com".into())),
            "/",
            "wild",
        );
        r
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let r = router();
        assert_eq!(r.lookup("other.test", "/api"), Some(&"any-api"));
        assert_eq!(r.lookup("other.test", "/api/"), Some(&"any-api"));
        assert_eq!(r.lookup("other.test", "/api/x"), Some(&"any-api"));
        assert_eq!(r.lookup("other.test", "/apix"), Some(&"any-root"));
        assert_eq!(
            r.lookup("app.example.com", "/api/v2/users"),
            Some(&"app-v2")
        );
        assert_eq!(r.lookup("app.example.com", "/api/v20"), Some(&"app-root"));
    }

    #[test]
    fn exact_then_wildcard_then_any() {
        let r = router();
        assert_eq!(r.lookup("app.example.com", "/x"), Some(&"app-root"));
        assert_eq!(r.lookup("api.example.com", "/v1/x"), Some(&"api-v1"));
        // The exact host has no matching prefix: fall through to the wildcard.
        assert_eq!(r.lookup("api.example.com", "/v2"), Some(&"wild"));
        assert_eq!(r.lookup("zzz.example.com", "/"), Some(&"wild"));
        // One label only.
        assert_eq!(r.lookup("a.b.example.com", "/api"), Some(&"any-api"));
        assert_eq!(r.lookup("example.com", "/"), Some(&"any-root"));
    }

    #[test]
    fn no_match_without_catch_all() {
        let mut r = Router::default();
        r.insert(Some(&HostMatch::Exact("a.test".into())), "/api", 1);
        assert_eq!(r.lookup("a.test", "/api/x"), Some(&1));
        assert_eq!(r.lookup("a.test", "/"), None);
        assert_eq!(r.lookup("b.test", "/api"), None);
        assert!(r.knows_host("a.test"));
        assert!(!r.knows_host("b.test"));
    }

    #[test]
    fn knows_wildcard_hosts() {
        let r = router();
        assert!(r.knows_host("zzz.example.com"));
        assert!(!r.knows_host("example.com"));
        assert!(!r.knows_host("localhost"));
    }
}
