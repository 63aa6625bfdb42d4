//! Projects: create, list, read and delete. Inside a project the caller's effective
//! permissions are the environment role's plus their grant on it (R3, see [`crate::grants`]).

use portcullis_core::{validate, EnvironmentId, Permission, ProjectId};
use portcullis_store::queries::projects::{self, Project};
use portcullis_store::queries::{Page, Paged};
use portcullis_store::AuditEvent;
use time::OffsetDateTime;

use crate::{Principal, ServiceError, ServiceResult, Services};

/// What a caller asks for when creating a project.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub name: String,
}

/// Projects the caller can see: all of them with `projects.read`, otherwise those granted.
pub async fn list_projects(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    page: Page,
) -> ServiceResult<Paged<Project>> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::EnvironmentRead)?;
    let only = if tx.permissions().contains(Permission::ProjectsRead) {
        None
    } else {
        Some(
            tx.caller()
                .actor
                .identity()
                .ok_or(ServiceError::Forbidden(Permission::ProjectsRead))?,
        )
    };
    let page = projects::list(&mut tx, page, only).await?;
    tx.commit().await?;
    Ok(page)
}

pub async fn create_project(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    input: NewProject,
) -> ServiceResult<Project> {
    let mut tx = caller.enter(services, env).await?;
    tx.require(Permission::ProjectsManage)?;
    let name = validate::name("name", &input.name, 200)?;
    let id = ProjectId::new();
    let actor = tx.caller().actor.id().unwrap_or_default();
    let project = projects::create(&mut tx, id, &name, actor, OffsetDateTime::now_utc()).await?;
    tx.audit(AuditEvent::success("project.created", "project", id).after(&project))
        .await?;
    tx.commit().await?;
    Ok(project)
}

pub async fn get_project(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
) -> ServiceResult<Project> {
    let mut tx = caller.enter_project(services, env, project).await?;
    tx.require(Permission::ProjectsRead)?;
    let p = projects::get(&mut tx, project).await?;
    tx.commit().await?;
    Ok(p)
}

/// Deletes a project with its documents and grants.
pub async fn delete_project(
    services: &Services,
    caller: &Principal,
    env: EnvironmentId,
    project: ProjectId,
) -> ServiceResult<()> {
    let mut tx = caller.enter(services, env).await?;
    let before = projects::get(&mut tx, project).await?;
    tx.require(Permission::ProjectsManage)?;
    projects::delete(&mut tx, project).await?;
    tx.audit(AuditEvent::success("project.deleted", "project", project).before(&before))
        .await?;
    tx.commit().await?;
    Ok(())
}
