// The fixtures' API speaks the kit's types (a `WireJSON` config overlay,
// a thrown `TimeoutError`, a `TemporaryDirectory`), so whoever imports the
// fixtures gets the kit too: `import FleetTestSupport` is enough in a test.
@_exported import FleetTestKit
