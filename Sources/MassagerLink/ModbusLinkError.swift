import CModbus
import Glibc

/// Every failure of the Modbus link, as one type; libmodbus's errno values
/// (`EMBXILADD`, `EMBBADCRC`, `ETIMEDOUT`…) become a `Kind` here and
/// nowhere else.
public struct ModbusLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// No answer within the response timeout.
        case timeout
        /// A frame with a bad checksum (RTU) or bad framing.
        case badFrame = "bad_frame"
        /// The controller answered with a Modbus exception.
        case exception
        /// The connection is gone (refused, reset, closed) or the device cannot be opened.
        case connection
        /// The controller answered, but it is not what the agent expects
        /// (identity, map version, ceilings).
        case incompatible
        /// Bad settings (host, device, baud).
        case settings
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The error of the last libmodbus call that failed, from `errno`.
    static func fromErrno(_ what: String) -> ModbusLinkError {
        let code = errno
        let text = String(cString: modbus_strerror(code))
        // libmodbus's own codes: MODBUS_ENOBASE + the exception code (1…11)
        // for exceptions, then EMBBADCRC (+12) … EMBBADSLAVE (+17).
        let base = Int32(MODBUS_ENOBASE)
        let kind: Kind
        switch code {
        case ETIMEDOUT: kind = .timeout
        case (base + 1)...(base + 11), base + 14, base + 15: kind = .exception  // exceptions, EMBBADEXC, EMBUNKEXC
        case (base + 12)...(base + 17): kind = .badFrame  // EMBBADCRC, EMBBADDATA, EMBMDATA, EMBBADSLAVE
        default: kind = .connection
        }
        return ModbusLinkError(kind, "\(what): \(text)")
    }
}
