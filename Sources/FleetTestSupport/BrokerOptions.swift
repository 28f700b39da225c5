import Foundation

/// How a test's ``MosquittoBroker`` is configured.
///
/// The default is an anonymous, plain-TCP broker on one free loopback
/// port, without persistence. Either the fixture generates the config
/// from these options, or — with ``configTemplate`` — it runs a config
/// file the project ships, with ports and paths substituted.
public struct BrokerOptions: Sendable {
    /// Username → password. When not empty, a password file is written
    /// (hashed by `mosquitto_passwd`) and referenced by `password_file`,
    /// and anonymous access is off unless ``allowAnonymous`` says otherwise.
    public var users: [String: String]

    /// `allow_anonymous`; nil means "true unless ``users`` is not empty".
    public var allowAnonymous: Bool?

    /// Contents of an ACL file, written and referenced by `acl_file`.
    /// Mosquitto denies whatever the file does not grant.
    public var acl: String?

    /// Add a TLS listener (second free port, ``MosquittoBroker/tlsPort``)
    /// with certificates from ``TestCertificates``, minimum TLS 1.2. The
    /// plain listener stays. Implied by ``requireClientCertificate`` and
    /// ``useIdentityAsUsername``.
    public var tls: Bool

    /// `require_certificate true` on the TLS listener: clients must present
    /// a certificate signed by the test CA.
    public var requireClientCertificate: Bool

    /// `use_identity_as_username true` on the TLS listener: the client
    /// certificate's CN is the username (ACLs then apply to it). Implies
    /// ``requireClientCertificate``.
    public var useIdentityAsUsername: Bool

    /// CN of ``TestCertificates/client`` (and of ``TestCertificates/otherClient``).
    public var clientCommonName: String

    /// `persistence true` with its database in the broker's directory, so
    /// retained messages and persistent sessions survive ``MosquittoBroker/stop()``
    /// + ``MosquittoBroker/restart()`` (mosquitto saves on SIGTERM; after
    /// ``MosquittoBroker/kill()`` only what an autosave wrote survives —
    /// add `autosave_interval`/`autosave_on_changes` via ``extraConfig``).
    public var persistence: Bool

    /// Lines appended verbatim at the end of the config (after the
    /// listeners, so a listener-scoped option here applies to the last
    /// listener; start a `listener` of your own to scope it).
    public var extraConfig: String

    /// Run this config file instead of generating one (e.g. the shipped
    /// `deploy/mosquitto/…conf`). The fixture first applies
    /// ``templateReplacements`` (literal text, in order — turn a shipped
    /// `listener 8883` into `listener {{TLS_PORT}} 127.0.0.1`, a shipped
    /// path into `{{DIR}}/…`), then fills the placeholders:
    ///
    /// | placeholder | value |
    /// | --- | --- |
    /// | `{{HOST}}` | `127.0.0.1` |
    /// | `{{PORT}}` | a free loopback port (``MosquittoBroker/port``) |
    /// | `{{TLS_PORT}}` | a second free port (``MosquittoBroker/tlsPort``), allocated only when referenced |
    /// | `{{DIR}}` | the broker's temporary directory |
    /// | `{{PERSISTENCE_DIR}}` | `{{DIR}}/persistence/` (with the trailing slash mosquitto wants) |
    /// | `{{PASSWORD_FILE}}` | the password file written from ``users`` |
    /// | `{{ACL_FILE}}` | the ACL file written from ``acl`` |
    /// | `{{CERT_DIR}}`, `{{CAFILE}}`, `{{CERTFILE}}`, `{{KEYFILE}}` | the generated certificates' directory, CA, server certificate and key (generated when referenced or when ``tls`` is set) |
    /// | `{{NAME}}` | ``substitutions``["NAME"] |
    ///
    /// An unknown placeholder, or ``users``/``acl`` given but
    /// `{{PASSWORD_FILE}}`/`{{ACL_FILE}}` not referenced, is an error. The
    /// fixture appends `log_dest stderr` (captured in
    /// ``MosquittoBroker/logFile``) and ``extraConfig``; when the tests run
    /// as root it also sets `user root` (rewriting the template's own
    /// `user` line, if any), so mosquitto keeps access to the temporary
    /// files instead of switching to the `mosquitto` user.
    public var configTemplate: URL?

    /// Literal replacements applied to the template, in order, before the
    /// placeholders are filled (replacement text may contain placeholders).
    public var templateReplacements: [(text: String, replacement: String)]

    /// Extra `{{NAME}}` placeholders for the template (name without braces).
    public var substitutions: [String: String]

    /// How long start-up (and each restart) may take before it fails with
    /// the log tail.
    public var startTimeout: Duration

    /// How long ``MosquittoBroker/stop()`` waits after SIGTERM before SIGKILL.
    public var stopTimeout: Duration

    public init(
        users: [String: String] = [:],
        allowAnonymous: Bool? = nil,
        acl: String? = nil,
        tls: Bool = false,
        requireClientCertificate: Bool = false,
        useIdentityAsUsername: Bool = false,
        clientCommonName: String = "test-client",
        persistence: Bool = false,
        extraConfig: String = "",
        configTemplate: URL? = nil,
        templateReplacements: [(text: String, replacement: String)] = [],
        substitutions: [String: String] = [:],
        startTimeout: Duration = .seconds(10),
        stopTimeout: Duration = .seconds(5)
    ) {
        self.users = users
        self.allowAnonymous = allowAnonymous
        self.acl = acl
        self.tls = tls
        self.requireClientCertificate = requireClientCertificate
        self.useIdentityAsUsername = useIdentityAsUsername
        self.clientCommonName = clientCommonName
        self.persistence = persistence
        self.extraConfig = extraConfig
        self.configTemplate = configTemplate
        self.templateReplacements = templateReplacements
        self.substitutions = substitutions
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
    }

    /// Whether the generated config has a TLS listener.
    var wantsTLS: Bool {
        tls || requireClientCertificate || useIdentityAsUsername
    }

    var effectiveAllowAnonymous: Bool {
        allowAnonymous ?? users.isEmpty
    }
}
