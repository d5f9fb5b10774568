"""iproute2 ``vdpa -j`` output: pure parsers, plus thin wrappers that run the real tool.

``vdpa -j`` prints JSON with some quirks the parsers absorb:

- ``dev vstats show``: vendor counters come as ``"rx packets": N`` (iproute2 builds with
  older JSON writers print repeated ``"name": X, "value": N`` pairs instead; both parse);
  the queue of qidx 0 is labelled ``control_vq`` by this kernel when MQ is not negotiated,
  although vdpa_sim_net reports its rx counters there;
- ``dev config show`` spells the link state key ``"link "`` (trailing space) in some
  iproute2 versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seriesgate import proc
from seriesgate.errors import InfraError

VDPA = "vdpa"
SYSFS_VDPA = Path("/sys/bus/vdpa/devices")

Pairs = list[tuple[str, Any]]


class _Multi(dict[str, Any]):
    """A JSON object that also remembers every (key, value) pair in order, duplicates included."""

    pairs: Pairs


def _hook(pairs: Pairs) -> _Multi:
    obj = _Multi()
    obj.pairs = pairs
    for key, value in pairs:
        obj[key] = value
    return obj


def _loads(text: str, what: str) -> _Multi:
    try:
        data = json.loads(text, object_pairs_hook=_hook)
    except json.JSONDecodeError as exc:
        raise InfraError(f"unreadable `vdpa -j {what}` output: {exc}") from None
    if not isinstance(data, _Multi):
        raise InfraError(f"unexpected `vdpa -j {what}` output: not a JSON object")
    return data


def _plain(value: Any) -> Any:
    """Turn nested _Multi objects into ordinary dicts (duplicates: last wins)."""
    if isinstance(value, dict):
        return {k.strip(): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_dev_show(text: str) -> dict[str, dict[str, Any]]:
    """``vdpa -j dev show`` → {name: {"type", "mgmtdev", "vendor_id", "max_vqs", ...}}."""
    data = _loads(text, "dev show")
    devs = data.get("dev", {})
    if not isinstance(devs, dict):
        raise InfraError("unexpected `vdpa -j dev show` output: 'dev' is not an object")
    return {str(name): _plain(attrs) for name, attrs in devs.items()}


def parse_mgmtdev_show(text: str) -> dict[str, dict[str, Any]]:
    """``vdpa -j mgmtdev show`` → {mgmtdev: {"supported_classes", "max_supported_vqs", ...}}."""
    data = _loads(text, "mgmtdev show")
    devs = data.get("mgmtdev", {})
    return {str(name): _plain(attrs) for name, attrs in devs.items()}


def parse_config_show(text: str, name: str) -> dict[str, Any]:
    """``vdpa -j dev config show NAME`` → {"mac", "link", "mtu", "negotiated_features", ...}."""
    data = _loads(text, "dev config show")
    configs = data.get("config", {})
    if name not in configs:
        raise InfraError(f"`vdpa dev config show {name}` has no entry for {name}")
    result: dict[str, Any] = _plain(configs[name])
    return result


def parse_vstats(text: str, name: str) -> dict[str, Any]:
    """``vdpa -j dev vstats show NAME qidx N`` → {"queue_type", counters...}.

    Counters printed as repeated ``"name": X, "value": N`` pairs also become ``{X: N}``.
    """
    data = _loads(text, "dev vstats show")
    vstats = data.get("vstats", {})
    if name not in vstats:
        raise InfraError(f"`vdpa dev vstats show {name}` has no entry for {name}")
    obj = vstats[name]
    result: dict[str, Any] = {}
    pending: str | None = None
    for key, value in obj.pairs:
        if key == "name":
            pending = str(value)
        elif key == "value" and pending is not None:
            result[pending] = value
            pending = None
        else:
            result[key.strip()] = _plain(value)
    return result


def datapath_counters(rx: dict[str, Any], tx: dict[str, Any]) -> dict[str, int]:
    """vdpa_sim_net's vendor counters of queue 0 (rx) and 1 (tx) as {"rx_packets": N, ...}.

    vdpa_sim_net names them "rx packets", "rx bytes", "rx errors", "rx overruns", "rx drops",
    "tx packets", "tx bytes", "tx errors", "tx drops" (hardware drivers such as mlx5 report
    "received_desc"/"completed_desc" instead; those are absent here).
    """
    counters: dict[str, int] = {}
    for stats, prefix in ((rx, "rx "), (tx, "tx ")):
        for key, value in stats.items():
            if key.startswith(prefix) and isinstance(value, int):
                counters[key.replace(" ", "_")] = value
    return counters


def chardev_of(name: str, sysfs: Path = SYSFS_VDPA) -> Path:
    """/dev/vhost-vdpa-N of the vDPA device ``name`` (from its sysfs directory)."""
    entries = sorted(p.name for p in (sysfs / name).glob("vhost-vdpa-*"))
    if not entries:
        raise InfraError(
            f"vDPA device {name} has no vhost-vdpa char device",
            hint="is the vhost_vdpa module loaded?",
        )
    return Path("/dev") / entries[0]


def run_vdpa(*args: str, timeout: float = 10.0) -> str:
    """Run ``vdpa -j ARGS`` and return its stdout."""
    result = proc.run([VDPA, "-j", *args], timeout=timeout, what=f"vdpa {' '.join(args)}")
    return result.stdout


def dev_add(name: str, mac: str, mgmtdev: str = "vdpasim_net") -> None:
    proc.run(
        [VDPA, "dev", "add", "mgmtdev", mgmtdev, "name", name, "mac", mac],
        timeout=10.0,
        what=f"vdpa dev add {name}",
    )


def dev_del(name: str) -> None:
    proc.run([VDPA, "dev", "del", name], timeout=10.0, what=f"vdpa dev del {name}")
