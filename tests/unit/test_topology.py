"""Mixing matrices: builders valid for every size, closed-form rho, consistent plans, clear rejections."""
import math

import numpy as np
import pytest

from hpcgan.errors import UsageError
from hpcgan.comm.topology import TOPOLOGIES, Topology, build_topology

CONNECTED = ["ring", "torus", "exp2", "complete"]


@pytest.mark.parametrize("name", CONNECTED)
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 6, 8, 9, 12, 16])
def test_builders_give_valid_matrices_and_consistent_plans(name, M):
    topo = build_topology(name, M)
    W = topo.W
    assert W.shape == (M, M) and np.allclose(W, W.T) and np.allclose(W.sum(0), 1) and W.min() >= 0
    assert topo.rho < 1 - 1e-9 or M == 1
    for i in range(M):
        p = topo.plan(i)
        assert p.rank == i and i not in p.sources and p.sources == p.destinations
        assert math.isclose(p.self_weight + sum(p.weights), 1.0)
        for j, w in zip(p.sources, p.weights):
            assert i in topo.plan(j).sources and math.isclose(w, W[j, i])  # symmetric edges


@pytest.mark.parametrize("M, rho", [(4, 0.33), (8, 0.80), (16, 0.95), (32, 0.99)])
def test_ring_rho_matches_the_closed_form_and_the_table(M, rho):
    closed = max(abs(1 + 2 * math.cos(2 * math.pi * k / M)) / 3 for k in range(1, M))
    topo = build_topology("ring", M)
    assert topo.rho == pytest.approx(closed, abs=1e-12)
    assert round(topo.rho, 2) == rho
    assert topo.spectral_gap == pytest.approx(1 - closed)
    assert all(len(topo.plan(i).sources) == 2 and topo.plan(i).self_weight == pytest.approx(1 / 3) for i in range(M))


def test_small_rings_are_defined_and_special_graphs_have_known_rho():
    assert np.allclose(build_topology("ring", 1).W, [[1.0]])
    assert np.allclose(build_topology("ring", 2).W, 0.5)  # the only neighbour, averaged
    assert np.allclose(build_topology("ring", 3).W, 1 / 3)  # ring of 3 = complete
    assert build_topology("complete", 7).rho == pytest.approx(0, abs=1e-12)
    ident = build_topology("identity", 4)
    assert ident.rho == 1.0 and all(not ident.plan(i).sources for i in range(4))
    t = build_topology("torus", 9)  # 3x3 torus: four distinct neighbours, 1/5 each
    assert all(len(t.plan(i).sources) == 4 and t.plan(i).self_weight == pytest.approx(0.2) for i in range(9))
    e = build_topology("exp2", 8)  # neighbours +-1, +-2, 4
    assert sorted(e.plan(0).sources) == [1, 2, 4, 6, 7] and e.plan(0).self_weight == pytest.approx(1 / 6)


def test_rounds_are_powers_of_W():
    topo = build_topology("ring", 5)
    assert np.allclose(topo.rounds(3), topo.W @ topo.W @ topo.W)


def write(tmp_path, W, name="W.npy"):
    path = tmp_path / name
    np.save(path, np.asarray(W)) if name.endswith(".npy") else np.savetxt(path, np.asarray(W))
    return str(path)


def test_files_load_in_both_formats(tmp_path):
    W = build_topology("ring", 5).W
    for name in ("W.npy", "W.txt"):
        topo = build_topology(write(tmp_path, W, name), 5)
        assert np.allclose(topo.W, W) and topo.rho == pytest.approx(build_topology("ring", 5).rho)


@pytest.mark.parametrize("W, M, message", [
    (np.full((3, 3), 0.5), 3, "not doubly stochastic"),
    (np.kron(np.eye(2), np.full((2, 2), 0.5)), 4, "disconnected"),
    (np.full((3, 3), 1 / 3), 4, "3x3 but the job has 4 ranks"),
    (np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]), 3, "not symmetric"),
    (np.array([[1.5, -0.5], [-0.5, 1.5]]), 2, "negative"),
    (np.ones(4) / 4, 4, "square"),
])
def test_invalid_matrices_are_rejected_with_the_reason(tmp_path, W, M, message):
    with pytest.raises(UsageError, match=message):
        build_topology(write(tmp_path, W), M)


def test_unknown_names_and_unreadable_files(tmp_path):
    with pytest.raises(UsageError, match="unknown topology 'hypercube'; valid: complete, exp2, identity, ring, torus"):
        build_topology("hypercube", 4)
    bad = tmp_path / "W.txt"
    bad.write_text("1 2\nthree\n")
    with pytest.raises(UsageError, match="cannot read mixing matrix"):
        build_topology(str(bad), 2)
    assert set(TOPOLOGIES.names()) == {"ring", "torus", "exp2", "complete", "identity"}


def test_identity_is_only_allowed_by_name():
    with pytest.raises(UsageError, match="disconnected"):
        Topology(np.eye(3))


@pytest.mark.parametrize("content", ["strings", "huge header", "3-D"])
def test_a_matrix_file_of_the_wrong_kind_is_one_line(tmp_path, content):
    path = tmp_path / "W.npy"
    if content == "huge header":  # a valid 2x2 identity whose header numpy refuses to parse (too large)
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }" + b" " * 200_000 + b"\n"
        path.write_bytes(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + np.eye(2).tobytes())
    else:
        np.save(path, np.array([["a", "b"], ["c", "d"]]) if content == "strings" else np.ones((2, 2, 1)))
    with pytest.raises(UsageError) as e:
        build_topology(str(path), 2)
    assert len(str(e.value).splitlines()) == 1 and str(path) in str(e.value)
