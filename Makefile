# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
EPU_PORT ?= 8000
EPU_WORKERS ?= 2
EPU_THREADS ?= 4
EPU_SOCKET ?= $(or $(EPU_INSTANCE_DIR),instance)/gunicorn.sock
SOAK ?= 0

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/epu db upgrade
	$(BIN)/epu catalogue load-bundled
	@# The dispatcher's parent becomes the front (exec keeps the pid): it stops when it does.
	@# The front (api/front.py) reads each request whole before gunicorn sees it: slow clients
	@# cost a coroutine, not one of gunicorn's threads. It starts and stops gunicorn.
	$(BIN)/epu dispatch --follow-parent & \
	exec $(BIN)/python -m api.front --listen 127.0.0.1:$(EPU_PORT) --socket $(EPU_SOCKET) -- \
		$(BIN)/gunicorn --bind unix:$(EPU_SOCKET) --workers $(EPU_WORKERS) \
		--worker-class gthread --threads $(EPU_THREADS) --no-control-socket \
		--access-logfile - \
		--access-logformat '%({x-forwarded-for}i)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms' \
		wsgi:app

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed
	SOAK=$(SOAK) $(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) *.egg-info
