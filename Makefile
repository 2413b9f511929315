# hpcgan: `make demo` and `make test` set everything up on a fresh machine.
# The embedded default MPI is MPICH from PyPI inside .venv; on a cluster, set MPIEXEC to the
# system launcher (and install mpi4py against the system MPI, see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MPIEXEC ?= $(BIN)/mpiexec
NP     ?= 2
HPCGAN := $(MPIEXEC) -n $(NP) $(BIN)/python -m mpi4py -m hpcgan
DEMO   := results/demo

.PHONY: install demo test test-unit test-mpi clean

install: $(STAMP)

# Re-runs only when pyproject.toml changes: a second `make` installs nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[mpich,test]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(HPCGAN) train --algo sync --data mog8 --steps 3000 --batch-size 128 --lr 1e-4 \
		--eval-every 1000 --out $(DEMO)/sync_mog8.h5 --force
	$(BIN)/python -m hpcgan validate $(DEMO)/*.h5
	$(BIN)/python -m hpcgan summary $(DEMO) | tee $(DEMO)/summary.txt

test: test-unit test-mpi

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/system

# One process per rank; a hung collective is killed by the per-test timeout (thread method
# exits the process, which takes the whole MPI job down instead of hanging).
test-mpi: $(STAMP)
	$(MPIEXEC) -n 2 $(BIN)/python -m pytest -q --with-mpi --timeout=120 --timeout-method=thread tests/mpi
	$(MPIEXEC) -n 3 $(BIN)/python -m pytest -q --with-mpi --timeout=120 --timeout-method=thread tests/mpi/test_gossip_ring_mpi.py
	$(MPIEXEC) -n 4 $(BIN)/python -m pytest -q --with-mpi --timeout=120 --timeout-method=thread tests/mpi/test_gossip_ring_mpi.py

clean:
	rm -rf $(VENV) .pytest_cache
