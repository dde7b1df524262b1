//! Administrative SQL over the instance's private Unix socket, as the
//! bootstrap superuser. Passwords travel only as SCRAM verifiers.

use std::path::Path;
use std::time::Duration;

use strata_core::Secret;
use tokio_postgres::{Client, NoTls};

pub async fn connect(socket_dir: &Path, port: u16) -> Result<Client, tokio_postgres::Error> {
    connect_as(socket_dir, port, "postgres").await
}

/// Connects over the Unix socket in `socket_dir` as `user` (a superuser the
/// socket trusts), to the `postgres` database.
pub async fn connect_as(
    socket_dir: &Path,
    port: u16,
    user: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(port)
        .user(user)
        .dbname("postgres")
        .application_name("strata")
        .connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// Creates (or, when re-provisioning, resets) the application role and its database.
pub async fn ensure_role_and_database(
    client: &Client,
    role: &str,
    database: &str,
    password: &Secret,
) -> Result<(), tokio_postgres::Error> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    client
        .batch_execute(&format!(
            "{verb} ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION PASSWORD '{}'",
            ident(role),
            verifier(password)
        ))
        .await?;
    let db_exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !db_exists {
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                ident(database),
                ident(role)
            ))
            .await?;
    }
    client
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            ident(database)
        ))
        .await?;
    Ok(())
}

/// Sets `role`'s password; only its SCRAM verifier reaches the server.
pub async fn set_password(
    client: &Client,
    role: &str,
    password: &Secret,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            ident(role),
            verifier(password)
        ))
        .await
}
