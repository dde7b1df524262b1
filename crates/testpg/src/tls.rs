//! Connecting to a PostgreSQL server over TLS, checked against a CA, as
//! tenants do: what the tests of Strata's instances share.

/// Where and as whom [`connect_tls`] connects: an instance's credentials.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
    /// PEM of the CA that must have signed the server's certificate.
    pub ca_pem: &'a str,
}

/// Connects to `to` over TLS (`sslmode=require`), trusting only its CA; the
/// connection runs on its own task.
pub async fn connect_tls(to: Target<'_>) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(to.ca_pem.as_bytes())
        .unwrap_or_else(|e| panic!("the CA certificate is no PEM certificate: {e}"));
    roots
        .add(ca)
        .unwrap_or_else(|e| panic!("the CA certificate is refused: {e}"));
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = tokio_postgres::Config::new();
    config
        .host(to.host)
        .port(to.port)
        .user(to.user)
        .password(to.password)
        .dbname(to.database)
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(std::time::Duration::from_secs(5));
    let (client, conn) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Whether the session `client` runs over TLS, as the server sees it.
pub async fn is_encrypted(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}
