//! Notices (お知らせ) and the system-wide push suspension (SPEC R5).

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInput {
    pub push_suspended: bool,
    #[serde(default)]
    pub notice_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeInput {
    pub kind: String,
    pub title: String,
    pub body: String,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
}

impl App {
    pub fn system(&self) -> Result<SystemState> {
        self.store.read()?.system()
    }

    /// `PUT /api/v1/admin/system`: push suspension needs a notice to turn on.
    pub fn set_system(&self, operator: &str, input: SystemInput, now: Ms) -> Result<SystemState> {
        if input.push_suspended && input.notice_id.is_none() {
            return Err(Error::bad_field("notice_id", "is required to suspend push authentication (tell the customers why)"));
        }
        let actor = format!("operator:{operator}");
        self.call(Durability::Durable, move |tx, _| {
            if let Some(id) = &input.notice_id {
                if tx.notice(id)?.is_none() {
                    return Err(Error::bad_field("notice_id", "no such notice"));
                }
            }
            let before = tx.system()?;
            let after = SystemState { push_suspended: input.push_suspended, notice_id: input.notice_id.clone() };
            tx.put_system(&after)?;
            // Push back on: the notice that explained the suspension ends now
            // (unless it had ended already), in this same write and audit entry.
            let mut notice_ended = None;
            if before.push_suspended && !after.push_suspended {
                if let Some(mut n) = before.notice_id.as_deref().map(|id| tx.notice(id)).transpose()?.flatten() {
                    if n.ends_at.is_none_or(|e| e > now) {
                        n.ends_at = Some(now.max(n.starts_at));
                        tx.put_notice(&n)?;
                        notice_ended = Some(json!({"id": n.id, "ends_at": n.ends_at.map(rfc3339)}));
                    }
                }
            }
            tx.audit(NewEvent::new("system_changed", actor.clone()).detail(json!({
                "before": {"push_suspended": before.push_suspended, "notice_id": before.notice_id},
                "after": {"push_suspended": after.push_suspended, "notice_id": after.notice_id},
                "notice_ended": notice_ended,
                "at": rfc3339(now),
            })))?;
            Ok(after)
        })
    }

    pub fn create_notice(&self, operator: &str, input: NoticeInput, now: Ms) -> Result<Notice> {
        if !matches!(input.kind.as_str(), "outage" | "maintenance" | "terms" | "info") {
            return Err(Error::bad_field("kind", "must be outage, maintenance, terms or info"));
        }
        check_text("title", &input.title, 1, 200)?;
        if input.body.chars().count() > 10_000 || input.body.chars().any(|c| c.is_control() && c != '\n') {
            return Err(Error::bad_field("body", "must be at most 10000 characters, without control characters but newlines"));
        }
        let lang = input.lang.unwrap_or_else(|| "ja".into());
        if !matches!(lang.as_str(), "ja" | "en") {
            return Err(Error::bad_field("lang", "must be ja or en"));
        }
        let starts_at = input.starts_at.as_deref().map(|s| parse_rfc3339("starts_at", s)).transpose()?.unwrap_or(now);
        let ends_at = input.ends_at.as_deref().map(|s| parse_rfc3339("ends_at", s)).transpose()?;
        if ends_at.is_some_and(|e| e <= starts_at) {
            return Err(Error::bad_field("ends_at", "must be after starts_at"));
        }
        let n = Notice {
            id: format!("n_{}", ids::random_hex(8)),
            kind: input.kind,
            title: input.title,
            body: input.body,
            lang,
            starts_at,
            ends_at,
            created_at: now,
        };
        let actor = format!("operator:{operator}");
        let rec = n.clone();
        self.call(Durability::Durable, move |tx, _| {
            tx.put_notice(&rec)?;
            tx.audit(NewEvent::new("notice_created", actor.clone()).detail(json!({"id": rec.id, "kind": rec.kind, "title": rec.title})))?;
            Ok(())
        })?;
        Ok(n)
    }

    pub fn delete_notice(&self, operator: &str, id: &str) -> Result<()> {
        let (id, actor) = (id.to_string(), format!("operator:{operator}"));
        self.call(Durability::Durable, move |tx, _| {
            if tx.system()?.push_suspended && tx.system()?.notice_id.as_deref() == Some(id.as_str()) {
                return Err(Error::Conflict("this notice explains the current push suspension; end the suspension first".into()));
            }
            if !tx.delete_notice(&id)? {
                return Err(Error::NotFound("no such notice".into()));
            }
            tx.audit(NewEvent::new("notice_deleted", actor.clone()).detail(json!({"id": id})))?;
            Ok(())
        })
    }

    pub fn notices(&self) -> Result<Vec<Notice>> {
        let mut all = self.store.read()?.notices()?;
        all.sort_by_key(|n| std::cmp::Reverse(n.starts_at));
        Ok(all)
    }

    /// Public notices whose time overlaps `[from, to]` (both default to now).
    pub fn public_notices(&self, from: Ms, to: Ms, lang: Option<&str>) -> Result<Vec<Notice>> {
        Ok(self
            .notices()?
            .into_iter()
            .filter(|n| n.starts_at <= to && n.ends_at.is_none_or(|e| e > from))
            .filter(|n| lang.is_none_or(|l| n.lang == l))
            .collect())
    }
}
