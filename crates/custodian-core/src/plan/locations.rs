//! `from N locations`, `from lon1 and EUROPE` and `with quorum N`: where `serve --queue` runs a
//! check and how many locations must see it fail; checked once the whole line is matched, so
//! the clauses may come in any order.

use super::{Cx, Planner};
use crate::spec::{valid_location_name, Job, Locations};
use custodian_dsl::ast::{FromClause, Span, Spanned};
use custodian_dsl::Location;

/// Most locations one check may run from.
const MAX_LOCATIONS: u32 = 100;

const NAME_RULE: &str = "location names are 1-32 lower-case letters a-z, digits, `-` and `_`, \
     starting with a letter or digit";

impl Planner<'_> {
    /// `with quorum N`, as matched; its checks against `from` wait for the whole line.
    pub(super) fn quorum(&mut self, cx: Cx<'_>, job: &mut Job, n: u64, span: Span) {
        if self.quorum_at.is_some() {
            let hint = Some("keep one `with quorum N`".to_string());
            return self.error(cx, span, "`with quorum` is given twice", hint);
        }
        self.quorum_at = Some(span);
        if n == 0 {
            let hint = "the quorum is how many locations must see the check fail: 1 or more";
            return self.error(cx, span, "quorum 0 is impossible", Some(hint.into()));
        }
        job.quorum = Some(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Sets `job.from` from the statement's clause and checks the quorum against it.
    pub(super) fn locations(&mut self, cx: Cx<'_>, job: &mut Job) {
        let clause = cx.test.from.as_ref();
        job.from = match clause.map(|c| &c.value) {
            Some(FromClause::Count(n)) => self.location_count(cx, n),
            Some(FromClause::Names(words)) => {
                self.location_names(cx, words, cx.locations.unwrap_or_default())
            }
            None => None,
        };
        let (Some(q), Some(at)) = (job.quorum, self.quorum_at) else {
            return;
        };
        match (&job.from, clause) {
            (Some(from), _) if q > from.count() => {
                let n = from.count();
                let msg = format!("impossible quorum: {q} of {n} location(s) must see a failure");
                let hint =
                    format!("write `with quorum {n}` or less, or run it from more locations");
                self.error(cx, at, msg, Some(hint));
            }
            (None, None) => {
                let hint = "add `from N locations` (or `from lon1 and ams1`)".to_string();
                self.error(cx, at, "`with quorum` needs `from`", Some(hint));
            }
            // A bad `from` was reported already.
            _ => {}
        }
    }

    fn location_count(&mut self, cx: Cx<'_>, n: &Spanned<String>) -> Option<Locations> {
        match n.value.parse::<u32>() {
            Ok(0) => {
                let hint = "write `from 1 location` or more";
                self.error(
                    cx,
                    n.span,
                    "`from 0 locations` names no location",
                    Some(hint.into()),
                );
                None
            }
            Ok(count) if count <= MAX_LOCATIONS => Some(Locations::Any(count)),
            _ => {
                let msg = format!("{} locations is out of range (1-{MAX_LOCATIONS})", n.value);
                self.error(cx, n.span, msg, None);
                None
            }
        }
    }

    /// Checks each name; a word written twice is an error, a name that two macros (or a macro
    /// and a word) share is one location. Sorted, so the order written does not change the id.
    fn location_names(
        &mut self,
        cx: Cx<'_>,
        words: &[Spanned<String>],
        locations: &[Location],
    ) -> Option<Locations> {
        let before = self.errors();
        for (i, w) in words.iter().enumerate() {
            if words[..i].iter().any(|x| x.value == w.value) {
                let msg = format!("`{}` is named twice in `from`", w.value);
                self.error(cx, w.span, msg, Some("name each location once".into()));
            }
        }
        // One error per word: a fetched macro of bad names would otherwise repeat it per member.
        let mut reported: Option<Span> = None;
        for l in locations {
            if valid_location_name(&l.name) || reported == Some(l.span) {
                continue;
            }
            reported = Some(l.span);
            let via = l.via.as_ref().map(|m| format!(" (a member of {m})"));
            let msg = format!(
                "`{}` is not a location name{}",
                l.name,
                via.unwrap_or_default()
            );
            self.error(cx, l.span, msg, Some(NAME_RULE.into()));
        }
        let mut names: Vec<String> = locations.iter().map(|l| l.name.clone()).collect();
        names.sort();
        names.dedup();
        let span = match (words.first(), words.last()) {
            (Some(a), Some(b)) => Span::new(a.span.start, b.span.end),
            _ => cx.test.probe.span,
        };
        if names.len() > MAX_LOCATIONS as usize {
            let msg = format!("{} locations, more than {MAX_LOCATIONS}", names.len());
            self.error(cx, span, msg, None);
        }
        let empty = names.is_empty();
        if empty && self.errors() == before {
            // Only a fetched macro without members gets here; its fetch warned already.
            let msg = "`from` names no location";
            let hint = "give the macro members, or write `from N locations`";
            self.error(cx, span, msg, Some(hint.into()));
        }
        (self.errors() == before).then_some(Locations::Named(names))
    }
}
