"""The sandbox of every job container: the Docker host config its payload cannot loosen.

All capabilities dropped, `no-new-privileges`, a read-only root filesystem with a size-limited
tmpfs at `/tmp` (and at the working dir), a non-root user, memory, CPU, pids and open-file limits,
a bounded Docker log driver, and a network the operator allows, never the host's (see
docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.types import LogConfig, Mount, Ulimit

from chronoverse.definitions import ContainerDefinition

# A bounded log driver: we stream the output ourselves; Docker's copy is where a dead attempt's
# output is read back from (leftovers.py). Two files: once Docker rotated its log, it still holds
# a whole file (at least max-size), so a copy smaller than that is known to hold everything.
DOCKER_LOG_FILE_BYTES = 1024 * 1024  # max-size 1m
DOCKER_LOG = LogConfig(type=LogConfig.types.JSON, config={"max-size": "1m", "max-file": "2"})


@dataclass(frozen=True, kw_only=True)
class Sandbox:
    """What every job container gets, whatever its payload says (ContainerSettings)."""

    user: str | None  # "uid:gid"; None keeps the image's own user
    tmpfs_mb: int
    nofile: int

    def host_config(self, definition: ContainerDefinition) -> dict[str, Any]:
        """The keyword arguments of ``containers.create`` that confine the job."""
        tmpfs = f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"
        if self.user is not None:
            # Docker gives a tmpfs the mode of the directory it covers (root's 0755 for a working
            # dir it creates, or for /tmp in an image that lacks one): own it, so it is writable.
            uid, _, gid = self.user.partition(":")
            tmpfs += f",uid={uid},gid={gid or uid}"
        mounted = {v.target for v in definition.volumes}
        tmpfs_paths = {"/tmp": tmpfs}
        if (
            definition.working_dir
            and definition.working_dir not in mounted
            and not definition.working_dir_in_image
        ):
            tmpfs_paths[definition.working_dir] = tmpfs
        memory = f"{definition.memory_mb}m"
        return {
            "user": self.user,
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "read_only": True,
            "tmpfs": tmpfs_paths,
            "mem_limit": memory,
            "memswap_limit": memory,  # no swap beyond the memory limit
            "nano_cpus": definition.nano_cpus,
            "pids_limit": definition.pids_limit,
            "ulimits": [Ulimit(name="nofile", soft=self.nofile, hard=self.nofile)],
            "log_config": DOCKER_LOG,
            "network_mode": definition.network,
            "mounts": [
                Mount(target=v.target, source=v.source, type="volume", read_only=v.read_only)
                for v in definition.volumes
            ],
        }
