//! Finding an upstream's replication endpoint from the address a replica
//! was pointed at. Sentinel (and any Redis tool) names a primary by its
//! client port, while the link is QUIC on the replication port: when the
//! address answers RESP over TCP, the replica asks it (`INFO replication`,
//! field `quire_repl_port`) and dials that port on the same host;
//! when nothing listens on TCP there (or what listens does not answer
//! RESP), the address is taken to be the replication endpoint itself
//! (`--replicaof host:repl-port`). A Redis server there, or a Quire node
//! wanting a password the replica lacks, is an error that says so.

use crate::resp::{decode_reply, encode_request, Reply};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DISCOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the link to an upstream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The given port is the upstream's client port; its replication
    /// endpoint is on this UDP port.
    ClientPort { repl_port: u16 },
    /// Nothing answers RESP on the given port: dial it as the replication
    /// endpoint.
    Direct,
}

/// Why the given address cannot be used to find a replication endpoint.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{addr} requires a password: set masterauth")]
    NeedsPassword { addr: String },
    #[error("{addr} refused the replica's AUTH (masterauth): {reason}")]
    BadPassword { addr: String, reason: String },
    #[error(
        "{addr} answers RESP but is not a Quire node with replication (no quire_repl_port in INFO)"
    )]
    NotQuire { addr: String },
    #[error("{addr}: {reason}")]
    Failed { addr: String, reason: String },
}

/// Finds the replication endpoint behind `host:port`.
pub async fn discover(host: &str, port: u16, password: &str) -> Result<Endpoint, DiscoverError> {
    let addr = format!("{host}:{port}");
    let connect = tokio::time::timeout(DISCOVER_TIMEOUT, tokio::net::TcpStream::connect(&addr));
    let mut stream = match connect.await {
        Ok(Ok(stream)) => stream,
        // No TCP listener (or no answer): this is the replication port.
        Ok(Err(_)) | Err(_) => return Ok(Endpoint::Direct),
    };
    let failed = |reason: String| DiscoverError::Failed {
        addr: addr.clone(),
        reason,
    };
    let exchange = async {
        let mut request = Vec::new();
        if !password.is_empty() {
            encode_request(&[b"AUTH".as_slice(), password.as_bytes()], &mut request);
        }
        encode_request(&[b"INFO".as_slice(), b"replication"], &mut request);
        stream.write_all(&request).await?;
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let wanted = if password.is_empty() { 1 } else { 2 };
        let mut chunk = [0u8; 8192];
        while replies.len() < wanted {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before replying",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((reply, used)) = decode_reply(&buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                buf.drain(..used);
                replies.push(reply);
            }
        }
        Ok::<_, std::io::Error>(replies)
    };
    let replies = tokio::time::timeout(DISCOVER_TIMEOUT, exchange)
        .await
        .map_err(|_| failed("no reply to INFO replication".into()))?
        .map_err(|e| failed(e.to_string()))?;
    read_endpoint(&addr, password, &replies)
}

/// The decision from the replies (sans-IO, unit-tested).
fn read_endpoint(addr: &str, password: &str, replies: &[Reply]) -> Result<Endpoint, DiscoverError> {
    let (auth, info) = if password.is_empty() {
        (None, replies.first())
    } else {
        (replies.first(), replies.get(1))
    };
    if let Some(Reply::Error(e)) = auth {
        return Err(DiscoverError::BadPassword {
            addr: addr.into(),
            reason: e.clone(),
        });
    }
    match info {
        Some(Reply::Bulk(Some(text))) => String::from_utf8_lossy(text)
            .lines()
            .find_map(|l| l.strip_prefix("quire_repl_port:"))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
            .map(|repl_port| Endpoint::ClientPort { repl_port })
            .ok_or(DiscoverError::NotQuire { addr: addr.into() }),
        Some(Reply::Error(e)) if e.starts_with("NOAUTH") => {
            Err(DiscoverError::NeedsPassword { addr: addr.into() })
        }
        other => Err(DiscoverError::Failed {
            addr: addr.into(),
            reason: format!("unexpected reply to INFO: {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn reads_the_replication_port_from_info() {
        let info = bulk("# Replication\r\nrole:master\r\nquire_repl_port:7401\r\n");
        assert_eq!(
            read_endpoint("h:1", "", std::slice::from_ref(&info)).unwrap(),
            Endpoint::ClientPort { repl_port: 7401 }
        );
        assert_eq!(
            read_endpoint("h:1", "pw", &[Reply::Status("OK".into()), info]).unwrap(),
            Endpoint::ClientPort { repl_port: 7401 }
        );
    }

    #[test]
    fn says_why_it_cannot() {
        let redis = bulk("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n");
        assert!(matches!(
            read_endpoint("h:1", "", &[redis]),
            Err(DiscoverError::NotQuire { .. })
        ));
        let noauth = Reply::Error("NOAUTH Authentication required.".into());
        assert!(matches!(
            read_endpoint("h:1", "", &[noauth]),
            Err(DiscoverError::NeedsPassword { .. })
        ));
        let wrong = Reply::Error("WRONGPASS invalid username-password pair".into());
        assert!(matches!(
            read_endpoint("h:1", "pw", &[wrong, bulk("")]),
            Err(DiscoverError::BadPassword { .. })
        ));
        let no_endpoint = bulk("quire_repl_port:0\r\n");
        assert!(read_endpoint("h:1", "", &[no_endpoint]).is_err());
    }
}
