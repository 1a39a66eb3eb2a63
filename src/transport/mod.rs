//! The replication transport: one quinn endpoint per node, mutual TLS from
//! a shared CA, ALPN naming the wire protocol version.
//!
//! Both directions authenticate: a primary accepts only replicas whose
//! client certificate chains to the configured CA, and a replica accepts
//! only an upstream whose certificate chains to the CA *and* names the
//! address (or `repl.upstream_name`) it dialled. Failures are reported with
//! rustls's reason (unknown issuer, expired, name mismatch, no certificate).

pub mod certs;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// ALPN protocol name of the replication wire format
/// (`replication::protocol`): a peer speaking another version is refused
/// during the TLS handshake.
pub const ALPN: &[u8] = b"quire-repl/1";

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "cannot read {path}: {reason} (create development certificates with `quire certs init`)"
    )]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot bind the replication port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A node's TLS identity: the CA it trusts and its own certificate.
#[derive(Debug)]
pub struct TlsIdentity {
    roots: Arc<rustls::RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn pem_error(path: &Path, reason: impl ToString) -> TransportError {
    TransportError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in file"));
    }
    Ok(certs)
}

impl TlsIdentity {
    /// Loads `ca.pem`, `NODE.pem` and `NODE.key` from `dir`.
    pub fn load(dir: &Path, node: &str) -> Result<TlsIdentity, TransportError> {
        Self::load_files(
            &certs::ca_cert_path(dir),
            &certs::node_cert_path(dir, node),
            &certs::node_key_path(dir, node),
        )
    }

    pub fn load_files(ca: &Path, cert: &Path, key: &Path) -> Result<TlsIdentity, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(ca)? {
            roots.add(c).map_err(|e| pem_error(ca, e))?;
        }
        let chain = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        Ok(TlsIdentity {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// Whether `dir` holds an identity for `node` (replication is off
    /// without one unless the node is configured as a replica).
    pub fn present(dir: &Path, node: &str) -> bool {
        certs::ca_cert_path(dir).exists()
            && certs::node_cert_path(dir, node).exists()
            && certs::node_key_path(dir, node).exists()
    }

    /// The server side: client certificates are required and must chain to
    /// the CA.
    pub fn server_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, TransportError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder(self.roots.clone())
            .build()
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut tls =
            rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_client_cert_verifier(verifier)
                .with_single_cert(self.chain.clone(), self.key.clone_key())
                .map_err(|e| TransportError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic =
            QuicServerConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(transport);
        Ok(config)
    }

    /// The client side (a replica dialling its upstream).
    pub fn client_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig, TransportError> {
        let mut tls =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
                .with_root_certificates(self.roots.clone())
                .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
                .map_err(|e| TransportError::Tls(e.to_string()))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic =
            QuicClientConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport);
        Ok(config)
    }
}

/// The names the peer's certificate proves (see [`certs::cert_names`]);
/// empty if it presented none.
pub fn peer_names(conn: &quinn::Connection) -> Vec<String> {
    conn.peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().map(|leaf| certs::cert_names(leaf)))
        .unwrap_or_default()
}

/// Bytes of datagram copies quinn queues on a link.
pub const DATAGRAM_SEND_BUFFER: usize = 64 << 10;

/// Transport parameters for long links: keep-alives well inside the idle
/// timeout so a quiet link stays up, an idle timeout long enough to ride
/// out short cuts, and flow-control windows large enough for a long fat
/// pipe (bandwidth × RTT).
pub fn transport_config(
    settings: &crate::config::ReplSettings,
    link: &crate::config::LinkSettings,
) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let rtt_ms = link.rtt_ms;
    // A replication link is long-lived and dedicated: start the congestion
    // window at the path's bandwidth-delay product (bounded) rather than
    // ~14 KB, so a new or re-established link does not spend several round
    // trips in slow start before it carries the write rate (this is what
    // decides catch-up time after an outage).
    let initial_window = link.derive().map(|d| d.bdp_bytes.clamp(14_720, 4 << 20));
    // The controllers' configs share no trait, only the method names.
    macro_rules! controller {
        ($config:ty) => {{
            let mut c = <$config>::default();
            if let Some(w) = initial_window {
                c.initial_window(w);
            }
            t.congestion_controller_factory(Arc::new(c))
        }};
    }
    match settings.congestion {
        crate::config::Congestion::Bbr => controller!(quinn::congestion::BbrConfig),
        crate::config::Congestion::Newreno => controller!(quinn::congestion::NewRenoConfig),
        crate::config::Congestion::Cubic => controller!(quinn::congestion::CubicConfig),
    };
    // Start from the expected RTT of the link instead of quinn's 333 ms
    // guess, so loss detection and pacing are right from the first flight.
    if rtt_ms > 0 {
        t.initial_rtt(Duration::from_millis(rtt_ms));
    }
    let window = settings.window_bytes.min(u32::MAX as u64) as u32;
    t.keep_alive_interval(Some(Duration::from_millis(settings.keepalive_ms)));
    t.max_idle_timeout(Some(
        Duration::from_millis(settings.idle_timeout_ms)
            .try_into()
            .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))),
    ));
    t.stream_receive_window(window.into());
    t.receive_window((window.saturating_mul(2)).into());
    t.send_window(2 * window as u64);
    // The fast path's datagram copies: a small send queue, so copies that
    // cannot leave (congestion window full) are noticed and skipped rather
    // than sent late; a receive queue for a few round trips of copies.
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    t.datagram_receive_buffer_size(Some(4 << 20));
    t.max_concurrent_uni_streams(0u32.into());
    t.max_concurrent_bidi_streams(4u32.into());
    Arc::new(t)
}

/// Binds a node's replication endpoint: it accepts replicas and dials its
/// upstream from the same UDP socket.
pub fn bind_endpoint(
    addr: SocketAddr,
    identity: &TlsIdentity,
    settings: &crate::config::ReplSettings,
    link: &crate::config::LinkSettings,
) -> Result<quinn::Endpoint, TransportError> {
    let transport = transport_config(settings, link);
    let mut endpoint = quinn::Endpoint::server(identity.server_config(transport.clone())?, addr)
        .map_err(|source| TransportError::Bind { addr, source })?;
    endpoint.set_default_client_config(identity.client_config(transport)?);
    Ok(endpoint)
}
