"""Runs a program under the parts of a systemd unit's sandbox that a process
can put on itself, for machines where no systemd runs (containers, CI):

* the user and group (DynamicUser= picks one; the caller names it), no
  supplementary groups, an empty capability bounding set (an empty
  CapabilityBoundingSet=), no_new_privs (NoNewPrivileges=);
* MemoryDenyWriteExecute= as the kernel's own PR_SET_MDWE (Linux 6.3 and
  later: no mapping may be or become both writable and executable);
* SystemCallFilter= as a seccomp allow list (the unit's groups expanded by
  `systemd-analyze syscall-filter`, denied calls failing with EPERM as
  SystemCallErrorNumber=EPERM says), native architecture only
  (SystemCallArchitectures=native), and RestrictAddressFamilies= as a
  condition on socket()'s first argument.

Not here: the mount and namespace settings (ProtectSystem=, PrivateTmp=,
PrivateDevices=, ...), which need systemd or a mount namespace set up as it
does.

    python3 unit_sandbox.py SPEC.json -- PROGRAM ARGS...

must start as root (it switches user itself, after which the interpreter's
own files need not be readable). SPEC: {"uid", "gid", "syscalls": [names],
"families": [numbers], "mdwe": bool}.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import subprocess
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4


def SCMP_ACT_ERRNO(e: int) -> int:  # noqa: N802 - libseccomp's name
    return 0x00050000 | (e & 0xFFFF)


class ScmpArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


# --------------------------------------------------------------------------
# Reading the unit (in the test process)
# --------------------------------------------------------------------------

def expand_syscall_group(name: str, seen: set[str] | None = None) -> set[str]:
    """A `@group` (recursively) or a single call, as systemd-analyze lists it."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        calls |= expand_syscall_group(word, seen)
    return calls


def syscall_allow_list(filters: list[str]) -> set[str]:
    """SystemCallFilter= lines in order: the first an allow list, `~` lines
    taking calls out of it (the only forms this handles)."""
    assert filters and not filters[0].startswith("~"), f"expected an allow list first: {filters}"
    allowed: set[str] = set()
    for line in filters:
        deny = line.startswith("~")
        names: set[str] = set()
        for word in line.lstrip("~").split():
            names |= expand_syscall_group(word)
        allowed = allowed - names if deny else allowed | names
    return allowed


FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16}


def address_families(lines: list[str]) -> list[int]:
    assert len(lines) == 1 and not lines[0].startswith("~"), lines
    return [FAMILIES[w] for w in lines[0].split()]


def spec_for(unit_values, uid: int, gid: int) -> dict:
    """The sandbox of a parsed unit ([Service] values by key: a function
    key -> list of values, as the test's unit parser gives)."""
    assert unit_values("SystemCallArchitectures") == ["native"]
    assert unit_values("SystemCallErrorNumber") == ["EPERM"]
    assert unit_values("CapabilityBoundingSet") == [""] and unit_values("NoNewPrivileges") == ["yes"]
    return {"uid": uid, "gid": gid,
            "syscalls": sorted(syscall_allow_list(unit_values("SystemCallFilter"))),
            "families": address_families(unit_values("RestrictAddressFamilies")),
            "mdwe": unit_values("MemoryDenyWriteExecute") == ["yes"]}


# --------------------------------------------------------------------------
# Applying it (in the child, then exec)
# --------------------------------------------------------------------------

def apply_and_exec(spec: dict, argv: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def prctl(*args):
        padded = list(args) + [0] * (5 - len(args))
        if libc.prctl(*padded) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"prctl{args}: {os.strerror(e)}")

    path = ctypes.util.find_library("seccomp")
    if not path:
        raise SystemExit("unit_sandbox: libseccomp is not installed (it comes with systemd)")
    seccomp = ctypes.CDLL(path, use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(ScmpArgCmp)]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]

    # capabilities: empty bounding set, then the user (which clears the rest)
    cap_last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(cap_last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    os.setgroups([])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if spec["mdwe"]:
        prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)

    ctx = seccomp.seccomp_init(SCMP_ACT_ERRNO(errno.EPERM))
    if not ctx:
        raise SystemExit("unit_sandbox: seccomp_init failed")
    for name in spec["syscalls"]:
        nr = seccomp.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # not a call on this architecture
        if name == "socket":
            for family in spec["families"]:
                cmp = (ScmpArgCmp * 1)(ScmpArgCmp(0, SCMP_CMP_EQ, family, 0))
                rc = seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, cmp)
                if rc < 0:
                    raise SystemExit(f"unit_sandbox: socket rule for family {family}: {os.strerror(-rc)}")
            continue
        rc = seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, None)
        if rc < 0:
            raise SystemExit(f"unit_sandbox: rule for {name}: {os.strerror(-rc)}")
    rc = seccomp.seccomp_load(ctx)
    if rc < 0:
        raise SystemExit(f"unit_sandbox: seccomp_load: {os.strerror(-rc)}")
    os.execv(argv[0], argv)


def main(args: list[str]) -> None:
    if len(args) < 3 or args[1] != "--":
        raise SystemExit(__doc__)
    with open(args[0]) as f:
        spec = json.load(f)
    if not re.match(r"^/", args[2]):
        raise SystemExit("unit_sandbox: the program must be an absolute path")
    apply_and_exec(spec, args[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
