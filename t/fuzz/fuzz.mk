# Fuzzing with clang's libFuzzer (t/fuzz/), included by the Makefile.
#
#   make fuzz          each target for FUZZ_TIME seconds (default 60), from
#                      its corpus in t/fuzz/corpus/<target>/; new inputs go to
#                      $(B)/fuzz/corpus/<target>/, crashes to $(B)/fuzz/
#   make fuzz-check    each target over its committed corpus only (part of
#                      make check; skipped when clang has no libFuzzer)
#   make fuzz-merge    minimize t/fuzz/corpus/<target>/ with -merge=1
#
# The engine (and the shim's fd table) is built again here, with clang,
# AddressSanitizer, UBSan and libFuzzer's coverage, into the fuzzer itself:
# jemalloc stays out (the engine's allocations go to malloc, where ASan
# sees them), and stack switches are announced to ASan (src/sanitizer.hpp).

FUZZ_CC      ?= clang
FUZZ_CXX     ?= clang++
FUZZ_TIME    ?= 60
FUZZ_TARGETS := api config fd_table preload
FUZZ_B       := $(B)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined
FUZZ_FLAGS   := -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Iinclude -Isrc -I$(FUZZ_B) -I$(B) \
                $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_OBJS    := $(patsubst %.cpp,$(FUZZ_B)/obj/%.o,$(LIB_SRCS)) $(FUZZ_B)/obj/switch.o
FUZZ_LIBS     = $(if $(filter 1,$(HAVE_IO_URING)),-luring) -lpthread -ldl
FUZZ_BINS    := $(addprefix $(FUZZ_B)/fuzz_,$(FUZZ_TARGETS))
FUZZ_PROCS   ?= 2
FUZZ_ENV     := ASAN_OPTIONS=detect_stack_use_after_return=1:detect_leaks=0 \
                NPRUN=$(B)/bin/nprun NPRUN_PRELOAD=$(CURDIR)/$(SHIM_SO)
FUZZ_RUN      = sh t/fuzz/run.sh

DEPS_TEST += clang libclang-rt-dev

.PHONY: fuzz fuzz-check fuzz-merge fuzz-bins
check: fuzz-check

# config.h without jemalloc.
$(FUZZ_B)/config.h: $(B)/config.mk
	@mkdir -p $(dir $@)
	sed 's/^#define HAVE_JEMALLOC 1$$/#define HAVE_JEMALLOC 0/' $(B)/config.h > $@

$(FUZZ_B)/obj/%.o: %.cpp $(LIB_HDRS) $(FUZZ_B)/config.h
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -std=c++20 $(FUZZ_FLAGS) -c $< -o $@

$(FUZZ_B)/obj/switch.o: $(ARCH_SWITCH) $(B)/config.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -c $< -o $@

# The shim's table, linked into its target with the engine under it.
FUZZ_SHIM := $(FUZZ_B)/obj/shim/fd_table.o $(FUZZ_B)/obj/shim/real.o
$(FUZZ_SHIM): $(wildcard shim/*.hpp) shim/real.def include/netpoll_shim.h

$(FUZZ_B)/fuzz_%: t/fuzz/fuzz_%.cpp t/fuzz/fuzz.hpp $(FUZZ_OBJS) $(FUZZ_SHIM)
	$(FUZZ_CXX) -std=c++20 $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) \
	  $(if $(filter fuzz_fd_table,$(notdir $@)),$(FUZZ_SHIM)) $(FUZZ_LIBS)

# The calls a program makes, under the preload shim (not built with ASan,
# so neither is this: libFuzzer and UBSan only).
$(FUZZ_B)/fuzz_preload: t/fuzz/fuzz_preload.cpp t/fuzz/fuzz.hpp
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -std=c++20 -O1 -g -Wall -Wextra -fsanitize=fuzzer,undefined -fno-sanitize-recover=undefined \
	  -o $@ $< -lpthread

fuzz-bins: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_OBJS) $(FUZZ_SHIM) # kept, though only pattern rules name them

# Without libFuzzer there is nothing to build: say so, and pass.
FUZZ_HAVE = printf 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }\n' | \
	$(FUZZ_CC) -fsanitize=fuzzer,address -x c - -o /dev/null 2>/dev/null

fuzz-check: shim nprun
	@if $(FUZZ_HAVE); then $(MAKE) --no-print-directory fuzz-bins && \
	  $(FUZZ_ENV) NP_PROCS=1 $(FUZZ_RUN) check $(FUZZ_B) $(FUZZ_TARGETS); \
	else echo "fuzz: $(FUZZ_CC) with libFuzzer not found: skipped"; fi

fuzz: fuzz-bins shim nprun
	$(FUZZ_ENV) NP_PROCS=$(FUZZ_PROCS) FUZZ_TIME=$(FUZZ_TIME) $(FUZZ_RUN) fuzz $(FUZZ_B) $(FUZZ_TARGETS)

fuzz-merge: fuzz-bins shim nprun
	$(FUZZ_ENV) NP_PROCS=1 $(FUZZ_RUN) merge $(FUZZ_B) $(FUZZ_TARGETS)
