"""Conformance: every bypass class the advisories describe is detected, and named.

Payloads come from ``tests/test_scan_payloads.py`` (generated here, scanned as bytes, never
loaded). Where picklescan also flags a payload, its dangerous globals must be among ours.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest

from riskloop.assess.supply_chain import Budgets, ScanPolicy, scan_bytes, scan_paths
from tests.test_scan_payloads import (
    Reduce,
    advisory_payloads,
    break_crc,
    computed_name,
    concatenated,
    extension_code,
    frames,
    hidden_local_entry,
    memo_overwrite,
    module_override,
    nested_pickle,
    proto0_call,
    proto4_call,
    rename_local,
    set_flag,
    zip_bytes,
)

EVIL = proto4_call("os", "system", "id")


def critical(report) -> set[str]:  # type: ignore[no-untyped-def]
    out = set()
    for i in report.issues:
        if i.verdict == "malicious":
            out |= {i.global_name, i.as_written, i.rule}
    return out - {None}


def rules(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {i.rule for i in report.issues}


@pytest.mark.parametrize("name", sorted(advisory_payloads()))
def test_advisory_globals_are_critical_and_named(name, tmp_path):
    payload, expected = advisory_payloads()[name]
    path = tmp_path / "weights.bin"  # a non-pickle extension: detection is by content
    path.write_bytes(payload)
    report = scan_paths([path]).files[0]
    assert report.verdict == "malicious" and report.format == "pickle"
    assert expected in critical(report), [i.title for i in report.issues]
    from picklescan.scanner import SafetyLevel, scan_file_path

    peer = scan_file_path(str(path))
    peer_dangerous = {f"{g.module}.{g.name}" for g in peer.globals if g.safety == SafetyLevel.Dangerous}
    assert peer_dangerous <= critical(report)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_with_and_without_proto_opcode(protocol):
    payload = pickle.dumps(Reduce(os.system, "id"), protocol=protocol)
    assert payload[:1] == (b"\x80" if protocol >= 2 else payload[:1])
    report = scan_bytes(payload)
    assert f"{os.system.__module__}.system" in critical(report)


def test_memo_overwrite_resolves_the_last_value():
    assert "os.system" in critical(scan_bytes(memo_overwrite()))


def test_module_attribute_override_is_followed_exactly():
    report = scan_bytes(module_override())
    names = critical(report)
    assert "builtins.exec" in names and "global-mutation" in names
    assert report.engine["symbolic"] == 1


def test_import_name_computed_at_load_time_is_critical():
    report = scan_bytes(computed_name())
    assert "computed-global" in critical(report)


def test_nested_pickle_is_scanned_and_reported_as_a_member():
    report = scan_bytes(nested_pickle())
    inner = [i for i in report.issues if i.member == "<pickle.loads argument #1>"]
    assert "pickle.loads" in critical(report) and inner and inner[0].global_name == "os.system"
    # torch's own byte loader is allowlisted, its argument is not
    torch_nested = scan_bytes(nested_pickle(("torch.storage", "_load_from_bytes")))
    assert critical(torch_nested) == {"os.system", "dangerous-global"}


def test_pickles_after_the_first_and_in_later_frames():
    assert "os.system" in critical(scan_bytes(concatenated()))
    assert "os.system" in critical(scan_bytes(frames()))


def test_extension_codes_need_trust():
    report = scan_bytes(extension_code())
    assert report.verdict == "needs-trust" and "unknown-global" in rules(report)


def test_protocol_zero_disguised_as_text_and_bin(tmp_path):
    for name in ("config.txt", "model.bin", "noext"):
        (tmp_path / name).write_bytes(proto0_call("subprocess", "check_output", "id"))
    report = scan_paths([tmp_path])
    assert [f.verdict for f in report.files] == ["malicious"] * 3


@pytest.mark.parametrize("flag", [0x1, 0x20, 0x40])
def test_zip_flag_bits(flag):
    report = scan_bytes(set_flag(zip_bytes({"archive/data.pkl": EVIL}), flag))
    assert "os.system" in critical(report) and "container-trick" in rules(report)


def test_zip_crc_error_and_deflate():
    report = scan_bytes(break_crc(zip_bytes({"data.pkl": EVIL}, method=zipfile.ZIP_DEFLATED)))
    assert "os.system" in critical(report)
    assert any("CRC" in i.title for i in report.issues)


def test_zip_member_under_another_name_and_central_directory_mismatch():
    report = scan_bytes(zip_bytes({"notes.txt": EVIL}))
    assert [i.member for i in report.issues if i.verdict == "malicious"] == ["notes.txt"]
    renamed = scan_bytes(rename_local(zip_bytes({"data.pkl": EVIL}), "data.pkl", "datap.kl"))
    assert "os.system" in critical(renamed)
    assert any("local header names it 'datap.kl'" in i.detail for i in renamed.issues)


def test_zip_entry_hidden_from_the_central_directory():
    report = scan_bytes(hidden_local_entry(EVIL))
    assert "os.system" in critical(report)
    assert any("not in the central directory" in i.detail for i in report.issues)


def test_archive_behind_other_data_and_nested_archives():
    inner = zip_bytes({"data.pkl": EVIL})
    report = scan_bytes(b"#!/bin/sh\necho hi\n" + zip_bytes({"inner.zip": inner}))
    found = [i for i in report.issues if i.verdict == "malicious"]
    assert found and found[0].member == "inner.zip!data.pkl"
    assert any("before the archive" in i.detail for i in report.issues)


def test_torch_zip_legacy_numpy_and_joblib_payloads(tmp_path):
    import joblib
    import torch

    torch.save({"w": torch.ones(3), "x": Reduce(os.system, "id")}, tmp_path / "a.pt")
    torch.save({"x": Reduce(os.system, "id")}, tmp_path / "b.pt", _use_new_zipfile_serialization=False)
    np.save(tmp_path / "c.npy", np.array([Reduce(os.system, "id")], dtype=object), allow_pickle=True)
    joblib.dump({"w": np.ones(1000), "s": np.zeros(3, dtype=[("a", "<f4"), ("b", "O")]),
                 "x": Reduce(os.system, "id")}, tmp_path / "d.joblib")
    joblib.dump({"w": np.ones(10), "x": Reduce(os.system, "id")}, tmp_path / "e.joblib", compress=3)
    (tmp_path / "f.gz").write_bytes(gzip.compress(EVIL))
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as tar:
        info = tarfile.TarInfo("model/data.pkl")
        info.size = len(EVIL)
        tar.addfile(info, io.BytesIO(EVIL))
    (tmp_path / "g.tar").write_bytes(bio.getvalue())
    report = scan_paths([tmp_path])
    assert {f.path.rsplit("/", 1)[-1]: f.verdict for f in report.files} == dict.fromkeys(
        ["a.pt", "b.pt", "c.npy", "d.joblib", "e.joblib", "f.gz", "g.tar"], "malicious")
    joblib_file = next(f for f in report.files if f.path.endswith("d.joblib"))
    assert joblib_file.engine["symbolic"] >= 1  # the array bytes were followed, not parsed


def test_bombs_are_reported_not_obeyed():
    tight = ScanPolicy(budgets=Budgets(max_opcodes=50_000, max_decompressed=1 << 20, max_nesting=3,
                                       max_memory=16 << 20))
    from tests.test_scan_payloads import billion_laughs, opcode_flood

    flood = scan_bytes(opcode_flood(300_000), tight)
    assert flood.verdict == "needs-trust" and any("max_opcodes" in i.title for i in flood.issues)
    # a million empty sets: ~200 MB for a real unpickler from a 1 MB file
    sets = scan_bytes(b"\x80\x04(" + b"\x8f" * 1_000_000 + b"l.", ScanPolicy(budgets=Budgets(max_memory=16 << 20)))
    assert any("max_memory" in i.title for i in sets.issues)
    bomb = scan_bytes(zip_bytes({"big.bin": b"\0" * (8 << 20)}, method=zipfile.ZIP_DEFLATED), tight)
    assert any("max_decompressed" in i.title for i in bomb.issues)
    nested = b"x"
    for i in range(6):
        nested = zip_bytes({f"level{i}.zip": nested})
    deep = scan_bytes(nested, tight)
    assert any("max_nesting" in i.title for i in deep.issues)
    laughs = scan_bytes(billion_laughs())
    assert laughs.verdict == "clean" and laughs.seconds < 5  # memo references are not expanded


def test_safetensors_header_checks():
    def st(header: dict, data: bytes) -> bytes:
        raw = json.dumps(header).encode()
        return struct.pack("<Q", len(raw)) + raw + data

    good = st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "__metadata__": {"format": "pt"}}, b"\0" * 8)
    assert scan_bytes(good).verdict == "clean"
    cases = {
        "unknown dtype": st({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16),
        "overlaps": st({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                        "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"\0" * 6),
        "past the data": st({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 2),
        "needs": st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
        "gap": st({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}, b"\0" * 4),
        "not valid JSON": struct.pack("<Q", 3) + b"{x}" + b"\0",
        "duplicate": struct.pack("<Q", 30) + b'{"a":{"dtype":"U8"},"a":{}}   ',
    }
    for what, data in cases.items():
        report = scan_bytes(data)
        assert report.format == "safetensors" and report.verdict == "needs-trust", what
        assert any(what in i.detail for i in report.issues), (what, [i.detail for i in report.issues])


def _gguf(kv: list[tuple[str, int, bytes]], tensors: list[tuple[str, list[int], int, int]],
          data: bytes) -> bytes:
    def s(t: str) -> bytes:
        return struct.pack("<Q", len(t.encode())) + t.encode()

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, raw in kv:
        out += s(key) + struct.pack("<I", vtype) + raw
    for name, dims, gtype, off in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", gtype, off)
    out += b"\0" * (-len(out) % 32)
    return out + data


def test_gguf_header_checks_and_template_injection():
    def string(t: str) -> bytes:
        return struct.pack("<Q", len(t)) + t.encode()

    good = _gguf([("general.name", 8, string("tiny"))], [("w", [4], 0, 0), ("b", [8], 1, 32)], b"\0" * 48)
    assert scan_bytes(good).verdict == "clean"
    overlap = scan_bytes(_gguf([], [("w", [8], 0, 0), ("b", [4], 0, 0)], b"\0" * 32))
    assert overlap.verdict == "needs-trust" and any("overlap" in i.detail for i in overlap.issues)
    past = scan_bytes(_gguf([], [("w", [1000], 0, 0)], b"\0" * 32))
    assert any("runs past the data section" in i.detail for i in past.issues)
    ssti = "{{ ().__class__.__base__.__subclasses__() }}"
    bad = scan_bytes(_gguf([("tokenizer.chat_template", 8, string(ssti))], [], b""))
    assert bad.verdict == "malicious" and "embedded-code" in rules(bad)
    ok = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}"
    assert scan_bytes(_gguf([("tokenizer.chat_template", 8, string(ok))], [], b"")).verdict == "clean"


def test_onnx_external_data_escape_and_custom_domains(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def model(location: str | None, domain: str = "") -> onnx.ModelProto:
        w = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
        if location is not None:
            w.ClearField("float_data")
            w.data_location = TensorProto.EXTERNAL
            w.external_data.add(key="location", value=location)
        node = helper.make_node("Add" if not domain else "MyOp", ["x", "w"], ["y"], domain=domain)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w])
        opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
        return helper.make_model(graph, opset_imports=opsets)

    (tmp_path / "weights.bin").write_bytes(b"\0" * 8)
    cases = {"clean.onnx": model(None), "inside.onnx": model("weights.bin"),
             "escape.onnx": model("../../etc/passwd"), "absolute.onnx": model("/etc/passwd"),
             "custom.onnx": model(None, "com.example.ops")}
    for name, m in cases.items():
        (tmp_path / name).write_bytes(m.SerializeToString())
    (tmp_path / "link.bin").symlink_to("/etc/hostname")
    (tmp_path / "linked.onnx").write_bytes(model("link.bin").SerializeToString())
    verdicts = {f.path.rsplit("/", 1)[-1]: f.verdict for f in scan_paths([tmp_path]).files
                if f.path.endswith(".onnx")}
    assert verdicts == {"clean.onnx": "clean", "inside.onnx": "clean", "escape.onnx": "malicious",
                        "absolute.onnx": "malicious", "custom.onnx": "needs-trust",
                        "linked.onnx": "malicious"}


def test_keras_lambda_layers_and_custom_objects():
    def keras_zip(layers: list[dict]) -> bytes:
        config = {"class_name": "Sequential", "module": "keras", "config": {"layers": layers}}
        return zip_bytes({"metadata.json": b'{"keras_version": "3.5.0"}',
                          "config.json": json.dumps(config).encode(), "model.weights.h5": b"\x89HDF\r\n\x1a\n"})

    dense = {"class_name": "Dense", "module": "keras.layers", "config": {"name": "d"}}
    assert scan_bytes(keras_zip([dense])).verdict == "clean"
    lam = {"class_name": "Lambda", "module": "keras.layers", "config": {"name": "l", "function": "4wEA"}}
    assert "embedded-code" in critical(scan_bytes(keras_zip([dense, lam])))
    fn = {"class_name": "function", "module": "os", "config": "system", "registered_name": "system"}
    assert scan_bytes(keras_zip([{"class_name": "Activation", "module": "keras.layers",
                                  "config": {"activation": fn}}])).verdict == "malicious"
    custom = {"class_name": "MyLayer", "module": "mypkg.layers", "registered_name": "mypkg>MyLayer",
              "config": {}}
    assert scan_bytes(keras_zip([custom])).verdict == "needs-trust"
    legacy_h5 = b"\x89HDF\r\n\x1a\n" + b"\0" * 64 + json.dumps(
        {"class_name": "Sequential", "config": {"layers": [lam]}}).encode() + b"\0" * 16
    assert scan_bytes(legacy_h5).verdict == "malicious"


def test_links_that_leave_the_folder_need_trust(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.safetensors").symlink_to(outside / "secret.txt")
    (model / "extra").symlink_to(outside)
    (model / "inner.txt").write_text("ok")
    (model / "alias.txt").symlink_to(model / "inner.txt")
    report = scan_paths([model])
    escapes = [f for f in report.files if f.format == "symlink"]
    assert len(escapes) == 2 and all(f.verdict == "needs-trust" for f in escapes)
    assert {i.rule for f in escapes for i in f.issues} == {"path-escape"}
