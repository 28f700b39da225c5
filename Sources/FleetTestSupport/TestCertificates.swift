import Foundation

/// A throwaway PKI for TLS tests, generated with the `openssl` CLI (EC
/// P-256 keys, valid for a day or two — fast, and useless outside the test):
///
/// - ``caCertificate``: the test CA, which the broker trusts;
/// - ``server``: the broker's certificate, CN `localhost`, SANs
///   `DNS:localhost` and `IP:127.0.0.1` (so hostname checks pass against
///   `127.0.0.1` and `localhost`);
/// - ``client``: a client certificate signed by the test CA (CN given at
///   generation, e.g. a device's username); ``issueClientCertificate(commonName:)``
///   signs more;
/// - ``otherCACertificate`` and ``otherClient``: a second, unrelated CA and
///   a client certificate it signed, for "a certificate from another CA is
///   refused" tests (and, as a client's CA file, for "the client refuses a
///   broker it cannot verify").
///
/// A ``MosquittoBroker`` started with `tls: true` generates one set into
/// its own directory (once; restarts reuse it) and exposes it as
/// ``MosquittoBroker/certificates``.
public struct TestCertificates: Sendable {
    /// A certificate and its private key (PEM files).
    public struct Identity: Sendable {
        public let commonName: String
        public let certificate: URL
        public let privateKey: URL
    }

    public let directory: URL
    public let caCertificate: URL
    public let caKey: URL
    public let server: Identity
    public let client: Identity
    public let otherCACertificate: URL
    public let otherCAKey: URL
    public let otherClient: Identity
    public let validityDays: Int

    /// ``server``'s certificate (for a broker config).
    public var serverCertificate: URL { server.certificate }
    /// ``server``'s private key.
    public var serverKey: URL { server.privateKey }
    /// ``client``'s certificate (signed by the test CA).
    public var clientCertificate: URL { client.certificate }
    /// ``client``'s private key.
    public var clientKey: URL { client.privateKey }
    /// ``otherClient``'s certificate (signed by the unrelated CA).
    public var otherClientCertificate: URL { otherClient.certificate }
    /// ``otherClient``'s private key.
    public var otherClientKey: URL { otherClient.privateKey }

    /// Generates a full set into `directory` (which must exist). Five
    /// `openssl` runs, in two parallel rounds.
    public static func generate(
        in directory: URL, clientCommonName: String = "test-client", validityDays: Int = 2
    ) async throws -> TestCertificates {
        let openssl = try ExecutableLocator.find("openssl")
        let caCertificate = directory.appendingPathComponent("ca.crt")
        let caKey = directory.appendingPathComponent("ca.key")
        let otherCACertificate = directory.appendingPathComponent("other-ca.crt")
        let otherCAKey = directory.appendingPathComponent("other-ca.key")

        async let ca: Void = makeCA(
            openssl, commonName: "MassageFleet Test CA", certificate: caCertificate, key: caKey,
            days: validityDays)
        async let otherCA: Void = makeCA(
            openssl, commonName: "Unrelated Test CA", certificate: otherCACertificate, key: otherCAKey,
            days: validityDays)
        try await ca
        try await otherCA

        let server = identity(in: directory, stem: "server", commonName: "localhost")
        let client = identity(in: directory, stem: "client", commonName: clientCommonName)
        let otherClient = identity(in: directory, stem: "other-client", commonName: clientCommonName)
        async let signedServer: Void = sign(
            openssl, server, by: caCertificate, key: caKey, days: validityDays,
            extensions: ["subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"])
        async let signedClient: Void = sign(
            openssl, client, by: caCertificate, key: caKey, days: validityDays,
            extensions: ["extendedKeyUsage=clientAuth"])
        async let signedOther: Void = sign(
            openssl, otherClient, by: otherCACertificate, key: otherCAKey, days: validityDays,
            extensions: ["extendedKeyUsage=clientAuth"])
        try await signedServer
        try await signedClient
        try await signedOther

        return TestCertificates(
            directory: directory, caCertificate: caCertificate, caKey: caKey, server: server,
            client: client, otherCACertificate: otherCACertificate, otherCAKey: otherCAKey,
            otherClient: otherClient, validityDays: validityDays)
    }

    /// Signs a new client certificate with the test CA (files
    /// `client-<cn>.crt` / `.key` in ``directory``), e.g. one per simulated
    /// device when the broker uses the certificate name as the username.
    public func issueClientCertificate(commonName: String) async throws -> Identity {
        let openssl = try ExecutableLocator.find("openssl")
        var stem = "client-" + TestCertificates.fileSafe(commonName)
        var attempt = 1
        while FileManager.default.fileExists(atPath: directory.appendingPathComponent("\(stem).crt").path) {
            attempt += 1
            stem = "client-\(TestCertificates.fileSafe(commonName))-\(attempt)"
        }
        let issued = TestCertificates.identity(in: directory, stem: stem, commonName: commonName)
        try await TestCertificates.sign(
            openssl, issued, by: caCertificate, key: caKey, days: validityDays,
            extensions: ["extendedKeyUsage=clientAuth"])
        return issued
    }

    // MARK: openssl

    private static func identity(in directory: URL, stem: String, commonName: String) -> Identity {
        Identity(
            commonName: commonName,
            certificate: directory.appendingPathComponent("\(stem).crt"),
            privateKey: directory.appendingPathComponent("\(stem).key"))
    }

    private static let newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    private static func makeCA(_ openssl: URL, commonName: String, certificate: URL, key: URL, days: Int) async throws {
        try await runOpenSSL(
            openssl,
            ["req", "-x509"] + newKey + [
                "-keyout", key.path, "-out", certificate.path, "-days", String(days),
                "-subj", "/CN=\(escapedSubjectValue(commonName))",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ])
    }

    /// One `openssl req -x509 -CA …` run (OpenSSL 3): new key, certificate
    /// signed by the CA, no CSR round trip.
    private static func sign(
        _ openssl: URL, _ identity: Identity, by caCertificate: URL, key caKey: URL, days: Int,
        extensions: [String]
    ) async throws {
        var arguments =
            ["req", "-x509", "-CA", caCertificate.path, "-CAkey", caKey.path] + newKey + [
                "-keyout", identity.privateKey.path, "-out", identity.certificate.path,
                "-days", String(days), "-subj", "/CN=\(escapedSubjectValue(identity.commonName))",
                "-addext", "basicConstraints=critical,CA:FALSE",
                "-addext", "keyUsage=critical,digitalSignature",
            ]
        for item in extensions {
            arguments += ["-addext", item]
        }
        try await runOpenSSL(openssl, arguments)
    }

    private static func runOpenSSL(_ openssl: URL, _ arguments: [String]) async throws {
        let result = try await ProcessRunner.run(openssl, arguments: arguments, timeout: .seconds(30))
        guard result.succeeded else {
            throw FixtureError(
                "openssl \(arguments.joined(separator: " ")) failed (\(result.status)): "
                    + FileText.tail(result.standardError, lines: 10)
                    + "\nopenssl 3 is required (apt-get install openssl)")
        }
    }

    /// Escapes the characters `-subj` treats specially.
    private static func escapedSubjectValue(_ value: String) -> String {
        var escaped = ""
        for character in value {
            if "/=+,\\".contains(character) {
                escaped.append("\\")
            }
            escaped.append(character)
        }
        return escaped
    }

    private static func fileSafe(_ value: String) -> String {
        let safe = value.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }
        return safe.isEmpty ? "unnamed" : String(safe)
    }
}
