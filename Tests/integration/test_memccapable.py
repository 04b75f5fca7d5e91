"""libmemcached's memccapable conformance tool, ascii tests only (-a).

Every test it reports must be `[pass]`; the full output is shown on failure.
"""

import memccapable


def test_memccapable_ascii_all_pass(server):
    host, port, _proc = server
    memccapable.assert_all_pass(host, port, f"server log:\n{server.log()}")
    assert server.alive(), "server died during memccapable; server log:\n" + server.log()
