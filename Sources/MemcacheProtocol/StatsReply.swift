/// The text of a `stats` reply: `STAT <name> <value>` lines, then `END`.
public enum StatsReply {
    public static func render(_ lines: [(String, String)]) -> String {
        var text = ""
        for (name, value) in lines { text += "STAT \(name) \(value)\r\n" }
        return text + "END\r\n"
    }
}
