//! Named `ip_lists` and a policy's `ip` section: allow and deny tables, compiled once.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::client::ClientAddr;
use super::parse::{parse_net, Net};
use super::table::{push_net, IpTable};
use crate::decision::{Reason, Reply};
use crate::error::{index, join, Errors};
use crate::json::{FromJson, Reader, Result as JsonResult};

/// Document-level `ip_lists`: name → addresses and CIDRs.
pub type IpListsInput = BTreeMap<String, ListInput>;

/// One list of `ip_lists`, parsed entry by entry while the JSON is read: no `String` per entry is kept
/// (a 100,000-entry list would otherwise hold ~4 MB of them at load, in each of Envoy's VMs, and wasm
/// memory never shrinks). Bad entries keep their index and reason for the error report.
#[derive(Debug, Clone, Default)]
pub struct ListInput {
    /// The good entries as (network address, prefix length), per family.
    v4: Vec<(u32, u8)>,
    v6: Vec<(u128, u8)>,
    errors: Vec<(usize, String)>,
}

impl ListInput {
    /// A list from entry texts, as the JSON would give them.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> ListInput {
        let mut list = ListInput::default();
        for (i, e) in entries.into_iter().enumerate() {
            list.push(i, e);
        }
        list
    }

    /// No entry at all (not even a refused one).
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty() && self.errors.is_empty()
    }

    fn push(&mut self, i: usize, entry: &str) {
        if entry.starts_with('@') {
            self.errors.push((
                i,
                format!("{entry:?}: ip_lists cannot reference other lists"),
            ));
            return;
        }
        match parse_net(entry) {
            Ok(n) => push_net(&n, &mut self.v4, &mut self.v6),
            Err(e) => self.errors.push((i, e.to_string())),
        }
    }
}

/// Each entry is parsed as it is read, from the document's text (no `String` kept per entry): an
/// array, so read by hand rather than with `json_object!`.
impl<'a> FromJson<'a> for ListInput {
    fn read(r: &mut Reader<'a>) -> JsonResult<Self> {
        let mut list = ListInput::default();
        r.array(|r, i| {
            let entry = r.str()?;
            list.push(i, &entry);
            Ok(())
        })?;
        Ok(list)
    }
}

/// A policy's `ip` section.
#[derive(Debug, Clone, Default)]
pub struct IpInput {
    pub allow: Vec<String>,
    /// `allow` was written (possibly as `[]`, which `edgeward check` warns about).
    pub allow_given: bool,
    pub deny: Vec<String>,
    pub deny_status: Option<u16>,
}

crate::json::json_object!(IpInput {
    allow: "allow" => some,
    deny: "deny" => read,
    deny_status: "deny_status" => read,
} => IpInput {
    allow_given: allow.is_some(),
    allow: allow.unwrap_or_default(),
    deny,
    deny_status,
});

/// Compiled `ip_lists`, each shared (not copied) by policies that use it alone.
#[derive(Debug, Clone, Default)]
pub struct IpLists {
    lists: BTreeMap<String, Arc<IpTable>>,
}

impl IpLists {
    /// Compiles `ip_lists` (path: its JSON path, e.g. `ip_lists`); entries may not reference other lists.
    pub fn compile(input: &IpListsInput, path: &str, errs: &mut Errors) -> IpLists {
        let mut lists = BTreeMap::new();
        for (name, entries) in input {
            let list_path = join(path, name);
            if !valid_name(name) {
                errs.push(
                    list_path.clone(),
                    format!("list name {name:?} must be non-empty ASCII letters, digits, '_', '-' or '.'"),
                );
            }
            for (i, e) in &entries.errors {
                errs.push(index(&list_path, *i), e.clone());
            }
            let table = IpTable::from_prefixes(entries.v4.clone(), entries.v6.clone());
            lists.insert(name.clone(), Arc::new(table));
        }
        IpLists { lists }
    }

    /// The compiled list of that name (without the `@`).
    pub fn get(&self, name: &str) -> Option<&Arc<IpTable>> {
        self.lists.get(name)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A compiled `ip` section.
#[derive(Debug, Clone)]
pub struct IpPolicy {
    /// None: no allow list, every address may pass (unless denied).
    allow: Option<Arc<IpTable>>,
    deny: Option<Arc<IpTable>>,
    deny_status: u16,
}

impl IpPolicy {
    /// Compiles a policy's `ip` section (path e.g. `policies.internal.ip`); None when it has errors.
    pub fn compile(
        input: &IpInput,
        path: &str,
        lists: &IpLists,
        errs: &mut Errors,
    ) -> Option<IpPolicy> {
        let mut ok = true;
        let deny_status = match input.deny_status {
            None => 403,
            Some(s @ (403 | 404)) => s,
            Some(s) => {
                errs.push(
                    join(path, "deny_status"),
                    format!("{s} is not allowed (use 403 or 404)"),
                );
                ok = false;
                403
            }
        };
        let allow = entries_table(&input.allow, &join(path, "allow"), lists, errs, &mut ok);
        let deny = entries_table(&input.deny, &join(path, "deny"), lists, errs, &mut ok);
        ok.then_some(IpPolicy {
            allow,
            deny,
            deny_status,
        })
    }

    /// Deny wins over allow; with an allow list, everything outside it is denied.
    pub fn check(&self, client: ClientAddr) -> Result<(), Reply> {
        let ip = match client {
            ClientAddr::Ip(ip) => ip,
            // Decision: an unparseable client address is denied only where an allow list applies. A deny
            // list names bad addresses, and "unknown" is not one of them; denying it there would turn a
            // deny-only policy into "deny everyone" whenever a proxy sends garbage, which no operator asked
            // for. Where an allow list applies, the address cannot be shown to be in it: fail closed.
            ClientAddr::Invalid => {
                return match self.allow {
                    Some(_) => Err(Reply::deny(self.deny_status, Reason::ClientIpInvalid)),
                    None => Ok(()),
                };
            }
        };
        let denied = self.deny.as_ref().is_some_and(|t| t.contains(ip));
        let allowed = self.allow.as_ref().is_none_or(|t| t.contains(ip));
        if denied || !allowed {
            return Err(Reply::deny(self.deny_status, Reason::IpDenied));
        }
        Ok(())
    }

    /// The status of a denial (403 or 404).
    pub fn deny_status(&self) -> u16 {
        self.deny_status
    }
}

/// Compiles one `allow`/`deny` list. An empty list is None (does not apply). A non-empty list whose
/// references resolve to no address still applies: an allow list of empty lists denies everyone.
fn entries_table(
    entries: &[String],
    path: &str,
    lists: &IpLists,
    errs: &mut Errors,
    ok: &mut bool,
) -> Option<Arc<IpTable>> {
    if entries.is_empty() {
        return None;
    }
    let mut refs: Vec<&Arc<IpTable>> = Vec::new();
    let mut nets: Vec<Net> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Some(name) = entry.strip_prefix('@') {
            match lists.get(name) {
                Some(t) => refs.push(t),
                None => {
                    errs.push(
                        index(path, i),
                        format!("unknown ip list {entry:?} (not in ip_lists)"),
                    );
                    *ok = false;
                }
            }
            continue;
        }
        match parse_net(entry) {
            Ok(n) => nets.push(n),
            Err(e) => {
                errs.push(index(path, i), e.to_string());
                *ok = false;
            }
        }
    }
    // A lone reference shares the list's table; anything else gets one merged table, so one lookup.
    if let ([only], true) = (refs.as_slice(), nets.is_empty()) {
        return Some(Arc::clone(only));
    }
    let mut all: Vec<Net> = refs.iter().flat_map(|t| t.nets()).collect();
    all.extend(nets);
    Some(Arc::new(IpTable::from_nets(&all)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::net::IpAddr;

    fn ip(s: &str) -> ClientAddr {
        ClientAddr::Ip(s.parse::<IpAddr>().unwrap().to_canonical())
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn lists() -> IpLists {
        let mut input = IpListsInput::new();
        input.insert(
            "office".into(),
            ListInput::from_entries(["198.51.100.0/24", "2001:db8:1::/48"]),
        );
        input.insert("empty".into(), ListInput::default());
        let mut errs = Errors::default();
        let l = IpLists::compile(&input, "ip_lists", &mut errs);
        assert!(errs.is_empty());
        l
    }

    fn policy(allow: &[&str], deny: &[&str], status: Option<u16>) -> IpPolicy {
        let input = IpInput {
            allow: strings(allow),
            allow_given: true,
            deny: strings(deny),
            deny_status: status,
        };
        let mut errs = Errors::default();
        let p = IpPolicy::compile(&input, "policies.p.ip", &lists(), &mut errs);
        assert!(errs.is_empty(), "{:?}", errs.into_vec());
        p.unwrap()
    }

    fn denied(status: u16, reason: Reason) -> Result<(), Reply> {
        Err(Reply::deny(status, reason))
    }

    #[test]
    fn allow_deny_both_neither() {
        let neither = policy(&[], &[], None);
        let allow = policy(&["10.0.0.0/8", "2001:db8::/32"], &[], None);
        let deny = policy(&[], &["10.0.0.0/8", "2001:db8::/32"], None);
        let both = policy(&["@office", "203.0.113.7"], &["198.51.100.66"], None);
        let cases: &[(&IpPolicy, &str, bool)] = &[
            (&neither, "1.2.3.4", true),
            (&neither, "::1", true),
            (&allow, "10.1.2.3", true),
            (&allow, "11.1.2.3", false),
            (&allow, "2001:db8::1", true),
            (&allow, "2001:db9::1", false),
            (&allow, "::ffff:10.1.2.3", true),
            (&allow, "::ffff:11.1.2.3", false),
            (&deny, "10.1.2.3", false),
            (&deny, "::ffff:10.1.2.3", false),
            (&deny, "11.1.2.3", true),
            (&deny, "2001:db8::1", false),
            (&deny, "2001:db9::1", true),
            (&both, "198.51.100.1", true),
            (&both, "198.51.100.66", false),
            (&both, "::ffff:198.51.100.66", false),
            (&both, "203.0.113.7", true),
            (&both, "203.0.113.8", false),
            (&both, "2001:db8:1:2::1", true),
            (&both, "2001:db8:2::1", false),
        ];
        for (p, addr, pass) in cases {
            let want = if *pass {
                Ok(())
            } else {
                denied(403, Reason::IpDenied)
            };
            assert_eq!(p.check(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(&["10.0.0.0/8"], &["10.0.0.0/8"], None);
        assert_eq!(p.check(ip("10.1.1.1")), denied(403, Reason::IpDenied));
    }

    #[test]
    fn deny_status_404_hides_the_route() {
        let p = policy(&["10.0.0.0/8"], &[], Some(404));
        assert_eq!(p.check(ip("11.1.1.1")), denied(404, Reason::IpDenied));
        assert_eq!(
            p.check(ClientAddr::Invalid),
            denied(404, Reason::ClientIpInvalid)
        );
        assert_eq!(p.check(ip("10.1.1.1")), Ok(()));
        assert_eq!(p.deny_status(), 404);
    }

    #[test]
    fn invalid_client_denied_only_where_allow_applies() {
        assert_eq!(
            policy(&["0.0.0.0/0", "::/0"], &[], None).check(ClientAddr::Invalid),
            denied(403, Reason::ClientIpInvalid)
        );
        assert_eq!(
            policy(&["1.2.3.4"], &["5.6.7.8"], None).check(ClientAddr::Invalid),
            denied(403, Reason::ClientIpInvalid)
        );
        assert_eq!(
            policy(&[], &["5.6.7.8"], None).check(ClientAddr::Invalid),
            Ok(())
        );
        assert_eq!(policy(&[], &[], None).check(ClientAddr::Invalid), Ok(()));
    }

    #[test]
    fn mapped_config_entries_match_ipv4_clients() {
        let p = policy(&[], &["::ffff:10.0.0.0/104"], None);
        assert_eq!(p.check(ip("10.1.2.3")), denied(403, Reason::IpDenied));
        assert_eq!(
            p.check(ip("::ffff:10.1.2.3")),
            denied(403, Reason::IpDenied)
        );
        assert_eq!(p.check(ip("11.1.2.3")), Ok(()));
        // ::1 is IPv6 loopback, not 0.0.0.1 (the to_ipv4() trap).
        let p = policy(&[], &["0.0.0.0/8"], None);
        assert_eq!(p.check(ip("::1")), Ok(()));
        assert_eq!(p.check(ip("0.0.0.1")), denied(403, Reason::IpDenied));
    }

    #[test]
    fn list_references() {
        let p = policy(&["@office"], &[], None);
        assert_eq!(p.check(ip("198.51.100.9")), Ok(()));
        assert_eq!(p.check(ip("2001:db8:1::9")), Ok(()));
        assert_eq!(p.check(ip("198.51.101.9")), denied(403, Reason::IpDenied));
        // A lone reference shares the list's table.
        let l = lists();
        let input = IpInput {
            allow: strings(&["@office"]),
            ..Default::default()
        };
        let p = IpPolicy::compile(&input, "p", &l, &mut Errors::default()).unwrap();
        assert!(Arc::ptr_eq(
            p.allow.as_ref().unwrap(),
            l.get("office").unwrap()
        ));
        // An allow list made of empty lists applies and admits no one.
        let p = policy(&["@empty"], &[], None);
        assert_eq!(p.check(ip("198.51.100.9")), denied(403, Reason::IpDenied));
        let p = policy(&[], &["@empty"], None);
        assert_eq!(p.check(ip("198.51.100.9")), Ok(()));
    }

    #[test]
    fn config_errors_name_the_path_and_all_are_reported() {
        let input = IpInput {
            allow: strings(&["@office", "@nope", "010.0.0.0/8"]),
            allow_given: true,
            deny: strings(&["10.1.2.3/8", "127.1"]),
            deny_status: Some(401),
        };
        let mut errs = Errors::default();
        let p = IpPolicy::compile(&input, "policies.partner.ip", &lists(), &mut errs);
        assert!(p.is_none());
        let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
        let want = [
            "policies.partner.ip.deny_status: 401",
            "policies.partner.ip.allow[1]: unknown ip list \"@nope\"",
            "policies.partner.ip.allow[2]: \"010.0.0.0/8\" is not a valid CIDR (leading zero)",
            "policies.partner.ip.deny[0]: \"10.1.2.3/8\" has host bits set (did you mean \"10.0.0.0/8\"?)",
            "policies.partner.ip.deny[1]: \"127.1\" is not a valid CIDR (short form",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.starts_with(w), "{e} / {w}");
        }
    }

    #[test]
    fn list_errors_name_the_path() {
        let mut input = IpListsInput::new();
        input.insert(
            "office".into(),
            ListInput::from_entries(["10.0.0.0/8", "0x7f.0.0.1", "@other"]),
        );
        input.insert("bad name".into(), ListInput::from_entries(["1.2.3.4"]));
        let mut errs = Errors::default();
        let l = IpLists::compile(&input, "ip_lists", &mut errs);
        let errs: Vec<String> = errs.into_vec().iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("ip_lists.bad name: "));
        assert!(errs[1].starts_with("ip_lists.office[1]: ") && errs[1].contains("hex"));
        assert!(errs[2].starts_with("ip_lists.office[2]: "));
        assert!(l
            .get("office")
            .unwrap()
            .contains("10.9.9.9".parse().unwrap()));
        assert!(l.get("nope").is_none());
    }

    #[test]
    fn input_shape() {
        let i: IpInput =
            crate::json::from_str(r#"{"allow": ["@office"], "deny_status": 404}"#).unwrap();
        assert_eq!(i.allow, ["@office"]);
        assert!(i.deny.is_empty());
        assert_eq!(i.deny_status, Some(404));
        assert!(crate::json::from_str::<IpInput>(r#"{"allowed": []}"#).is_err());
        let l: IpListsInput = crate::json::from_str(r#"{"office": ["198.51.100.0/24"]}"#).unwrap();
        assert_eq!(l["office"].v4, [(0xC633_6400, 24)]);
        assert!(l["office"].v6.is_empty());
        assert!(l["office"].errors.is_empty());
    }

    /// Entries are parsed as the JSON is read (no String kept per entry): good ones become networks,
    /// bad ones keep their index; escaped text is read like plain text; a non-string entry or a list
    /// that is not an array is a parse error naming its path.
    #[test]
    fn lists_are_parsed_entry_by_entry() {
        let l: IpListsInput = crate::json::from_str(
            r#"{"a": ["10.0.0.0/8", "bad", "\u0031\u0030.1.2.3", "@b", "::1"]}"#,
        )
        .unwrap();
        let a = &l["a"];
        assert_eq!(a.v4, [(0x0A00_0000, 8), (0x0A01_0203, 32)]);
        assert_eq!(a.v6, [(1, 128)]);
        assert_eq!(a.errors.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 3]);
        assert!(a.errors[1].1.contains("cannot reference other lists"));
        for (doc, path) in [
            (
                r#"{"ip_lists":{"a":["10.0.0.0/8", 7]},"policies":{},"routes":[]}"#,
                "ip_lists.a[1]",
            ),
            (
                r#"{"ip_lists":{"a":"10.0.0.0/8"},"policies":{},"routes":[]}"#,
                "ip_lists.a",
            ),
        ] {
            let e = crate::document::parse(doc).err().unwrap();
            assert_eq!(e.path, path, "{e}");
        }
    }
}
