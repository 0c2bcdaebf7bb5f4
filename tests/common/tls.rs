//! Certificates made in the test (rcgen): a private CA and a server certificate for
//! 127.0.0.1, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// PEM files of a private CA and of a certificate it signed.
pub struct TestPki {
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// Another CA's certificate, which did not sign `cert`.
    pub other_ca: PathBuf,
    /// A client certificate the CA signed, with `ca.pem`, as `DOCKER_CERT_PATH` holds
    /// them (`ca.pem`, `cert.pem`, `key.pem`).
    pub client_dir: PathBuf,
    /// The same client certificate with the other CA's `ca.pem`.
    pub client_dir_other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

/// Writes a CA, a certificate for `names` (IP addresses become IP SANs) and a second,
/// unrelated CA into `dir`.
pub fn make_pki(dir: &Path, names: &[&str]) -> TestPki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let issuer = ca("swarm-warden test CA");
    let key = KeyPair::generate().expect("server key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("server params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let other = ca("another CA");
    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "swarm-warden");
    let client = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    let client_dir = |name: &str, ca_pem: String| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("client dir");
        std::fs::write(d.join("ca.pem"), ca_pem).expect("write");
        std::fs::write(d.join("cert.pem"), client.pem()).expect("write");
        std::fs::write(d.join("key.pem"), client_key.serialize_pem()).expect("write");
        d
    };
    TestPki {
        ca: write("ca.pem", issuer.pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
        other_ca: write("other-ca.pem", other.pem()),
        client_dir: client_dir("client", issuer.pem()),
        client_dir_other_ca: client_dir("client-other-ca", other.pem()),
    }
}
