//! `kind = "email"`: mail over SMTP (`lettre`), STARTTLS by default, with optional login.
//!
//! `tls = "starttls"` (default, port 587) refuses to send if the server will not upgrade;
//! `tls = "tls"` is implicit TLS (port 465); `tls = "none"` is allowed only to a relay on this
//! machine (127.0.0.1, ::1, localhost). `ca_file` adds a trusted root for a relay with its own
//! certificate authority.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use vaultmesh_engines::notify::config::secret;
use vaultmesh_engines::notify::registry::{NotifierRegistration, only_keys, string};
use vaultmesh_engines::notify::{Message, Notifier, SendError};

struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    server: String,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials; only say where mail goes.
        f.debug_struct("Email")
            .field("server", &self.server)
            .field("to", &self.to.len())
            .finish()
    }
}

fn mailbox(key: &str, s: &str) -> Result<Mailbox, String> {
    s.parse()
        .map_err(|e| format!("{key}: {s:?} is not a mail address: {e}"))
}

fn build(_name: &str, t: &toml::Table) -> Result<Arc<dyn Notifier>, String> {
    only_keys(
        t,
        &[
            "server",
            "port",
            "tls",
            "ca_file",
            "username",
            "password",
            "password_file",
            "from",
            "to",
        ],
    )?;
    let server = string(t, "server")?.ok_or("server: missing (the SMTP host)")?;
    let tls_mode = string(t, "tls")?.unwrap_or_else(|| "starttls".into());
    let default_port = match tls_mode.as_str() {
        "tls" => 465,
        "none" => 25,
        _ => 587,
    };
    let port = match t.get("port") {
        None => default_port,
        Some(v) => v
            .as_integer()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("port: must be a port number")?,
    };
    let params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(server.clone());
        if let Some(ca) = string(t, "ca_file")? {
            let pem = std::fs::read(&ca).map_err(|e| format!("ca_file: {ca}: {e}"))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| format!("ca_file: {ca}: {e}"))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| format!("tls: {e}"))
    };
    let tls = match tls_mode.as_str() {
        "starttls" => Tls::Required(params()?),
        "tls" => Tls::Wrapper(params()?),
        "none" => {
            if !matches!(server.as_str(), "127.0.0.1" | "::1" | "localhost") {
                return Err(
                    "tls: \"none\" only to a relay on this machine (127.0.0.1, ::1, localhost); use starttls or tls"
                        .into(),
                );
            }
            Tls::None
        }
        other => {
            return Err(format!("tls: {other:?} is not one of starttls, tls, none"));
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    match (string(t, "username")?, secret(t, "password")?) {
        (Some(user), Some(pass)) => builder = builder.credentials(Credentials::new(user, pass)),
        (None, None) => {}
        _ => return Err("username and password (or password_file): give both or neither".into()),
    }
    let from = mailbox("from", &string(t, "from")?.ok_or("from: missing")?)?;
    let to = match t.get("to") {
        Some(toml::Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or("to: must be strings")
                    .map_err(String::from)
                    .and_then(|s| mailbox("to", s))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(toml::Value::String(s)) => vec![mailbox("to", s)?],
        _ => return Err("to: missing (an address or a list)".into()),
    };
    Ok(Arc::new(Email {
        transport: builder.build(),
        from,
        to,
        server,
    }))
}

inventory::submit! { NotifierRegistration { kind: "email", build } }

#[async_trait]
impl Notifier for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let mut b = lettre::Message::builder()
            .message_id(Some(format!("<{}@vaultmesh>", message.id)))
            .from(self.from.clone())
            .subject(format!("[VaultMesh] {}", message.subject()))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        let mail = b
            .body(message.text(chrono::Utc::now()))
            .map_err(|e| SendError(format!("cannot build the mail: {e}")))?;
        self.transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|e| SendError(format!("SMTP {}: {e}", self.server)))
    }
}
