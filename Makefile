# fulcrum - build, test, run.
#
#   make            build/fulcrum and build/fulcrum-backend
#
# Every target first installs the Debian packages it needs that are missing (scripts/install-deps),
# so any of them works as the first command on a fresh machine.
#   make run        three demo backends + fulcrum with examples/fulcrum.yaml (Ctrl-C stops all)
#   make test       install missing Debian packages, build, run unit and end-to-end tests
#   make test-asan  the same suite against an AddressSanitizer + UBSan build (build-asan/)
#   make fuzz       libFuzzer targets (build-fuzz/); make fuzz-run FUZZ_SECONDS=N runs each
#   make bench      bench/run: fulcrum against haproxy and nginx, printed as ratios
#                   (BENCH_ARGS="--routes --websocket --tcp ..." passes options: bench/README.md)
#   make fmt        clang-format every C file
#
# CC=clang works as well as the default gcc. BUILD selects the output directory.

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
BUILD ?= build
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
        -Wformat=2 -Wno-unused-parameter
OPT ?= -O2
CFLAGS ?= $(OPT) -g
CPPFLAGS += -D_GNU_SOURCE -Isrc -DFULCRUM_VERSION='"$(VERSION)"' -DFULCRUM_GIT_REV='"$(GIT_REV)"'
ALL_CFLAGS = -std=c11 -pthread $(WARN) $(CFLAGS) $(SAN_FLAGS) -MMD -MP
# nghttp2 frames HTTP/2 (src/h2/); pkg-config finds it where Debian puts it.
NGHTTP2_LIBS := $(shell pkg-config --libs libnghttp2 2>/dev/null || echo -lnghttp2)
LDLIBS = -lyaml -ljansson -lcares -lssl -lcrypto $(NGHTTP2_LIBS) -lm -pthread
SAN_FLAGS ?=

# src/LAYER/*.c: see docs/architecture.md; main.c alone sits at the top.
CORE_SRC := $(wildcard src/*/*.c)
# The dashboard page is built into the binary (admin.c serves it).
GEN_DASHBOARD = $(1)/gen/dashboard.c
CORE_OBJ := $(CORE_SRC:src/%.c=$(BUILD)/obj/src/%.o) $(BUILD)/obj/gen/dashboard.o
BACKEND_SRC := $(wildcard backend/*.c)
BACKEND_OBJ := $(BACKEND_SRC:%.c=$(BUILD)/obj/%.o)
# The demo backend reuses the event loop, buffers, parser, sockets and log, and the etcd JSON
# handling (--register), nothing else.
BACKEND_CORE := $(patsubst %,$(BUILD)/obj/src/%.o,core/loop core/buf core/conn http/http1 core/net core/log core/base64 discovery/etcd_json discovery/members)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/unit/%)

.PHONY: check-layers all clean test test-unit test-e2e test-asan fuzz fuzz-run run bench fmt fmt-check deps \
        deps-build deps-bench soak install

all: $(BUILD)/fulcrum $(BUILD)/fulcrum-backend

# Order-only: checking for the packages never makes an object out of date.
$(BUILD)/obj/%.o: %.c | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

%/gen/dashboard.c: src/ctl/dashboard.html | deps-build
	@mkdir -p $(dir $@)
	xxd -i -n dashboard_html $< > $@

$(BUILD)/obj/gen/dashboard.o: $(BUILD)/gen/dashboard.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-variable-declarations -c $< -o $@

$(BUILD)/fulcrum: $(BUILD)/obj/src/main.o $(CORE_OBJ)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/fulcrum-backend: $(BACKEND_OBJ) $(BACKEND_CORE)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

# Unit tests link every object of src/ but main.c, and reach each module through its header.
$(BUILD)/unit/%: tests/unit/%.c $(CORE_OBJ) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -Wno-missing-prototypes $< $(CORE_OBJ) -o $@ $(LDLIBS) -lcmocka

deps:
	@scripts/install-deps test
deps-build:
	@scripts/install-deps build
deps-bench:
	@scripts/install-deps bench

test-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

test-e2e: all
	FULCRUM_BUILD=$(BUILD) python3 tests/e2e/run.py $(E2E_ARGS)

# Layers (docs/architecture.md): no file includes a header from a layer above its own.
check-layers:
	@scripts/check-layers

test: deps check-layers
	$(MAKE) all $(UNIT_BIN)
	$(MAKE) test-unit
	$(MAKE) test-e2e

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
test-asan: deps
	$(MAKE) BUILD=build-asan OPT=-O1 SAN_FLAGS="$(ASAN_FLAGS)" all
	$(MAKE) BUILD=build-asan OPT=-O1 SAN_FLAGS="$(ASAN_FLAGS)" \
	    $(UNIT_SRC:tests/unit/%.c=build-asan/unit/%)
	$(MAKE) BUILD=build-asan OPT=-O1 SAN_FLAGS="$(ASAN_FLAGS)" test-unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    $(MAKE) BUILD=build-asan OPT=-O1 SAN_FLAGS="$(ASAN_FLAGS)" test-e2e

FUZZ_CC ?= clang
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_SECONDS ?= 60
build-fuzz/%: fuzz/%.c $(wildcard fuzz/*.h) $(CORE_SRC) build-fuzz/gen/dashboard.c
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(CPPFLAGS) -DFULCRUM_NO_DNS -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined $< $(CORE_SRC) build-fuzz/gen/dashboard.c -o $@ \
	    -lyaml -ljansson -lcares -lssl -lcrypto $(NGHTTP2_LIBS) -lm -pthread
fuzz: deps
	$(MAKE) $(FUZZ_BIN)
fuzz-run: fuzz
	@scripts/fuzz-run $(FUZZ_SECONDS) $(FUZZ_BIN)

run: all
	@scripts/run-demo

bench: deps-bench all
	bench/run $(BENCH_ARGS)

soak: all
	python3 tests/soak/soak.py

# The fault-injection suite (tests/e2e/test_faults.py) with longer loads and repeated
# fault/heal cycles; make test runs its short form.
.PHONY: test-faults-long
test-faults-long: all
	FULCRUM_FAULTS_LONG=1 FULCRUM_BUILD=$(BUILD) python3 tests/e2e/run.py test_faults.

# The full testssl.sh audit of a fulcrum TLS listener (every default check, all of --vulnerable's
# included; a few minutes), failing on any MEDIUM, HIGH or CRITICAL finding (scripts/tls-audit;
# TLS_AUDIT_ARGS=--strict also fails on the waived ones). make test runs a quicker subset
# (tests/e2e/test_tls_audit.py).
.PHONY: tls-audit
tls-audit: deps all
	FULCRUM_BUILD=$(BUILD) scripts/tls-audit $(TLS_AUDIT_ARGS)

fmt:
	clang-format -i src/*.c src/*/*.c src/*/*.h backend/*.c backend/*.h tests/unit/*.c fuzz/*.c fuzz/*.h

fmt-check:
	clang-format --dry-run --Werror src/*.c src/*/*.c src/*/*.h backend/*.c backend/*.h tests/unit/*.c fuzz/*.c fuzz/*.h

# make install [PREFIX=/usr/local] [DESTDIR=staging dir]: binaries, man pages, the systemd unit,
# the example configuration and the documentation. An existing fulcrum.yaml is never overwritten,
# and make uninstall leaves it in place.
PREFIX ?= /usr/local
ifeq ($(patsubst %/,%,$(PREFIX)),/usr)
SYSCONFDIR ?= /etc
else
SYSCONFDIR ?= $(PREFIX)/etc
endif
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/fulcrum
INSTALL_DOCS := README.md $(wildcard docs/*.md)

.PHONY: uninstall
install: all
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man8" "$(DESTDIR)$(MANDIR)/man5" \
	    "$(DESTDIR)$(SYSCONFDIR)/fulcrum" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(DOCDIR)"
	install -m 755 $(BUILD)/fulcrum $(BUILD)/fulcrum-backend "$(DESTDIR)$(BINDIR)/"
	gzip -9nc docs/man/fulcrum.8 > "$(DESTDIR)$(MANDIR)/man8/fulcrum.8.gz"
	gzip -9nc docs/man/fulcrum.yaml.5 > "$(DESTDIR)$(MANDIR)/man5/fulcrum.yaml.5.gz"
	chmod 644 "$(DESTDIR)$(MANDIR)/man8/fulcrum.8.gz" "$(DESTDIR)$(MANDIR)/man5/fulcrum.yaml.5.gz"
	install -m 644 packaging/fulcrum.yaml "$(DESTDIR)$(SYSCONFDIR)/fulcrum/fulcrum.yaml.example"
	test -e "$(DESTDIR)$(SYSCONFDIR)/fulcrum/fulcrum.yaml" || \
	    install -m 644 packaging/fulcrum.yaml "$(DESTDIR)$(SYSCONFDIR)/fulcrum/fulcrum.yaml"
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/fulcrum.service \
	    > "$(DESTDIR)$(UNITDIR)/fulcrum.service"
	chmod 644 "$(DESTDIR)$(UNITDIR)/fulcrum.service"
	install -m 644 $(INSTALL_DOCS) "$(DESTDIR)$(DOCDIR)/"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/fulcrum" "$(DESTDIR)$(BINDIR)/fulcrum-backend" \
	    "$(DESTDIR)$(MANDIR)/man8/fulcrum.8.gz" "$(DESTDIR)$(MANDIR)/man5/fulcrum.yaml.5.gz" \
	    "$(DESTDIR)$(SYSCONFDIR)/fulcrum/fulcrum.yaml.example" \
	    "$(DESTDIR)$(UNITDIR)/fulcrum.service" \
	    $(patsubst %,"$(DESTDIR)$(DOCDIR)/%",$(notdir $(INSTALL_DOCS)))
	! test -d "$(DESTDIR)$(DOCDIR)" || rmdir --ignore-fail-on-non-empty "$(DESTDIR)$(DOCDIR)"
	! test -d "$(DESTDIR)$(SYSCONFDIR)/fulcrum" || \
	    rmdir --ignore-fail-on-non-empty "$(DESTDIR)$(SYSCONFDIR)/fulcrum"

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
