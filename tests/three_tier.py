"""Three server images made from Debian packages installed on this host: the
founding brief's three-tier example (a web server, a database and a cache).

* ``db``: PostgreSQL (``postgresql``), its cluster made at build time by the
  host's ``initdb`` run as the host's ``postgres`` user, with a table
  ``greetings`` holding :data:`DB_ROW`; listens on 0.0.0.0:5432, trust auth
  for ``samenet`` (the subnets of the container's own interfaces).
* ``cache``: ``redis-server`` on 0.0.0.0:6379, protected mode off, preloaded:
  the build runs the host's redis-server on a unix socket, SETs ``greeting``
  to :data:`CACHE_VALUE` and SAVEs the ``dump.rdb`` the image starts from.
* ``web``: busybox's ``httpd`` on port 80 with a CGI script that, at request
  time, reads the row with ``psql -h $DB_HOST`` and the key with ``redis-cli
  -h $CACHE_HOST`` (``db`` and ``cache`` by default) and answers 200 with both,
  or 503 saying which tier did not answer.

Each image is the busybox-static base (``busybox --install -s`` links, root
and nobody) plus one layer: the packages' files (``dpkg -L``, minus docs and
the LLVM JIT), the shared-library closure of every ELF among them (``ldd``),
/etc/passwd and /etc/group with the server's user, its configuration and a
``/usr/local/bin/ready`` check (``pinnace exec NAME ready`` exits 0 once the
tier serves). umoci makes the OCI layout and sets Entrypoint, Cmd, Env, User,
ExposedPorts, StopSignal and Labels; skopeo pushes it.

The layout is cached in ``$THREE_TIER_CACHE`` (default
/var/tmp/pinnace-three-tier) under a key over this file, the packages'
versions and every copied host file's size and mtime, so a rebuild happens
only when something it is made of changes.

As a script (the example in examples/three-tier uses it)::

    python3 tests/three_tier.py build                 # the cached layout's path, and the images' sizes
    python3 tests/three_tier.py push HOST:PORT        # DB_IMAGE=... CACHE_IMAGE=... WEB_IMAGE=... (shell)
    python3 tests/three_tier.py registry WORKDIR      # starts docker-registry on 127.0.0.1: "HOST:PORT PID"
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from registry import HOST_ARCH, PATH_ENV, Layout, Registry  # noqa: E402

TIERS = ("db", "cache", "web")
DB_ROW = "hello from postgres"
CACHE_VALUE = "hello from redis"
#: the repositories the images are pushed to, under the registry's host
REPO = "three-tier/{tier}"
CACHE_DIR = os.environ.get("THREE_TIER_CACHE", "/var/tmp/pinnace-three-tier")

#: what the build needs on the host besides the servers' own packages (which
#: selections() names): the base, the image tools, ldd, runuser
BUILD_PACKAGES = ["busybox-static", "umoci", "skopeo", "libc-bin", "util-linux", "postgresql", "redis-server",
                  "redis-tools"]
#: never copied: documentation, translations, the LLVM JIT and its bitcode (jit=off), init-system files
EXCLUDE = ["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/lintian/*",
           "/usr/share/bash-completion/*", "/etc/*", "/lib/systemd/*", "/usr/lib/systemd/*",
           "*/llvmjit*", "*/lib/bitcode/*", "/usr/share/postgresql/*/man/*"]

# uids and gids of the servers' users inside the images
POSTGRES_ID, REDIS_ID, WWW_ID = 999, 998, 33


class BuildError(Exception):
    """The images cannot be built on this host (the message says what to install)."""


# --------------------------------------------------------------------------- what goes in


def pg_major() -> str:
    """The major version Debian's ``postgresql`` metapackage stands for ("15" on bookworm)."""
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\t${Depends}", "postgresql"], capture_output=True,
                       text=True)
    status, _, depends = r.stdout.partition("\t")
    if r.returncode != 0 or not status.endswith(" installed"):
        raise missing_error(["postgresql"])
    for dep in depends.split(","):
        name = dep.strip().split(" ")[0]
        if name.startswith("postgresql-") and name[len("postgresql-"):].isdigit():
            return name[len("postgresql-"):]
    raise BuildError(f"three-tier images: cannot tell PostgreSQL's version from postgresql's Depends: {depends}")


def selections(pg: str) -> dict[str, dict[str, list[str]]]:
    """Per tier: Debian package -> globs over its ``dpkg -L`` paths to copy."""
    bin_ = f"/usr/lib/postgresql/{pg}/bin"
    return {
        "db": {f"postgresql-{pg}": ["*"], f"postgresql-client-{pg}": [f"{bin_}/psql", f"{bin_}/pg_isready"],
               "tzdata": ["/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC"],
               "libgcc-s1": ["*/libgcc_s.so.1"]},
        "cache": {"redis-server": ["/usr/bin/redis-server"], "redis-tools": ["/usr/bin/redis-cli"],
                  "libgcc-s1": ["*/libgcc_s.so.1"]},
        "web": {f"postgresql-client-{pg}": [f"{bin_}/psql"], "redis-tools": ["/usr/bin/redis-cli"],
                "libgcc-s1": ["*/libgcc_s.so.1"]},
    }


def package_versions(packages) -> dict[str, str]:
    """Installed version of each package; a clear error naming the missing ones."""
    versions, missing = {}, []
    for p in sorted(set(packages)):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", p], capture_output=True, text=True)
        status, _, version = r.stdout.partition("\t")
        if r.returncode != 0 or not status.endswith(" installed"):
            missing.append(p)
        else:
            versions[p] = version
    if missing:
        raise missing_error(missing)
    return versions


def missing_error(packages: list[str]) -> BuildError:
    return BuildError(f"three-tier images: Debian package(s) {', '.join(packages)} not installed on this host "
                      f"(apt-get install -y {' '.join(packages)})")


@functools.lru_cache(maxsize=None)
def dpkg_list(package: str) -> tuple[str, ...]:
    out = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, check=True).stdout
    return tuple(out.splitlines())


def dpkg_files(package: str, globs: list[str]) -> list[str]:
    paths = []
    for p in dpkg_list(package):
        if not p.startswith("/") or any(fnmatch.fnmatch(p, x) for x in EXCLUDE):
            continue
        if any(fnmatch.fnmatch(p, g) for g in globs) and os.path.lexists(p) and not os.path.isdir(p):
            paths.append(p)
    if not paths:
        raise BuildError(f"three-tier images: package {package} has no file matching {globs}")
    return paths


def expand(path: str, into: set[str]) -> None:
    """``path`` and every symlink on the way to what it names (its parents' too)."""
    if path in into or path == "/":
        return
    parent = os.path.dirname(path)
    expand(parent, into)
    into.add(path)
    if os.path.islink(path):
        expand(os.path.normpath(os.path.join(parent, os.readlink(path))), into)


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def libraries(elfs: list[str]) -> set[str]:
    """The shared-library closure of ``elfs`` (with the dynamic loader), by ``ldd``."""
    libs: set[str] = set()
    for i in range(0, len(elfs), 200):
        batch = elfs[i:i + 200]
        r = subprocess.run(["ldd", *batch], capture_output=True, text=True)
        current = batch[0]
        for line in r.stdout.splitlines():
            if not line.startswith("\t"):
                current = line.rstrip(":")
                continue
            line = line.strip()
            if "=> not found" in line:
                raise BuildError(f"three-tier images: {current} needs {line.split()[0]}, which is not installed")
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().rsplit(" (", 1)[0].strip()
                if target.startswith("/"):
                    libs.add(target)
            elif line.startswith("/"):
                libs.add(line.rsplit(" (", 1)[0])
    return libs


def plan(pg: str) -> dict[str, list[str]]:
    """Per tier, every host path (file or symlink, directories implied) to copy."""
    def one(packages: dict[str, list[str]]) -> list[str]:
        paths: set[str] = set()
        for package, globs in packages.items():
            for p in dpkg_files(package, globs):
                expand(p, paths)
        elfs = sorted(p for p in paths if not os.path.islink(p) and os.path.isfile(p) and is_elf(p))
        for lib in libraries(elfs):
            expand(lib, paths)
        return sorted(p for p in paths if os.path.islink(p) or not os.path.isdir(p))

    sel = selections(pg)
    for package in {p for packages in sel.values() for p in packages}:
        dpkg_list(package)
    with concurrent.futures.ThreadPoolExecutor(len(sel)) as pool:  # ldd is a shell script per file: slow
        return dict(zip(sel, pool.map(one, sel.values())))


def cache_key(pg: str, files: dict[str, list[str]], versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    h.update(json.dumps([HOST_ARCH, pg, versions, shutil.which("busybox")], sort_keys=True).encode())
    for tier in TIERS:
        for p in files[tier]:
            st = os.lstat(p)
            h.update(f"{tier}\0{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\n".encode())
    with open(shutil.which("busybox"), "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:20]


# --------------------------------------------------------------------------- the root filesystems


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise BuildError(f"three-tier images: {' '.join(cmd)} exited {r.returncode}: {(r.stderr or r.stdout).strip()}")
    return r


def write(rootfs: str, path: str, text: str, mode: int = 0o644, owner: int = 0) -> None:
    dest = os.path.join(rootfs, path.lstrip("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w") as f:
        f.write(text)
    os.chmod(dest, mode)
    os.chown(dest, owner, owner)


def mkdir(rootfs: str, path: str, mode: int = 0o755, owner: int = 0) -> None:
    dest = os.path.join(rootfs, path.lstrip("/"))
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, mode)
    os.chown(dest, owner, owner)


def copy_in(rootfs: str, paths: list[str]) -> None:
    """Each host path at the same place in ``rootfs``: symlinks as symlinks (parents
    first, so /lib -> usr/lib stays a link), files with their modes. Writes go to
    the real (resolved) parent, never through a link made in ``rootfs``."""
    for p in sorted(paths, key=lambda x: (x.count("/"), x)):
        real_parent = os.path.realpath(os.path.dirname(p))
        dest_dir = os.path.join(rootfs, real_parent.lstrip("/"))
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, os.path.basename(p))
        if os.path.lexists(dest):
            continue  # already there (a directory of the base where the host has a link, e.g. /bin)
        if os.path.islink(p):
            os.symlink(os.readlink(p), dest)
        else:
            shutil.copy2(p, dest)


def users(rootfs: str, *entries: tuple[str, int, str, str]) -> None:
    """/etc/passwd and /etc/group: root, nobody and (name, id, home, gecos) each."""
    pw = ["root:x:0:0:root:/root:/bin/sh"]
    gr = ["root:x:0:"]
    for name, uid, home, gecos in entries:
        pw.append(f"{name}:x:{uid}:{uid}:{gecos}:{home}:/bin/sh")
        gr.append(f"{name}:x:{uid}:")
    pw.append("nobody:x:65534:65534:nobody:/nonexistent:/bin/false")
    gr.append("nogroup:x:65534:")
    write(rootfs, "/etc/passwd", "\n".join(pw) + "\n")
    write(rootfs, "/etc/group", "\n".join(gr) + "\n")


def base_rootfs(rootfs: str) -> None:
    """The busybox-static base: applet links by ``busybox --install -s`` in a chroot."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "proc", "sys", "dev", "root", "run",
              "var"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    mkdir(rootfs, "/tmp", 0o1777)
    mkdir(rootfs, "/var/tmp", 0o1777)
    shutil.copy(shutil.which("busybox"), os.path.join(rootfs, "bin", "busybox"))
    run("chroot", rootfs, "/bin/busybox", "--install", "-s")
    users(rootfs)
    write(rootfs, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")


POSTGRESQL_CONF = """
# three-tier image: appended by tests/three_tier.py
listen_addresses = '*'
port = 5432
unix_socket_directories = '/run/postgresql'
max_connections = 20
shared_buffers = 16MB
dynamic_shared_memory_type = posix
jit = off
timezone = 'UTC'
log_timezone = 'UTC'
log_destination = 'stderr'
logging_collector = off
"""

PG_HBA = """# three-tier image: trust for the unix socket and the container's own subnets
local all all trust
host all all samenet trust
"""


def db_rootfs(rootfs: str, pg: str, work: str) -> None:
    bindir = f"/usr/lib/postgresql/{pg}/bin"
    users(rootfs, ("postgres", POSTGRES_ID, "/var/lib/postgresql", "PostgreSQL administrator"))
    mkdir(rootfs, "/var/lib/postgresql", 0o755, POSTGRES_ID)
    mkdir(rootfs, "/run/postgresql", 0o2775, POSTGRES_ID)
    # initdb and the first row on the host, by the host's postgres user (initdb
    # refuses root), then the cluster is handed to the image's postgres uid.
    scratch = tempfile.mkdtemp(prefix="initdb-", dir=work)
    try:
        import pwd

        host_pg = pwd.getpwnam("postgres")
    except KeyError:
        raise BuildError("three-tier images: the host has no postgres user (reinstall Debian package "
                         "postgresql-common)") from None
    os.chown(scratch, host_pg.pw_uid, host_pg.pw_gid)
    data = os.path.join(scratch, "data")
    run("runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", data, "--no-sync", "--locale=C",
        "--encoding=UTF8", "--username=postgres", "--auth=trust", "--wal-segsize=1", cwd=scratch)
    sql = f"CREATE TABLE greetings (message text);\nINSERT INTO greetings VALUES ('{DB_ROW}');\n"
    r = subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/postgres", "--single", "-D", data,
                        "-c", "log_min_messages=warning", "postgres"], input=sql, capture_output=True, text=True,
                       cwd=scratch)
    if r.returncode != 0 or "ERROR" in r.stdout + r.stderr:
        raise BuildError(f"three-tier images: loading the greetings row failed: {r.stdout}{r.stderr}")
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(POSTGRESQL_CONF)
    with open(os.path.join(data, "pg_hba.conf"), "w") as f:
        f.write(PG_HBA)
    dest = os.path.join(rootfs, "var/lib/postgresql/data")
    shutil.copytree(data, dest, symlinks=True)
    for dirpath, dirs, files in os.walk(dest):
        for n in [dirpath, *(os.path.join(dirpath, x) for x in files)]:
            os.lchown(n, POSTGRES_ID, POSTGRES_ID)
    os.chmod(dest, 0o700)
    shutil.rmtree(scratch)
    write(rootfs, "/usr/local/bin/ready", "#!/bin/sh\n# ready: the server takes TCP connections\n"
                                          "exec pg_isready -q -h 127.0.0.1 -p 5432 -U postgres -t 2\n", 0o755)


REDIS_CONF = """# three-tier image: written by tests/three_tier.py
bind * -::*
port 6379
protected-mode no
daemonize no
supervised no
logfile ""
dir /var/lib/redis
dbfilename dump.rdb
save ""
appendonly no
"""


def cache_rootfs(rootfs: str, work: str) -> None:
    users(rootfs, ("redis", REDIS_ID, "/var/lib/redis", "redis"))
    write(rootfs, "/etc/redis/redis.conf", REDIS_CONF)
    mkdir(rootfs, "/var/lib/redis", 0o750, REDIS_ID)
    # the key, saved by the host's redis-server (the same binary) on a unix socket
    scratch = tempfile.mkdtemp(prefix="redis-", dir=work)
    sock = os.path.join(scratch, "sock")
    server = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--dir", scratch, "--save", "",
                               "--appendonly", "no", "--logfile", os.path.join(scratch, "log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["redis-cli", "-s", sock, "ping"], capture_output=True).stdout != b"PONG\n":
            if server.poll() is not None or time.monotonic() > deadline:
                raise BuildError("three-tier images: the host's redis-server did not start on a unix socket")
            time.sleep(0.02)
        run("redis-cli", "-s", sock, "SET", "greeting", CACHE_VALUE)
        run("redis-cli", "-s", sock, "SAVE")
    finally:
        server.terminate()
        server.wait()
    dump = os.path.join(rootfs, "var/lib/redis/dump.rdb")
    shutil.copy(os.path.join(scratch, "dump.rdb"), dump)
    os.chown(dump, REDIS_ID, REDIS_ID)
    shutil.rmtree(scratch)
    write(rootfs, "/usr/local/bin/ready", "#!/bin/sh\n# ready: the server answers and has the preloaded key\n"
                                          '[ "$(redis-cli -h 127.0.0.1 EXISTS greeting 2>/dev/null)" = 1 ]\n', 0o755)


INDEX_CGI = r"""#!/bin/sh
# GET /: the row from the database and the value from the cache, fetched now.
db=$(psql -X -A -t -h "${DB_HOST:-db}" -U postgres -d postgres -c 'SELECT message FROM greetings' 2>&1)
db_ok=$?
cache=$(redis-cli -e -h "${CACHE_HOST:-cache}" --raw GET greeting 2>&1)
cache_ok=$?
if [ $db_ok = 0 ] && [ $cache_ok = 0 ] && [ -n "$cache" ]; then
    printf 'Status: 200 OK\r\n'
else
    printf 'Status: 503 Service Unavailable\r\n'
fi
printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
printf '<!doctype html>\n<title>pinnace three-tier</title>\n'
html() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
printf '<p>database (%s): %s</p>\n' "$(html "${DB_HOST:-db}")" "$(html "$db")"
printf '<p>cache (%s): %s</p>\n' "$(html "${CACHE_HOST:-cache}")" "$(html "$cache")"
"""


def web_rootfs(rootfs: str) -> None:
    users(rootfs, ("www-data", WWW_ID, "/var/www", "www-data"))
    mkdir(rootfs, "/var/www")
    # busybox httpd runs /cgi-bin/index.cgi for a directory without index.html
    write(rootfs, "/var/www/cgi-bin/index.cgi", INDEX_CGI, 0o755)
    # (timeout, not wget -T: busybox 1.35's wget crashes with -T)
    write(rootfs, "/usr/local/bin/ready", "#!/bin/sh\n# ready: GET / answers 200 (the other two tiers answered)\n"
                                          "exec timeout 5 wget -q -O /dev/null http://127.0.0.1:80/\n", 0o755)


# --------------------------------------------------------------------------- images


def image_configs(pg: str, versions: dict[str, str]) -> dict[str, list[str]]:
    """umoci config arguments per tier."""
    path = f"PATH=/usr/lib/postgresql/{pg}/bin:" + PATH_ENV.split("=", 1)[1]

    def labels(tier: str, packages: list[str]) -> list[str]:
        made_of = ", ".join(f"{p} {versions[p]}" for p in packages)
        return ["--config.label", f"org.opencontainers.image.title=pinnace three-tier {tier}",
                "--config.label", f"org.opencontainers.image.description=from Debian packages: {made_of}"]

    return {
        "db": ["--config.entrypoint", "postgres", "--config.cmd", "-D", "--config.cmd", "/var/lib/postgresql/data",
               "--config.env", path, "--config.env", "PGDATA=/var/lib/postgresql/data",
               "--config.user", "postgres", "--config.workingdir", "/var/lib/postgresql",
               "--config.exposedports", "5432/tcp", "--config.stopsignal", "SIGINT",
               *labels("db", [f"postgresql-{pg}"])],
        "cache": ["--config.entrypoint", "redis-server", "--config.cmd", "/etc/redis/redis.conf",
                  "--config.env", PATH_ENV, "--config.user", "redis", "--config.workingdir", "/var/lib/redis",
                  "--config.exposedports", "6379/tcp", *labels("cache", ["redis-server", "redis-tools"])],
        # root only to bind port 80: httpd then runs as www-data (-u), and so does the CGI
        "web": ["--config.entrypoint", "httpd", "--config.entrypoint", "-f", "--config.entrypoint", "-vv",
                "--config.entrypoint", "-h", "--config.entrypoint", "/var/www",
                "--config.entrypoint", "-u", "--config.entrypoint", "www-data:www-data",
                "--config.cmd", "-p", "--config.cmd", "80",
                "--config.env", path, "--config.env", "DB_HOST=db", "--config.env", "CACHE_HOST=cache",
                "--config.env", "PGCONNECT_TIMEOUT=3", "--config.user", "root", "--config.workingdir", "/var/www",
                "--config.exposedports", "80/tcp",
                *labels("web", ["busybox-static", f"postgresql-client-{pg}", "redis-tools"])],
    }


def build(cache_dir: str = CACHE_DIR, log=None) -> str:
    """The OCI layout (path) with tags db, cache and web; built unless cached."""
    package_versions(BUILD_PACKAGES)  # all that is missing in one message
    pg = pg_major()
    sel = selections(pg)
    versions = package_versions([*BUILD_PACKAGES, *(p for packages in sel.values() for p in packages)])
    files = plan(pg)
    key = cache_key(pg, files, versions)
    final = os.path.join(cache_dir, key)
    if os.path.exists(os.path.join(final, "index.json")):
        return final
    os.makedirs(cache_dir, exist_ok=True)
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir)
    try:
        os.chmod(work, 0o755)
        layout = os.path.join(work, "layout")
        run("umoci", "init", "--layout", layout)
        run("umoci", "new", "--image", f"{layout}:base")
        bundle = os.path.join(work, "bundle-base")
        run("umoci", "unpack", "--image", f"{layout}:base", bundle)
        base_rootfs(os.path.join(bundle, "rootfs"))
        run("umoci", "repack", "--image", f"{layout}:base", bundle)
        run("umoci", "config", "--image", f"{layout}:base", "--config.cmd", "sh", "--config.env", PATH_ENV,
            "--architecture", HOST_ARCH, "--os", "linux", "--author", "pinnace tests/three_tier.py")
        shutil.rmtree(bundle)
        configs = image_configs(pg, versions)
        took = {"base": time.monotonic() - t0}
        for tier in TIERS:
            t1 = time.monotonic()
            bundle = os.path.join(work, f"bundle-{tier}")
            run("umoci", "unpack", "--image", f"{layout}:base", bundle)
            rootfs = os.path.join(bundle, "rootfs")
            copy_in(rootfs, files[tier])
            {"db": lambda: db_rootfs(rootfs, pg, work), "cache": lambda: cache_rootfs(rootfs, work),
             "web": lambda: web_rootfs(rootfs)}[tier]()
            run("umoci", "repack", "--image", f"{layout}:{tier}", "--history.created_by",
                f"tests/three_tier.py: {tier}", bundle)
            run("umoci", "config", "--image", f"{layout}:{tier}", "--clear", "config.cmd", *configs[tier])
            shutil.rmtree(bundle)
            took[tier] = time.monotonic() - t1
        run("umoci", "gc", "--layout", layout)
        try:
            os.rename(layout, final)
        except OSError:
            if not os.path.exists(os.path.join(final, "index.json")):
                raise
            # another build of the same key won the race; its layout is the same
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if log:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in took.items())
        log(f"built {final} in {time.monotonic() - t0:.1f}s ({steps})")
    prune_cache(cache_dir, keep=final)
    return final


def prune_cache(cache_dir: str, keep: str, most: int = 3) -> None:
    """Older builds beyond the ``most`` newest go (crashed builds' .tmp-* after a day)."""
    entries = []
    for n in os.listdir(cache_dir):
        p = os.path.join(cache_dir, n)
        age = time.time() - os.stat(p).st_mtime
        if n.startswith(".tmp-"):
            if age > 86400:
                shutil.rmtree(p, ignore_errors=True)
        elif p != keep:
            entries.append((os.stat(p).st_mtime, p))
    for _, p in sorted(entries, reverse=True)[most - 1:]:
        shutil.rmtree(p, ignore_errors=True)


def sizes(layout: str) -> dict[str, dict[str, int]]:
    """Per tier: compressed bytes of its layers (``pushed``) and of its own top layer (``own``)."""
    lay = Layout(layout)
    out = {}
    for tier in TIERS:
        manifest, _ = lay.image(tier)
        out[tier] = {"pushed": sum(x["size"] for x in manifest["layers"]), "own": manifest["layers"][-1]["size"]}
    return out


def push(layout: str, host: str) -> dict[str, str]:
    """skopeo copy of each tier to ``host``; returns tier -> reference."""
    refs = {}
    for tier in TIERS:
        ref = f"{host}/{REPO.format(tier=tier)}:latest"
        run("skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{tier}",
            f"docker://{ref}")
        refs[tier] = ref
    return refs


def main(argv: list[str]) -> int:
    usage = "usage: three_tier.py build | push HOST:PORT | registry WORKDIR"
    try:
        if argv[:1] == ["build"] and len(argv) == 1:
            layout = build(log=lambda m: print(m, file=sys.stderr))
            print(layout)
            for tier, s in sizes(layout).items():
                print(f"{tier}: {s['pushed'] / 1e6:.1f} MB compressed ({s['own'] / 1e6:.1f} MB its own layer)")
        elif argv[:1] == ["push"] and len(argv) == 2:
            refs = push(build(log=lambda m: print(m, file=sys.stderr)), argv[1])
            for tier, ref in refs.items():
                print(f"{tier.upper()}_IMAGE={ref}")
        elif argv[:1] == ["registry"] and len(argv) == 2:
            package_versions(["docker-registry"])
            os.makedirs(argv[1], exist_ok=True)
            reg = Registry(argv[1])  # left running: the caller stops it by the pid printed
            print(reg.host, reg.proc.pid)
        else:
            print(usage, file=sys.stderr)
            return 2
    except BuildError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
