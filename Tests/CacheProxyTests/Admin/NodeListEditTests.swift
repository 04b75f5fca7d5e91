@testable import CacheProxy
import Testing

/// `memcluster-admin add` / `remove` edit the node list as text: comments and
/// the rest of the file stay, and the result parses to the list plus or minus
/// exactly that node.
@Suite("Node list edits")
struct NodeListEditTests {
    let file = """
        # the proxies' shared file
        listen: 127.0.0.1:22121
        nodes:
          - 10.0.0.1:11211     # rack a
          - address: 10.0.0.2:11211
            weight: 2
          - "10.0.0.3:11211 gamma"
        # after the list
        replicas: 2
        """

    @Test func addingAppendsAfterTheLastItemAndKeepsComments() throws {
        let edited = try NodeListEdit.adding("10.0.0.4:11211:3 delta", to: file)
        #expect(edited.contains("# rack a") && edited.contains("# after the list"))
        #expect(edited.contains("    weight: 2\n  - \"10.0.0.3:11211 gamma\"\n  - \"10.0.0.4:11211:3 delta\"\n# after the list"))
        let nodes = try ConfigurationFile.parse(edited).nodes
        #expect(nodes.last == RingNode(host: "10.0.0.4", port: 11211, weight: 3, name: "delta"))
        #expect(nodes.count == 4)
    }

    @Test func removingTakesTheWholeItemAStringOrAMapping() throws {
        let withoutMapping = try NodeListEdit.removing(HostPort(host: "10.0.0.2", port: 11211), from: file)
        #expect(!withoutMapping.contains("weight: 2"))
        #expect(try ConfigurationFile.parse(withoutMapping).nodes.map(\.host) == ["10.0.0.1", "10.0.0.3"])
        let withoutFirst = try NodeListEdit.removing(HostPort(host: "10.0.0.1", port: 11211), from: file)
        #expect(!withoutFirst.contains("rack a"))
        #expect(try ConfigurationFile.parse(withoutFirst).nodes.map(\.host) == ["10.0.0.2", "10.0.0.3"])
    }

    @Test func refusals() {
        #expect(throws: ConfigurationError.self) { try NodeListEdit.adding("10.0.0.1:11211", to: file) }   // already there
        #expect(throws: ConfigurationError.self) { try NodeListEdit.adding("not a node:x", to: file) }
        #expect(throws: ConfigurationError.self) {
            try NodeListEdit.removing(HostPort(host: "10.9.9.9", port: 1), from: file)
        }
        #expect(throws: ConfigurationError.self) {
            try NodeListEdit.adding("10.0.0.9:1", to: "nodes: [10.0.0.1:11211, 10.0.0.2:11211]\n")
        }
    }
}
