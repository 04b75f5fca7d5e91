/// The release, as every program reports it: the memcached version whose
/// protocol and behaviour it follows, then `-memcluster`. The node answers
/// `version` and `-V` with it, the proxy with `-proxy` added; the proxy's and
/// memcluster-bench's `--version` print it too.
public enum MemclusterVersion {
    public static let release = "1.6.18-memcluster"
}
