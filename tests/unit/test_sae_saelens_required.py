"""`make test` runs the SAELens interoperability test with GREYGLASS_REQUIRE_SAELENS=1: there a
missing `sae_lens` must fail the run, not skip it (as `importorskip` silently did)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEST = Path(__file__).with_name("test_sae_saelens.py")


def _run_interop_test_requiring_saelens() -> subprocess.CompletedProcess:
    env = {**os.environ, "GREYGLASS_REQUIRE_SAELENS": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEST)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_missing_saelens_fails_the_run_when_required():
    try:
        import sae_lens  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sae_lens is installed here; the interoperability test itself runs")
    required = _run_interop_test_requiring_saelens()
    assert required.returncode != 0, required.stdout
    assert "GREYGLASS_REQUIRE_SAELENS=1 but sae_lens cannot be imported" in required.stdout
