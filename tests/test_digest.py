"""Content digests: stable for the same content, different for any byte change (hypothesis)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from riskloop.inventory.digest import diff_manifests, manifest_of

files = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=6),
    st.binary(min_size=0, max_size=200),
    min_size=1, max_size=5,
)


def _write(root: Path, content: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in content.items():
        (root / f"{name}.bin").write_bytes(data)
    return root


@settings(max_examples=60, deadline=None)
@given(content=files)
def test_same_content_same_digest(content):
    with tempfile.TemporaryDirectory() as d:
        a = manifest_of(_write(Path(d) / "a", content))
        b = manifest_of(_write(Path(d) / "b", dict(reversed(list(content.items())))))
        assert a.root == b.root and len(a.root) == 64


@settings(max_examples=60, deadline=None)
@given(content=files, data=st.data())
def test_any_byte_change_changes_digest(content, data):
    name = data.draw(st.sampled_from(sorted(content)))
    blob = content[name]
    if blob:
        i = data.draw(st.integers(0, len(blob) - 1))
        flip = data.draw(st.integers(1, 255))
        changed = blob[:i] + bytes([blob[i] ^ flip]) + blob[i + 1 :]
    else:
        changed = b"\x00"
    with tempfile.TemporaryDirectory() as d:
        a = manifest_of(_write(Path(d) / "a", content))
        b = manifest_of(_write(Path(d) / "b", {**content, name: changed}))
        assert a.root != b.root
        assert diff_manifests(a.as_list(), b.as_list()) == [f"changed: {name}.bin"]


def test_added_and_removed_files_change_digest(tmp_path):
    root = _write(tmp_path / "m", {"a": b"1", "b": b"2"})
    base = manifest_of(root)
    (root / "c.bin").write_bytes(b"3")
    added = manifest_of(root)
    assert added.root != base.root
    assert diff_manifests(base.as_list(), added.as_list()) == ["added: c.bin"]
    (root / "c.bin").unlink()
    (root / "a.bin").unlink()
    removed = manifest_of(root)
    assert diff_manifests(base.as_list(), removed.as_list()) == ["removed: a.bin"]
    shutil.rmtree(root)


def test_single_file_manifest(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    m = manifest_of(f)
    assert [e.path for e in m.files] == ["w.bin"]
