//! Opening the byte stream under the RPC system: TCP, Unix socket, or TLS over TCP.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use crate::error::{Error, Result};
use crate::options::{Address, Tls};

/// The two halves of a connected stream, as the RPC system wants them, and the
/// socket's descriptor (to shut it down under the RPC system, see `Conn::cut`).
pub(crate) type Halves = (
    Box<dyn AsyncRead + Unpin>,
    Box<dyn AsyncWrite + Unpin>,
    RawFd,
);

/// A TLS connector, built once from the options when the client starts (so a bad
/// path is reported by `connect`).
pub(crate) fn tls_connector(tls: &Tls) -> Result<tokio_rustls::TlsConnector> {
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::Tls(format!("{what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.ca).map_err(|e| bad("CA", &tls.ca, &e))? {
        let cert = cert.map_err(|e| bad("CA", &tls.ca, &e))?;
        roots.add(cert).map_err(|e| bad("CA", &tls.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(bad("CA", &tls.ca, &"no certificate in the file"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &tls.client_identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let certs = CertificateDer::pem_file_iter(chain)
                .map_err(|e| bad("certificate", chain, &e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad("certificate", chain, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::Tls(e.to_string()))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Dials `addr`, with TLS when `tls` is given (TCP only).
pub(crate) async fn open(
    addr: &Address,
    tls: Option<(&Tls, &tokio_rustls::TlsConnector)>,
) -> Result<Halves> {
    let failed = |e: std::io::Error| Error::connect(&addr.to_string(), e);
    match addr {
        Address::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(failed)?;
            let fd = stream.as_raw_fd();
            let (r, w) = stream.into_split();
            Ok((Box::new(r.compat()), Box::new(w.compat_write()), fd))
        }
        Address::Tcp(a) => {
            let stream = tokio::net::TcpStream::connect(a.as_str())
                .await
                .map_err(failed)?;
            // Small request/answer messages: do not let Nagle hold a cancel back.
            stream.set_nodelay(true).map_err(failed)?;
            // A vanished server host sends no FIN; the kernel's probes notice it even
            // when keepalive pings are off.
            let probes = socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(30))
                .with_interval(Duration::from_secs(10))
                .with_retries(3);
            socket2::SockRef::from(&stream)
                .set_tcp_keepalive(&probes)
                .map_err(failed)?;
            let fd = stream.as_raw_fd();
            match tls {
                None => {
                    let (r, w) = stream.into_split();
                    Ok((Box::new(r.compat()), Box::new(w.compat_write()), fd))
                }
                Some((settings, connector)) => {
                    let name = settings
                        .server_name
                        .as_deref()
                        .or(addr.host())
                        .unwrap_or_default()
                        .to_owned();
                    let name = ServerName::try_from(name.clone())
                        .map_err(|e| Error::Tls(format!("server name {name:?}: {e}")))?;
                    let stream = connector.connect(name, stream).await.map_err(failed)?;
                    let (r, w) = tokio::io::split(stream);
                    Ok((Box::new(r.compat()), Box::new(w.compat_write()), fd))
                }
            }
        }
    }
}
