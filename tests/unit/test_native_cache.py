"""The compiled-kernel cache loads only this user's own builds: a library planted in a shared cache
folder, one others may write, or one whose bytes are not the recorded build's (0 bytes, a foreign
library) is never loaded (loading runs its code)."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hpcgan.compress import native

pytestmark = pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler")

PLANT = """
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(getenv("HPCGAN_TEST_MARKER"), "w");
    if (f) { fputs("planted library ran", f); fclose(f); }
}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HPCGAN_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.delenv(native.NATIVE_ENV, raising=False)
    native.load.cache_clear()
    yield tmp_path / "cache" / "native"
    native.load.cache_clear()


def plant(tmp_path: Path, folder: Path) -> Path:
    """A library with the name the cache would give sign1bit's build, whose loading leaves a marker."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    source = Path(native.__file__).with_name("sign1bit.c")
    target = folder / f"sign1bit-{native._key(source, native._compiler_id(cc))}.so"
    (tmp_path / "plant.c").write_text(PLANT)
    subprocess.run(cc + ["-shared", "-fPIC", "-o", str(target), str(tmp_path / "plant.c")], check=True)
    return target


def test_the_cache_folder_is_created_private(cache):
    assert native.load("sign1bit") is not None
    assert cache.stat().st_mode & 0o777 == 0o700
    assert all(native.private(p) for p in cache.iterdir())


def test_a_library_planted_in_a_shared_cache_folder_is_not_loaded(tmp_path, cache):
    cache.mkdir(parents=True)
    cache.chmod(0o777)  # a cache shared with the group / everyone
    planted = plant(tmp_path, cache)
    lib = native.load("sign1bit")
    assert hasattr(lib, "hpcgan_sign_compress")  # the real kernels, built in a private folder instead
    assert not (tmp_path / "marker").exists()
    assert planted.exists()  # left alone, never loaded


def test_a_library_others_may_write_is_rebuilt_not_loaded(tmp_path, cache):
    cache.mkdir(parents=True, mode=0o700)
    planted = plant(tmp_path, cache)
    planted.chmod(0o777)
    assert hasattr(native.load("sign1bit"), "hpcgan_sign_compress")
    assert not (tmp_path / "marker").exists()
    assert native.private(planted)  # replaced by this user's own build


def test_a_library_that_is_not_the_recorded_build_is_rebuilt_not_loaded(tmp_path, cache):
    cache.mkdir(parents=True, mode=0o700)
    planted = plant(tmp_path, cache)  # this user's own, private, but not what the cache built
    assert hasattr(native.load("sign1bit"), "hpcgan_sign_compress")
    assert not (tmp_path / "marker").exists()
    assert native.verified(planted)
    planted.unlink()  # (the loaded library stays mapped)
    planted.write_bytes(b"")  # what a full disk leaves
    native.load.cache_clear()
    assert hasattr(native.load("sign1bit"), "hpcgan_sign_compress")
    assert planted.stat().st_size > 0 and native.verified(planted)
    assert sorted(p.name for p in cache.iterdir()) == [planted.name, planted.name + ".sha256"]  # no temporary left
