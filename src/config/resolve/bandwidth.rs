//! `bandwidth` and `bandwidth_schedule`, the same on a server block and on
//! a rule: a rate all day, or a daily schedule in local time; not both.

use super::Resolver;
use crate::bandwidth::{self, Bandwidth};
use toml::Spanned;

impl Resolver<'_> {
    /// `prefix` names the table, as the other fields' errors do
    /// (`servers.NAME.` or `watch "NAME": `).
    pub(super) fn bandwidth(
        &mut self,
        prefix: &str,
        rate: Option<&Spanned<String>>,
        schedule: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Option<Bandwidth> {
        match (rate, schedule) {
            (None, None) => Some(Bandwidth::unlimited()),
            (Some(_), Some(s)) => {
                let msg = format!(
                    "{prefix}bandwidth_schedule: give bandwidth (all day) or bandwidth_schedule, not both; \
                     a schedule says the rate for every hour"
                );
                self.c.at(s.span(), msg);
                None
            }
            (Some(r), None) => match bandwidth::parse_rate(r.get_ref()) {
                Ok(rate) => Some(Bandwidth::constant(rate)),
                Err(why) => {
                    self.c.at(r.span(), format!("{prefix}bandwidth: {why}"));
                    None
                }
            },
            (None, Some(s)) => self.schedule(prefix, s),
        }
    }

    fn schedule(&mut self, prefix: &str, raw: &Spanned<Vec<Spanned<String>>>) -> Option<Bandwidth> {
        let field = format!("{prefix}bandwidth_schedule");
        if raw.get_ref().is_empty() {
            let msg = format!("{field}: empty; give entries like [\"08:00 5MB/s\", \"19:00 off\"]");
            self.c.at(raw.span(), msg);
            return None;
        }
        let mut slots = Vec::new();
        let mut ok = true;
        for entry in raw.get_ref() {
            match bandwidth::parse_slot(entry.get_ref()) {
                Ok(slot) => slots.push(slot),
                Err(why) => {
                    self.c.at(entry.span(), format!("{field}: {why}"));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match Bandwidth::schedule(slots) {
            Ok(b) => Some(b),
            Err(why) => {
                self.c.at(raw.span(), format!("{field}: {why}"));
                None
            }
        }
    }
}
