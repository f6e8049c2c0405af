"""Stand-ins for the official postgres and redis images, which cannot be pulled here: one
Debian root (debootstrap, with Debian's postgresql-15 and redis-server) imported twice under
the official names docker.io/library/postgres:15 and docker.io/library/redis:7, each with an
entrypoint that honours what a compose file relies on in the official one (POSTGRES_USER,
POSTGRES_PASSWORD, POSTGRES_DB, PGDATA; pg_isready and redis-cli on PATH; /data for redis).
Made once per machine (podman's storage is the cache, the root is kept beside tests/images.py's
in /var/tmp); never committed, never pushed."""

from __future__ import annotations

import subprocess

from tests import images

POSTGRES = "docker.io/library/postgres:15"
REDIS = "docker.io/library/redis:7"
PACKAGES = "postgresql-15,redis-server,ca-certificates"
PG_BIN = "/usr/lib/postgresql/15/bin"
# the official image's contract, in brief: initialise an empty PGDATA as its owner with the
# given superuser, password and database, then run the server on every address
PG_ENTRYPOINT = f"""#!/bin/sh
set -eu
: "${{PGDATA:=/var/lib/postgresql/data}}"
user="${{POSTGRES_USER:-postgres}}"
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_pg() {{ setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp); chown postgres "$pw"; printf '%s' "$POSTGRES_PASSWORD" > "$pw"
  as_pg {PG_BIN}/initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ -n "${{POSTGRES_DB:-}}" ] && [ "$POSTGRES_DB" != "$user" ] || [ "$user" != postgres ]; then
    as_pg {PG_BIN}/postgres --single -D "$PGDATA" postgres >/dev/null <<EOF
CREATE DATABASE "${{POSTGRES_DB:-$user}}" OWNER "$user";
EOF
  fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \\
  {PG_BIN}/postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"""


def ensure() -> None:
    if images._have(POSTGRES) and images._have(REDIS):
        return
    root = images._debootstrap("data", PACKAGES)
    entry = root / "usr/local/bin/docker-entrypoint.sh"
    entry.write_text(PG_ENTRYPOINT)
    entry.chmod(0o755)
    for tool in ("pg_isready", "psql"):
        link = root / "usr/local/bin" / tool
        link.unlink(missing_ok=True)
        link.symlink_to(f"{PG_BIN}/{tool}")
    subprocess.run(["chroot", str(root), "install", "-d", "-o", "redis", "-g", "redis", "/data"],
                   check=True, capture_output=True)
    images._import(root, POSTGRES, ["ENV PGDATA=/var/lib/postgresql/data",
                                    'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
                                    "STOPSIGNAL SIGINT"])
    images._import(root, REDIS, ["WORKDIR /data", "USER redis",
                                 'CMD ["redis-server", "--protected-mode", "no"]'])


if __name__ == "__main__":
    ensure()
