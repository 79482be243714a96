# SPDX-License-Identifier: GPL-2.0-only
"""node_exporter's habits on `xenprobe serve`: --no-collector.GROUP / --collector.GROUP
and the disabled_collectors key leave a quantity group out of every family (and its
findings out of the impact counts the alerts read); --web.disable-exporter-metrics and
its key leave out prometheus_client's process_* and python_info."""

from __future__ import annotations

from pathlib import Path

from tests.exporter_util import Serve
from tests.scrapes import Exposition
from xenprobe.exporter.metrics import collector_groups as collectors
from xenprobe.xen.quantities import Quantity


def scrape(*args: str, config: Path | None = None) -> Exposition:
    with Serve("pv-dom0", "--interval", "60", *args, config=config) as serve:
        serve.after_sweeps(1)
        status, _, body = serve.get()
    assert status == 200
    return Exposition(body.decode())


def quantities(e: Exposition) -> set[str]:
    return {s.labels["quantity"] for s in e.samples if "quantity" in s.labels}


def impacts(e: Exposition) -> dict[str, float]:
    return {s.labels["impact"]: s.value for s in e.samples
            if s.name == "xenprobe_mismatched_readings"}


def test_every_quantity_is_in_one_group() -> None:
    grouped = [q for members in collectors.GROUPS.values() for q in members]
    assert sorted(grouped) == sorted(Quantity)


def test_a_group_and_the_exporter_metrics_left_out_by_flags() -> None:
    plain = scrape()
    assert "debug_register_6" in quantities(plain)
    assert impacts(plain)["harmless"] == 2  # DR6 through ioctl and syscall
    assert any(s.name.startswith("process_") for s in plain.samples)
    cut = scrape("--no-collector.debugreg", "--web.disable-exporter-metrics")
    assert quantities(cut) == quantities(plain) - {"debug_register_6"}
    assert impacts(cut) == {"harmless": 0, "exposure": 0, "harmful": 0}
    assert not [s for s in cut.samples if s.name.startswith(("process_", "python_"))]
    assert len(cut.samples) < len(plain.samples)


def test_the_config_file_and_a_flag_that_turns_it_back_on(tmp_path: Path) -> None:
    config = tmp_path / "xenprobe.toml"
    config.write_text('disabled_collectors = ["debugreg", "version"]\n'
                      "disable_exporter_metrics = true\n")
    got = scrape("--collector.debugreg", config=config)
    left = quantities(got)
    assert "debug_register_6" in left
    assert not left & {q.value for q in collectors.GROUPS["version"]}
    assert not [s for s in got.samples if s.name.startswith("process_")]
