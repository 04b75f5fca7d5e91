"""libmemcached's memccapable (ascii tests, -a) through the proxy in front of
3 nodes (replicas 2): every test it runs must pass; its whole output, the
proxy's log and the cluster are shown on failure."""

import memccapable


def test_memccapable_ascii_through_proxy(cluster):
    host, port = cluster.addr
    memccapable.assert_all_pass(host, port, cluster.describe())
    assert cluster.proxy.alive(), "proxy died during memccapable; " + cluster.describe()
    assert all(n.alive() for n in cluster.nodes), cluster.describe()
