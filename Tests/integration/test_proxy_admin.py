"""The proxy's admin endpoint (`metrics_listen`: GET /metrics, POST /reload),
hardened against other users of the machine and against browser pages:

* a bare port (`9150` and `":9150"` in the YAML, `--metrics-listen 9150`,
  and `--metrics 9150`, its older name) listens on 127.0.0.1 only; an
  address written out beyond loopback is honoured, with a warning when no
  token is set (in network namespaces of the test's own, so
  nothing is exposed on this machine's network);
* admin_token / admin_token_file: POST /reload answers 401 (with
  WWW-Authenticate) without the token, with another scheme or a wrong token,
  200 with it; a new token written to the file takes effect with the reload;
  GET /metrics stays open unless admin_token_protects_metrics;
* cross-origin requests with the headers browsers send (a form POST, a
  no-cors fetch, an old browser sending only Origin, `Origin: null`, another
  port of the same host, https, DNS rebinding) get 403 and reload nothing;
  same-origin ones (127.0.0.1 and localhost, the address bar) are answered;
* POST /reload with a body or a Content-Type: 400 / 415;
* methods other than GET and POST: 405 with Allow; HTTP versions other than
  1.0 and 1.1: 505; malformed heads: 400, at once; a head over 8 KiB: 431
  (8 KiB exactly is served);
* connections: a half-sent head is closed 5 s after connecting; of 200 such
  connections at most 32 are held (descriptors counted in /proc), a normal
  /metrics request still gets through, and every one is closed within the
  timeout; a 33rd connection within a second is answered 503 and closed, a
  later one takes the place of the oldest waiting one.

Refusals are compared byte for byte with the expected answer.
"""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

import harness
import proxy_harness as ph

HOST = harness.HOST
TOKEN = "s3cret-0123456789abcdef"
OTHER_TOKEN = "n3w-s3cret-fedcba9876543210"

HEAD_LIMIT = 8 * 1024
HEAD_TIMEOUT = 5.0
CONNECTION_LIMIT = 32
# The endpoint checks deadlines every 250 ms; the rest is this machine's slack.
CLOSE_SLACK = 1.5

BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 27\r\nConnection: close\r\n\r\ntoo many admin connections\n")
UNAUTHORIZED = ("401 Unauthorized", "this request needs Authorization: Bearer <admin_token>\n",
                ['WWW-Authenticate: Bearer realm="memcluster-proxy"'])
WRONG_TOKEN = ("401 Unauthorized", "wrong admin token\n",
               ['WWW-Authenticate: Bearer realm="memcluster-proxy", error="invalid_token"'])
CROSS_ORIGIN = ("403 Forbidden", "cross-origin request refused\n", [])
REBINDING = ("403 Forbidden", "Host does not name this endpoint's loopback address\n", [])
OK_RELOAD = ("200 OK", "OK\n", [])


def answer(status: str, body: str, fields=(), with_body: bool = True) -> bytes:
    """The exact bytes the endpoint sends for a plain-text answer."""
    head = (f"HTTP/1.0 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body.encode())}\r\n")
    head += "".join(f"{f}\r\n" for f in fields)
    return (head + "Connection: close\r\n\r\n" + (body if with_body else "")).encode()


def expected(triple) -> bytes:
    return answer(*triple)


def request(method: str, path: str, headers=(), version: str = "HTTP/1.1", body: bytes = b"") -> bytes:
    """A request head (CRLF line ends) and body; `headers` as (name, value) pairs, in order."""
    lines = [f"{method} {path} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_to_eof(sock: socket.socket, deadline: float) -> tuple[bytes, str]:
    """Everything the server sends until it closes: (bytes, "eof" | "reset"
    | "timeout")."""
    out = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return out, "timeout"
        except ConnectionResetError:
            return out, "reset"
        if not chunk:
            return out, "eof"
        out += chunk
        assert len(out) < (1 << 20), "answer longer than 1 MiB"


def send_raw(addr, data: bytes, netns: str | None = None, timeout: float = 5.0) -> bytes:
    """Sends `data` in one piece and returns all the server sends before it
    closes; fails when it does not close within `timeout`."""
    def go():
        s = socket.create_connection(addr, timeout=timeout)
        try:
            s.sendall(data)
            out, how = read_to_eof(s, time.monotonic() + timeout)
            assert how == "eof", f"the endpoint did not close ({how}) after {out[:300]!r}; sent {data[:200]!r}"
            return out
        finally:
            s.close()
    return ph.run_in_netns(netns, go)


def status_line(raw: bytes) -> bytes:
    return raw.split(b"\r\n", 1)[0]


def reloads(cl: ph.Cluster) -> int:
    return int(cl.stats()["proxy_reloads"])


def listening(pid: int, port: int) -> list[str]:
    """The addresses process `pid` listens on at `port` (its /proc/<pid>/net
    is that process's network namespace)."""
    found = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if width == 4:
                found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------
# where it listens
# --------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["yaml_port", "yaml_colon_port", "flag_port", "old_flag_port"])
def test_bare_port_listens_on_loopback_only(cluster_factory, form):
    cl = cluster_factory(n=1, replicas=1, start_proxy=False)
    port = harness.free_port()
    extra = ()
    if form == "yaml_port":
        cl.options["metrics_listen"] = port              # metrics_listen: 9150
    elif form == "yaml_colon_port":
        cl.options["metrics_listen"] = f":{port}"        # metrics_listen: ":9150"
    elif form == "flag_port":
        extra = ("--metrics-listen", str(port))
    else:
        extra = ("--metrics", str(port))                 # the older name, kept working
    cl.start_proxy(extra_args=extra)
    cl.metrics_addr = (HOST, port)
    assert listening(cl.proxy.pid, port) == ["127.0.0.1"], cl.describe()
    status, headers, body = cl.http("GET", "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4", (status, headers)
    assert "memcluster_proxy_node_up" in body
    assert "without a token" not in cl.proxy_log()


def test_address_beyond_loopback_is_honoured_and_warned_about(proxy_bin):
    ph.require_netns()
    pair = ph.NetnsPair(subnet="10.233.14")
    clusters = []
    try:
        pair.create()
        for port, token in ((9150, None), (9151, TOKEN)):
            options = {"metrics_listen": f"{pair.a_addr}:{port}"}
            if token:
                options["admin_token"] = token
            cl = ph.Cluster(n=1, replicas=1, netns=pair.a, node_netns=[pair.a], options=options)
            clusters.append(cl)
            assert listening(cl.proxy.pid, port) == [pair.a_addr], cl.describe()
            # from the other end of the link; Host names the address, not a loopback name
            addr = (pair.a_addr, port)
            host = [("Host", f"{pair.a_addr}:{port}")]
            got = send_raw(addr, request("GET", "/metrics", host), netns=pair.b)
            assert status_line(got) == b"HTTP/1.0 200 OK" and b"memcluster_proxy_node_up" in got, got[:300]
            got = send_raw(addr, request("POST", "/reload", host), netns=pair.b)
            warning = "the admin endpoint (POST /reload) is reachable beyond this machine without a token"
            if token is None:
                assert got == expected(OK_RELOAD)
                assert warning in cl.proxy_log(), cl.proxy_log()
            else:
                assert got == expected(UNAUTHORIZED)
                got = send_raw(addr, request("POST", "/reload", host + [("Authorization", f"Bearer {token}")]),
                               netns=pair.b)
                assert got == expected(OK_RELOAD)
                assert warning not in cl.proxy_log(), cl.proxy_log()
            assert reloads(cl) == 1
    finally:
        for cl in clusters:
            cl.stop()
        pair.delete()


# --------------------------------------------------------------------------
# the token
# --------------------------------------------------------------------------

def test_reload_needs_the_token_from_the_file(cluster_factory):
    cl = cluster_factory(n=2, replicas=1, start_proxy=False)
    token_path = os.path.join(cl.tmpdir, "admin.token")
    with open(token_path, "w") as f:
        f.write(f"  {TOKEN}\n")                      # surrounding blanks are trimmed
    os.chmod(token_path, 0o600)
    cl.options["admin_token_file"] = "admin.token"   # relative: next to the configuration
    cl.start_proxy(metrics=True)
    addr, own = cl.metrics_addr, [("Host", f"{HOST}:{cl.metrics_addr[1]}")]

    assert send_raw(addr, request("POST", "/reload", own)) == expected(UNAUTHORIZED)
    status, headers, body = cl.http("POST", "/reload")
    assert (status, body, headers["www-authenticate"]) == (401, UNAUTHORIZED[1], 'Bearer realm="memcluster-proxy"')
    for credentials in (f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"):
        got = send_raw(addr, request("POST", "/reload", own + [("Authorization", credentials)]))
        assert got == expected(UNAUTHORIZED), credentials
    for wrong in (TOKEN[:-1] + "X", TOKEN[:-1], TOKEN + "x", "X" + TOKEN[1:], ""):
        got = send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {wrong}")]))
        assert got == expected(WRONG_TOKEN), wrong
    assert reloads(cl) == 0

    assert send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {TOKEN}")])) == expected(OK_RELOAD)
    # the scheme is case-insensitive; http.client adds Content-Length: 0
    status, _h, body = cl.http("POST", "/reload", headers={"Authorization": f"bearer {TOKEN}"})
    assert (status, body) == (200, "OK\n")
    assert reloads(cl) == 2
    # GET /metrics needs no token by default
    status, _h, body = cl.http("GET", "/metrics")
    assert status == 200 and "memcluster_proxy_reloads_total 2" in body, body

    # a new token in the file: the reload that reads it is authorised by the
    # old one, every later one needs the new one
    with open(token_path, "w") as f:
        f.write(OTHER_TOKEN + "\n")
    assert send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {TOKEN}")])) == expected(OK_RELOAD)
    assert send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {TOKEN}")])) == expected(WRONG_TOKEN)
    assert send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {OTHER_TOKEN}")])) == expected(OK_RELOAD)
    assert reloads(cl) == 4

    # a token file that became unusable refuses the reload; the token in force stays
    with open(token_path, "w") as f:
        f.write("short\n")
    got = send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {OTHER_TOKEN}")]))
    assert got == answer("400 Bad Request",
                         f"reload refused: admin token file {token_path}: expected one token of 16 to 1024 "
                         "printable ASCII characters without spaces\n"), got
    assert send_raw(addr, request("POST", "/reload", own + [("Authorization", f"Bearer {TOKEN}")])) == expected(WRONG_TOKEN)
    assert reloads(cl) == 4


def test_token_protects_metrics_when_asked(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True,
                         options={"admin_token": TOKEN, "admin_token_protects_metrics": True})
    addr, own = cl.metrics_addr, [("Host", f"{HOST}:{cl.metrics_addr[1]}")]
    assert send_raw(addr, request("GET", "/metrics", own)) == expected(UNAUTHORIZED)
    got = send_raw(addr, request("GET", "/metrics", own + [("Authorization", f"Bearer {OTHER_TOKEN}")]))
    assert got == expected(WRONG_TOKEN)
    # as Prometheus scrapes with `authorization: {credentials_file: ...}`
    status, headers, body = cl.http("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4"
    assert "# TYPE memcluster_proxy_node_up gauge" in body, body
    assert send_raw(addr, request("POST", "/reload", own)) == expected(UNAUTHORIZED)
    status, _h, body = cl.http("POST", "/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, body) == (200, "OK\n")


# --------------------------------------------------------------------------
# browsers
# --------------------------------------------------------------------------

def test_cross_origin_requests_refused_same_origin_served(cluster_factory):
    # no token: the Origin check alone must keep pages of other sites out
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr = cl.metrics_addr
    port = addr[1]
    own = f"{HOST}:{port}"
    ua = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
    refused = {
        # <form method=post action=http://127.0.0.1:9150/reload> submitted from evil.example
        "form_post": request("POST", "/reload", [
            ("Host", own), ua, ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "0"),
            ("Origin", "http://evil.example"), ("Referer", "http://evil.example/"),
            ("Sec-Fetch-Dest", "document"), ("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-User", "?1"), ("Upgrade-Insecure-Requests", "1")]),
        # fetch("http://127.0.0.1:9150/reload", {method: "POST", mode: "no-cors", body: "reload"})
        "fetch_no_cors": request("POST", "/reload", [
            ("Host", own), ua, ("Accept", "*/*"), ("Content-Type", "text/plain;charset=UTF-8"),
            ("Content-Length", "6"), ("Origin", "http://evil.example"), ("Referer", "http://evil.example/"),
            ("Sec-Fetch-Dest", "empty"), ("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Site", "cross-site")],
            body=b"reload"),
        # a browser that sends Origin but no Sec-Fetch-* headers
        "origin_only": request("POST", "/reload", [
            ("Host", own), ("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "0"),
            ("Origin", "http://evil.example")]),
        # a form in a sandboxed iframe, or after a cross-site redirect
        "origin_null": request("POST", "/reload", [("Host", own), ("Content-Length", "0"), ("Origin", "null")]),
        # another service on this machine (a dev server on another port)
        "other_port": request("POST", "/reload", [
            ("Host", own), ("Content-Length", "0"), ("Origin", "http://127.0.0.1:8080"),
            ("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Mode", "no-cors")]),
        "localhost_other_port": request("POST", "/reload", [
            ("Host", own), ("Content-Length", "0"), ("Origin", "http://localhost:3000"),
            ("Sec-Fetch-Site", "cross-site")]),
        "https_origin": request("POST", "/reload", [("Host", own), ("Origin", f"https://{own}")]),
        # <img src=http://127.0.0.1:9150/metrics>: no Origin on a GET, only Sec-Fetch-Site
        "image_get": request("GET", "/metrics", [
            ("Host", own), ("Accept", "image/avif,image/webp,*/*"), ("Sec-Fetch-Dest", "image"),
            ("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Site", "cross-site")]),
    }
    for name, data in refused.items():
        assert send_raw(addr, data) == expected(CROSS_ORIGIN), name
    # DNS rebinding: evil.example now resolves to 127.0.0.1, so the page is
    # "same origin" for the browser, but Host names evil.example
    rebinding = {
        "post": request("POST", "/reload", [
            ("Host", f"evil.example:{port}"), ("Content-Length", "0"), ("Origin", f"http://evil.example:{port}"),
            ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors")]),
        "get": request("GET", "/metrics", [
            ("Host", f"evil.example:{port}"), ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors")]),
    }
    for name, data in rebinding.items():
        assert send_raw(addr, data) == expected(REBINDING), name
    assert reloads(cl) == 0

    # same origin: a page served from this endpoint's own address
    for origin_host in (own, f"localhost:{port}"):
        got = send_raw(addr, request("POST", "/reload", [
            ("Host", origin_host), ("Content-Length", "0"), ("Origin", f"http://{origin_host}"),
            ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors")]))
        assert got == expected(OK_RELOAD), origin_host
    # typed into the address bar
    got = send_raw(addr, request("GET", "/metrics", [
        ("Host", own), ua, ("Sec-Fetch-Dest", "document"), ("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Site", "none")]))
    assert status_line(got) == b"HTTP/1.0 200 OK" and b"memcluster_proxy_reloads_total 2\n" in got, got[:400]
    assert reloads(cl) == 2


def test_reload_takes_no_body_and_no_content_type(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr, own = cl.metrics_addr, ("Host", f"{HOST}:{cl.metrics_addr[1]}")
    no_body = answer("400 Bad Request", "requests to this endpoint have no body\n")
    cases = {
        "form_type": (request("POST", "/reload", [own, ("Content-Type", "application/x-www-form-urlencoded"),
                                                  ("Content-Length", "0")]),
                      answer("415 Unsupported Media Type",
                             "a POST here takes no body and no Content-Type (curl -X POST)\n")),
        "text_plain": (request("POST", "/reload", [own, ("Content-Type", "text/plain")]),
                       answer("415 Unsupported Media Type",
                              "a POST here takes no body and no Content-Type (curl -X POST)\n")),
        "rebalance_form_type": (request("POST", "/rebalance", [own, ("Content-Type", "application/x-www-form-urlencoded"),
                                                             ("Content-Length", "0")]),
                                answer("415 Unsupported Media Type",
                                       "a POST here takes no body and no Content-Type (curl -X POST)\n")),
        "body": (request("POST", "/reload", [own, ("Content-Length", "4")], body=b"now!"), no_body),
        "json_body": (request("POST", "/reload", [own, ("Content-Type", "application/json"),
                                                  ("Content-Length", "2")], body=b"{}"), no_body),
        "chunked": (request("POST", "/reload", [own, ("Transfer-Encoding", "chunked")], body=b"0\r\n\r\n"), no_body),
        "bad_length": (request("POST", "/reload", [own, ("Content-Length", "-1")]),
                       answer("400 Bad Request", "malformed Content-Length header\n")),
    }
    for name, (data, want) in cases.items():
        assert send_raw(addr, data) == want, name
    assert reloads(cl) == 0
    # as `curl -X POST` sends it (no Content-Length) and as a 1.0 client might (no Host)
    assert send_raw(addr, request("POST", "/reload", [own, ("User-Agent", "curl/7.88.1"), ("Accept", "*/*")])) \
        == expected(OK_RELOAD)
    assert send_raw(addr, request("POST", "/reload", version="HTTP/1.0")) == expected(OK_RELOAD)
    assert reloads(cl) == 2


# --------------------------------------------------------------------------
# methods, versions, malformed heads
# --------------------------------------------------------------------------

def test_methods_versions_and_malformed_heads(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr, own = cl.metrics_addr, ("Host", f"{HOST}:{cl.metrics_addr[1]}")

    def not_allowed(allow: str, with_body: bool = True) -> bytes:
        return answer("405 Method Not Allowed", f"method not allowed; use {allow}\n", [f"Allow: {allow}"], with_body)

    bad = lambda why: answer("400 Bad Request", why + "\n")  # noqa: E731
    cases = {
        "put_reload": (request("PUT", "/reload", [own]), not_allowed("POST")),
        "delete_metrics": (request("DELETE", "/metrics", [own]), not_allowed("GET")),
        "options_reload": (request("OPTIONS", "/reload", [own, ("Origin", "http://evil.example"),
                                                          ("Access-Control-Request-Method", "POST")]),
                           not_allowed("POST")),
        "head_metrics": (request("HEAD", "/metrics", [own]), not_allowed("GET", with_body=False)),
        "patch_elsewhere": (request("PATCH", "/other", [own]), not_allowed("GET, POST")),
        "lowercase_get": (request("get", "/metrics", [own]), not_allowed("GET")),
        "get_reload": (request("GET", "/reload", [own]), not_allowed("POST")),
        "post_metrics": (request("POST", "/metrics", [own]), not_allowed("GET")),
        "unknown_path": (request("GET", "/other", [own]), answer("404 Not Found", "GET /metrics, /health or /ready, or POST /reload or /rebalance\n")),
        "http_2": (request("GET", "/metrics", [own], version="HTTP/2.0"),
                   answer("505 HTTP Version Not Supported", "HTTP/1.0 or HTTP/1.1 only\n")),
        "http_1_2": (request("GET", "/metrics", [own], version="HTTP/1.2"),
                     answer("505 HTTP Version Not Supported", "HTTP/1.0 or HTTP/1.1 only\n")),
        "h2_preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                       answer("505 HTTP Version Not Supported", "HTTP/1.0 or HTTP/1.1 only\n")),
        "http_lowercase": (request("GET", "/metrics", [own], version="http/1.1"), bad("malformed request line")),
        "http_0_9": (b"GET /metrics\r\n", bad("malformed request line")),
        "memcached": (b"stats\r\n", bad("malformed request line")),
        "two_spaces": (b"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", bad("malformed request line")),
        "leading_blank_line": (b"\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", bad("malformed request line")),
        "no_host_1_1": (request("GET", "/metrics"), bad("HTTP/1.1 request without Host")),
        "two_hosts": (request("GET", "/metrics", [own, own]), bad("more than one host header")),
        "two_origins": (request("POST", "/reload", [own, ("Origin", f"http://{own[1]}"), ("Origin", "http://evil.example")]),
                        bad("more than one origin header")),
        "two_authorizations": (request("POST", "/reload", [own, ("Authorization", "Bearer a"), ("Authorization", "Bearer b")]),
                               bad("more than one authorization header")),
        "folded": (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n", bad("malformed header line")),
        "blank_before_colon": (b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", bad("malformed header line")),
        "nul_in_value": (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", bad("malformed header line")),
        "bad_host": (request("GET", "/metrics", [("Host", "a:b:c")]), bad("malformed Host header")),
    }
    for name, (data, want) in cases.items():
        t0 = time.monotonic()
        got = send_raw(addr, data)
        took = time.monotonic() - t0
        assert got == want, f"{name}: {got!r}"
        assert took < HEAD_TIMEOUT / 2, f"{name}: answered after {took:.1f} s, not at once"
    assert reloads(cl) == 0
    # bare LF line ends and HTTP/1.0 without Host are served
    for data in (b"GET /metrics HTTP/1.0\n\n", b"GET /metrics HTTP/1.1\nHost: 127.0.0.1\n\n"):
        got = send_raw(addr, data)
        assert status_line(got) == b"HTTP/1.0 200 OK" and b"memcluster_proxy_node_up" in got, (data, got[:300])


def test_head_size_limit(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr = cl.metrics_addr

    def head_of(size: int) -> bytes:
        start = f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{addr[1]}\r\nX-Pad: ".encode()
        end = b"\r\n\r\n"
        data = start + b"p" * (size - len(start) - len(end)) + end
        assert len(data) == size
        return data

    got = send_raw(addr, head_of(HEAD_LIMIT))
    assert status_line(got) == b"HTTP/1.0 200 OK" and b"memcluster_proxy_node_up" in got, got[:300]
    too_large = answer("431 Request Header Fields Too Large", "request head over 8 KiB\n")
    for size in (HEAD_LIMIT + 1, HEAD_LIMIT + 800):
        assert send_raw(addr, head_of(size)) == too_large, size
    # no end of head at all: refused as soon as the limit is passed, not at the timeout
    t0 = time.monotonic()
    assert send_raw(addr, b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"p" * HEAD_LIMIT) == too_large
    assert time.monotonic() - t0 < HEAD_TIMEOUT / 2


def test_head_sent_in_pieces_is_served(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr = cl.metrics_addr
    data = request("GET", "/metrics", [("Host", f"{HOST}:{addr[1]}"), ("Accept", "*/*")])

    def served(pieces, pause: float = 0.02) -> bytes:
        s = socket.create_connection(addr, timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces:
                s.sendall(piece)
                time.sleep(pause)
            got, how = read_to_eof(s, time.monotonic() + 5)
            assert how == "eof", (how, got[:200])
            return got
        finally:
            s.close()

    # cut anywhere in the request line, and at each byte of the final empty line
    cuts = [3, 4, 13, 20, 23] + list(range(len(data) - 4, len(data)))
    for cut in cuts:
        got = served([data[:cut], data[cut:]])
        assert status_line(got) == b"HTTP/1.0 200 OK" and b"memcluster_proxy_node_up" in got, (cut, got[:200])
    # one byte at a time (2 ms apart), and with bare LF line ends
    for whole in (data, data.replace(b"\r\n", b"\n")):
        got = served([whole[i:i + 1] for i in range(len(whole))], pause=0.002)
        assert status_line(got) == b"HTTP/1.0 200 OK" and b"memcluster_proxy_node_up" in got, got[:200]


# --------------------------------------------------------------------------
# slow, idle and too many connections
# --------------------------------------------------------------------------

def _partial_head(port: int) -> bytes:
    return f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode()


def _waiting(sock: socket.socket) -> bool:
    """True while the server has neither sent anything nor closed."""
    readable, _w, _x = select.select([sock], [], [], 0)
    return not readable


def test_connection_limit_then_the_oldest_waiting_makes_room(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr = cl.metrics_addr
    partial = _partial_head(addr[1])
    held: list[socket.socket] = []
    try:
        # the 33rd connection within a second of the first is refused; retried
        # (bounded) if this machine was too slow to open 33 in 0.9 s
        for _attempt in range(3):
            t0 = time.monotonic()
            for _ in range(CONNECTION_LIMIT):
                s = socket.create_connection(addr, timeout=5)
                s.sendall(partial)
                held.append(s)
            extra = socket.create_connection(addr, timeout=5)
            got, how = read_to_eof(extra, time.monotonic() + 3)
            extra.close()
            if time.monotonic() - t0 < 0.9:
                break
            for s in held:
                s.close()
            held.clear()
            time.sleep(0.5)     # the endpoint sees the closes and forgets them
        assert (got, how) == (BUSY, "eof")
        assert all(_waiting(s) for s in held), "a held connection was answered or closed early"

        # a second later, a newcomer closes the connection that has waited longest
        time.sleep(max(0.0, t0 + 1.2 - time.monotonic()))
        status, _h, body = cl.http("GET", "/metrics")
        assert status == 200 and "memcluster_proxy_node_up" in body
        assert read_to_eof(held[0], time.monotonic() + 2) == (b"", "eof")
        assert all(_waiting(s) for s in held[1:]), "more than the oldest connection was closed"

        # the others are closed when their 5 s are up, with nothing sent
        for s in held[1:]:
            assert read_to_eof(s, t0 + HEAD_TIMEOUT + CLOSE_SLACK) == (b"", "eof")
        assert time.monotonic() - t0 >= HEAD_TIMEOUT - 0.3, "closed before the head timeout"
    finally:
        for s in held:
            s.close()


def test_two_hundred_half_sent_connections(cluster_factory):
    cl = cluster_factory(n=1, replicas=1, metrics=True)
    addr, pid = cl.metrics_addr, cl.proxy.pid
    partial = _partial_head(addr[1])
    fds_before = open_fds(pid)
    conns: list[tuple[socket.socket, float]] = []
    try:
        t0 = time.monotonic()
        for _ in range(200):
            s = socket.create_connection(addr, timeout=5)
            opened = time.monotonic()
            try:
                s.sendall(partial)
            except OSError:
                pass            # refused at once: the endpoint may have closed it already
            conns.append((s, opened))
        # (connects beyond the listen backlog wait for a SYN retransmission:
        # the flood may take more than a second)
        flood_took = time.monotonic() - t0
        # at most 32 held (a few more descriptors: the proxy's own stats polls)
        held_fds = open_fds(pid) - fds_before
        assert held_fds <= CONNECTION_LIMIT + 3, f"{held_fds} more descriptors open for 200 half-sent connections"

        # a normal request still gets through, at once, once the connections
        # held have waited a second
        time.sleep(max(0.0, t0 + flood_took + 1.2 - time.monotonic()))
        t1 = time.monotonic()
        status, headers, body = cl.http("GET", "/metrics")
        assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4"
        assert "memcluster_proxy_node_up" in body
        assert time.monotonic() - t1 < 1.0

        # every one is closed within the timeout: refused at once (503, or a
        # reset when the refusal crossed the half head), or closed with
        # nothing sent when its time was up or a newcomer needed its place
        outcomes = {"timed_out": 0, "busy": 0, "reset": 0}
        for s, opened in conns:
            got, how = read_to_eof(s, opened + HEAD_TIMEOUT + CLOSE_SLACK)
            assert how != "timeout", f"a connection opened {opened - t0:.2f} s in is still open"
            if how == "reset":
                assert got in (b"", BUSY), got
                outcomes["reset"] += 1
            elif got == BUSY:
                outcomes["busy"] += 1
            else:
                assert got == b"", got
                outcomes["timed_out"] += 1
        assert sum(outcomes.values()) == 200
        if flood_took < 0.9:
            # nobody waited a second during the flood: the first 32 were held
            # (one closed for the /metrics request, the rest at the timeout),
            # every later one refused
            assert outcomes["timed_out"] == CONNECTION_LIMIT, (outcomes, flood_took)
        else:
            assert outcomes["timed_out"] >= CONNECTION_LIMIT, (outcomes, flood_took)
        # and nothing is left behind
        ph.wait_until(lambda: open_fds(pid) <= fds_before + 3, 3.0,
                      what=f"descriptors back near {fds_before} (now {open_fds(pid)})")
        status, _h, _b = cl.http("GET", "/metrics")
        assert status == 200
    finally:
        for s, _opened in conns:
            s.close()


def test_log_level_from_the_file_and_changed_by_a_reload(cluster_factory):
    """log_level: warning keeps the info lines out (the start line); a reload
    to info brings them back; a level that does not exist is refused with the
    choices."""
    cl = cluster_factory(n=2, replicas=1, options={"log_level": "warning", "watch_config": False})
    assert "proxy listening" not in cl.proxy_log(), cl.proxy_log()
    cl.write_config(log_level="info")
    cl.sighup()
    ph.wait_until(lambda: "configuration reloaded" in cl.proxy_log(), 5, what="an info line once the level is info")
    cl.write_config(log_level="chatty")
    cl.sighup()
    ph.wait_until(lambda: "log_level: expected one of trace, debug, info, notice, warning, error, critical"
                  in cl.proxy_log(), 5, what="a bad log_level refused with the choices")
