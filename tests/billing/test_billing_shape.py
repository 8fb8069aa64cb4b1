"""Issue 8 item 7, billing's side: `stripe` (about 0.35 s of imports) is imported only when billing is
on *and* this process delivers; the `billing` group takes `--config` like its commands, and a bad
config is an error there too; read commands never create an outbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from tests.cli_config import assert_bad_config_is_an_error

from otel_chronograph.billing._commands import billing

NOT_DELIVERING = r"""
import sys
from opentelemetry.sdk.trace import TracerProvider
import otel_chronograph as chrono
import otel_chronograph.billing
outbox, delivery = sys.argv[1], sys.argv[2]
billing = {"enabled": True, "rates": {"cmd": "0.001"}, "meter": {"outbox": outbox, "delivery": delivery}}
proc = chrono.install(TracerProvider(), config={"billing": billing})
print("stripe" in sys.modules)
"""


def _imports_stripe(tmp_path: Path, delivery: str, key: str | None) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"}
    if key is not None:
        env["STRIPE_API_KEY"] = key
    out = subprocess.run([sys.executable, "-c", NOT_DELIVERING, str(tmp_path / f"{delivery}.db"), delivery],
                         capture_output=True, text=True, timeout=60, env=env, check=True)
    return out.stdout.strip() == "True"


def test_stripe_is_imported_only_by_a_process_that_delivers(tmp_path: Path) -> None:
    assert not _imports_stripe(tmp_path, "external", "sk_test_x")  # the sidecar delivers, not the app
    assert not _imports_stripe(tmp_path, "in_process", None)  # no key: usage kept, nothing sent
    assert _imports_stripe(tmp_path, "in_process", "sk_test_x")


def test_billing_status_does_not_import_stripe(tmp_path: Path) -> None:
    code = ("import sys\nfrom otel_chronograph._cli import main\n"
            "try:\n    main(['billing', 'status', '--outbox', sys.argv[1]])\n"
            "except SystemExit:\n    pass\nprint('stripe' in sys.modules)")
    from otel_chronograph.billing import Outbox

    Outbox(tmp_path / "o.db").close()
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.db")], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip().endswith("False"), out.stdout


def test_the_group_takes_config_and_a_bad_one_is_an_error(tmp_path: Path) -> None:
    outbox = tmp_path / "from-config.db"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"chronograph": {"billing": {"meter": {"outbox": str(outbox)}}}}))
    from otel_chronograph.billing import Outbox

    Outbox(outbox).close()
    res = CliRunner().invoke(billing, ["--config", str(cfg), "status"])
    assert res.exit_code == 0 and str(outbox) in res.output, res.output
    assert_bad_config_is_an_error(billing, ["status"], tmp_path)
    assert_bad_config_is_an_error(billing, ["report"], tmp_path)


def test_read_commands_never_create_an_outbox(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    for args in (["status"], ["report"], ["enterprise", "--customer", "cus_1"], ["retry-dead-letters"]):
        res = CliRunner().invoke(billing, [*args, "--outbox", str(missing)])
        assert res.exit_code == 1 and "no outbox" in res.output, (args, res.output)
        assert not missing.exists(), args
