"""An import never touches what is not its own: a destination that is not a store is
refused with its files byte-identical, and crafted input files are refused in one line."""

import os

import numpy as np
import pytest

from actclust.cli import main
from actclust.errors import ActclustError
from actclust.store import from_arrays
from actclust.store.import_files import import_files
from tests.files import snapshot


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in" / "acts.npy"
    path.parent.mkdir()
    np.save(path, np.ones((4, 3), np.float32))
    return path


def users_folder(root):
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "plan.txt").write_text("mine")
    (root / "results.parquet").write_bytes(b"PAR1 not really")
    return snapshot(root)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_store_is_refused_and_untouched(tmp_path, source, overwrite):
    out = tmp_path / "work"
    before = users_folder(out)
    with pytest.raises(ActclustError, match="not an actclust store"):
        import_files([source], out, overwrite=overwrite, progress=False)
    with pytest.raises(ActclustError, match="not an actclust store"):
        from_arrays(out, {"h": np.ones((2, 2), np.float32)}, overwrite=overwrite,
                    progress=False)
    assert snapshot(out) == before


def test_the_command_refuses_it_in_one_line(tmp_path, source, capsys):
    out = tmp_path / "work"
    before = users_folder(out)
    for extra in ([], ["--overwrite"]):
        assert main(["import", str(source), "--out", str(out), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not an actclust store" in err
    assert snapshot(out) == before


def test_a_store_holding_a_users_file_is_not_overwritten(tmp_path, source):
    out = tmp_path / "s"
    import_files([source], out, progress=False)
    (out / "mine.txt").write_text("keep")
    before = snapshot(out)
    with pytest.raises(ActclustError, match="mine.txt"):
        import_files([source], out, overwrite=True, progress=False)
    assert snapshot(out) == before


def test_a_destination_inside_a_store_or_through_a_symlink_is_refused(tmp_path, source):
    store = tmp_path / "s"
    import_files([source], store, progress=False)
    before = snapshot(tmp_path)
    with pytest.raises(ActclustError, match="inside the store"):
        import_files([source], store / "layers" / "x", progress=False)
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(ActclustError, match="is a symlink"):
        import_files([source], tmp_path / "link", progress=False)
    assert snapshot(tmp_path) == {**before, "real": ("dir",),
                                  "link": ("link", str(tmp_path / "real"))}


@pytest.mark.parametrize("write,message", [
    (lambda p: p.write_bytes(open(p, "rb").read()[:-5]), "not a .npy file of numbers"),
    (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little") +
                             b"{'descr': '<f4', 'fortran_order': False, 'shape': "
                             b"(__import__('os'),), }".ljust(117) + b"\n"),
     "not a .npy file of numbers"),
])
def test_crafted_npy_files_are_refused(tmp_path, source, write, message):
    write(source)
    with pytest.raises(ActclustError, match=message):
        import_files([source], tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_a_crafted_safetensors_header_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    header = b'{"h": {"dtype": "F32", "shape": [1000000, 1000], "data_offsets": [0, 4000]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4000)
    with pytest.raises(ActclustError, match="not a readable safetensors file"):
        import_files([path], tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_a_fifo_is_not_read(tmp_path):
    fifo = tmp_path / "acts.npy"
    os.mkfifo(fifo)
    with pytest.raises(ActclustError, match="not a regular file"):
        import_files([fifo], tmp_path / "s", progress=False)
