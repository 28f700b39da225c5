/// One figure of a benchmark, printed as one line that `deploy/bench.sh`
/// gathers into the table at the top of docs/BENCHMARKS.md: the figure, the
/// reference measured in the same run (when there is one), and the goal.
/// The benchmarks keep printing their own Markdown tables for people; this
/// line is for the script.
///
///     bench-result {"figure":"publish QoS 1 (msg/s)","value":158451,"reference":245109,...}
public struct BenchResult: Encodable, Sendable {
    /// What the goal is compared with: the figure itself, or figure ÷ reference.
    public enum Measure: String, Encodable, Sendable { case value, ratio }
    /// Which side of the goal passes.
    public enum Comparison: String, Encodable, Sendable { case atLeast = "at_least", atMost = "at_most" }

    public var figure: String
    public var value: Double
    public var unit: String
    public var reference: Double?
    public var referenceName: String?
    public var measure: Measure
    public var comparison: Comparison
    public var goal: Double

    public init(_ figure: String, value: Double, unit: String, reference: Double? = nil, referenceName: String? = nil,
                goal: Double, on measure: Measure = .value, _ comparison: Comparison) {
        self.figure = figure
        self.value = value
        self.unit = unit
        self.reference = reference
        self.referenceName = referenceName
        self.measure = measure
        self.comparison = comparison
        self.goal = goal
    }

    /// The line, with the prefix `deploy/bench.sh` looks for.
    public var line: String {
        func number(_ x: Double) -> String { x.isFinite ? "\(x)" : "null" }
        func text(_ s: String) -> String {
            "\"" + s.unicodeScalars.map { c -> String in
                switch c {
                case "\"": "\\\""
                case "\\": "\\\\"
                case _ where c.value < 0x20: "\\u" + String(c.value, radix: 16).leftPadded(to: 4)
                default: String(c)
                }
            }.joined() + "\""
        }
        var fields = ["\"figure\":\(text(figure))", "\"value\":\(number(value))", "\"unit\":\(text(unit))"]
        if let reference { fields.append("\"reference\":\(number(reference))") }
        if let referenceName { fields.append("\"reference_name\":\(text(referenceName))") }
        fields += ["\"measure\":\(text(measure.rawValue))", "\"comparison\":\(text(comparison.rawValue))", "\"goal\":\(number(goal))"]
        return "bench-result {" + fields.joined(separator: ",") + "}"
    }

    /// Prints `line` on standard output.
    public func print() { Swift.print(line) }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
