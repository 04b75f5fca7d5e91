/// getopt_long's rules in Swift: short options cluster (`-vv`, `-Av`), a short
/// option's value may be attached (`-m64`) or follow (`-m 64`), long options take
/// `--name=value` or `--name value`, and `--` ends the options.
struct OptionScanner {
    enum Token: Equatable {
        case option(Character, value: String?)
        case unknown(String)
        case missingArgument(String)
        case operand(String)
    }

    private let arguments: [String]
    private var index = 0
    /// Remaining letters of a short-option cluster being read.
    private var cluster: Substring = ""
    private var takesValue: [Character: Bool] = [:]
    private let longOptions: [(name: String, hasArgument: Bool, short: Character)]
    private var optionsEnded = false

    init(arguments: [String], shortOptions: String, longOptions: [(name: String, hasArgument: Bool, short: Character)]) {
        self.arguments = arguments
        self.longOptions = longOptions
        var previous: Character?
        for character in shortOptions {
            if character == ":", let letter = previous {
                takesValue[letter] = true
            } else {
                takesValue[character] = false
            }
            previous = character
        }
    }

    mutating func next() -> Token? {
        if !cluster.isEmpty { return nextInCluster() }
        guard index < arguments.count else { return nil }
        let argument = arguments[index]
        index += 1
        if optionsEnded || argument == "-" || !argument.hasPrefix("-") { return .operand(argument) }
        if argument == "--" {
            optionsEnded = true
            return next()
        }
        if argument.hasPrefix("--") { return longOption(argument) }
        cluster = argument.dropFirst()
        return nextInCluster()
    }

    private mutating func nextInCluster() -> Token {
        let letter = cluster.removeFirst()
        guard let needsValue = takesValue[letter] else { return .unknown("-\(letter)") }
        if !needsValue { return .option(letter, value: nil) }
        if !cluster.isEmpty {
            let value = String(cluster)
            cluster = ""
            return .option(letter, value: value)
        }
        guard index < arguments.count else { return .missingArgument("-\(letter)") }
        index += 1
        return .option(letter, value: arguments[index - 1])
    }

    private mutating func longOption(_ argument: String) -> Token {
        let body = argument.dropFirst(2)
        let parts = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let name = String(parts[0])
        guard let entry = longOptions.first(where: { $0.name == name }) else { return .unknown(argument) }
        if !entry.hasArgument { return parts.count > 1 ? .unknown(argument) : .option(entry.short, value: nil) }
        if parts.count > 1 { return .option(entry.short, value: String(parts[1])) }
        guard index < arguments.count else { return .missingArgument(argument) }
        index += 1
        return .option(entry.short, value: arguments[index - 1])
    }
}
