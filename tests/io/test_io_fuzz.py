"""Fuzzing gradbox.io's loader: every corrupted file raises ModelFileError, nothing else, quickly.

The default run checks well over 10,000 corrupted files in memory (through the internal
``_parse``, the same code ``load`` runs after reading the file). Set ``GRADBOX_FUZZ_N`` to a
larger number of random bit flips for a longer run, e.g. ``GRADBOX_FUZZ_N=200000``.
"""
import copy
import gzip
import io as _io
import json
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np
import pytest

import gradbox as gb
from gradbox import io as gio
from tests._helpers import load_model_bytes, serialize
from gradbox.io import ModelFileError


FUZZ_N = int(os.environ.get("GRADBOX_FUZZ_N", "6000"))
COUNTS = {}


def _base_arrays():
    rng = np.random.default_rng(0)
    return {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b": np.arange(3, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5, np.float16),
        "empty": np.zeros((0, 2), np.uint8),
    }


def _base_file() -> bytes:
    return serialize(_base_arrays(), {"epoch": 7, "loss": float("nan"), "name": "fuzz"})


def _model_file() -> bytes:
    model = gb.nn.Sequential(gb.nn.Linear(4, 3, rng=0), gb.nn.ReLU(), gb.nn.Linear(3, 2, bias=False, rng=1),
                             gb.nn.LeakyReLU(0.1), gb.nn.Dropout(0.5), gb.nn.Softmax(1))
    spec = gio.model_to_spec(model)
    table = {f"model.{k}": v for k, v in model.state_dict().items()}
    table["mean"] = np.zeros(4)
    mapping = {k: f"model.{k}" for k in model.state_dict()}
    return serialize(table, {"acc": 0.5}, model={"spec": spec, "parameters": mapping})


def _split(buf):
    """(header dict, data bytes) of a valid file."""
    hlen = struct.unpack_from("<Q", buf, 12)[0]
    return json.loads(buf[24:24 + hlen]), buf[24 + hlen:]


def forge(header, data: bytes, *, raw_header: bytes | None = None, fix_data_crc=True, hlen=None,
          version=1, magic=gio.MAGIC) -> bytes:
    """Build a file with valid checksums around an arbitrary (possibly malicious) header."""
    if raw_header is None:
        if fix_data_crc and isinstance(header, dict) and "data_crc32" in header:
            header = dict(header, data_crc32=zlib.crc32(data))
        raw_header = json.dumps(header).encode()
    prefix = struct.pack("<8sIQI", magic, version, len(raw_header) if hlen is None else hlen, zlib.crc32(raw_header))
    return prefix + raw_header + data


def expect_error(buf, loader=gio._parse):
    try:
        loader(buf)
    except ModelFileError as exc:
        return str(exc)
    except Exception as exc:  # pragma: no cover - the failure we are looking for
        raise AssertionError(f"{type(exc).__name__} instead of ModelFileError: {exc}") from exc
    raise AssertionError("corrupted file loaded without error")


def expect_error_or_declared(buf, loader=gio._parse):
    """A corrupted file either raises ModelFileError or loads arrays exactly as its header declares."""
    try:
        arrays, _, header = loader(buf)
    except ModelFileError:
        return False
    except Exception as exc:  # pragma: no cover
        raise AssertionError(f"{type(exc).__name__} instead of ModelFileError: {exc}") from exc
    declared = header["arrays"]
    assert list(arrays) == list(declared)
    for name, arr in arrays.items():
        assert arr.shape == tuple(declared[name]["shape"])
        assert arr.dtype == np.dtype(declared[name]["dtype"])
        assert arr.flags.owndata and arr.flags.writeable
    return True


# --------------------------------------------------------------------------- byte-level corruption
def test_base_files_are_valid():
    arrays, meta, _ = gio._parse(_base_file())
    for k, v in _base_arrays().items():
        np.testing.assert_array_equal(arrays[k], v)
    assert meta["epoch"] == 7
    assert load_model_bytes(_model_file()).metadata == {"acc": 0.5}


@pytest.mark.parametrize("make", [_base_file, _model_file], ids=["arrays", "model"])
def test_truncation_at_every_offset(make):
    buf = make()
    loader = load_model_bytes if make is _model_file else gio._parse
    for n in range(len(buf)):
        msg = expect_error(buf[:n], loader)
        assert msg
    COUNTS["truncation"] = COUNTS.get("truncation", 0) + len(buf)


def test_appended_bytes_are_rejected():
    buf = _base_file()
    for extra in (b"\x00", b"x" * 7, b"\x00" * 64, os.urandom(1000)):
        assert "trailing" in expect_error(buf + extra) or "truncated" in expect_error(buf + extra)


@pytest.mark.parametrize("make", [_base_file, _model_file], ids=["arrays", "model"])
def test_random_bit_flips(make):
    buf = bytearray(make())
    loader = load_model_bytes if make is _model_file else gio._parse
    rng = np.random.default_rng(1)
    n = FUZZ_N if make is _base_file else max(FUZZ_N // 3, 1)
    positions = rng.integers(0, len(buf) * 8, size=n)
    for pos in positions:
        corrupt = bytearray(buf)
        corrupt[pos // 8] ^= 1 << (pos % 8)
        # NOTE: both checksums make every single bit flip detectable.
        expect_error(bytes(corrupt), loader)
    COUNTS["bit flips"] = COUNTS.get("bit flips", 0) + n


def test_random_byte_overwrites():
    buf = _base_file()
    rng = np.random.default_rng(2)
    n = max(FUZZ_N // 3, 1)
    for _ in range(n):
        corrupt = bytearray(buf)
        start = int(rng.integers(0, len(buf)))
        length = int(rng.integers(1, 40))
        corrupt[start:start + length] = rng.integers(0, 256, size=len(corrupt[start:start + length]),
                                                     dtype=np.uint8).tobytes()
        if bytes(corrupt) == buf:
            continue
        expect_error(bytes(corrupt))
    COUNTS["byte overwrites"] = n


def test_random_garbage_and_foreign_files():
    rng = np.random.default_rng(3)
    n = 1000
    for i in range(n):
        junk = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        if i % 2:
            junk = gio.MAGIC + junk  # gets past the magic check
        expect_error(junk)
    COUNTS["garbage"] = n


def test_empty_and_tiny_files():
    assert "empty" in expect_error(b"")
    for n in range(1, 24):
        assert "truncated" in expect_error(gio.MAGIC[:n] if n <= 8 else gio.MAGIC + b"\x01" * (n - 8))


class _Evil:
    def __reduce__(self):
        raise AssertionError("never pickled in a way that runs")


class _Boom:
    ran = []

    def __reduce__(self):
        return (_Boom.ran.append, ("ran",))


def test_pickle_payloads_are_refused_unrun():
    payloads = [pickle.dumps(obj, protocol=p) for p in range(2, 6)
                for obj in ({"w": np.ones(3)}, [1, 2], "weights", _Boom())]
    for buf in payloads:
        assert "pickle" in expect_error(buf)
    assert _Boom.ran == []
    COUNTS["pickles"] = len(payloads)


def test_zip_npz_and_other_containers_are_refused():
    cases = []
    for compress in (False, True):
        bio = _io.BytesIO()
        (np.savez_compressed if compress else np.savez)(bio, w=np.ones(3))
        cases.append(bio.getvalue())
    bio = _io.BytesIO()
    with zipfile.ZipFile(bio, "w"):
        pass
    cases.append(bio.getvalue())  # empty zip: end-of-central-directory only
    bio = _io.BytesIO()
    with zipfile.ZipFile(bio, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    cases.append(bio.getvalue())  # a PyTorch-style checkpoint
    npy = _io.BytesIO()
    np.save(npy, np.ones(3))
    cases.append(npy.getvalue())
    cases.append(gzip.compress(_base_file()))
    cases.append(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    for buf in cases:
        assert "not a gradbox model file" in expect_error(buf)
    COUNTS["containers"] = len(cases)


# --------------------------------------------------------------------------- structural corruption
def _header_and_data():
    return _split(_base_file())


def test_header_length_fields():
    header, data = _header_and_data()
    raw = json.dumps(dict(header)).encode()
    cases = {
        "oversized": forge(None, data, raw_header=raw, hlen=gio.MAX_HEADER_BYTES + 1),
        "huge": forge(None, data, raw_header=raw, hlen=2 ** 63),
        "negative": forge(None, data, raw_header=raw, hlen=2 ** 64 - 1),  # -1 as uint64
        "past the end": forge(None, data, raw_header=raw, hlen=len(raw) + len(data) + 1),
        "short": forge(None, data, raw_header=raw, hlen=len(raw) - 1),
        "zero": forge(None, data, raw_header=raw, hlen=0),
    }
    for what, buf in cases.items():
        msg = expect_error(buf)
        assert msg, what
    assert "limit" in expect_error(cases["huge"]) and "limit" in expect_error(cases["negative"])
    assert "truncated" in expect_error(cases["past the end"])


def test_wrong_version_magic_and_checksums():
    header, data = _header_and_data()
    assert "version 2" in expect_error(forge(header, data, version=2))
    assert "not a gradbox" in expect_error(forge(header, data, magic=b"GRADBOY\x00"))
    bad_crc = dict(header, data_crc32=header["data_crc32"] ^ 1)
    assert "data checksum" in expect_error(forge(bad_crc, data, fix_data_crc=False))
    buf = bytearray(forge(header, data))
    buf[20] ^= 0xFF
    assert "header checksum" in expect_error(bytes(buf))


def test_json_level_problems():
    header, data = _header_and_data()
    body = json.dumps(header)
    dup = body[:-1] + ', "metadata": {}}'
    cases = {
        "duplicate top key": (dup.encode(), "duplicate JSON key 'metadata'"),
        "duplicate array": (body.replace('"w":', '"b":', 1).encode(), "duplicate JSON key"),
        "not utf-8": (b'{"format": "\xff\xfe"}', "UTF-8"),
        "not json": (b"{format: gradbox}", "JSON"),
        "list": (b"[1, 2, 3]", "expected a JSON object"),
        "deep nesting": (b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON"),
        "huge int": (('{"format": "gradbox", "data_crc32": ' + "9" * 5000 + "}").encode(), "JSON"),
        "nul": (b"\x00" * 64, "JSON"),
    }
    for what, (raw, words) in cases.items():
        msg = expect_error(forge(None, data, raw_header=raw))
        assert words in msg, (what, msg)


def _mutated(mutate):
    header, data = _header_and_data()
    header = copy.deepcopy(header)
    out = mutate(header, data)
    if isinstance(out, tuple):
        header, data = out
    return forge(header, data)


STRUCTURAL = {
    "unknown top key": (lambda h, d: h.update(extra=1), "unexpected keys"),
    "no format": (lambda h, d: h.pop("format"), "format"),
    "format wrong": (lambda h, d: h.update(format="safetensors"), "format"),
    "arrays list": (lambda h, d: h.update(arrays=[1]), "header['arrays']"),
    "metadata string": (lambda h, d: h.update(metadata="x"), "header['metadata']"),
    "no crc": (lambda h, d: h.pop("data_crc32"), None),
    "array spec list": (lambda h, d: h["arrays"].update(w=[1, 2]), "expected keys"),
    "array spec extra key": (lambda h, d: h["arrays"]["w"].update(order="F"), "expected keys"),
    "array spec missing key": (lambda h, d: h["arrays"]["w"].pop("shape"), "expected keys"),
    "empty name": (lambda h, d: h["arrays"].update({"": h["arrays"].pop("w")}), "name"),
    "complex dtype": (lambda h, d: h["arrays"]["w"].update(dtype="<c8"), "dtype"),
    "object dtype": (lambda h, d: h["arrays"]["w"].update(dtype="|O"), "dtype"),
    "big-endian dtype": (lambda h, d: h["arrays"]["w"].update(dtype=">f4"), "dtype"),
    "numpy name dtype": (lambda h, d: h["arrays"]["w"].update(dtype="float32"), "dtype"),
    "longdouble dtype": (lambda h, d: h["arrays"]["w"].update(dtype="<f16"), "dtype"),
    "unicode dtype": (lambda h, d: h["arrays"]["w"].update(dtype="<U1"), "dtype"),
    "structured dtype": (lambda h, d: h["arrays"]["w"].update(dtype=[["a", "<f4"]]), "dtype"),
    "int dtype": (lambda h, d: h["arrays"]["w"].update(dtype=4), "dtype"),
    "wrong itemsize dtype": (lambda h, d: h["arrays"]["w"].update(dtype="<f8"), "needs"),
    "negative shape": (lambda h, d: h["arrays"]["w"].update(shape=[-3, -4]), "non-negative"),
    "float shape": (lambda h, d: h["arrays"]["w"].update(shape=[3.0, 4]), "non-negative ints"),
    "bool shape": (lambda h, d: h["arrays"]["w"].update(shape=[True, 12]), "non-negative ints"),
    "shape not list": (lambda h, d: h["arrays"]["w"].update(shape=12), "shape"),
    "too many dims": (lambda h, d: h["arrays"]["w"].update(shape=[1] * 40), "at most"),
    "shape mismatch": (lambda h, d: h["arrays"]["w"].update(shape=[4, 4]), "needs"),
    "huge shape": (lambda h, d: h["arrays"]["w"].update(shape=[2 ** 62, 2 ** 62]), "needs"),
    "offsets short": (lambda h, d: h["arrays"]["w"].update(offsets=[0]), "offsets"),
    "offsets strings": (lambda h, d: h["arrays"]["w"].update(offsets=["0", "48"]), "offsets"),
    "offsets negative": (lambda h, d: h["arrays"]["w"].update(offsets=[-48, 0]), "offsets"),
    "offsets reversed": (lambda h, d: h["arrays"]["b"].update(offsets=h["arrays"]["b"]["offsets"][::-1]),
                         "out of bounds"),
    "offsets past end": (lambda h, d: h["arrays"]["empty"].update(offsets=[10 ** 6, 10 ** 6]), "out of bounds"),
    "offsets huge": (lambda h, d: h["arrays"]["empty"].update(offsets=[2 ** 70, 2 ** 70]), "out of bounds"),
    "overlap": (lambda h, d: h["arrays"]["b"].update(offsets=[40, 64]), "overlaps"),
    "unsorted": (lambda h, d: h.update(arrays=dict(reversed(list(h["arrays"].items())))), "overlaps"),
    "missing array": (lambda h, d: h["arrays"].pop("empty") and h["arrays"].pop("scalar"), "trailing"),
    "bool bytes": (lambda h, d: (h, d.replace(b"\x01\x00\x01", b"\x07\x00\x01")), "bool"),
}


@pytest.mark.parametrize("what", list(STRUCTURAL))
def test_structural_corruption(what):
    mutate, words = STRUCTURAL[what]
    msg = expect_error(_mutated(mutate))
    if words:
        assert words in msg, msg


def _model_parts():
    return _split(_model_file())


def _deep_spec(depth):
    spec = {"type": "Sequential", "layers": [{"type": "NoSuchLayer"}]}
    for _ in range(depth):
        spec = {"type": "Sequential", "layers": [spec]}
    return spec


MODEL_CASES = {
    "no model": (lambda h: h.pop("model"), "no model"),
    "model list": (lambda h: h.update(model=[1]), "no model"),
    "unknown layer": (lambda m: m["spec"].append({"type": "os.system"}), "invalid model spec"),
    "layer not dict": (lambda m: m["spec"].append("ReLU"), "invalid model spec"),
    "in_features wrong": (lambda m: m["spec"][0].update(in_features=5), "expected (3, 5)"),
    "in_features negative": (lambda m: m["spec"][0].update(in_features=-4), "positive int"),
    "in_features huge": (lambda m: m["spec"][0].update(in_features=10 ** 12), "expected (3, 1000000000000)"),
    "dtype changed": (lambda m: m["spec"][0].update(dtype="float64"), "float64"),
    "bias flag": (lambda m: m["spec"][2].update(bias=True), "model parameters"),
    "bias string": (lambda m: m["spec"][2].update(bias="yes"), "bias"),
    "slope nan": (lambda m: m["spec"][3].update(negative_slope=float("nan")), "invalid model spec"),
    "dropout p": (lambda m: m["spec"][4].update(p=5), "invalid model spec"),
    "softmax dim": (lambda m: m["spec"][5].update(dim="1"), "invalid model spec"),
    "mapping missing": (lambda m: m["parameters"].pop("0.bias"), "model parameters"),
    "mapping wrong array": (lambda m: m["parameters"].update({"0.bias": "mean"}), "0.bias"),
    "mapping absent array": (lambda m: m["parameters"].update({"0.bias": "nope"}), "missing"),
    "mapping not str": (lambda m: m["parameters"].update({"0.bias": 3}), "missing"),
    "mapping shared": (lambda m: m["parameters"].update({"2.weight": "model.0.weight"}), "2.weight"),
    # NOTE: a one-dict spec is a non-Sequential model (here a ReLU, which holds no parameters)
    "spec not list": (lambda m: m.update(spec={"type": "ReLU"}), "model parameters: expected []"),
    "spec a string": (lambda m: m.update(spec="ReLU"), "invalid model spec"),
    "spec nested deep": (lambda m: m.update(spec=_deep_spec(200)), "invalid model spec"),
    "extra key": (lambda m: m.update(code="print(1)"), "no model"),
}


@pytest.mark.parametrize("what", list(MODEL_CASES))
def test_model_spec_corruption(what):
    header, data = _model_parts()
    header = copy.deepcopy(header)
    mutate, words = MODEL_CASES[what]
    if what in ("no model", "model list"):
        mutate(header)
    else:
        mutate(header["model"])
    msg = expect_error(forge(header, data), load_model_bytes)
    assert words in msg, msg


# --------------------------------------------------------------------------- random header mutations
_JUNK = [None, True, False, 0, -1, 1, 7, 2 ** 31, 2 ** 64, -(2 ** 63), 1.5, float("nan"), float("inf"), "",
         "<f4", "|b1", "<i8", "x" * 50, [], [0], [0, 0], [1, 2, 3], [-1], [[]], {}, {"dtype": "<f4"}]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def test_random_header_mutations_with_valid_checksums():
    """Replace, delete or duplicate random JSON nodes; the result raises or loads as declared."""
    rng = np.random.default_rng(4)
    bases = [_split(_base_file()), _split(_model_file())]
    n, loaded = max(3000, FUZZ_N // 2), 0
    for i in range(n):
        header, data = bases[i % 2]
        header = copy.deepcopy(header)
        paths = [p for p in _paths(header) if p]
        for _ in range(int(rng.integers(1, 4))):
            path = paths[int(rng.integers(len(paths)))]
            parent = header
            try:
                for key in path[:-1]:
                    parent = parent[key]
                op = rng.integers(3)
                if op == 0:
                    parent[path[-1]] = _JUNK[int(rng.integers(len(_JUNK)))]
                elif op == 1:
                    del parent[path[-1]]
                elif isinstance(parent[path[-1]], int) and not isinstance(parent[path[-1]], bool):
                    parent[path[-1]] += int(rng.integers(-70, 70))
            except (KeyError, IndexError, TypeError):
                continue
        buf = forge(header, data)
        loaded += expect_error_or_declared(buf)
        if isinstance(header.get("model"), dict):
            try:
                load_model_bytes(buf)
            except ModelFileError:
                pass
    COUNTS["header mutations"] = n
    print(f"\n{loaded} of {n} header mutations still loaded (as declared)")
    assert loaded < n  # most mutations must be caught


def test_report_fuzz_counts():
    """Runs last (file order): the total this module exercised."""
    total = sum(COUNTS.values())
    print(f"\nfuzzed {total} corrupted files: {COUNTS}")
    if len(COUNTS) >= 7:  # the whole module ran
        assert total >= 10_000


def test_hostile_headers_are_refused_before_parsing():
    """Headers of millions of tiny JSON values (slow to parse) are refused by a cheap count first."""
    def raw(body):
        return forge(None, b"", raw_header=body)

    assert "JSON values" in expect_error(raw(b'{"metadata":[' + b"1," * 2_000_000 + b"1]}"))
    assert "JSON values" in expect_error(raw(b'{"metadata":[' + b"[]," * 1_000_000 + b"1]}"))
    assert "JSON objects" in expect_error(raw(b'{"metadata":[' + b"{}," * 100_000 + b"1]}"))
    n = gio.MAX_ARRAYS + 1
    table = {f"a{i}": {"dtype": "|u1", "shape": [1], "offsets": [i, i + 1]} for i in range(n)}
    header = {"format": "gradbox", "arrays": table, "metadata": {}, "data_crc32": 0}
    assert "at most" in expect_error(forge(header, b"\0" * n))


def test_save_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(ValueError, match="metadata: too many values for the header: expected at most .* JSON "
                                         "values.*store large data"):
        gio.save({"a": np.ones(1)}, tmp_path / "m.gbx", metadata={"history": list(range(gio.MAX_JSON_VALUES))})
    with pytest.raises(ValueError, match=f"arrays: expected at most {gio.MAX_ARRAYS} arrays per file"):
        gio.save({f"a{i}": np.ones(1) for i in range(gio.MAX_ARRAYS + 1)}, tmp_path / "m.gbx")
    with pytest.raises(ValueError, match="metadata: expected a header under"):
        gio.save({"a": np.ones(1)}, tmp_path / "m.gbx", metadata={"blob": "x" * gio.MAX_HEADER_BYTES})
    assert not os.listdir(tmp_path)
    # the largest allowed table still round-trips
    many = {f"a{i}": np.array([i], np.int32) for i in range(gio.MAX_ARRAYS)}
    gio.save(many, tmp_path / "many.gbx")
    back = gio.load(tmp_path / "many.gbx")
    assert len(back) == gio.MAX_ARRAYS and back["a19999"][0] == 19999
