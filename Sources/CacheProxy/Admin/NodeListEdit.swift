/// Adds a node to, or removes one from, the `nodes:` list of a proxy's YAML
/// file as text, so the operator's comments and layout stay; every edit is
/// checked by parsing the result, which must differ from the original by
/// exactly that node (`memcluster-admin add` / `remove`).
public enum NodeListEdit {
    /// `text` with `entry` (`host:port[:weight] [name]`) as the last item of
    /// its `nodes:` list.
    public static func adding(_ entry: String, to text: String) throws(ConfigurationError) -> String {
        let before = try listing(text)
        let added = try parseEntry(entry)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let list = try nodeList(in: lines)
        let indent = list.items.first.map { String(lines[$0.lowerBound].prefix { $0 == " " }) } ?? "  "
        lines.insert(indent + "- " + quoted(entry), at: list.items.last?.upperBound ?? list.header + 1)
        let result = lines.joined(separator: "\n")
        let after = try ConfigurationFile.parse(result)
        try ProxyServer.refuseDuplicateAddresses(after.nodes)
        guard after.nodes == before.nodes + [added] else {
            throw ConfigurationError("could not add \(entry) to the node list as text; edit the file by hand")
        }
        return result
    }

    /// `text` without the item of its `nodes:` list whose address is `address`.
    public static func removing(_ address: HostPort, from text: String) throws(ConfigurationError) -> String {
        let before = try listing(text)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let list = try nodeList(in: lines)
        var found: Range<Int>?
        for item in list.items {
            let block = "nodes:\n" + lines[item].joined(separator: "\n")
            guard let node = try? ConfigurationFile.parse(block).nodes.first else { continue }
            if HostPort(host: node.host, port: node.port) == address { found = item }
        }
        guard let found else { throw ConfigurationError("\(address) is not in the node list") }
        lines.removeSubrange(found)
        let result = lines.joined(separator: "\n")
        let after = try ConfigurationFile.parse(result)
        guard after.nodes == before.nodes.filter({ HostPort(host: $0.host, port: $0.port) != address }) else {
            throw ConfigurationError("could not remove \(address) from the node list as text; edit the file by hand")
        }
        return result
    }

    /// The configuration `text` holds, when it lists its nodes: a file that
    /// names them by DNS (`discovery:`) changes with the name's records.
    private static func listing(_ text: String) throws(ConfigurationError) -> ProxyConfiguration {
        let configuration = try ConfigurationFile.parse(text)
        if let discovery = configuration.discovery {
            throw ConfigurationError("the file names its nodes by DNS (discovery: \(discovery.name)); change that name's records instead")
        }
        return configuration
    }

    /// A node entry as the file would read it.
    static func parseEntry(_ entry: String) throws(ConfigurationError) -> RingNode {
        guard let node = try ConfigurationFile.parse("nodes:\n  - " + quoted(entry)).nodes.first else {
            throw ConfigurationError("\(entry): not a node")
        }
        return node
    }

    /// `text` as a double-quoted YAML scalar.
    private static func quoted(_ text: String) -> String {
        var out = "\""
        for character in text {
            if character == "\\" || character == "\"" { out.append("\\") }
            out.append(character)
        }
        return out + "\""
    }

    /// The line of `nodes:` and the line ranges of its items (an item is its
    /// `- ` line and the lines indented deeper that follow it).
    private static func nodeList(in lines: [String]) throws(ConfigurationError) -> (header: Int, items: [Range<Int>]) {
        guard let header = lines.firstIndex(where: { $0.hasPrefix("nodes:") }) else {
            throw ConfigurationError("the file has no top-level nodes: list")
        }
        let rest = lines[header].dropFirst("nodes:".count).trimmingLeadingSpaces
        guard rest.isEmpty || rest.hasPrefix("#") else {
            throw ConfigurationError("nodes: is written on one line ([...]); write it as a list of `- host:port` lines to edit it")
        }
        var items: [Range<Int>] = []
        var index = header + 1
        var itemIndent: Int?
        while index < lines.count {
            let line = lines[index]
            let indent = line.prefix { $0 == " " }.count
            let body = line.dropFirst(indent)
            if body.isEmpty || body.hasPrefix("#") {
                index += 1
                continue
            }
            if body.hasPrefix("- ") || body == "-", itemIndent == nil || itemIndent == indent {
                itemIndent = indent
                items.append(index..<(index + 1))
            } else if let itemIndent, indent > itemIndent, let last = items.popLast() {
                items.append(last.lowerBound..<(index + 1))
            } else {
                break
            }
            index += 1
        }
        return (header, items)
    }
}

extension Substring {
    fileprivate var trimmingLeadingSpaces: Substring { drop { $0 == " " } }
}
