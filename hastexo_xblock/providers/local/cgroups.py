"""Control groups for local labs: limits on memory, processes and CPU, and freezing or killing a lab whole.

A lab's cgroup is its unit of life: every process of the lab -- its lab host,
its sandbox and whatever a learner starts, ``setsid`` or not -- is in it.
Freezing the cgroup suspends all of them at once; killing it leaves nothing.

Both cgroup versions are used as the machine offers them:

* **v1** (one hierarchy per controller, e.g. Debian 12 hosts in hybrid mode):
  ``memory``, ``pids``, ``cpu`` and ``freezer`` hierarchies, each lab one
  directory in each, under ``<our own cgroup>/<group>/``.
* **v2** (the unified hierarchy): one directory per lab under
  ``<our own cgroup>/<group>/`` (or the operator's ``cgroup_root``), with the
  controllers enabled on the way down.  Freezing (``cgroup.freeze``) and
  killing (``cgroup.kill``) need no controller.

Per feature the v1 hierarchy wins when that controller is mounted there (a
controller is active in one version only).  Whatever cannot be created or
written here -- typically everything, for a worker that is neither root nor
given a delegated v2 subtree -- is reported by :func:`plan` with the reason, so
that the provider can say once what it does not enforce.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ... import timing

#: What a lab's cgroup can do, and the v1 controller that does it.
FEATURES = {"memory": "memory", "pids": "pids", "cpu": "cpu", "freeze": "freezer"}

CPU_PERIOD_US = 100_000
#: How long freezing, killing and removal may take before they count as failed.
SETTLE_SECONDS = 5.0


class CgroupError(Exception):
    """A cgroup operation failed (the message says which file and why)."""


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy as this process sees it."""

    version: int
    mount: str
    #: This process's own cgroup, as a directory under ``mount``.
    own: str
    #: v1: the controllers of this hierarchy; v2: those available in ``own``.
    controllers: frozenset[str]


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as error:
        raise CgroupError(f"cannot write {value!r} to {path}: {error.strerror}") from None


def _under(mount_point: str, mount_root: str, path: str) -> str:
    """The directory of cgroup ``path`` in a hierarchy mounted at ``mount_point`` from ``mount_root``."""
    relative = os.path.relpath(path, mount_root)
    return os.path.normpath(os.path.join(mount_point, "" if relative == "." else relative))


def hierarchies(mountinfo: str = "/proc/self/mountinfo", membership: str = "/proc/self/cgroup") -> list[Hierarchy]:
    """The cgroup hierarchies mounted here that matter to labs, with this process's place in each."""
    own: dict[str, str] = {}  # "" for v2, else the hierarchy's controllers ("cpu,cpuacct")
    with contextlib.suppress(OSError):
        for line in _read(membership).splitlines():
            hier_id, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            own["" if hier_id == "0" else controllers] = path
    found: list[Hierarchy] = []
    with contextlib.suppress(OSError):
        for line in _read(mountinfo).splitlines():
            pre, sep, post = line.partition(" - ")
            if not sep:
                continue
            pre_fields, post_fields = pre.split(), post.split()
            if len(pre_fields) < 5 or len(post_fields) < 3:
                continue
            mount_root, mount_point = pre_fields[3], pre_fields[4].replace("\\040", " ")
            fstype, options = post_fields[0], post_fields[2].split(",")
            if fstype == "cgroup2" and "" in own:
                base = _under(mount_point, mount_root, own[""])
                try:
                    available = frozenset(_read(os.path.join(base, "cgroup.controllers")).split())
                except OSError:
                    available = frozenset()
                found.append(Hierarchy(2, mount_point, base, available))
            elif fstype == "cgroup":
                names = frozenset(opt for opt in options if opt in FEATURES.values())
                key = next((k for k in own if k and names & set(k.split(","))), None)
                if names and key is not None:
                    found.append(Hierarchy(1, mount_point, _under(mount_point, mount_root, own[key]), names))
    return found


@dataclass(frozen=True)
class Placement:
    """Where new labs' cgroups go, per feature, and why a feature is missing."""

    #: feature → (cgroup version, parent directory of the labs' cgroups)
    parents: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    #: feature → why it is not available here
    problems: Mapping[str, str] = field(default_factory=dict)


def _enable_v2(directory: str, controllers: Iterable[str]) -> list[str]:
    """Enable ``controllers`` for the children of ``directory``; return those that could not be."""
    failed = []
    for name in controllers:
        try:
            _write(os.path.join(directory, "cgroup.subtree_control"), f"+{name}")
        except CgroupError:
            failed.append(name)
    return failed


def _v1_parent(hierarchy: Hierarchy, group: str) -> tuple[str | None, str | None]:
    parent = os.path.join(hierarchy.own, group)
    try:
        os.makedirs(parent, exist_ok=True)
        if not os.access(os.path.join(parent, "cgroup.procs"), os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied")
    except OSError as error:
        return None, f"cannot create {parent}: {error.strerror}"
    return parent, None


def _v2_parent(
    hierarchy: Hierarchy, group: str, root: str | None, controller: str | None
) -> tuple[str | None, str | None]:
    base = root or hierarchy.own
    parent = base if root else os.path.join(base, group)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as error:
        return None, f"cannot create {parent}: {error.strerror}"
    if controller is None:
        if not os.access(os.path.join(parent, "cgroup.procs"), os.W_OK):
            return None, f"cannot write to {parent}"
        return parent, None
    if controller not in hierarchy.controllers and not root:
        return None, f"the {controller} controller is not available in {hierarchy.own}"
    if parent != base and _enable_v2(base, [controller]):
        return None, f"cannot enable the {controller} controller in {base}"
    if _enable_v2(parent, [controller]):
        return None, f"cannot enable the {controller} controller in {parent}"
    return parent, None


def plan(group: str = "hastexo", cgroup_root: str | None = None) -> Placement:
    """Find (and create) the parent cgroups that new labs go under, per feature.

    ``group`` is the directory created under this process's own cgroup in each
    hierarchy; ``cgroup_root`` (a v2 directory delegated to the workers)
    replaces the unified hierarchy's default place.  Limits come from the v1
    controllers where they are mounted (a controller is active in one version
    only), else from v2.  Freezing prefers v2, which stops tasks only on their
    way back to user space: the v1 freezer can wait for ever on a task asleep
    in the kernel behind a lock that a task it already froze holds.  Never
    raises: a feature that cannot be had is in ``problems`` with the reason.
    """
    parents: dict[str, tuple[int, str]] = {}
    problems: dict[str, str] = {}
    found = hierarchies()
    v1 = {name: h for h in found if h.version == 1 for name in h.controllers}
    v2 = next((h for h in found if h.version == 2), None)
    for feature, controller in FEATURES.items():
        attempts: list[tuple[int, Hierarchy]] = []
        if feature == "freeze" and v2 is not None:
            attempts.append((2, v2))
        if controller in v1:
            attempts.append((1, v1[controller]))
        if feature != "freeze" and v2 is not None:
            attempts.append((2, v2))
        if not attempts:
            problems[feature] = "no cgroup hierarchy has it mounted"
        for version, hierarchy in attempts:
            if version == 1:
                parent, problem = _v1_parent(hierarchy, group)
            else:
                parent, problem = _v2_parent(hierarchy, group, cgroup_root, None if feature == "freeze" else controller)
            if parent:
                parents[feature] = (version, parent)
                problems.pop(feature, None)
                break
            problems[feature] = problem or "unavailable"
    return Placement(parents=parents, problems=problems)


@dataclass(frozen=True)
class Limits:
    """What a lab may use; ``None`` is "no limit"."""

    memory: int | None = None  # bytes
    pids: int | None = None
    cpu: float | None = None  # CPUs


class LabCgroup:
    """The cgroup(s) of one lab: ``dirs`` maps a feature to its directory (v1: one per hierarchy)."""

    def __init__(self, dirs: Mapping[str, tuple[int, str]]) -> None:
        self.dirs = dict(dirs)

    # -- persistence ---------------------------------------------------------

    def to_state(self) -> dict[str, list[object]]:
        return {feature: [version, path] for feature, (version, path) in self.dirs.items()}

    @classmethod
    def from_state(cls, data: Mapping[str, object] | None) -> LabCgroup:
        dirs: dict[str, tuple[int, str]] = {}
        for feature, entry in (data or {}).items():
            if feature in FEATURES and isinstance(entry, (list, tuple)) and len(entry) == 2:
                dirs[feature] = (int(entry[0]), str(entry[1]))
        return cls(dirs)

    @classmethod
    def for_lab(cls, placement: Placement, name: str) -> LabCgroup:
        dirs = {
            feature: (version, os.path.join(parent, name)) for feature, (version, parent) in placement.parents.items()
        }
        return cls(dirs)

    # -- life ----------------------------------------------------------------

    def _unique_dirs(self) -> list[str]:
        return sorted({path for _, path in self.dirs.values()})

    def create(self, limits: Limits) -> None:
        """Create the directories and write the limits (again, if they exist: settings may have changed)."""
        for path in self._unique_dirs():
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as error:
                raise CgroupError(f"cannot create {path}: {error.strerror}") from None
        if "memory" in self.dirs and limits.memory:
            version, path = self.dirs["memory"]
            if version == 1:
                memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
                # memsw must stay >= the memory limit: lift it first, set it last.
                if os.path.exists(memsw):
                    _write(memsw, "-1")
                _write(os.path.join(path, "memory.limit_in_bytes"), str(limits.memory))
                if os.path.exists(memsw):
                    _write(memsw, str(limits.memory))
            else:
                _write(os.path.join(path, "memory.max"), str(limits.memory))
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    _write(os.path.join(path, "memory.swap.max"), "0")
        if "pids" in self.dirs and limits.pids:
            _write(os.path.join(self.dirs["pids"][1], "pids.max"), str(limits.pids))
        if "cpu" in self.dirs and limits.cpu:
            version, path = self.dirs["cpu"]
            quota = max(1000, round(limits.cpu * CPU_PERIOD_US))
            if version == 1:
                _write(os.path.join(path, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
                _write(os.path.join(path, "cpu.cfs_quota_us"), str(quota))
            else:
                _write(os.path.join(path, "cpu.max"), f"{quota} {CPU_PERIOD_US}")

    def join(self, pid: int) -> None:
        """Move process ``pid`` (and so everything it starts later) into the lab's cgroup(s)."""
        for path in self._unique_dirs():
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def pids(self) -> set[int]:
        """Every process in the lab's cgroup(s)."""
        found: set[int] = set()
        for path in self._unique_dirs():
            with contextlib.suppress(OSError):
                found.update(int(line) for line in _read(os.path.join(path, "cgroup.procs")).split())
        return found

    @property
    def can_freeze(self) -> bool:
        return "freeze" in self.dirs

    def frozen(self) -> bool:
        """Whether the lab is frozen (``False`` when there is no freezer)."""
        if not self.can_freeze:
            return False
        version, path = self.dirs["freeze"]
        try:
            if version == 1:
                return _read(os.path.join(path, "freezer.state")).strip() == "FROZEN"
            return "frozen 1" in _read(os.path.join(path, "cgroup.events")).splitlines()
        except OSError:
            return False

    def _set_frozen(self, frozen: bool) -> None:
        version, path = self.dirs["freeze"]
        if version == 1:
            _write(os.path.join(path, "freezer.state"), "FROZEN" if frozen else "THAWED")
        else:
            _write(os.path.join(path, "cgroup.freeze"), "1" if frozen else "0")
        try:
            timing.poll(
                lambda: True if self.frozen() == frozen else None,
                timing.Deadline.after(SETTLE_SECONDS),
                timing.KERNEL,
                what=f"{path} {'freeze' if frozen else 'thaw'}",
            )
        except timing.Timeout:
            states = self._task_states()
            if frozen:
                # Never leave a lab half frozen.
                with contextlib.suppress(CgroupError):
                    self._set_frozen(False)
            raise CgroupError(
                f"{path} did not become {'frozen' if frozen else 'thawed'} in time (tasks: {states})"
            ) from None

    def _task_states(self) -> str:
        """``pid:state`` of every process in the lab, for error messages."""
        found = []
        for pid in sorted(self.pids()):
            with contextlib.suppress(OSError):
                for line in _read(f"/proc/{pid}/status").splitlines():
                    if line.startswith("State:"):
                        found.append(f"{pid}:{line.split()[1]}")
        return " ".join(found) or "none"

    def freeze(self) -> None:
        """Freeze every process of the lab, atomically; returns once they are frozen."""
        self._set_frozen(True)

    def thaw(self) -> None:
        """Let every process of the lab run again."""
        self._set_frozen(False)

    def kill(self) -> None:
        """SIGKILL every process of the lab and wait until none is left.

        v2 has ``cgroup.kill``; on v1 the lab is frozen first, so that nothing
        can fork while its processes are being killed one by one.
        """
        if not self.dirs:
            return
        kill_file = next(
            (os.path.join(path, "cgroup.kill") for version, path in self.dirs.values() if version == 2),
            None,
        )
        if kill_file and os.path.exists(kill_file):
            _write(kill_file, "1")
        else:
            # Frozen, nothing can fork while its processes are killed one by
            # one.  Should freezing fail, killing still ends the lab: once its
            # init is dead the kernel kills the rest of its PID namespace.
            frozen = False
            if self.can_freeze:
                with contextlib.suppress(CgroupError):
                    self.freeze()
                    frozen = True
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if frozen:
                self.thaw()

        def gone() -> bool | None:
            left = self.pids()
            for pid in left:  # one that escaped the first kill (forked meanwhile) gets it again
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return None if left else True

        try:
            timing.poll(gone, timing.Deadline.after(SETTLE_SECONDS), timing.KERNEL, what="lab processes to die")
        except timing.Timeout:
            raise CgroupError(f"processes of the lab are still alive: {sorted(self.pids())}") from None

    def remove(self) -> None:
        """Remove the lab's cgroup directories (they must be empty: :meth:`kill` first)."""
        for path in self._unique_dirs():

            def removed(path: str = path) -> bool | None:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    if error.errno != errno.EBUSY:
                        raise CgroupError(f"cannot remove {path}: {error.strerror}") from None
                    return None  # the kernel has not let go of the last task yet
                return True

            try:
                timing.poll(removed, timing.Deadline.after(SETTLE_SECONDS), timing.KERNEL, what=f"remove {path}")
            except timing.Timeout:
                raise CgroupError(f"cannot remove {path}: still busy") from None
