"""The stage contract's helpers: state weighing without the module scan."""

import objsize
import pytest
from apache_beam.runners.worker import statecache

from wirecopy.schemas.records import Rejected
from test_syndication import sample_records
from benchmarks.in_order import InOrder
from wirecopy.transforms import syndication as syn
from wirecopy.transforms.normalise import _SourceTemplateFn, draft_article, finish, remember, seen_article
from wirecopy.transforms.stage import StoredValue, StoredValueCoder, weigh_state_without_scanning_modules


@pytest.fixture
def module_scan_restored():
    before = objsize.default_settings.exclude_modules_globals
    yield
    objsize.default_settings.update(exclude_modules_globals=before)


def state_values() -> list:
    """What the stateful stages keep, built from the bundled samples by their pure functions."""
    stream, history = InOrder(), []
    for record in sample_records():
        try:
            draft = draft_article(record)
            article = finish(draft)
        except Rejected:  # a sample with nothing but boilerplate
            continue
        history = remember(history, seen_article(draft)[0])
        stream.send(article.with_fields(language={"code": "en", "confidence": 1.0}))
    return [history, *stream.buckets.values(), *stream.shards.values(), *stream.announcers.values()]


def test_state_values_weigh_the_same_without_the_module_scan(module_scan_restored):
    values = state_values()
    assert len(values) > 100
    objsize.default_settings.update(exclude_modules_globals=True)
    scanned = [statecache.get_deep_size(value) for value in values]
    weigh_state_without_scanning_modules()
    assert objsize.default_settings.exclude_modules_globals is False
    assert [statecache.get_deep_size(value) for value in values] == scanned


@pytest.mark.parametrize("stateful_fn", [
    lambda: syn._IndexFn(1), lambda: syn._DecideFn(1), lambda: syn._AnnounceFn(1), _SourceTemplateFn,
], ids=["index", "decide", "announce", "source-template"])
def test_every_stateful_stage_turns_the_scan_off_on_its_worker(module_scan_restored, stateful_fn):
    objsize.default_settings.update(exclude_modules_globals=True)
    stateful_fn().setup()
    assert objsize.default_settings.exclude_modules_globals is False


def test_a_stored_value_is_encoded_once_and_weighed_as_its_bytes():
    encoded = []

    def encode(value):
        encoded.append(value)
        return syn.encode_bucket(value)

    bucket = max((v for v in state_values() if isinstance(v, syn.Bucket)), key=lambda b: len(b.entries))
    stored = StoredValue(bucket, encode)
    coder = StoredValueCoder()
    data = coder.encode(stored)
    # What the SDK's cache holds for a key (a list of the bag's values) weighs the bytes, not the decoded bucket.
    assert statecache.get_deep_size([stored]) < len(data) + 400 < statecache.get_deep_size([bucket])
    assert coder.encode(stored) is data and encoded == [bucket]
    assert coder.decode(data).value(syn.decode_bucket) == bucket
