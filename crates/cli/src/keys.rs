//! `keys status|rotate|rotate-root|rotate-pii`: envelope-encryption keys of the environments and
//! of the platform.

use std::process::ExitCode;

use anyhow::Context;
use portcullis_service::config::Config;
use portcullis_service::node;

use crate::progress::Progress;
use crate::KeysCommand;

pub(crate) async fn run(command: KeysCommand, config: Config) -> anyhow::Result<ExitCode> {
    use portcullis_core::EnvironmentId;
    use portcullis_service::jobs;
    let db = node::database(&config, false).await?;
    let result = async {
        let store = db.store(4).await?;
        let owner = portcullis_store::bootstrap::runtime_pool(&db.owner, 2).await.context("owner connection")?;
        let vault = node::vault(&config).await?;
        let parse = |s: &str| EnvironmentId::parse(s).map_err(|e| anyhow::anyhow!("{e}"));
        match command {
            KeysCommand::Status {
                platform: true,
                json,
                ..
            } => {
                let st = portcullis_store::pii::status(&owner).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&st)?);
                } else {
                    println!(
                        "platform keyring  email index key kek {}",
                        st.email_index_kek
                            .as_ref()
                            .map_or("(not created yet)".to_owned(), |k| k.to_string())
                    );
                    for v in &st.pii_versions {
                        println!(
                            "  PII v{:<4} {:<7} {:>8} accounts {:>8} invitations {:>8} subject keys  kek {}",
                            v.version,
                            if v.active { "active" } else { "usable" },
                            v.identities,
                            v.invitations,
                            v.subject_keys,
                            v.kek
                        );
                    }
                    if st.clear_identities + st.clear_invitations > 0 {
                        println!(
                            "  in clear (sealed at next server start): {} accounts, {} invitations",
                            st.clear_identities, st.clear_invitations
                        );
                    }
                }
            }
            KeysCommand::Status { environment, json, .. } => {
                let envs = match environment {
                    Some(e) => vec![parse(&e)?],
                    None => portcullis_store::vault::operator::keyrings(&owner)
                        .await?
                        .into_iter()
                        .map(|(e, _, _)| EnvironmentId::from_uuid(e))
                        .collect(),
                };
                let mut all = vec![];
                for env in envs {
                    all.push(jobs::status(&store, &vault, env).await.with_context(|| format!("environment {env}"))?);
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    for s in &all {
                        println!("environment {}  kek {}  active v{}  usable from v{}  rotated {}", s.environment_id, s.kek, s.active_version, s.min_decrypt_version, s.rotated_at);
                        for v in &s.versions {
                            let state = if v.retired_at.is_some() { "retired" } else if v.active { "active" } else { "usable" };
                            println!("  v{:<4} {:<8} {:>8} values", v.version, state, v.rows);
                        }
                        if s.plaintext_rows > 0 {
                            println!("  not yet encrypted: {} values", s.plaintext_rows);
                        }
                        for j in s.jobs.iter().filter(|j| j.finished_at.is_none()) {
                            println!("  job {} to v{}: {} values re-encrypted so far (unfinished)", j.job_id, j.target_version, j.rows_done);
                        }
                    }
                    if all.is_empty() {
                        println!("no environment has a keyring yet");
                    }
                }
            }
            KeysCommand::Rotate { environment, batch } => {
                let env = parse(&environment)?;
                let job = match jobs::running_job(&store, &vault, env).await? {
                    Some(job) => {
                        eprintln!("resuming interrupted re-encryption job {job}");
                        job
                    }
                    None => {
                        let r = jobs::rotate(&store, &vault, env, "operator").await?;
                        eprintln!("data key version {} is now active; re-encrypting existing values (job {})", r.version, r.job_id);
                        r.job_id
                    }
                };
                let mut bar = Progress::new("re-encrypting", "values", None);
                let done = jobs::run_job(&store, &vault, env, job, batch, |o| bar.update(o.rows_done as u64))
                    .await?;
                bar.finish(done.rows_done as u64);
                println!("re-encryption finished: {} values; retire old versions with the API (POST /v1/environments/{env}/keys/retire) once backups no longer need them", done.rows_done);
            }
            KeysCommand::RotatePii => {
                let mut bar = Progress::new("re-sealing", "values", None);
                let done = portcullis_store::pii::rotate(&owner, &store, &vault, |p| {
                    bar.update(p.identities + p.invitations + p.subject_keys)
                })
                .await?;
                bar.finish(done.identities + done.invitations + done.subject_keys);
                let mut tx = store.auth(Default::default()).await?;
                tx.as_system(Default::default()).await?;
                tx.audit(
                    portcullis_store::Actor::System,
                    portcullis_store::AuditEvent::success("keys.pii_rotated", "platform_keys", "pii")
                        .after(done),
                )
                .await?;
                tx.commit().await?;
                println!(
                    "platform PII key version {} is active; re-sealed {} accounts, {} invitations and {} subject keys",
                    done.version, done.identities, done.invitations, done.subject_keys
                );
            }
            KeysCommand::RotateRoot => {
                let (name, envs) = jobs::rotate_root(&store, &owner, &vault).await?;
                println!("new local master key {name}; rewrapped the data keys of {} environments", envs.len());
            }
        }
        // Chain the audit entries this command submitted now rather than at a node's next
        // sweep, so the log is complete when the command returns.
        if let Some(sequencer) = store.sequencer() {
            sequencer.sweep().await.context("sequencing the audit entries written")?;
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    }
    .await;
    db.shutdown().await;
    result
}
