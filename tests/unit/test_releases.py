"""Whether the host's current release is the wanted one, read from pre-flight's probe."""

from __future__ import annotations

import re
import subprocess
import time

from vllm_fleet import launch, paths, releases
from vllm_fleet.facts import probe as host_probe
from vllm_fleet.facts.probe import Probe

CONTENTS = {
    "vllm.service": "[Unit]\n",
    "vllm.env": "VLLM_API_KEY=" + "k" * 12 + "Zq7wPm2x" + "\n",
    "release.conf": "MODEL=m\n",
}


def probe_of(tmp_path, contents: dict | None, unit: str | None) -> Probe:
    """Run the probe's release lines against a directory laid out like a host."""
    root = tmp_path / "host"
    lines = (
        host_probe.script(
            host_probe.Where(0, "", "", ()), [f for f in host_probe.FIELDS if f.name.startswith("release_")]
        )
        .replace(paths.CONFIG_DIR, str(root / "etc"))
        .replace(paths.UNIT_PATH, str(root / "unit"))
    )
    if contents is not None:
        release = root / "etc" / "releases" / "20261122-101010-abcdef"
        release.mkdir(parents=True)
        for name, text in contents.items():
            (release / name).write_text(text)
        (root / "etc" / "releases" / "current").symlink_to(release.name)
    if unit is not None:
        root.mkdir(exist_ok=True)
        (root / "unit").write_text(unit)
    out = subprocess.run(["sh", "-c", lines], capture_output=True, text=True, check=True).stdout
    return Probe.parse(out.splitlines())


def test_the_same_files_and_unit_are_current(tmp_path):
    probe = probe_of(tmp_path, CONTENTS, CONTENTS["vllm.service"])
    assert probe.release_current == "20261122-101010-abcdef"
    assert releases.is_current(probe, CONTENTS)


def test_a_changed_secret_makes_a_new_release(tmp_path):
    probe = probe_of(tmp_path, CONTENTS, CONTENTS["vllm.service"])
    assert not releases.is_current(probe, {**CONTENTS, "vllm.env": "VLLM_API_KEY=" + "n" * 12 + "Zq7wPm2x" + "\n"})


def test_a_unit_edited_by_hand_makes_a_new_release(tmp_path):
    assert not releases.is_current(probe_of(tmp_path, CONTENTS, "[Unit]\n# edited\n"), CONTENTS)


def test_a_host_without_releases_gets_its_first(tmp_path):
    assert not releases.is_current(probe_of(tmp_path, None, CONTENTS["vllm.service"]), CONTENTS)


def test_release_names_sort_by_time_and_never_repeat(monkeypatch):
    # Deploys at moments that sort differently as text of unpadded numbers (9 s < 10 s, 9 May < 10 May).
    moments = [1778317209.0, 1778317210.0, 1778403600.0, 1778403600.0, 1809853200.0]
    clock, gmtime = iter(moments), time.gmtime
    monkeypatch.setattr(releases.time, "gmtime", lambda *_: gmtime(next(clock)))
    names = [releases.new_release_id() for _ in moments]
    assert sorted(names)[:2] == names[:2] and sorted(names)[-1] == names[-1], names
    assert [n[:15] for n in sorted(names)] == [time.strftime("%Y%m%d-%H%M%S", gmtime(t)) for t in moments]
    # Two deploys in the same second still get different names.
    assert names[2] != names[3]
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", n) for n in names)


def test_release_conf_is_what_the_activation_sources(tmp_path):
    from vllm_fleet.rules import validate

    s = validate("h", {"phase": "single_gpu", "vllm_model": "org/model", "vllm_ready_timeout": 60}, ["single_gpu"])
    conf = tmp_path / "release.conf"
    conf.write_text(launch.release_conf(s))
    out = subprocess.run(["sh", "-c", f'. {conf}; echo "$MODEL|$URL|$TIMEOUT"'], capture_output=True, text=True)
    assert out.stdout.strip() == "org/model|http://127.0.0.1:8000|60"
