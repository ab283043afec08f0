# Fault injection and soak (t/stress/), included by the Makefile.
#
#   make FAULTS=1 ...   a build whose system calls fail at random (src/fault.hpp);
#                       in a tree of its own (B=...): objects do not record it
#   make check-faults   the checksummed echo stress on each poller, in $(B)/faults
#   make soak           SOAK_SECONDS=120: everything mixed, then RSS, descriptors
#                       and mappings back to their baseline
#
# Included before the library's flags are set: only variables, and rules
# whose prerequisites name $(B) and files.
ifeq ($(FAULTS),1)
SANFLAGS += -DNP_FAULTS
endif

FAULTS_B     ?= $(B)/faults
SOAK_SECONDS ?= 120
.PHONY: check-faults soak stress-progs

STRESS_PROGS := echo_stress soak uring_close
stress-progs: $(addprefix $(B)/t/stress/,$(STRESS_PROGS))

$(B)/t/stress/%: t/stress/%.c include/netpoll.h $(B)/lib/libnetpoll.so
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Iinclude -o $@ $< -L$(B)/lib \
	  -Wl,-rpath,$(CURDIR)/$(B)/lib -Wl,-z,now -lnetpoll -lpthread $(SANFLAGS)

check-faults:
	$(MAKE) --no-print-directory B=$(FAULTS_B) JEMALLOC_DIR=$(abspath $(JEMALLOC_DIR)) FAULTS=1 lib \
	  $(FAULTS_B)/t/stress/echo_stress $(FAULTS_B)/t/stress/uring_close
	sh t/stress/faults.sh $(FAULTS_B)

soak: lib $(B)/t/stress/soak
	SOAK_SECONDS=$(SOAK_SECONDS) sh t/stress/soak.sh $(B)
