# fedlora — the one build entry point.
#   make            build build/fedlora (CUDA parts only where nvcc is found)
#   make test       install missing Debian packages, build, run every CPU test
#   make demo       install missing Debian packages, build, run the main job
#   make asan       build into build-asan/ with AddressSanitizer + UBSan and run the tests
#   make bench      build the benchmarks in build/bench/
#   make fuzz-build clang ASan+UBSan+libFuzzer targets tests/fuzz/*_fuzz.c in build-fuzz/fuzz/
#   make fuzz       run each fuzz target FUZZ_S seconds (default 600); prints a table
#   make CUDA=0     force the CPU-only build
# Every variable below can be overridden on the command line.

CC        ?= cc
BUILD     ?= build
OPT       ?= -O2
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA      ?= $(shell test -x $(NVCC) && echo 1 || echo 0)
CUDA_ARCHS ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_87,code=sm_87 \
	      -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=sm_90 \
	      -gencode arch=compute_90,code=compute_90
SAN       ?=
FUZZ_S    ?= 600

WARN   := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla \
	  -Wno-unused-parameter
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(SAN) -MMD -MP \
	  -I. -I$(BUILD)/gen -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS := -lsodium -lnng -lmbedtls -lmbedx509 -lmbedcrypto -lprotobuf-c -lcjson \
	  -lopenblas -lfftw3 -lpcre2-8 -lutf8proc -lm -lpthread
LDFLAGS ?=
LDFLAGS += $(SAN)

LIB_DIRS := core lora privacy model tokenizer coordinator client tools
LIB_SRC  := $(filter-out tools/main.c,$(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
PROTO_C  := $(BUILD)/gen/fedlora.pb-c.c
PROTO_H  := $(BUILD)/gen/fedlora.pb-c.h
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/gen/fedlora.pb-c.o

ifeq ($(CUDA),1)
CU_SRC   := $(wildcard model/cuda/*.cu)
CU_OBJ   := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRC))
CFLAGS   += -DFL_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
NVFLAGS  ?= -O3 -std=c++17 $(CUDA_ARCHS) -I. -I$(BUILD)/gen -DFL_HAVE_CUDA=1 \
	    -Xcompiler -fPIC,-Wall -lineinfo -MMD -MP
else
CU_OBJ   :=
endif

TEST_SRC   := $(wildcard tests/*_test.c)
TEST_BIN   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC  := $(wildcard bench/*.c)
BENCH_BIN  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all test demo asan bench clean deps format tests-build test-compose gpu-check \
	fuzz fuzz-build

# A fresh machine without the build dependencies stops here with one line
# naming `make deps` (goals that install them, or need none, skip the check).
ifeq ($(wildcard $(PROTO_H)),)
ifeq ($(filter deps test demo asan clean format test-compose gpu-check fuzz fuzz-build,$(MAKECMDGOALS)),)
DEPS_MISSING := $(shell CC="$(CC)" sh scripts/check-deps.sh 2>&1)
$(if $(DEPS_MISSING),$(error $(DEPS_MISSING)))
endif
endif
all: $(BUILD)/fedlora

deps:
	@sh scripts/install-deps.sh

$(PROTO_C) $(PROTO_H): proto/fedlora.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen proto/fedlora.proto

$(BUILD)/obj/gen/fedlora.pb-c.o: $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(BUILD)/libfedlora.a: $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fedlora: $(BUILD)/obj/tools/main.o $(LIB_OBJ) $(CU_OBJ)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
	@echo "built $@ (CUDA=$(CUDA))"

$(BUILD)/tests/%: tests/%.c $(BUILD)/libfedlora.a | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libfedlora.a $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(BUILD)/libfedlora.a | $(PROTO_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libfedlora.a $(LDLIBS) -o $@

tests-build: $(BUILD)/fedlora $(TEST_BIN) $(BUILD)/bench/load
bench: $(BUILD)/fedlora $(BENCH_BIN)

test: deps
	@$(MAKE) --no-print-directory tests-build
	@FEDLORA=$(BUILD)/fedlora TEST_BIN_DIR=$(BUILD)/tests sh scripts/run-tests.sh

asan:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory BUILD=build-asan CUDA=0 OPT=-O1 \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" tests-build
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		FEDLORA=build-asan/fedlora TEST_BIN_DIR=build-asan/tests sh scripts/run-tests.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

gpu-check:
	@$(MAKE) --no-print-directory bench tests-build
	@sh scripts/gpu-check.sh

fuzz-build:
	@sh scripts/fuzz.sh build

fuzz:
	@FUZZ_S=$(FUZZ_S) sh scripts/fuzz.sh run

test-compose:
	@sh scripts/compose-test.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf $(BUILD) build-asan build-fuzz

# header dependencies of the objects, the tests and the benchmarks (each
# compiled with -MMD -MP: a changed tests/test.h rebuilds the tests)
-include $(shell find $(BUILD)/obj $(BUILD)/tests $(BUILD)/bench -name '*.d' 2>/dev/null)
