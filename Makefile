# vswitch — the two entry points are `make demo` and `make test`; `make install` puts the programs on PATH.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# `make install`: links to this checkout's .venv in $(PREFIX)/bin (contrib/vswitchd.service runs
# /usr/local/bin/vswitchd) and bash completion where bash-completion looks for it
PREFIX ?= /usr/local
BINDIR := $(DESTDIR)$(PREFIX)/bin
COMPLETIONDIR := $(DESTDIR)$(PREFIX)/share/bash-completion/completions
PROGRAMS := vswitch vswitchd
# command -> Debian package that provides it
SYSTEM_TOOLS := ip:iproute2 ping:iputils-ping iperf3:iperf3 tcpdump:tcpdump ethtool:ethtool clang:clang
# packages checked by name (a dynamic busybox would also answer to `busybox`; the QEMU guest needs the static one)
# libbpf-dev: the BPF helper headers the kernel fast path is compiled with
SYSTEM_PACKAGES := libbpf-dev
# the tests also boot real QEMU guests (vswitch.lab.guest); the demo and the benchmark do not
test: SYSTEM_TOOLS += qemu-system-x86_64:qemu-system-x86
test: SYSTEM_PACKAGES += busybox-static
# the DHCP guard's test runs a real (rogue) DHCP server; dnsmasq-base is the binary without a service
test: SYSTEM_PACKAGES += dnsmasq-base
# GET /metrics is checked with Prometheus' own promtool (the server it comes with is not started)
test: SYSTEM_TOOLS += promtool:prometheus
# the web UI is tested in a real browser: Debian's headless Chromium driven through its chromedriver
test: SYSTEM_TOOLS += chromium:chromium chromedriver:chromium-driver
# `vswitch capture`'s files are read back with Debian's tshark (frames, decision comments, direction)
test: SYSTEM_TOOLS += tshark:tshark

.PHONY: test fuzz lint demo bench system-deps venv clean install uninstall bpf bytecode

# The kernel fast path's BPF object, built beside its source (shipped as source, built per machine).
# Without clang or the libbpf headers everything else works: the fast path is not available and its
# tests are skipped with that reason.
CLANG ?= clang
BPF_DIR := src/vswitch/datapath/kernel
BPF_OBJ := $(BPF_DIR)/switch.bpf.o
BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf -I/usr/include/$(shell uname -m)-linux-gnu

# three workers on two cores: most integration tests wait on kernels, guests and daemons, not on the
# CPU (two workers kept the CPUs 67 % busy and took 15 min 22 s on a quiet machine)
TEST_WORKERS ?= 3

test: system-deps venv bpf bytecode
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

# The package's bytecode, written once: the tests start vswitchd and the CLI hundreds of times, and
# where PYTHONDONTWRITEBYTECODE is set (as on some CI machines) each start would compile src/ again
# (~0.1 s of CPU). Only what changed is compiled again.
bytecode: venv
	@$(PY) -m compileall -q src >/dev/null

# the REST schema fuzz with new random examples, many of them (make test runs a fixed few)
FUZZ_EXAMPLES ?= 300
fuzz: venv
	VSWITCH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -n $(TEST_WORKERS) tests/unit/test_schema_fuzz.py

lint: venv
	$(VENV)/bin/ruff check src tests bench

system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	for pkg in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (run 'make' as root to install them, or: sudo apt-get install$$missing)"; \
	    echo "tests that need them will be skipped with that reason"; \
	  fi; \
	fi

bpf:
	@if command -v $(CLANG) >/dev/null 2>&1 && [ -e /usr/include/bpf/bpf_helpers.h ]; then \
	  $(MAKE) --no-print-directory $(BPF_OBJ); \
	else \
	  echo "kernel fast path not built: needs $(CLANG) and the libbpf-dev headers (run 'make' as root to install"; \
	  echo "them, or: sudo apt-get install clang libbpf-dev); its tests will be skipped with that reason"; \
	fi

$(BPF_OBJ): $(BPF_DIR)/switch.bpf.c $(BPF_DIR)/switch.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis $(BPF_OBJ)

# Idempotent; refuses to replace a program that is not a link (e.g. another installation's). The links
# point into this checkout: after moving it, run `make install` again. PREFIX=~/.local works without root.
install: venv bpf
	@if ! mkdir -p "$(BINDIR)" "$(COMPLETIONDIR)" 2>/dev/null || [ ! -w "$(BINDIR)" ]; then \
	  echo "make install writes to $(BINDIR): run it as root (sudo make install), or: make install PREFIX=~/.local"; \
	  exit 1; fi
	@for prog in $(PROGRAMS); do \
	  link="$(BINDIR)/$$prog"; target="$(abspath $(VENV))/bin/$$prog"; \
	  if [ -e "$$link" ] && [ ! -L "$$link" ]; then \
	    echo "$$link exists and is not a link made by make install: remove it first"; exit 1; fi; \
	  ln -sfn "$$target" "$$link" && echo "$$link -> $$target"; \
	done
	@$(VENV)/bin/vswitch completion bash > "$(COMPLETIONDIR)/vswitch"
	@echo "$(COMPLETIONDIR)/vswitch: bash completion (new shells; zsh, fish: vswitch completion --help)"
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; *) echo "note: $(PREFIX)/bin is not on PATH";; esac

# Removes only what `make install` made from this checkout (links into its .venv, the completion script).
uninstall:
	@for prog in $(PROGRAMS); do \
	  link="$(BINDIR)/$$prog"; \
	  if [ -L "$$link" ] && [ "$$(readlink "$$link")" = "$(abspath $(VENV))/bin/$$prog" ]; then \
	    rm -f "$$link" && echo "removed $$link"; \
	  elif [ -e "$$link" ] || [ -L "$$link" ]; then echo "kept $$link: not a link to this checkout"; fi; \
	done
	@if grep -qs _VSWITCH_COMPLETE "$(COMPLETIONDIR)/vswitch"; then \
	  rm -f "$(COMPLETIONDIR)/vswitch" && echo "removed $(COMPLETIONDIR)/vswitch"; fi

# The seed's lab on the built-in one-nic topology: needs root (namespaces, TAP, veth). The root check
# comes first so that without root nothing at all is done (no packages, no .venv).
demo:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make demo needs root: it creates network namespaces, veth cables, TAP devices and a"; \
	  echo "Linux bridge (the physical switch) to run the lab. Run: sudo make demo"; exit 1; fi
	@$(MAKE) --no-print-directory system-deps venv bytecode
	$(VENV)/bin/vswitch demo

# Benchmarks against the Linux kernel bridge (root). BENCH_ARGS="--peers" adds VDE2 and OVS.
bench: system-deps venv
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py $(BENCH_ARGS)

# Only issue 12's targets, with a second kernel bridge as the noise control (met / MISSED / within noise).
.PHONY: bench-targets
bench-targets: system-deps venv
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py --targets $(BENCH_ARGS)
