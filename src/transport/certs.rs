//! Development PKI: a CA and per-node certificates made with rcgen
//! (`quire certs init`). Production deployments can bring their own PKI
//! instead: any CA works as long as every node's certificate is signed by
//! it, carries the node's name or address as a subject alternative name and
//! allows both server and client authentication (see certs/README.md).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid node name '{0}': use letters, digits, '-', '.' and '_'")]
    BadName(String),
}

/// What a node certificate names and how long it is valid.
#[derive(Debug, Clone)]
pub struct NodeCertSpec {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    /// Validity window in whole days relative to today (a negative end
    /// makes an already-expired certificate, for tests).
    pub valid_from_days: i64,
    pub valid_until_days: i64,
}

impl NodeCertSpec {
    pub fn new(name: &str) -> NodeCertSpec {
        NodeCertSpec {
            name: name.into(),
            ips: Vec::new(),
            dns: Vec::new(),
            valid_from_days: -1,
            valid_until_days: 825,
        }
    }
}

/// The file names a node's TLS identity uses inside a certs directory.
/// The names a certificate proves: its DNS subject alternative names and
/// its common name (what `certs init` writes: the node's name first).
/// Nothing for bytes that are not a certificate.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            if !names.iter().any(|n| n == cn) {
                names.push(cn.to_string());
            }
        }
    }
    names
}

/// Whether a peer whose certificate proves `names` may replicate from
/// this node (`repl.allowed_replicas`): some name matches some pattern
/// (Redis-style globs: `eu-*`, `node-?`). An empty list admits every
/// certificate the CA signed. `localhost`, which every certificate from
/// `certs init` carries, never counts.
pub fn admitted(patterns: &[String], names: &[String]) -> bool {
    patterns.is_empty()
        || names.iter().filter(|n| n.as_str() != "localhost").any(|n| {
            patterns
                .iter()
                .any(|p| crate::keyspace::glob_match(p.as_bytes(), n.as_bytes(), true))
        })
}

pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}
pub fn node_cert_path(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{node}.pem"))
}
pub fn node_key_path(dir: &Path, node: &str) -> PathBuf {
    dir.join(format!("{node}.key"))
}

fn day(offset_days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(offset_days)
}

/// The CA's parameters. They are rebuilt the same way each time so that a
/// CA key saved earlier can sign new node certificates (the issuer name
/// and key identifier come out identical).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Quire replication CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Quire");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = day(-1);
    params.not_after = day(3650);
    Ok(params)
}

fn write(path: &Path, text: &str) -> Result<(), CertError> {
    crate::persist::write_atomically(path, text.as_bytes()).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    if path.extension().is_some_and(|e| e == "key") {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A CA able to sign node certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// Creates a new CA in `dir` (ca.pem, ca.key).
    pub fn create(dir: &Path) -> Result<Authority, CertError> {
        std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let key = KeyPair::generate()?;
        let params = ca_params()?;
        let cert = params.self_signed(&key)?;
        write(&ca_cert_path(dir), &cert.pem())?;
        write(&ca_key_path(dir), &key.serialize_pem())?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
        })
    }

    /// Opens the CA in `dir` if its key is there.
    pub fn open(dir: &Path) -> Result<Option<Authority>, CertError> {
        let key_path = ca_key_path(dir);
        if !key_path.exists() || !ca_cert_path(dir).exists() {
            return Ok(None);
        }
        let key = KeyPair::from_pem(&read(&key_path)?)?;
        Ok(Some(Authority {
            issuer: Issuer::new(ca_params()?, key),
        }))
    }

    /// Opens the CA in `dir`, creating it when absent.
    pub fn open_or_create(dir: &Path) -> Result<(Authority, bool), CertError> {
        match Authority::open(dir)? {
            Some(ca) => Ok((ca, false)),
            None => Ok((Authority::create(dir)?, true)),
        }
    }

    /// Issues `NAME.pem`/`NAME.key` in `dir`, valid for server and client
    /// authentication, naming the node, `localhost` and the given addresses.
    pub fn issue(&self, dir: &Path, spec: &NodeCertSpec) -> Result<(PathBuf, PathBuf), CertError> {
        let valid = !spec.name.is_empty()
            && spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid {
            return Err(CertError::BadName(spec.name.clone()));
        }
        let mut names = vec![spec.name.clone()];
        names.extend(spec.dns.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, spec.name.as_str());
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = day(spec.valid_from_days);
        params.not_after = day(spec.valid_until_days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let (cert_path, key_path) = (
            node_cert_path(dir, &spec.name),
            node_key_path(dir, &spec.name),
        );
        write(&cert_path, &cert.pem())?;
        write(&key_path, &key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_certificate_proves_its_node_name_and_extra_dns_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::create(dir.path()).unwrap();
        let mut spec = NodeCertSpec::new("eu-west");
        spec.dns.push("eu-west.quire.svc".into());
        let (cert, _) = ca.issue(dir.path(), &spec).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap();
        let names = cert_names(&der);
        assert_eq!(names[0], "eu-west");
        assert!(names.contains(&"eu-west.quire.svc".to_string()));
        assert!(cert_names(b"not a certificate").is_empty());
    }

    #[test]
    fn allowed_replicas_match_names_by_glob() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let allowed = names(&["eu-west", "ap-*"]);
        assert!(admitted(&allowed, &names(&["eu-west", "localhost"])));
        assert!(admitted(&allowed, &names(&["AP-South"])));
        assert!(!admitted(&allowed, &names(&["intruder", "localhost"])));
        assert!(!admitted(&names(&["local*"]), &names(&["localhost"])));
        assert!(!admitted(&allowed, &[]));
        assert!(admitted(&[], &names(&["anyone"])), "an empty list is open");
    }
}
