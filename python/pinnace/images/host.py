"""The built-in ``host`` image: the host's own system directories, read-only.

Its one layer is a small skeleton (empty mount points, the host's /bin-style
symlinks, a minimal /etc plus copies of the host's /etc/alternatives and
ld.so files) made once under the store; each container binds the host's
/usr and /lib* read-only on top of it. It needs no network and no download,
so a first container works on a fresh machine.

The copied /etc files change when packages are installed; the layer's name
carries their modification times, so a changed host gets a new layer.
"""

from __future__ import annotations

import os

from pinnace.images import Image

LAYER_VERSION = "2"

#: top-level host directories that carry programs and libraries
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: host /etc entries programs need to find libraries and commands (copied:
#: four bind mounts per container cost more than the copy once)
ETC_COPIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
users:x:100:
nogroup:x:65534:
"""
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"


def _build(dest: str) -> None:
    for name in SYSTEM_DIRS:
        src = os.path.join("/", name)
        if os.path.islink(src):
            os.symlink(os.readlink(src), os.path.join(dest, name))
        elif os.path.isdir(src):
            os.mkdir(os.path.join(dest, name), 0o755)
    for d, mode in (("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("tmp", 0o1777), ("root", 0o700),
                    ("home", 0o755), ("run", 0o755), ("mnt", 0o755), ("opt", 0o755), ("srv", 0o755),
                    ("var", 0o755), ("var/tmp", 0o1777), ("var/log", 0o755), ("etc", 0o755)):
        p = os.path.join(dest, d)
        os.mkdir(p)
        os.chmod(p, mode)
    etc = os.path.join(dest, "etc")
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("nsswitch.conf", NSSWITCH),
                       ("hostname", ""), ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
                       ("resolv.conf", "")):
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
    import shutil

    for name in ETC_COPIES:
        src = os.path.join("/etc", name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(etc, name), symlinks=True)
        elif os.path.exists(src):
            shutil.copy2(src, os.path.join(etc, name))
    os.symlink("../usr/lib/os-release", os.path.join(etc, "os-release"))


def layer_dir(root: str) -> str:
    """The skeleton layer, built on first use (atomically, so racing CLIs agree)."""
    stamp = 0
    for name in ETC_COPIES:
        try:
            stamp = max(stamp, os.stat(os.path.join("/etc", name)).st_mtime_ns)
        except OSError:
            pass
    final = os.path.join(root, "images", "builtin", f"host-v{LAYER_VERSION}-{stamp:x}")
    if os.path.isdir(final):
        return final
    import shutil
    import tempfile

    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".host-", dir=parent)
    try:
        os.chmod(tmp, 0o755)
        _build(tmp)
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):
            raise
    return final


def _bind(src: str, dst: str) -> dict:
    return {"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev"]}


def host_image(root: str) -> Image:
    mounts = [_bind(os.path.join("/", n), "/" + n) for n in SYSTEM_DIRS
              if os.path.isdir(os.path.join("/", n)) and not os.path.islink(os.path.join("/", n))]
    return Image(
        name="host",
        layers=[layer_dir(root)],
        config={"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        mounts=mounts,
    )
