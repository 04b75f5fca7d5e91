/// "1 thread", "2 threads": a count and its noun in the right number, for
/// everything the load generator prints. Every noun it counts takes an s.
func counted(_ count: some BinaryInteger, _ noun: String) -> String {
    count == 1 ? "1 \(noun)" : "\(count) \(noun)s"
}
