# netpoll: hand-written, non-recursive.  Runs autoconf + configure itself on a
# fresh tree and installs missing Debian packages (as root) before building.
#
#   make            library, preload shim, tests' binaries
#   make check      the test suite (Criterion), man page lint, ABI checks
#   make demo       an unmodified server plain and under nprun, then the runtime demo
#   make bench      benchmarks side by side with their peers, bench/results/RESULTS.md
#                   and plots (make bench-quick: echo alone, under a minute)
#   make install    PREFIX=/usr/local DESTDIR=   (make uninstall, the same way)
#   make abi-check  the library's ABI against t/abi/ (make abi-baseline: record it)
#   make deps       install missing Debian packages
#   make clean

B       ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
VERSION := 1.0.0
SOMAJOR := 1

DEPS_BUILD := g++ make autoconf pkg-config dpkg-dev liburing-dev libffi-dev \
              libcriterion-dev mandoc
DEPS_TEST  := valgrind gdb qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu python3 curl wrk redis-server \
              redis-tools nginx abigail-tools mariadb-server mariadb-client apache2 \
              openjdk-17-jdk-headless postgresql haproxy ruby golang-go \
              libtcmalloc-minimal4
DEPS_BENCH := golang-go libboost-context-dev wrk gnuplot-nox

.PHONY: all check check-valgrind check-asan check-tsan demo bench install clean deps deps-bench lib tests
all: lib tests shim nprun

NOCONF_GOALS := clean deps deps-bench uninstall
ifeq ($(filter $(NOCONF_GOALS),$(MAKECMDGOALS)),)
-include $(B)/config.mk
endif
include t/stress/stress.mk # fault injection (FAULTS=1, check-faults), soak

# ---- dependencies ----------------------------------------------------------
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || { echo "apt-get install$$missing failed" >&2; exit 1; }; \
	  else \
	    echo "missing packages; run as root:  apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call install_missing,$(DEPS_BUILD) $(DEPS_TEST))
deps-bench: deps
	$(call install_missing,$(DEPS_BENCH))

# ---- configure -------------------------------------------------------------
$(B)/config.mk: configure.ac config.mk.in config.h.in
	@$(MAKE) --no-print-directory deps
	@mkdir -p $(B)
	autoconf -o $(B)/configure configure.ac
	rm -rf autom4te.cache
	cd $(B) && ./configure --srcdir=$(CURDIR) -q

# ---- the library -----------------------------------------------------------
CFLAGS_COMMON := -O2 -g -fPIC -fno-omit-frame-pointer -Wall -Wextra -Iinclude -Isrc -I$(B) $(SANFLAGS)
LIB_CXXFLAGS  := -std=c++20 -fvisibility=hidden -fvisibility-inlines-hidden $(TLS_CFLAGS) $(CFLAGS_COMMON)
LIB_SRCS := $(wildcard src/*.cpp) ports/epoll.cpp ports/poll.cpp
ifeq ($(HAVE_IO_URING),1)
# liburing is loaded with the first ring (ports/uring_link.cpp).
LIB_SRCS += ports/io_uring.cpp ports/uring_link.cpp
endif
ifeq ($(HAVE_JEMALLOC),1)
# Built once from Debian's source package, its TLS one that a dlopen can
# place (src/jemalloc/build.sh); the sanitizer trees share it.
JEMALLOC_DIR ?= $(B)/jemalloc
JEMALLOC_A := $(JEMALLOC_DIR)/libjemalloc_pic.a
LIB_LIBS += -Wl,--whole-archive $(JEMALLOC_A) -Wl,--no-whole-archive
# In the library, jemalloc's calls to names a preload shim interposes go to
# libc's own functions (__wrap_* in src/libc_real.cpp; t/imports-check.sh),
# and its fork handlers to src/heap_fork.cpp (a child resets the heap when
# it first uses it).  Not in internal-tests, which no shim is preloaded into.
JEMALLOC_WRAP := close sched_yield sched_getaffinity sched_setaffinity syscall pthread_create pthread_join pthread_key_create \
                 pthread_setspecific pthread_mutex_init pthread_mutex_lock pthread_mutex_trylock \
                 pthread_mutex_unlock pthread_cond_init pthread_cond_signal pthread_cond_wait \
                 pthread_cond_timedwait pthread_atfork
# and the static C++ runtime's (STATIC_CXXRT below).
JEMALLOC_WRAP += pthread_once __pthread_key_create pthread_sigmask pthread_setname_np pthread_getname_np
# (stdio's writes: the C++ runtime's terminate message, jemalloc's stats)
JEMALLOC_WRAP += fprintf fputc fputs fwrite
LIB_WRAP := $(foreach n,$(JEMALLOC_WRAP),-Wl,--wrap=$(n))
endif
LIB_LIBS += -lpthread -ldl
# The C++ runtime the library uses (exceptions, guards, the demangler) is
# linked in and kept local: every program the shim is preloaded into, a
# shell's true as much as a server, would otherwise load and start
# libstdc++ and libm.  Its calls to names a shim interposes are wrapped as
# jemalloc's are (src/cxx_throw.cpp keeps most of them out).  Not under a
# sanitizer, whose runtime wants the shared one.  The unwinder stays the
# shared libgcc_s, the one glibc's pthread_exit and cancellation unwind
# with: a static copy would be handed that one's frames by our
# personality routine, and abort on the first destructor it has to run.
# That one is reached when an unwind runs (src/unwind_link.cpp), not
# loaded with the library: its constructor's CPU probe cost every process.
ifeq ($(SANFLAGS)$(HAVE_JEMALLOC),1)
STATIC_CXXRT := -static-libstdc++ -static-libgcc
UNWIND_LINK := src/unwind_link.cpp
endif
LIB_SRCS := $(filter-out $(if $(UNWIND_LINK),,src/unwind_link.cpp),$(LIB_SRCS))
LIB_OBJS := $(patsubst %.cpp,$(B)/obj/%.o,$(LIB_SRCS)) $(B)/obj/switch.o
LIB_SO   := $(B)/lib/libnetpoll.so.$(VERSION)
LIB_HDRS := $(wildcard src/*.hpp) include/netpoll.h $(B)/config.mk

lib: $(B)/lib/libnetpoll.so $(B)/netpoll.pc

$(B)/obj/%.o: %.cpp $(LIB_HDRS)
	@mkdir -p $(dir $@)
	$(CXX) $(LIB_CXXFLAGS) -c $< -o $@

$(B)/obj/switch.o: $(ARCH_SWITCH) $(B)/config.mk
	@mkdir -p $(dir $@)
	$(CC) -fPIC -g -c $< -o $@

$(JEMALLOC_DIR)/libjemalloc_pic.a: src/jemalloc/build.sh
	MAKEFLAGS="$${MAKEFLAGS%% -- *}" CC="$(CC)" CXX="$(CXX)" MAKE="$(MAKE)" sh src/jemalloc/build.sh $(JEMALLOC_DIR)
$(LIB_SO) $(B)/t/internal-tests: $(JEMALLOC_A)

$(LIB_SO): $(LIB_OBJS) src/netpoll.map
	@mkdir -p $(dir $@)
	$(CXX) -shared -o $@ $(LIB_OBJS) -Wl,-soname,libnetpoll.so.$(SOMAJOR) \
	  -Wl,--version-script=src/netpoll.map -Wl,--exclude-libs,ALL -Wl,-z,now -Wl,--no-undefined \
	  $(SANFLAGS) $(LIB_LIBS) $(LIB_WRAP) $(STATIC_CXXRT)

$(B)/lib/libnetpoll.so.$(SOMAJOR): $(LIB_SO)
	ln -sf libnetpoll.so.$(VERSION) $@
$(B)/lib/libnetpoll.so: $(B)/lib/libnetpoll.so.$(SOMAJOR)
	ln -sf libnetpoll.so.$(SOMAJOR) $@

# Written again at install time, for the PREFIX given then.
define write_pc
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$${prefix}/include' '' \
	  'Name: netpoll' 'Description: green threads and Go-style pollable descriptors' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -lnetpoll' 'Cflags: -I$${includedir}' > $(1)
endef

$(B)/netpoll.pc: Makefile
	@mkdir -p $(B)
	$(call write_pc,$@)

# ---- tests -----------------------------------------------------------------
TEST_SRCS := $(wildcard t/*.c)
TEST_BIN  := $(B)/t/netpoll-tests
T_CFLAGS  := -std=c11 -D_GNU_SOURCE $(CFLAGS_COMMON)
T_LDFLAGS := -L$(B)/lib -Wl,-rpath,$(CURDIR)/$(B)/lib -Wl,-z,now -lnetpoll -lcriterion -lpthread -lm $(SANFLAGS)

tests: $(TEST_BIN)

$(B)/t/%.o: t/%.c include/netpoll.h t/np_test.h $(B)/config.mk
	@mkdir -p $(dir $@)
	$(CC) $(T_CFLAGS) -c $< -o $@

# -rdynamic: np_dump's test finds its own functions in the stacks it walks.
$(TEST_BIN): $(patsubst t/%.c,$(B)/t/%.o,$(TEST_SRCS)) $(B)/lib/libnetpoll.so
	$(CC) -rdynamic -o $@ $(filter %.o,$^) $(T_LDFLAGS) -lffi

# Tests that need the library's insides link its objects directly.
$(B)/t/internal-tests: t/internal/*.cpp $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CXX) $(LIB_CXXFLAGS) -o $@ t/internal/*.cpp $(LIB_OBJS) $(LIB_LIBS) -lcriterion

# Under valgrind (memcheck): suites whose timing bounds survive its slowdown.
VG_SUITES_QUICK := 'sync/*' 'io_epoll/*' 'reuse_epoll/*' 'placement_epoll/*'
VG_SUITES := $(VG_SUITES_QUICK) 'close_epoll/*' 'runtime/*' 'embed/*' 'steady_epoll/*'
VALGRIND_RUN = valgrind --trace-children=yes --error-exitcode=9 -q

$(B)/t/gdb/bt_target: t/gdb/bt_target.c $(B)/lib/libnetpoll.so
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -Iinclude -o $@ $< -L$(B)/lib -Wl,-rpath,$(CURDIR)/$(B)/lib -lnetpoll

$(B)/t/ffi/ffi_dlopen: t/ffi/ffi_dlopen.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O1 -g -o $@ $< -lffi -ldl

check: all $(B)/t/internal-tests $(B)/t/gdb/bt_target $(B)/t/ffi/ffi_dlopen
	sh man/check.sh
	sh t/shim/nprun-check.sh $(B)/bin/nprun
	sh t/shim/doc-check.sh $(SHIM_SO)
	sh t/gdb/bt-check.sh $(B)/t/gdb/bt_target
	sh t/ffi/ffi-check.sh $(B)/t/ffi/ffi_dlopen $(CURDIR)/$(LIB_SO)
	sh t/abi-check.sh $(B)/lib/libnetpoll.so.$(VERSION)
	sh t/abi/abi-diff.sh check $(LIB_SO) $(B)/abi
	sh t/header-check.sh include $(B)/lib
	sh t/bench/render-check.sh
	sh t/uninstall-check.sh "$(MAKE)" $(B)
	SHIM=$(SHIM_SO) sh t/imports-check.sh $(B)/lib/libnetpoll.so.$(VERSION) $(LIB_OBJS)
	sh t/arch/run-aarch64.sh $(B)/t/arch || test $$? = 77
	sh t/arch/build-aarch64.sh $(B)/t/arch || test $$? = 77
	$(CC) -std=c11 -O2 -o $(B)/t/arch/switch_test_native t/arch/switch_test.c $(ARCH_SWITCH) && $(B)/t/arch/switch_test_native
	$(B)/t/internal-tests --jobs 2
	for s in $(VG_SUITES_QUICK); do $(VALGRIND_RUN) $(TEST_BIN) --jobs 2 --filter "$$s" || exit 1; done
	$(TEST_BIN) --jobs 2
	sh t/shim/run.sh $(B)
	sh t/shim/dump-check.sh $(B)
	sh t/shim/real/run.sh $(B)
	$(MAKE) --no-print-directory check-faults # t/stress/stress.mk: ~15 s, and its build

check-valgrind: all
	for s in $(VG_SUITES); do $(VALGRIND_RUN) $(TEST_BIN) --jobs 2 --filter "$$s" || exit 1; done
	sh t/shim/run.sh $(B) >/dev/null # builds the shim's test programs
	for p in "echo_tls 100 5" "http_tls 100 5" stdio_sync cxx_threads single_thread; do \
	  $(VALGRIND_RUN) env LD_PRELOAD=$(CURDIR)/$(SHIM_SO) NP_PROCS=2 $(B)/t/shim/$$p >/dev/null || exit 1; done

# The suite built with AddressSanitizer and UBSan in a tree of its own
# (tests of memory use skip themselves there).  Stack switches are
# announced to it (src/sanitizer.hpp), so use-after-return is checked too.
# No vptr checks: their probe needs a spare descriptor, and the tests of
# the fd limit leave none.
# Then the preload shim built so, under some of its test programs (plain
# builds: libasan is preloaded first, as a sanitizer's runtime must be).
ASAN_B ?= build-asan
ASAN_SHIM_TESTS ?= join_detach stdio_sync signals same_fd short_reads mmsg futex_ops stdio_park single_thread stdio_write_park
check-asan:
	$(MAKE) B=$(ASAN_B) JEMALLOC_DIR=$(abspath $(JEMALLOC_DIR)) SANFLAGS="-fsanitize=address,undefined -fno-sanitize=vptr" \
	  tests $(ASAN_B)/lib/libnetpoll-preload.so
	ASAN_OPTIONS=detect_stack_use_after_return=1 LSAN_OPTIONS=suppressions=$(CURDIR)/t/lsan.supp \
	  $(ASAN_B)/t/netpoll-tests --jobs 2
	@mkdir -p $(ASAN_B)/t/shim
	for p in $(ASAN_SHIM_TESTS); do \
	  $(CC) -std=c11 -D_GNU_SOURCE -O2 -pthread -o $(ASAN_B)/t/shim/$$p t/shim/$$p.c || exit 1; \
	  echo "shim under ASan: $$p"; \
	  LD_PRELOAD=$$($(CC) -print-file-name=libasan.so):$(CURDIR)/$(ASAN_B)/lib/libnetpoll-preload.so \
	    ASAN_OPTIONS=detect_leaks=0 NP_PROCS=2 timeout 300 $(ASAN_B)/t/shim/$$p >/dev/null || exit 1; done

# The suite built with ThreadSanitizer (a TSan fiber per green thread,
# src/sanitizer.hpp) in a tree of its own.  A test that raced still passes
# by itself (its process exits before TSan's status is seen): any report
# fails the target.
TSAN_B ?= build-tsan
TSAN_OPTIONS ?= halt_on_error=0 second_deadlock_stack=1 history_size=4
check-tsan:
	$(MAKE) B=$(TSAN_B) JEMALLOC_DIR=$(abspath $(JEMALLOC_DIR)) SANFLAGS="-fsanitize=thread" tests
	TSAN_OPTIONS="$(TSAN_OPTIONS)" $(TSAN_B)/t/netpoll-tests --jobs 2 2>&1 | tee $(TSAN_B)/check-tsan.log; \
	  n=$$(grep -c "WARNING: ThreadSanitizer" $(TSAN_B)/check-tsan.log); \
	  if [ "$$n" != 0 ]; then echo "check-tsan: $$n race reports (see $(TSAN_B)/check-tsan.log)" >&2; exit 1; fi; \
	  grep -q "Failing: 0 | Crashing: 0" $(TSAN_B)/check-tsan.log

# ---- demo and benchmarks ----------------------------------------------------
$(B)/bench/%: bench/%.c $(B)/lib/libnetpoll.so
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Iinclude -o $@ $< -L$(B)/lib -Wl,-rpath,$(CURDIR)/$(B)/lib -Wl,-z,now -lnetpoll -lpthread

$(B)/bench/switch_np: bench/switch_np.c $(ARCH_SWITCH)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -o $@ $^

# Programs with no netpoll in them (the legacy servers, the load client):
# built as run.sh builds its peers, not linked with libnetpoll.
PLAIN_BENCH := legacy_echo legacy_http tls_switch echo_client
$(addprefix $(B)/bench/,$(PLAIN_BENCH)): $(B)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -pthread -o $@ $<

# make demo: the same unmodified thread-per-connection server plain and
# under nprun (bench/demo.sh), then the runtime's 100,000 green threads
# (make demo-runtime alone).
.PHONY: demo-legacy demo-runtime
DEMO_LEGACY_DEPS := shim nprun $(B)/bench/legacy_echo $(B)/bench/echo_client
demo: $(DEMO_LEGACY_DEPS) $(B)/bench/demo
	sh bench/demo.sh $(B)
	@echo
	$(B)/bench/demo
demo-legacy: $(DEMO_LEGACY_DEPS)
	sh bench/demo.sh $(B)
demo-runtime: $(B)/bench/demo
	$(B)/bench/demo

NP_BENCH := switch_np yield_np spawn_np park_np echo_np http_np deadline_np wake_np
# make bench: every section, results (TSV, RESULTS.md, PNG plots) in
# bench/results/; make bench-quick: echo at 10/100/1000 connections, short
# windows, under a minute, results in $(B)/bench/results/.
.PHONY: bench-quick
BENCH_BINS := lib shim nprun $(addprefix $(B)/bench/,$(NP_BENCH) $(PLAIN_BENCH))
bench: deps-bench $(BENCH_BINS)
	BENCH_OUT=bench/results sh bench/run.sh $(B)
bench-quick: deps-bench $(BENCH_BINS)
	BENCH_QUICK=2 BENCH_OUT=$(B)/bench/results sh bench/run.sh $(B)

# ---- the preload shim ------------------------------------------------------
# Built against the public header and the shim's private seam only (no
# -Isrc); it needs libnetpoll.so.1, found next to it ($ORIGIN).
SHIM_SRCS := $(filter-out shim/nprun.c,$(wildcard shim/*.cpp))
SHIM_OBJS := $(patsubst %.cpp,$(B)/obj/%.o,$(SHIM_SRCS)) $(if $(UNWIND_LINK),$(B)/obj/shim/unwind_link.o)
SHIM_SO   := $(B)/lib/libnetpoll-preload.so
SHIM_CXXFLAGS := -std=c++20 -O2 -g -fPIC -fno-omit-frame-pointer -Wall -Wextra -Iinclude $(SANFLAGS)

.PHONY: shim
shim: $(SHIM_SO)

$(B)/obj/shim/%.o: shim/%.cpp $(wildcard shim/*.hpp) shim/real.def include/netpoll.h include/netpoll_shim.h
	@mkdir -p $(dir $@)
	$(CXX) $(SHIM_CXXFLAGS) -c $< -o $@

$(B)/obj/shim/unwind_link.o: src/unwind_link.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(SHIM_CXXFLAGS) -c $< -o $@

$(SHIM_SO): $(SHIM_OBJS) shim/preload.map $(B)/lib/libnetpoll.so
	$(CXX) -shared -o $@ $(SHIM_OBJS) -Wl,--version-script=shim/preload.map -Wl,-z,now \
	  -Wl,--exclude-libs,ALL -Wl,-rpath,'$$ORIGIN' -L$(B)/lib -lnetpoll -ldl -lpthread $(SANFLAGS) \
	  $(STATIC_CXXRT)

# ---- nprun, the launcher of the preload shim --------------------------------
.PHONY: nprun
nprun: $(B)/bin/nprun

$(B)/bin/nprun: shim/nprun.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o $@ $<

# ---- install ---------------------------------------------------------------
install: lib shim nprun
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(LIBDIR)/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/man/man3 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/
	ln -sf libnetpoll.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnetpoll.so.$(SOMAJOR)
	ln -sf libnetpoll.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libnetpoll.so
	install -m 644 include/netpoll.h $(DESTDIR)$(PREFIX)/include/
	$(call write_pc,$(DESTDIR)$(LIBDIR)/pkgconfig/netpoll.pc)
	install -m 644 man/man3/*.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 man/man7/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(B)/bin/nprun $(DESTDIR)$(PREFIX)/bin/nprun
	install -m 755 $(SHIM_SO) $(DESTDIR)$(PREFIX)/lib/libnetpoll-preload.so
	install -m 644 man/man1/nprun.1 $(DESTDIR)$(PREFIX)/share/man/man1/nprun.1

# Removes what install put there, for the same PREFIX, LIBDIR and DESTDIR
# (directories stay).
.PHONY: uninstall
uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libnetpoll.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnetpoll.so.$(SOMAJOR) \
	  $(DESTDIR)$(LIBDIR)/libnetpoll.so $(DESTDIR)$(LIBDIR)/pkgconfig/netpoll.pc \
	  $(DESTDIR)$(PREFIX)/include/netpoll.h \
	  $(addprefix $(DESTDIR)$(PREFIX)/share/man/man3/,$(notdir $(wildcard man/man3/*.3))) \
	  $(addprefix $(DESTDIR)$(PREFIX)/share/man/man7/,$(notdir $(wildcard man/man7/*.7))) \
	  $(DESTDIR)$(PREFIX)/bin/nprun $(DESTDIR)$(PREFIX)/lib/libnetpoll-preload.so \
	  $(DESTDIR)$(PREFIX)/share/man/man1/nprun.1

# ---- ABI baseline ----------------------------------------------------------
# t/abi/ holds the ABI of libnetpoll.so.1 as abidw reads it (symbols and
# their version nodes, prototypes, the layout of netpoll.h's types) and
# netpoll.h's macros.  abi-check (run by check) fails on any difference;
# a deliberate addition runs abi-baseline and commits t/abi/ with it.
.PHONY: abi-check abi-baseline
abi-check: lib
	sh t/abi/abi-diff.sh check $(LIB_SO) $(B)/abi
abi-baseline: lib
	sh t/abi/abi-diff.sh update $(LIB_SO) $(B)/abi

clean:
	rm -rf $(B) autom4te.cache

include t/fuzz/fuzz.mk
