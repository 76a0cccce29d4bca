"""Artifacts are judged without being loaded: what a pickle or skops file imports decides."""

from __future__ import annotations

import gzip
import io
import pickle
import stat

import pytest
from sklearn.preprocessing import FunctionTransformer

from services.registry import artifacts
from services.registry.artifacts import ArtifactRefused, ArtifactStore, is_trusted, pickle_globals, scan
from services.runtime.errors import Problem
from tests.registry_helpers import fitted_model, joblib_bytes, malicious_pickle, pickle_bytes, skops_bytes


@pytest.fixture
def write(tmp_path):
    def write(data: bytes):
        path = tmp_path / "upload"
        path.write_bytes(data)
        return path

    return write


def refusal(path) -> str:
    with pytest.raises(ArtifactRefused) as caught:
        scan(path)
    assert caught.value.status == 422
    return caught.value.detail


def test_a_pickle_that_runs_a_shell_command_is_refused_naming_the_call(write):
    detail = refusal(write(malicious_pickle()))
    # check the refusal names the function the pickle would call (os.system is posix.system here)
    assert detail.startswith("artifact refused: pickle references untrusted global ")
    assert "posix.system" in detail or "os.system" in detail


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_a_scikit_learn_pickle_is_accepted(write, protocol):
    assert scan(write(pickle.dumps(fitted_model(), protocol=protocol))) == artifacts.PICKLE


def test_a_skops_file_is_accepted(write):
    assert scan(write(skops_bytes())) == artifacts.SKOPS


def test_a_skops_file_with_an_untrusted_type_is_refused(write):
    detail = refusal(write(skops_bytes(FunctionTransformer(eval))))
    assert detail.startswith("artifact refused: skops references untrusted type builtins.eval;")


@pytest.mark.parametrize(("data", "says"), [
    (b"hello, I am not a model", "unsupported format"),
    (b"PK\x03\x04 a broken zip", "a zip file that cannot be scanned as a skops file"),
    (gzip.compress(pickle_bytes()), "gzip-compressed and cannot be scanned"),
])
def test_what_cannot_be_judged_is_refused(write, data, says):
    detail = refusal(write(data))
    assert says in detail
    # check the refusal says how to save a model the registry accepts
    assert "skops.io.dump" in detail


def test_joblib_with_raw_array_buffers_cannot_be_scanned(write):
    detail = refusal(write(joblib_bytes()))
    assert detail.startswith("artifact refused: the pickle cannot be scanned")
    assert "save the model with skops.io.dump" in detail


@pytest.mark.parametrize(("stream", "expected"), [
    # protocol 2 GLOBAL, Python 2 names mapped like the unpickler does
    (b"\x80\x02c__builtin__\neval\n.", ["builtins.eval"]),
    # protocol 4 STACK_GLOBAL whose strings come back from the memo
    (b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93.", ["os.system"]),
    (b"\x80\x02(isubprocess\nPopen\n.", ["subprocess.Popen"]),  # INST
])
def test_every_way_a_pickle_imports_is_seen(stream, expected):
    assert pickle_globals(io.BytesIO(stream)) == expected


@pytest.mark.parametrize("stream", [
    b"\x80\x04\x8c\x02os\x8c\x06system)\x93.",  # STACK_GLOBAL on a computed value
    b"\x80\x02\x82\x01.",  # EXT1: the copyreg extension registry
    b"\x80\x02N.extra bytes",  # something after STOP
])
def test_what_a_scan_cannot_follow_is_unscannable(stream):
    with pytest.raises(artifacts.Unscannable):
        pickle_globals(io.BytesIO(stream))


@pytest.mark.parametrize(("name", "trusted"), [
    ("sklearn.linear_model._logistic.LogisticRegression", True),
    ("numpy.ndarray", True),
    ("numpy._core.multiarray._reconstruct", True),
    ("numpy.log1p", True),  # a ufunc
    ("collections.OrderedDict", True),
    ("numpy.memmap", False),  # constructing one opens a file
    ("numpy.load", False),
    ("sklearn.base.np.memmap", False),  # an attribute path out of a trusted module
    ("sklearn.utils._testing.subprocess.Popen", False),
    ("builtins.getattr", False),
    ("sklearnx.Thing", False),
])
def test_the_allow_list(name, trusted):
    assert is_trusted(name) is trusted


def test_the_store_keeps_each_content_once_read_only(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    kept = []
    for _ in range(2):
        spool = store.spool(limit=1024)
        spool.write(b"model bytes")
        spool.finish()
        kept.append(store.keep(spool, artifacts.PICKLE))
    # check: same bytes, same address; the file is read-only and no temp file is left
    assert kept[0] == kept[1]
    path = store.path_for(kept[0].sha256)
    assert path == tmp_path / "artifacts" / "sha256" / kept[0].sha256[:2] / kept[0].sha256
    assert path.read_bytes() == b"model bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list((tmp_path / "artifacts" / "tmp").iterdir()) == []


def test_a_spool_refuses_bytes_past_its_limit(tmp_path):
    spool = ArtifactStore(tmp_path).spool(limit=4)
    with pytest.raises(Problem) as caught:
        spool.write(b"12345")
    spool.discard()
    assert caught.value.status == 413
    assert "larger than the limit of 4 bytes" in caught.value.detail
