//! One module per aggregate. Functions take `&mut TenantTx` (tenant data) or `&mut AuthTx`
//! (identity-level data) and store exactly what they are given.

pub mod audit_log;
pub mod documents;
pub mod environments;
pub mod identities;
pub mod installation;
pub mod integrations;
pub mod invitations;
pub mod members;
pub mod projects;
pub mod roles;
pub mod sessions;
pub mod tokens;

/// Cursor pagination: rows after `after` (by id, ascending), at most `limit`.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub after: Option<uuid::Uuid>,
    pub limit: i64,
}

impl Page {
    pub const MAX_LIMIT: i64 = 200;

    pub fn new(after: Option<uuid::Uuid>, limit: Option<i64>) -> Page {
        Page {
            after,
            limit: limit.unwrap_or(50).clamp(1, Self::MAX_LIMIT),
        }
    }

    /// Fetch one extra row to learn whether another page exists.
    pub(crate) fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }
}

/// A page of results and the cursor for the next one.
#[derive(Clone, Debug)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<uuid::Uuid>,
}

impl<T> Paged<T> {
    pub(crate) fn from_rows(
        mut rows: Vec<T>,
        page: Page,
        id: impl Fn(&T) -> uuid::Uuid,
    ) -> Paged<T> {
        let next = if rows.len() as i64 > page.limit {
            rows.truncate(page.limit as usize);
            rows.last().map(&id)
        } else {
            None
        };
        Paged { items: rows, next }
    }
}
