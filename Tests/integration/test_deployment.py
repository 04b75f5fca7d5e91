"""The deployment files in deploy/, checked as far as this machine allows
(no running systemd, no Kubernetes cluster, no container registry):

systemd (deploy/systemd):
* `systemd-analyze verify` on the units installed in a scratch root with the
  built programs at the paths ExecStart names: no error and no warning;
* the sandbox: `systemd-analyze security --offline` rates each unit's
  exposure 2.0 or lower ("OK"), and the directives the operations issue asks
  for are there (DynamicUser, NoNewPrivileges, ProtectSystem=strict, ...);
* the units' own command lines (ExecStart with its specifiers and default
  environment, ExecReload), run under the parts of the units' sandbox a
  process can set on itself (unit_sandbox.py: the user, no capabilities,
  no_new_privs, MemoryDenyWriteExecute, the system call filter and address
  families): a node and a proxy that answer /health and /ready, store and
  read through the proxy, and reload on the unit's reload command.

Kubernetes (deploy/kubernetes):
* every resource validates against the Kubernetes API's JSON schemas
  (kubernetes-validate, strict: no unknown field) of the oldest and newest
  versions it bundles;
* the resources fit together: selectors and labels, the StatefulSet's
  headless Service, named ports, the probes' paths and ports against what the
  proxy serves (its configuration in the ConfigMap), the discovery name
  against the headless Service's SRV records, the Secret named in the docs;
* the pods as declared, in network namespaces of the test's own (one per
  pod): the nodes' and the proxy's container commands, the ConfigMap and the
  Secret as volumes laid out as the kubelet lays them, the security context's
  user and group, the cluster DNS played by a dnsmasq that the proxy pod's
  resolv.conf names (the headless Service's SRV and A records); the kubelet's
  probes answer, the proxy's nodes are the SRV targets, keys are stored on two
  nodes through the proxy, a pod gone from the records leaves the ring, and
  an edit of the ConfigMap reaches the running proxy.

Containerfile (deploy/Containerfile; no image can be built here):
* hadolint finds nothing;
* what it copies exists and is in the build context (.dockerignore), the
  context loads as the Swift package, what the runtime stage copies is what
  the build stage installs, its CMD and the manifests' commands are programs
  it installs, its user is the manifests' user;
* the runtime stage installs every Debian package the programs link against.
"""

from __future__ import annotations

import atexit
import fnmatch
import functools
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest
import yaml

import dns_harness
import harness
import proxy_harness as ph
import unit_sandbox
from conftest import require_tool

REPO = harness.REPO_ROOT
DEPLOY = os.path.join(REPO, "deploy")
UNITS_DIR = os.path.join(DEPLOY, "systemd")
K8S_DIR = os.path.join(DEPLOY, "kubernetes")
CONTAINERFILE = os.path.join(DEPLOY, "Containerfile")
NODE_UNIT = "memcluster-node@.service"
PROXY_UNIT = "memcluster-proxy.service"
INSTALLED_BIN = "/usr/local/bin"
# The uid systemd's DynamicUser= would pick stands in the range it uses
# (61184-65519); the manifests' runAsUser is checked against the image's USER.
DYNAMIC_UID = 61184
PROBE_PATHS = {"/health": "ok\n", "/ready": "ready\n"}
TOKEN = "deploy-test-token-0123456789abcdef"


@functools.cache
def programs() -> dict[str, str]:
    """Program name -> the built binary tested in its place, copied once into
    a directory every user can enter: the sandboxed and unprivileged runs
    below take another uid, which cannot reach a build inside a private
    directory (a checkout under a 0700 temporary directory, for one)."""
    built = {"memcluster-node": os.environ.get("MEMCLUSTER_NODE", harness.DEFAULT_NODE),
             "memcluster-proxy": ph.proxy_binary()}
    copies = traversable_tempdir("mcdeploy-bin-")
    atexit.register(shutil.rmtree, copies, ignore_errors=True)
    for name, path in built.items():
        shutil.copy2(path, os.path.join(copies, name))
    return {name: os.path.join(copies, name) for name in built}


def venv_tool(name: str) -> str:
    """A tool installed into the test venv (its bin/ may not be on PATH)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(path, os.X_OK):
        return path
    return require_tool(name)


def run(argv, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def traversable_tempdir(prefix: str) -> str:
    """A temporary directory an unprivileged user can enter."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def http_get(addr, path: str, netns: str | None = None, timeout: float = 3.0) -> tuple[int, str]:
    """GET as the kubelet's httpGet probe sends it (Host: address:port)."""
    def go():
        c = http.client.HTTPConnection(*addr, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()
    return ph.run_in_netns(netns, go)


# ==========================================================================
# systemd
# ==========================================================================

def parse_unit(path: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, repeated keys kept in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            assert not line.endswith("\\"), f"{path}: line continuations are not handled here: {line}"
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], [])
                continue
            assert current is not None and "=" in line, f"{path}: unexpected line {line!r}"
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def unit_value(unit, section: str, key: str) -> str:
    values = unit_values(unit, section, key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def default_environment(unit) -> dict[str, str]:
    """The unit's Environment= assignments (no EnvironmentFile present)."""
    env = {}
    for value in unit_values(unit, "Service", "Environment"):
        for word in shlex.split(value):
            k, v = word.split("=", 1)
            env[k] = v
    return env


def expand_command(line: str, specifiers: dict[str, str], env: dict[str, str],
                   paths: dict[str, str]) -> list[str]:
    """An Exec*= line as systemd runs it: specifiers (%i, %d, ...), then
    $VAR (split into words) and ${VAR} (one word); `paths` then maps
    absolute path prefixes to where this test has those files."""
    def spec(m):
        c = m.group(1)
        if c == "%":
            return "%"
        assert c in specifiers, f"specifier %{c} in {line!r} is not handled by this test"
        return specifiers[c]
    line = re.sub(r"%(.)", spec, line)
    assert line[0] not in "-@:+!", f"command prefixes are not handled here: {line!r}"
    words = []
    for word in shlex.split(line):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            words.extend(env.get(m.group(1), "").split())
            continue
        word = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)
        for prefix, there in paths.items():
            if word == prefix or word.startswith(prefix.rstrip("/") + "/"):
                word = there + word[len(prefix):]
                break
        words.append(word)
    return words


def in_unit_sandbox(argv: list[str], unit, spec_dir: str) -> list[str]:
    """argv under the parts of the unit's sandbox a process can set on itself
    (unit_sandbox.py: the dynamic user, no capabilities, no_new_privs,
    MemoryDenyWriteExecute, the system call filter, the address families)."""
    spec = unit_sandbox.spec_for(lambda key: unit_values(unit, "Service", key), DYNAMIC_UID, DYNAMIC_UID)
    path = os.path.join(spec_dir, f"sandbox-{uuid.uuid4().hex[:8]}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return [sys.executable, unit_sandbox.__file__, path, "--", *argv]


def unprivileged(argv: list[str], uid: int, gid: int, groups=()) -> list[str]:
    """argv as a container's securityContext runs it: the given user and
    groups, no capabilities (drop: [ALL]) and no way to gain any
    (allowPrivilegeEscalation: false)."""
    group_flag = ["--groups", ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", *group_flag, "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", *argv]


@pytest.fixture
def unit_root(tmp_path):
    """A scratch root with the units in /etc/systemd/system, the built
    programs where ExecStart looks for them, and systemd's own units (which
    verify loads for the default dependencies)."""
    require_tool("systemd-analyze")
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in (NODE_UNIT, PROXY_UNIT):
        shutil.copy(os.path.join(UNITS_DIR, name), root / "etc/systemd/system" / name)
    bindir = root / INSTALLED_BIN.lstrip("/")
    bindir.mkdir(parents=True)
    for name, built in programs().items():
        shutil.copy(built, bindir / name)
    system_units = "/usr/lib/systemd/system"
    assert os.path.isdir(system_units), "systemd's units are missing (apt-get install systemd)"
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    # Other programs the units run (ExecReload's kill), from this machine.
    for unit in (NODE_UNIT, PROXY_UNIT):
        parsed = parse_unit(os.path.join(UNITS_DIR, unit))
        for key in ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop"):
            for line in unit_values(parsed, "Service", key):
                program = shlex.split(line)[0]
                if not program.startswith(INSTALLED_BIN):
                    target = root / program.lstrip("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(os.path.realpath(program), target)
    return root


UNIT_INSTANCES = ["memcluster-node@11211.service", PROXY_UNIT]


def test_systemd_units_verify(unit_root):
    r = run(["systemd-analyze", "verify", f"--root={unit_root}", *UNIT_INSTANCES])
    # verify returns 0 on unknown keys and other warnings: any output fails too
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"systemd-analyze verify (exit {r.returncode}):\n{r.stdout}{r.stderr}"


def test_systemd_verify_catches_a_missing_program(unit_root):
    """The check above proves something: without the program it fails."""
    os.unlink(unit_root / INSTALLED_BIN.lstrip("/") / "memcluster-proxy")
    r = run(["systemd-analyze", "verify", f"--root={unit_root}", PROXY_UNIT])
    assert r.returncode != 0 and "memcluster-proxy" in r.stderr, r.stderr


SANDBOX = {
    "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
    "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native", "LockPersonality": "yes",
}


@pytest.mark.parametrize("instance", UNIT_INSTANCES)
def test_systemd_units_are_sandboxed(unit_root, instance):
    unit = parse_unit(os.path.join(UNITS_DIR, NODE_UNIT if instance.startswith("memcluster-node@") else PROXY_UNIT))
    wrong = {k: unit_values(unit, "Service", k) for k, v in SANDBOX.items()
             if unit_values(unit, "Service", k)[-1:] != [v]}
    assert not wrong, f"{instance}: sandbox settings missing or different: {wrong}"
    assert "@system-service" in unit_values(unit, "Service", "SystemCallFilter")
    assert not unit_values(unit, "Service", "User"), "DynamicUser= picks the user"
    # systemd's own rating, 0 (locked down) to 10; above 2.0 is no longer "OK"
    r = run(["systemd-analyze", "security", "--offline=yes", f"--root={unit_root}", "--no-pager",
             "--threshold=20", instance])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert r.returncode == 0 and float(m.group(1)) <= 2.0, \
        f"{instance}: exposure {m.group(1)}\n" + "\n".join(ln for ln in r.stdout.splitlines() if "✗" in ln)


def test_systemd_command_lines_serve_and_reload(tmp_path):
    """ExecStart and ExecReload of both units as systemd would run them
    (instance = the node's port, %d = the credentials directory, the default
    Environment=), the programs at /usr/local/bin standing for the built
    ones, /etc/memcluster for a scratch directory; in the units' sandbox as
    far as unit_sandbox.py can set it up."""
    node_unit = parse_unit(os.path.join(UNITS_DIR, NODE_UNIT))
    proxy_unit = parse_unit(os.path.join(UNITS_DIR, PROXY_UNIT))
    etc = traversable_tempdir("mcdeploy-etc-")
    creds = traversable_tempdir("mcdeploy-creds-")
    started: list[harness.Server] = []
    try:
        paths = {os.path.join(INSTALLED_BIN, name): built for name, built in programs().items()}
        paths["/etc/memcluster"] = etc

        # The credential as systemd hands it over: readable by the service only.
        cred_source = unit_value(proxy_unit, "Service", "LoadCredential")
        cred_name, cred_path = cred_source.split(":", 1)
        assert cred_path.startswith("/etc/memcluster/"), cred_source
        token_file = os.path.join(creds, cred_name)
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chown(token_file, DYNAMIC_UID, DYNAMIC_UID)
        os.chmod(token_file, 0o400)

        port = harness.free_port()
        node_env = default_environment(node_unit)
        argv = expand_command(unit_value(node_unit, "Service", "ExecStart"), {"i": str(port)}, node_env, paths)
        assert argv[0] == programs()["memcluster-node"], argv
        assert "-p" in argv and argv[argv.index("-p") + 1] == str(port), argv
        assert "-l" in argv and argv[argv.index("-l") + 1] == "127.0.0.1", argv
        started.append(ph.spawn(in_unit_sandbox(argv, node_unit, str(tmp_path)), harness.HOST, port,
                                prefix="mcdeploy-node-"))

        listen, metrics = harness.free_port(), harness.free_port()
        config_path = os.path.join(etc, "proxy.yaml")

        def write_config(nodes):
            with open(config_path + ".new", "w") as f:
                f.write(ph.render_config({"listen": f"127.0.0.1:{listen}", "metrics_listen": f"127.0.0.1:{metrics}"},
                                         nodes))
            os.chmod(config_path + ".new", 0o644)
            os.replace(config_path + ".new", config_path)

        write_config([f"127.0.0.1:{port}"])
        specifiers = {"d": creds}
        argv = expand_command(unit_value(proxy_unit, "Service", "ExecStart"), specifiers, {}, paths)
        assert argv[0] == programs()["memcluster-proxy"] and config_path in argv, argv
        proxy = ph.spawn(in_unit_sandbox(argv, proxy_unit, str(tmp_path)), harness.HOST, listen,
                         prefix="mcdeploy-proxy-")
        started.append(proxy)

        for path, body in PROBE_PATHS.items():
            assert http_get((harness.HOST, metrics), path) == (200, body), path
        with harness.TextClient((harness.HOST, listen)) as c:
            assert c.set("deploy:systemd", b"through the proxy") == b"STORED"
            assert c.get("deploy:systemd") == b"through the proxy"
            reloads = int(c.stats()["proxy_reloads"])

        # ExecReload: the check, then SIGHUP to $MAINPID; a broken file fails the check
        reload_lines = unit_values(proxy_unit, "Service", "ExecReload")
        assert len(reload_lines) == 2 and "--check-config" in reload_lines[0], reload_lines
        env = {"MAINPID": str(proxy.pid)}
        check = expand_command(reload_lines[0], specifiers, env, paths)
        second = harness.start_server(programs()["memcluster-node"], [])
        started.append(second)
        write_config([f"127.0.0.1:{port}", f"127.0.0.1:{second.port}"])
        r = run(in_unit_sandbox(check, proxy_unit, str(tmp_path)))
        assert r.returncode == 0 and len(yaml.safe_load(r.stdout)["nodes"]) == 2, r.stdout + r.stderr
        r = run(expand_command(reload_lines[1], specifiers, env, paths))
        assert r.returncode == 0, r.stderr

        def nodes_now():
            with harness.TextClient((harness.HOST, listen)) as c:
                st = c.stats()
                return int(st["proxy_reloads"]) > reloads and st
        ph.wait_until(nodes_now, 5, what="the proxy reloaded")
        with harness.TextClient((harness.HOST, listen)) as c:
            assert sum(1 for k in c.stats("nodes") if re.fullmatch(r"node:\d+:state", k)) == 2

        with open(config_path, "w") as f:
            f.write("nodes: [\n")
        r = run(in_unit_sandbox(check, proxy_unit, str(tmp_path)))
        assert r.returncode != 0 and "proxy.yaml" in r.stderr, r.stdout + r.stderr
        assert proxy.alive(), proxy.log()
    finally:
        for srv in reversed(started):
            srv.stop()
        shutil.rmtree(etc, ignore_errors=True)
        shutil.rmtree(creds, ignore_errors=True)


def test_systemd_sandbox_emulation_has_teeth(tmp_path):
    """The sandbox above proves something: the same node without socket() in
    its filter, or limited to AF_UNIX, cannot start."""
    unit = parse_unit(os.path.join(UNITS_DIR, NODE_UNIT))
    port = harness.free_port()
    argv = [programs()["memcluster-node"], "-p", str(port), "-l", harness.HOST]
    for change in ({"syscalls": lambda calls: [c for c in calls if c != "socket"]},
                   {"families": lambda families: [1]}):
        spec = unit_sandbox.spec_for(lambda key: unit_values(unit, "Service", key), DYNAMIC_UID, DYNAMIC_UID)
        for key, edit in change.items():
            spec[key] = edit(spec[key])
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(spec))
        r = run([sys.executable, unit_sandbox.__file__, str(path), "--", *argv], timeout=10)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, (change, r.returncode, r.stderr)


# ==========================================================================
# Kubernetes
# ==========================================================================

def manifest_files() -> list[str]:
    return sorted(os.path.join(K8S_DIR, f) for f in os.listdir(K8S_DIR)
                  if f.endswith(".yaml") and f != "kustomization.yaml")


def load_resources() -> list[dict]:
    out = []
    for path in manifest_files():
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    doc["_file"] = os.path.basename(path)
                    out.append(doc)
    return out


def find(resources, kind: str, name: str | None = None) -> list[dict]:
    return [r for r in resources if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]


def one(resources, kind: str, name: str | None = None) -> dict:
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_port(container: dict, port) -> int:
    """A probe's or Service's port (a name or a number) as the container's number."""
    if isinstance(port, int):
        assert any(p["containerPort"] == port for p in container.get("ports", [])), port
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


def proxy_parts(resources):
    deployment = one(resources, "DaemonSet", "memcluster-proxy")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config_volume = next(v for v in pod["volumes"] if "configMap" in v)
    configmap = one(resources, "ConfigMap", config_volume["configMap"]["name"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == config_volume["name"])
    config_arg = container["command"][container["command"].index("--config") + 1]
    assert os.path.dirname(config_arg) == mount["mountPath"], (config_arg, mount)
    config_text = configmap["data"][os.path.basename(config_arg)]
    return deployment, pod, container, configmap, yaml.safe_load(config_text), config_text


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def srv_records(resources, config) -> tuple[str, list[tuple[str, int]]]:
    """The SRV name the proxies follow (the ConfigMap's discovery.srv), read
    as the cluster DNS names a headless Service's records:
    `_<port name>._<protocol>.<service>.<namespace>.svc.cluster.local`, checked
    against the Service; and the records it answers: one per StatefulSet pod,
    `<pod>.<service>.<namespace>.svc.cluster.local` on the Service's port."""
    sts = one(resources, "StatefulSet")
    headless = one(resources, "Service", sts["spec"]["serviceName"])
    name = config["discovery"]["srv"]
    m = re.fullmatch(r"_([a-z0-9-]+)\._(tcp|udp)\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", name)
    assert m, f"not a Service's SRV name: {name}"
    port_name, protocol, service, namespace = m.groups()
    assert service == headless["metadata"]["name"], name
    ports = [p for p in headless["spec"]["ports"] if p.get("name") == port_name]
    assert len(ports) == 1 and ports[0].get("protocol", "TCP").lower() == protocol, (name, headless["spec"]["ports"])
    targets = [f"{sts['metadata']['name']}-{i}.{service}.{namespace}.svc.cluster.local"
               for i in range(sts["spec"]["replicas"])]
    return name, [(target, ports[0]["port"]) for target in targets]


def test_kubernetes_manifests_match_the_api_schemas():
    from kubernetes_validate import utils as kv
    versions = sorted(set(kv.all_versions()), key=lambda v: tuple(int(x) for x in v.split(".")))
    resources = load_resources()
    assert resources
    failures = []
    for version in (versions[0], versions[-1]):
        for res in resources:
            body = {k: v for k, v in res.items() if k != "_file"}
            try:
                kv.validate(body, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                failures.append(f"{res['_file']} {res['kind']}/{res['metadata']['name']} ({version}): {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                failures.append(f"{res['_file']} {res['kind']}/{res['metadata']['name']} ({version}): {e.message}")
    assert not failures, "\n".join(failures)


def test_kubernetes_validation_catches_a_misspelt_field():
    """The check above proves something: an unknown field is refused."""
    from kubernetes_validate import utils as kv
    deployment = one(load_resources(), "DaemonSet", "memcluster-proxy")
    body = json.loads(json.dumps({k: v for k, v in deployment.items() if k != "_file"}))
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kv.ValidationError):
        kv.validate(body, kv.latest_version(), strict=True)


def test_kubernetes_kustomization_lists_every_manifest():
    with open(os.path.join(K8S_DIR, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    assert sorted(kustomization["resources"]) == sorted(os.path.basename(p) for p in manifest_files())
    images = {i["name"] for i in kustomization.get("images", [])}
    for res in load_resources():
        for c in res.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert c["image"].split(":")[0] in images, c["image"]


def test_kubernetes_resources_fit_together():
    resources = load_resources()
    # every Service and PodDisruptionBudget selects pods that exist, on ports they have
    pod_templates = [(r, r["spec"]["template"]) for r in resources if r["kind"] in ("DaemonSet", "StatefulSet")]
    for workload, template in pod_templates:
        assert selects(workload["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]), workload["metadata"]
    sts = one(resources, "StatefulSet")
    sts_name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    for svc in find(resources, "Service"):
        sel = svc["spec"]["selector"]
        if "statefulset.kubernetes.io/pod-name" in sel:
            matched = [(sts, sts["spec"]["template"])] if re.fullmatch(
                rf"{re.escape(sts_name)}-\d+", sel["statefulset.kubernetes.io/pod-name"]) else []
            assert int(sel["statefulset.kubernetes.io/pod-name"].rsplit("-", 1)[1]) < replicas, sel
        else:
            matched = [(w, t) for w, t in pod_templates if selects(sel, t["metadata"]["labels"])]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {len(matched)} workloads"
        container = matched[0][1]["spec"]["containers"][0]
        for p in svc["spec"]["ports"]:
            container_port(container, p["targetPort"])
    for pdb in find(resources, "PodDisruptionBudget"):
        assert any(selects(pdb["spec"]["selector"]["matchLabels"], t["metadata"]["labels"]) for _, t in pod_templates)

    # the StatefulSet's governing Service is headless and selects its pods
    headless = one(resources, "Service", sts["spec"]["serviceName"])
    assert headless["spec"].get("clusterIP") == "None"
    assert selects(headless["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])

    # the proxies' node list: the headless Service's SRV records, on the node's port
    deployment, pod, container, configmap, config, _ = proxy_parts(resources)
    node_container = sts["spec"]["template"]["spec"]["containers"][0]
    node_port = int(node_container["command"][node_container["command"].index("-p") + 1])
    assert container_port(node_container, "memcache") == node_port
    assert "nodes" not in config, "the proxies follow DNS: a list next to it is refused"
    _, records = srv_records(resources, config)
    assert [port for _, port in records] == [node_port] * replicas, records
    assert container_port(node_container, headless["spec"]["ports"][0]["targetPort"]) == node_port
    assert headless["spec"].get("publishNotReadyAddresses") is True, \
        "a node not ready for a moment must stay in the records: leaving them moves its keys"
    assert not [s for s in find(resources, "Service") if "statefulset.kubernetes.io/pod-name" in s["spec"]["selector"]], \
        "per-pod Services are not needed with DNS discovery"
    # the settle period covers proxies asking on their own timers, and the DNS cache (CoreDNS: 5 s)
    assert config["membership_settle_ms"] > (config["discovery"].get("refresh_s", 5) + 5) * 1000
    assert "-l" in node_container["command"], "the node listens on 127.0.0.1 unless -l says otherwise"

    # the proxy's ports as its configuration has them; the clients' Service on the proxy's port
    assert container_port(container, "memcache") == host_port(config["listen"])[1]
    assert container_port(container, "admin") == host_port(config["metrics_listen"])[1]
    assert host_port(config["metrics_listen"])[0] == "0.0.0.0", "the kubelet probes the pod's address"

    # volumes: every mount has a volume; the Secret is the one the docs create
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in container["volumeMounts"]:
        assert m["name"] in volumes
    secret = next(v["secret"]["secretName"] for v in volumes.values() if "secret" in v)
    token_arg = container["command"][container["command"].index("--admin-token-file") + 1]
    mount = next(m for m in container["volumeMounts"] if "secret" in volumes[m["name"]])
    assert os.path.dirname(token_arg) == mount["mountPath"]
    with open(os.path.join(REPO, "docs", "deployment.md")) as f:
        docs = f.read()
    assert f"kubectl create secret generic {secret}" in docs
    assert f"--from-literal={os.path.basename(token_arg)}=" in docs
    with open(os.path.join(REPO, "README.md")) as f:
        assert "docs/deployment.md" in f.read()


def test_kubernetes_probes_are_what_the_proxy_serves(proxy_bin, tmp_path):
    resources = load_resources()
    deployment, pod, container, configmap, config, config_text = proxy_parts(resources)
    probes = {k: container[k] for k in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in probes.values():
        assert container_port(container, probe["httpGet"]["port"]) == host_port(config["metrics_listen"])[1]
    # the nodes have no HTTP endpoint: their probes open the memcached port
    sts = one(resources, "StatefulSet")
    node_container = sts["spec"]["template"]["spec"]["containers"][0]
    for k in ("readinessProbe", "livenessProbe"):
        assert container_port(node_container, node_container[k]["tcpSocket"]["port"]) == 11211
    # the ConfigMap's file is a valid configuration for this proxy
    path = tmp_path / "proxy.yaml"
    path.write_text(config_text)
    token = tmp_path / "admin.token"
    token.write_text(TOKEN)
    r = run([proxy_bin, "--config", str(path), "--admin-token-file", str(token), "--check-config"])
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["discovery"]["srv"] == config["discovery"]["srv"], \
        r.stdout + r.stderr


class Pods:
    """Pods as network namespaces of this test's own: the proxy pod's
    namespace is joined to each node pod's by a veth pair with private
    addresses that exist only inside them. The proxy pod's resolv.conf (which
    `ip netns exec` takes from /etc/netns/<name>/resolv.conf) names a DNS
    server on its own loopback, where the test runs the cluster DNS."""

    def __init__(self, nodes: int):
        tag = uuid.uuid4().hex[:6]
        self.proxy_ns = f"mcdep-{tag}-p"
        self.node_ns = [f"mcdep-{tag}-n{i}" for i in range(nodes)]
        self.node_ip = [f"10.233.{60 + i}.2" for i in range(nodes)]
        self.proxy_ip = "10.233.60.1"
        self.created: list[str] = []
        self.etc_netns_made = False
        self.etc_dir = os.path.join("/etc/netns", self.proxy_ns)

    def create(self) -> "Pods":
        ph.ip("netns", "add", self.proxy_ns)
        self.created.append(self.proxy_ns)
        ph.ip("-n", self.proxy_ns, "link", "set", "lo", "up")
        for i, ns in enumerate(self.node_ns):
            ph.ip("netns", "add", ns)
            self.created.append(ns)
            ph.ip("-n", ns, "link", "set", "lo", "up")
            a, b = f"mcdpa{i}{ns[6:12]}", f"mcdpb{i}{ns[6:12]}"
            ph.ip("-n", self.proxy_ns, "link", "add", a, "type", "veth", "peer", "name", b)
            ph.ip("-n", self.proxy_ns, "link", "set", b, "netns", ns)
            ph.ip("-n", self.proxy_ns, "addr", "add", f"10.233.{60 + i}.1/30", "dev", a)
            ph.ip("-n", ns, "addr", "add", f"{self.node_ip[i]}/30", "dev", b)
            ph.ip("-n", self.proxy_ns, "link", "set", a, "up")
            ph.ip("-n", ns, "link", "set", b, "up")
        if not os.path.isdir("/etc/netns"):
            os.makedirs("/etc/netns")
            self.etc_netns_made = True
        os.makedirs(self.etc_dir)
        with open(os.path.join(self.etc_dir, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\n")
        return self

    def delete(self) -> None:
        for ns in reversed(self.created):
            ph.ip("netns", "del", ns, check=False)
        self.created.clear()
        shutil.rmtree(self.etc_dir, ignore_errors=True)
        if self.etc_netns_made:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass


class KubeletVolumes:
    """A pod's volumes as the kubelet lays them out: each key a symlink
    through `..data` to a timestamped directory, swapped atomically on an
    update (so a file's inode changes and a watcher following the path sees it)."""

    def __init__(self, root: str):
        self.root = root
        self.generation = 0

    def write(self, name: str, files: dict[str, str], mode: int = 0o644, gid: int | None = None) -> str:
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        self.generation += 1
        stamp = f"..2026_01_01_00_00_{self.generation:02d}.{uuid.uuid4().hex[:8]}"
        os.mkdir(os.path.join(d, stamp))
        os.chmod(os.path.join(d, stamp), 0o755)
        for key, text in files.items():
            p = os.path.join(d, stamp, key)
            with open(p, "w") as f:
                f.write(text)
            if gid is not None:
                os.chown(p, 0, gid)
            os.chmod(p, mode)
        tmp_link = os.path.join(d, "..data_tmp")
        os.symlink(stamp, tmp_link)
        os.replace(tmp_link, os.path.join(d, "..data"))
        for key in files:
            link = os.path.join(d, key)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", key), link)
        return d


def test_kubernetes_pods_serve_as_declared(tmp_path):
    """The StatefulSet's and the DaemonSet's containers, run as declared
    (command, user, volumes) in pods made of network namespaces."""
    ok, why = ph.netns_available()
    if not ok:
        pytest.fail(f"network namespaces are needed for this test: {why}")
    resources = load_resources()
    sts = one(resources, "StatefulSet")
    node_pod = sts["spec"]["template"]["spec"]
    node_container = node_pod["containers"][0]
    deployment, proxy_pod, proxy_container, configmap, config, config_text = proxy_parts(resources)
    replicas = sts["spec"]["replicas"]
    built = programs()

    def container_argv(pod, container, paths=None):
        argv = list(container["command"])
        assert argv[0] in built, f"{argv[0]} is not one of the image's programs"
        argv[0] = built[argv[0]]
        for i, a in enumerate(argv):
            for prefix, there in (paths or {}).items():
                if a.startswith(prefix + "/"):
                    argv[i] = there + a[len(prefix):]
        sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert sc.get("runAsNonRoot") and sc.get("allowPrivilegeEscalation") is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        groups = [sc["fsGroup"]] if "fsGroup" in sc else []
        return unprivileged(argv, sc["runAsUser"], sc["runAsGroup"], groups)

    pods = Pods(replicas)
    started: list[harness.Server] = []
    cluster_dns: dns_harness.Dnsmasq | None = None
    volumes_root = traversable_tempdir("mcdeploy-volumes-")
    try:
        pods.create()
        # The cluster DNS as the proxy pod sees it: the headless Service's SRV
        # records, a node pod's address behind each target.
        srv_name, records = srv_records(resources, config)
        srv = [(srv_name, target, port) for target, port in records]
        cluster_dns = dns_harness.Dnsmasq({target: [pods.node_ip[i]] for i, (target, _) in enumerate(records)},
                                          srv=srv, port=53, netns=pods.proxy_ns)
        node_port = container_port(node_container, node_container["readinessProbe"]["tcpSocket"]["port"])
        for i in range(replicas):
            started.append(ph.spawn(container_argv(node_pod, node_container), pods.node_ip[i], node_port,
                                    netns=pods.node_ns[i], prefix=f"mcdeploy-pod-node{i}-"))
            # the node's probe, from the proxy pod's side as the kubelet's would come from the host
            ph.run_in_netns(pods.proxy_ns, lambda: socket.create_connection(
                (pods.node_ip[i], node_port), timeout=2).close())

        # the volumes
        volumes = KubeletVolumes(volumes_root)
        vol_by_name = {v["name"]: v for v in proxy_pod["volumes"]}
        paths = {}
        config_dir = None
        for m in proxy_container["volumeMounts"]:
            v = vol_by_name[m["name"]]
            if "configMap" in v:
                config_dir = volumes.write(m["name"], dict(configmap["data"]))
                paths[m["mountPath"]] = config_dir
            elif "secret" in v:
                key = os.path.basename(proxy_container["command"][proxy_container["command"].index("--admin-token-file") + 1])
                d = volumes.write(m["name"], {key: TOKEN}, mode=v["secret"]["defaultMode"],
                                  gid=proxy_pod["securityContext"].get("fsGroup", 0))
                paths[m["mountPath"]] = d
        assert config_dir, "no ConfigMap volume"

        listen_port = container_port(proxy_container, "memcache")
        admin_port = container_port(proxy_container, "admin")
        proxy = ph.spawn(container_argv(proxy_pod, proxy_container, paths), pods.proxy_ip, listen_port,
                         netns=pods.proxy_ns, prefix="mcdeploy-pod-proxy-")
        started.append(proxy)

        # the kubelet's probes, as declared
        for k in ("readinessProbe", "livenessProbe"):
            get = proxy_container[k]["httpGet"]
            status, body = http_get((pods.proxy_ip, container_port(proxy_container, get["port"])), get["path"],
                                    netns=pods.proxy_ns)
            assert (status, body) == (200, PROBE_PATHS[get["path"]]), (k, status, body)
        assert "without a token" not in proxy.log(), proxy.log()

        def client():
            return ph.NsTextClient((pods.proxy_ip, listen_port), netns=pods.proxy_ns)

        keys = [f"deploy:k8s:{i}" for i in range(40)]
        c = client()
        try:
            for k in keys:
                assert c.set(k, k.encode()) == b"STORED"
            for k in keys:
                assert c.get(k) == k.encode()
            st = c.stats("nodes")
            states = [st[f"node:{i}:state"] for i in range(replicas)]
            assert states == ["up"] * replicas, st
            # the nodes are the SRV targets, by name (port 11211: the name alone), at the pods' addresses
            assert [(st[f"node:{i}:name"], st[f"node:{i}:address"]) for i in range(replicas)] == [
                (target, f"{pods.node_ip[i]}:{port}") for i, (target, port) in enumerate(records)], st
            generation = st["generation"]
            reloads = int(c.stats()["proxy_reloads"])
        finally:
            c.close()
        # every key on `replicas` nodes, read on the node pods themselves
        copies = {k: 0 for k in keys}
        for i in range(replicas):
            nc = ph.NsTextClient((pods.node_ip[i], node_port), netns=pods.node_ns[i])
            try:
                for k in keys:
                    copies[k] += nc.get(k) == k.encode()
            finally:
                nc.close()
        assert set(copies.values()) == {config["replicas"]}, copies

        def stats(arg=""):
            c = client()
            try:
                return c.stats(arg)
            finally:
                c.close()

        # the StatefulSet scaled down: the last pod's record goes, and the
        # proxy follows within refresh_s (dnsmasq restarts for new SRV
        # records; the look-ups that fail meanwhile keep the running list)
        cluster_dns.restart(srv=srv[:-1])
        refresh_s = config["discovery"].get("refresh_s", 5)
        ph.wait_until(lambda: int(stats()["proxy_nodes"]) == replicas - 1, refresh_s + 5,
                      what="the proxy followed the records without the last pod")
        st = stats("nodes")
        # the node removed stays listed as leaving while the change is under way
        assert st["generation"] != generation and st[f"node:{replicas - 1}:membership"] == "leaving", st

        # an edit of the ConfigMap (the kubelet swaps ..data) reaches the running proxy
        edited = yaml.safe_load(config_text)
        edited["warmup_s"] = 300
        volumes.write([m["name"] for m in proxy_container["volumeMounts"]
                       if "configMap" in vol_by_name[m["name"]]][0],
                      {os.path.basename(proxy_container["command"][proxy_container["command"].index("--config") + 1]):
                       yaml.safe_dump(edited)})
        ph.wait_until(lambda: int(stats()["proxy_reloads"]) > reloads, 5, what="the proxy followed the ConfigMap's edit")
        assert int(stats()["proxy_nodes"]) == replicas - 1, "a reload keeps the list the name gave last"
        assert http_get((pods.proxy_ip, admin_port), "/ready", netns=pods.proxy_ns) == (200, "ready\n")

        # POST /reload on the pod's address needs the Secret's token
        def post(headers):
            def go():
                conn = http.client.HTTPConnection(pods.proxy_ip, admin_port, timeout=3)
                try:
                    conn.request("POST", "/reload", headers=headers)
                    return conn.getresponse().status
                finally:
                    conn.close()
            return ph.run_in_netns(pods.proxy_ns, go)
        assert post({}) == 401
        assert post({"Authorization": f"Bearer {TOKEN}"}) == 200

        # SIGTERM, as the kubelet sends after preStop: the proxy exits within the grace period
        pre_stop = proxy_container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep" and int(pre_stop[1]) + 5 < proxy_pod["terminationGracePeriodSeconds"]
        proxy.proc.send_signal(signal.SIGTERM)
        proxy.proc.wait(timeout=proxy_pod["terminationGracePeriodSeconds"])
        assert proxy.proc.returncode == 0, proxy.log()
    finally:
        for server in reversed(started):
            server.stop()
        if cluster_dns is not None:
            cluster_dns.stop()
        pods.delete()
        shutil.rmtree(volumes_root, ignore_errors=True)


# ==========================================================================
# Containerfile
# ==========================================================================

def containerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined."""
    out, pending = [], ""
    with open(CONTAINERFILE) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            full = (pending + line).strip()
            pending = ""
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages():
    """[(name, [instructions])] for each FROM."""
    result = []
    for word, rest in containerfile_instructions():
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(result))
            result.append((name, []))
        elif result:
            result[-1][1].append((word, rest))
    return result


def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    with open(os.path.join(REPO, ".dockerignore")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                out.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return out


def in_context(rel: str) -> bool:
    """Whether `rel` (a path in the repository) is sent to the build:
    the last .dockerignore pattern matching it or a parent decides."""
    parts = rel.strip("/").split("/")
    included = True
    for negated, pattern in dockerignore_patterns():
        for n in range(1, len(parts) + 1):
            if fnmatch.fnmatchcase("/".join(parts[:n]), pattern):
                included = negated
                break
    return included


def copy_args(rest: str) -> tuple[dict, list[str], str]:
    words = shlex.split(rest)
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    return flags, words[:-1], words[-1]


def test_containerfile_lints_clean():
    r = run([venv_tool("hadolint"), "--no-color", "--failure-threshold", "style", CONTAINERFILE],
            cwd=tempfile.gettempdir())
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def runtime_packages() -> set[str]:
    runtime = stages()[-1][1]
    pkgs = set()
    for word, rest in runtime:
        if word == "RUN" and "apt-get install" in rest:
            tail = rest.split("apt-get install", 1)[1].split("&&")[0]
            pkgs |= {w for w in tail.split() if not w.startswith("-")}
    return pkgs


def test_containerfile_copies_and_runs_what_exists():
    all_stages = stages()
    assert len(all_stages) == 2, [s for s, _ in all_stages]
    (build_name, build), (_, runtime) = all_stages
    # the build stage's sources are in the repository and in the build context
    for word, rest in build:
        if word == "COPY":
            flags, sources, _ = copy_args(rest)
            assert "from" not in flags
            for src in sources:
                assert os.path.exists(os.path.join(REPO, src)), src
                assert in_context(src), f"{src} is excluded by .dockerignore"
    assert not in_context(".build/release/memcluster-node") and not in_context(".venv/bin/python")
    # what the runtime stage copies from the build stage is what that stage installs
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    installed = set()
    for word, rest in runtime:
        if word == "COPY":
            flags, sources, dest = copy_args(rest)
            assert flags.get("from") == build_name, rest
            assert dest.rstrip("/") == INSTALLED_BIN
            for src in sources:
                assert re.search(rf"install [^&]*{re.escape(src)}\b", build_runs), src
                installed.add(os.path.basename(src))
    assert installed == set(programs()), installed
    products = set(re.findall(r"--product (\S+)", build_runs))
    assert products == installed and "--static-swift-stdlib" in build_runs
    # CMD, and the manifests' commands, run programs the image has; its user is theirs
    cmd = json.loads(next(rest for word, rest in runtime if word == "CMD"))
    assert cmd[0] in installed
    user = next(rest for word, rest in runtime if word == "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    exposed = {int(p) for word, rest in runtime if word == "EXPOSE" for p in rest.split()}
    for res in load_resources():
        pod = res.get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        assert pod["securityContext"]["runAsUser"] == int(uid) and pod["securityContext"]["runAsGroup"] == int(gid)
        for c in pod["containers"]:
            assert c["command"][0] in installed, c["command"]
            assert {p["containerPort"] for p in c["ports"]} <= exposed, c["ports"]
    # the units run the same programs
    for unit in (NODE_UNIT, PROXY_UNIT):
        line = unit_value(parse_unit(os.path.join(UNITS_DIR, unit)), "Service", "ExecStart")
        assert os.path.basename(shlex.split(line)[0]) in installed


def test_containerfile_context_loads_as_the_package(tmp_path):
    """The build context (COPY lines, .dockerignore) holds the whole Swift
    package: every target's folder, the programs' products."""
    swift = require_tool("swift")
    ctx = tmp_path / "context"
    ctx.mkdir()
    (_, build), _ = stages()
    for word, rest in build:
        if word != "COPY":
            continue
        _, sources, dest = copy_args(rest)
        for src in sources:
            target = ctx / dest / os.path.basename(src) if dest.endswith("/") else ctx / dest
            origin = os.path.join(REPO, src)
            if os.path.isdir(origin):
                shutil.copytree(origin, target, ignore=lambda d, names: [
                    n for n in names if not in_context(os.path.relpath(os.path.join(d, n), REPO))])
            else:
                shutil.copy(origin, target)
    r = run([swift, "package", "describe", "--type", "json"], cwd=ctx, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    described = json.loads(r.stdout)
    executables = {p["name"] for p in described["products"] if "executable" in p["type"]}
    assert set(programs()) <= executables, executables


def test_containerfile_runtime_stage_has_the_programs_libraries():
    """Each Debian library the built programs link against comes from a
    package the runtime stage installs (or from the base image's essential
    set); the Swift runtime is linked in (--static-swift-stdlib)."""
    require_tool("ldd")
    packages = runtime_packages()
    base = {"libc6", "libgcc-s1"}
    missing = []
    for name, binary in programs().items():
        r = run(["ldd", binary])
        assert r.returncode == 0, r.stderr
        for m in re.finditer(r"^\s*(\S+) => (\S+)", r.stdout, re.M):
            soname, path = m.groups()
            if re.match(r"lib(swift|_?Foundation|dispatch|BlocksRuntime)", soname):
                continue
            owner = run(["dpkg", "-S", os.path.realpath(path)])
            if owner.returncode != 0:
                owner = run(["dpkg", "-S", path])
            assert owner.returncode == 0, f"{soname} ({path}) belongs to no Debian package"
            package = owner.stdout.split(":")[0]
            if package not in packages | base:
                missing.append(f"{name}: {soname} from {package}")
    assert not missing, f"not installed by the runtime stage ({sorted(packages)}): {missing}"
