//! `operator token create|list|revoke`: the operator's tokens for the platform routes, over
//! the schema owner's connection (which no serving node holds).

use std::process::ExitCode;

use anyhow::Context;
use portcullis_service::config::Config;
use portcullis_service::{node, platform};
use portcullis_store::audit_writer::rfc3339_micros;
use portcullis_store::operator_tokens::OperatorToken;

use crate::{Lifetime, OperatorTokenCommand};

pub(crate) async fn run(command: OperatorTokenCommand, config: Config) -> anyhow::Result<ExitCode> {
    let db = node::database(&config, false).await?;
    let result = async {
        let owner = portcullis_store::bootstrap::runtime_pool(&db.owner, 2)
            .await
            .context("owner connection")?;
        let code = match command {
            OperatorTokenCommand::Create { name, expires_in } => {
                let lifetime = match expires_in {
                    Lifetime::Never => None,
                    Lifetime::For(d) => Some(d),
                };
                let issued = platform::create_operator_token(&owner, &name, lifetime).await?;
                let t = &issued.operator_token;
                // The token alone on stdout, so that a script can capture it; the rest for people.
                println!("{}", issued.token.expose());
                eprintln!(
                    "operator token {} ({:?}) created, {}; it is shown only this once.\n\
                     Use it as `Authorization: Bearer <token>` on GET /v1/platform/audit; \
                     revoke it with `portcullis operator token revoke {}`.",
                    t.token_id,
                    t.name,
                    match t.expires_at {
                        Some(e) => format!("expires {}", rfc3339_micros(e)),
                        None => "never expires".to_owned(),
                    },
                    t.token_id
                );
                ExitCode::SUCCESS
            }
            OperatorTokenCommand::List { json } => {
                let list = platform::list_operator_tokens(&owner).await?;
                let now = time::OffsetDateTime::now_utc();
                for t in &list {
                    if json {
                        println!("{}", serde_json::to_string(&token_json(t, now))?);
                    } else {
                        println!(
                            "{}  {:<8} {:<14} last used {:<27} {}",
                            t.token_id,
                            state(t, now),
                            t.hint,
                            t.last_used_at
                                .map(rfc3339_micros)
                                .unwrap_or_else(|| "never".into()),
                            t.name,
                        );
                    }
                }
                if !json {
                    eprintln!("{} operator tokens", list.len());
                }
                ExitCode::SUCCESS
            }
            OperatorTokenCommand::Revoke { token_id } => {
                let id = portcullis_core::OperatorTokenId::parse(&token_id)
                    .map_err(|_| anyhow::anyhow!("not an operator token id: {token_id}"))?;
                match platform::revoke_operator_token(&owner, id).await {
                    Ok((_, true)) => println!("revoked operator token {id}"),
                    Ok((t, false)) => println!(
                        "operator token {id} was already revoked ({})",
                        t.revoked_at.map(rfc3339_micros).unwrap_or_default()
                    ),
                    Err(portcullis_service::ServiceError::NotFound) => {
                        eprintln!("error: no operator token {id}");
                        return Ok(ExitCode::FAILURE);
                    }
                    Err(e) => return Err(e.into()),
                }
                ExitCode::SUCCESS
            }
        };
        // Chain the entry this command submitted now, not at a node's next sweep.
        let store = db.store(1).await?;
        store
            .sequence(portcullis_store::PLATFORM_SCOPE)
            .await
            .context("sequencing the audit entries written")?;
        Ok::<_, anyhow::Error>(code)
    }
    .await;
    db.shutdown().await;
    result
}

fn state(t: &OperatorToken, now: time::OffsetDateTime) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

fn token_json(t: &OperatorToken, now: time::OffsetDateTime) -> serde_json::Value {
    serde_json::json!({
        "token_id": t.token_id,
        "name": t.name,
        "hint": t.hint,
        "state": state(t, now),
        "created_at": rfc3339_micros(t.created_at),
        "expires_at": t.expires_at.map(rfc3339_micros),
        "last_used_at": t.last_used_at.map(rfc3339_micros),
        "revoked_at": t.revoked_at.map(rfc3339_micros),
    })
}
